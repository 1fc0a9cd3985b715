//! The rewarded-ads part of the GraphQL schema.

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    entity::ad_reward,
    service::{self, Outcome, PrepareInput, Provider},
};
use crate::{
    app::AppState,
    graphql::{
        ApiError, RequestMeta,
        pagination::{self, PageInfo},
    },
    identity::auth::AuthContextExt,
};

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdProvider {
    /// Monetag's rewarded interstitial: the browser completes with its ticket.
    Monetag,
    /// Google IMA: Google's server-side verification credits with no client call.
    Gma,
}

impl From<Provider> for AdProvider {
    fn from(p: Provider) -> Self {
        match p {
            Provider::Monetag => AdProvider::Monetag,
            Provider::Gma => AdProvider::Gma,
        }
    }
}

impl From<AdProvider> for Provider {
    fn from(p: AdProvider) -> Self {
        match p {
            AdProvider::Monetag => Provider::Monetag,
            AdProvider::Gma => Provider::Gma,
        }
    }
}

/// What the viewer may earn now.
#[derive(SimpleObject)]
pub struct AdRewardStatus {
    /// Providers offered here, the default first.
    providers: Vec<AdProvider>,
    default_provider: Option<AdProvider>,
    /// Coins per watched ad.
    amount: i64,
    /// Seconds an ad must stay visible.
    required_seconds: u32,
    /// Seconds before the next reward is possible (0: now).
    cooldown_seconds: u64,
    /// Rewards credited to the viewer today (UTC).
    today_count: i64,
    /// The viewer's rewards per day today (after the adaptive cut).
    daily_cap: u32,
    device_daily_cap: u32,
    placements: Vec<String>,
    /// Turnstile site key, when prepare needs a challenge token.
    turnstile_site_key: Option<String>,
    /// The Turnstile widget's script (explicit rendering), with the site key.
    turnstile_script_url: Option<String>,
    /// Whether prepare needs a client signature.
    client_signing_required: bool,
    /// Google's IMA SDK, which plays the GMA ad tag; null when GMA is off or its tag is
    /// the development player (an address to open, not an ad tag).
    ima_sdk_url: Option<String>,
}

#[derive(SimpleObject)]
pub struct MonetagParams {
    zone_id: String,
    script_url: String,
    /// Monetag's user-data parameter: the nonce, echoed back in its postback.
    ymid: String,
}

/// A prepared ad: show it, then complete (Monetag) or let Google call back (GMA).
#[derive(SimpleObject)]
pub struct AdRewardTicket {
    provider: AdProvider,
    nonce: String,
    device_hash: String,
    expires_at: DateTime<Utc>,
    required_duration_sec: u32,
    /// Signed; hand it back to `completeAdReward`.
    ticket: String,
    monetag: Option<MonetagParams>,
    /// The IMA ad tag (GMA).
    ad_tag_url: Option<String>,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdRewardOutcome {
    Credited,
    /// Waiting for the network's confirmation; the credit follows without another call.
    Pending,
    /// This ad was credited already; nothing moved.
    Duplicate,
}

#[derive(SimpleObject)]
pub struct AdRewardResult {
    status: AdRewardOutcome,
    /// Coins this call credited.
    credited: i64,
    /// The viewer's balance after it.
    balance: i64,
}

#[derive(InputObject)]
pub struct PrepareAdRewardInput {
    pub provider: AdProvider,
    pub placement: String,
    pub turnstile_token: Option<String>,
    /// With `timestamp` and `signature` when the server requires client signing.
    pub client_nonce: Option<String>,
    /// Unix seconds.
    pub timestamp: Option<i64>,
    /// Hex HMAC-SHA256 of `userId|clientNonce|timestamp|placement` (or `X-Client-Signature`).
    pub signature: Option<String>,
}

#[derive(InputObject)]
pub struct CompleteAdRewardInput {
    pub ticket: String,
    /// Seconds the ad stayed visible, as the page counted them.
    pub duration_sec: i64,
}

/// One credited ad.
pub struct AdReward(pub ad_reward::Model);

#[Object]
impl AdReward {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn provider(&self) -> AdProvider {
        Provider::parse(&self.0.provider)
            .unwrap_or(Provider::Monetag)
            .into()
    }
    /// The network that confirmed it (`monetag`, `gma`, or the callback's own name).
    async fn network(&self) -> &str {
        &self.0.network
    }
    async fn placement(&self) -> &str {
        &self.0.placement
    }
    async fn amount(&self) -> i64 {
        self.0.amount
    }
    async fn transfer_id(&self) -> Uuid {
        self.0.transfer_id
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(SimpleObject)]
pub struct AdRewardEdge {
    cursor: String,
    node: AdReward,
}

#[derive(SimpleObject)]
pub struct AdRewardConnection {
    edges: Vec<AdRewardEdge>,
    page_info: PageInfo,
    total_count: u64,
}

/// One page of a user's rewards.
pub async fn connection(
    ctx: &Context<'_>,
    user: Uuid,
    first: Option<i32>,
    after: Option<String>,
) -> Result<AdRewardConnection> {
    let state = ctx.data::<AppState>()?;
    let first = pagination::page_size(first)?;
    let after = pagination::after(after.as_deref())?;
    let page = service::rewards_of(state.db.conn(), user, first, after)
        .await
        .map_err(ApiError::from)?;
    let edges: Vec<AdRewardEdge> = page
        .rows
        .into_iter()
        .map(|row| AdRewardEdge {
            cursor: pagination::cursor(row.id),
            node: AdReward(row),
        })
        .collect();
    let cursors: Vec<String> = edges.iter().map(|e| e.cursor.clone()).collect();
    Ok(AdRewardConnection {
        page_info: PageInfo::new(&cursors, page.has_next),
        edges,
        total_count: page.total,
    })
}

fn meta<'a>(ctx: &'a Context<'_>) -> Result<&'a RequestMeta> {
    ctx.data::<RequestMeta>()
}

#[derive(Default)]
pub struct AdsQuery;

#[Object]
impl AdsQuery {
    /// Providers, amount, cooldown left, today's count and caps, for the viewer.
    async fn ad_reward_status(&self, ctx: &Context<'_>) -> Result<AdRewardStatus> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let status = service::status(state, viewer.user_id, meta(ctx)?).await?;
        let ads = &state.config.ads;
        let default =
            Provider::parse(&ads.default_provider).filter(|p| status.providers.contains(p));
        let mut providers: Vec<AdProvider> = status.providers.iter().map(|p| (*p).into()).collect();
        if let Some(d) = default {
            providers.sort_by_key(|p| Provider::from(*p) != d);
        }
        Ok(AdRewardStatus {
            default_provider: default
                .or(status.providers.first().copied())
                .map(Into::into),
            providers,
            amount: ads.reward_amount,
            required_seconds: ads.required_duration,
            cooldown_seconds: status.cooldown_left.as_secs_f64().ceil() as u64,
            today_count: status.today,
            daily_cap: status.caps.user,
            device_daily_cap: status.caps.device,
            placements: ads.ads_allowed_placements.clone(),
            turnstile_site_key: ads
                .turnstile_enabled()
                .then(|| ads.turnstile_site_key.clone())
                .flatten(),
            turnstile_script_url: ads
                .turnstile_enabled()
                .then(|| ads.turnstile_script_url.to_string()),
            client_signing_required: ads.client_signing_secret.is_some(),
            ima_sdk_url: (status.providers.contains(&Provider::Gma) && !state.ads.dev_tag)
                .then(|| ads.ima_sdk_url.to_string()),
        })
    }
}

#[derive(Default)]
pub struct AdsMutation;

#[Object]
impl AdsMutation {
    /// Issues a nonce and a signed ticket for one ad, after the caller's checks.
    async fn prepare_ad_reward(
        &self,
        ctx: &Context<'_>,
        input: PrepareAdRewardInput,
    ) -> Result<AdRewardTicket> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let prepared = service::prepare(
            state,
            viewer.user_id,
            meta(ctx)?,
            input.provider.into(),
            PrepareInput {
                placement: input.placement,
                turnstile_token: input.turnstile_token,
                client_nonce: input.client_nonce,
                timestamp: input.timestamp,
                signature: input.signature,
            },
        )
        .await?;
        Ok(AdRewardTicket {
            provider: prepared.provider.into(),
            monetag: prepared.monetag.map(|m| MonetagParams {
                zone_id: m.zone_id,
                script_url: m.script_url,
                ymid: prepared.nonce.clone(),
            }),
            nonce: prepared.nonce,
            device_hash: prepared.device_hash,
            expires_at: prepared.expires_at,
            required_duration_sec: prepared.required_duration,
            ticket: prepared.ticket,
            ad_tag_url: prepared.ad_tag_url,
        })
    }

    /// Completes a Monetag ad: credits once (DUPLICATE on a retry), or PENDING until
    /// Monetag's postback when the server waits for it.
    async fn complete_ad_reward(
        &self,
        ctx: &Context<'_>,
        input: CompleteAdRewardInput,
    ) -> Result<AdRewardResult> {
        let viewer = ctx.viewer()?;
        let state = ctx.data::<AppState>()?;
        let done = service::complete(
            state,
            viewer.user_id,
            meta(ctx)?,
            &input.ticket,
            input.duration_sec,
        )
        .await?;
        Ok(AdRewardResult {
            status: match done.outcome {
                Outcome::Credited => AdRewardOutcome::Credited,
                Outcome::Pending => AdRewardOutcome::Pending,
                Outcome::Duplicate => AdRewardOutcome::Duplicate,
            },
            credited: done.credited,
            balance: done.balance,
        })
    }
}

#[derive(SimpleObject)]
pub struct AdStats {
    /// Failed share of SSV callbacks over the last 30 minutes.
    failure_ratio: f64,
    /// The user cap after the adaptive cut (before the new-account halving).
    effective_daily_cap: u32,
    rewards_today: i64,
    coins_today: i64,
}

#[derive(Default)]
pub struct AdsAdminQuery;

#[Object]
impl AdsAdminQuery {
    /// Ad rewards today and the fraud signal behind the cap.
    async fn ad_stats(&self, ctx: &Context<'_>) -> Result<AdStats> {
        ctx.admin()?;
        let state = ctx.data::<AppState>()?;
        let (rewards_today, coins_today) =
            service::today_totals(state).await.map_err(ApiError::from)?;
        Ok(AdStats {
            failure_ratio: service::failure_ratio(state).await,
            effective_daily_cap: service::base_user_cap(state).await,
            rewards_today,
            coins_today,
        })
    }
}
