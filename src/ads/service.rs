//! The ads rules: prepare, complete, credit, postbacks, caps and the failure window.
//!
//! Refusals are [`ApiError`]s with a `reason`; the HTTP callbacks turn them into JSON.
//! kv answers the cheap questions at prepare (today's counts, cooldowns) and guards a nonce
//! while its completion runs; the credit transaction decides: it locks the user, rechecks
//! the cooldown, bumps each daily counter only `WHERE count < cap`, and writes the reward
//! row (unique nonce, unique event id) and the transfer (unique idempotency key) together.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
    sea_query::{CaseStatement, Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use super::{
    entity::{ad_daily_count, ad_nonce, ad_reward},
    ticket::{self, Claims, TicketError},
};
use crate::{
    app::AppState,
    graphql::{ApiError, ErrorCode, RequestMeta},
    identity::entity::user,
    wallet::service::{self as wallet, Account, SystemAccount, TransferKind, TransferRequest},
};

/// Callbacks within this ratio window (minutes) decide the adaptive cap.
pub const WINDOW_MINUTES: i64 = 30;
/// Fewer callbacks than this in the window say nothing about fraud: the ratio reads 0.
pub const MIN_SAMPLE: i64 = 20;
/// A client signature's timestamp may be this far from the server's clock.
pub const CLIENT_SIGNATURE_WINDOW: i64 = 300;
/// An SSV callback may name a nonce issued at most this long ago.
pub const SSV_NONCE_MAX_AGE: chrono::Duration = chrono::Duration::hours(24);
/// A Google callback's `timestamp` may be this far from the server's clock.
pub const SSV_MAX_SKEW: chrono::Duration = chrono::Duration::hours(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Monetag,
    Gma,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Monetag => "monetag",
            Provider::Gma => "gma",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "monetag" => Some(Provider::Monetag),
            "gma" => Some(Provider::Gma),
            _ => None,
        }
    }
}

/// The providers this server offers.
pub fn providers(state: &AppState) -> Vec<Provider> {
    let mut out = Vec::new();
    if state.ads.monetag.is_some() {
        out.push(Provider::Monetag);
    }
    if state.ads.ad_tag_base.is_some() {
        out.push(Provider::Gma);
    }
    out
}

#[derive(Debug, Clone, Default)]
pub struct PrepareInput {
    pub placement: String,
    pub turnstile_token: Option<String>,
    pub client_nonce: Option<String>,
    pub timestamp: Option<i64>,
    pub signature: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Prepared {
    pub provider: Provider,
    pub nonce: String,
    pub device_hash: String,
    pub expires_at: DateTime<Utc>,
    pub required_duration: u32,
    pub ticket: String,
    pub monetag: Option<super::MonetagSettings>,
    pub ad_tag_url: Option<String>,
}

/// How a completion or callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Credited,
    /// Waiting for Monetag's `valued` postback.
    Pending,
    /// Already credited (or being credited) for this nonce or event: nothing moved.
    Duplicate,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Credited => "credited",
            Outcome::Pending => "pending",
            Outcome::Duplicate => "duplicate",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Completed {
    pub outcome: Outcome,
    pub credited: i64,
    pub balance: i64,
}

/// What makes up a device: hashed, never stored in the clear.
pub fn device_of(state: &AppState, meta: &RequestMeta) -> String {
    let hints = meta
        .client
        .as_ref()
        .map(|c| c.hints.as_slice())
        .unwrap_or(&[]);
    ticket::device_hash(
        &state.ads.device_key,
        meta.client_ip,
        meta.user_agent.as_deref(),
        hints,
    )
}

/// The UTC day of `t`, as the counters name it.
pub fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Time from `now` to the next UTC midnight.
pub fn until_midnight(now: DateTime<Utc>) -> Duration {
    let next = (now.date_naive() + chrono::Days::new(1)).and_time(NaiveTime::MIN);
    (next.and_utc() - now)
        .to_std()
        .unwrap_or(Duration::from_secs(1))
}

fn refuse(code: ErrorCode, reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message).with_reason(reason)
}

/// The cap scopes of one reward.
#[derive(Debug, Clone)]
pub(super) struct Scopes {
    user: String,
    device: String,
    ip: Option<String>,
}

impl Scopes {
    fn new(user: Uuid, device: &str, ip: Option<&str>) -> Self {
        Self {
            user: format!("user:{user}"),
            device: format!("device:{device}"),
            ip: ip.map(|ip| format!("ip:{ip}")),
        }
    }

    /// Each scope that applies with its cap and its index (user, device, address).
    pub(super) fn with_caps(&self, caps: Caps) -> Vec<(usize, &str, u32)> {
        [
            (0, Some(self.user.as_str()), caps.user),
            (1, Some(self.device.as_str()), caps.device),
            (2, self.ip.as_deref(), caps.ip),
        ]
        .into_iter()
        .filter_map(|(i, scope, cap)| Some((i, scope?, cap)))
        .collect()
    }
}

/// The caps that apply to one user now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub user: u32,
    pub device: u32,
    pub ip: u32,
}

/// The user cap after the failure window: halved (not below `RWD_PER_DAY_MIN`) while the
/// SSV failure ratio is above the threshold.
pub async fn base_user_cap(state: &AppState) -> u32 {
    let ads = &state.config.ads;
    let ratio = failure_ratio(state).await;
    let cap = if ratio > ads.ssv_fail_threshold {
        Ord::max(ads.rwd_per_day_min, ads.daily_cap_user / 2)
    } else {
        ads.daily_cap_user
    };
    state.metrics.record_ads_effective_cap(u64::from(cap));
    cap
}

/// Whether `user` gets half the user cap: under a day old with no verified email.
pub fn is_halved(state: &AppState, user: &user::Model) -> bool {
    let young = state.ads.clock.now() - user.created_at < chrono::Duration::days(1);
    young && user.email_verified_at.is_none()
}

/// The caps that apply now, for a user who is `halved` or not.
pub async fn caps_for(state: &AppState, halved: bool) -> Caps {
    let ads = &state.config.ads;
    let mut cap = base_user_cap(state).await;
    if halved {
        cap = Ord::max(cap / 2, 1);
    }
    Caps {
        user: cap,
        device: ads.daily_cap_device,
        ip: ads.ads_daily_cap_ip,
    }
}

fn kv_cool_key(scope: &str) -> String {
    format!("ads:cool:{scope}")
}

/// Today's counts of the scopes, in one read of the counters the credits keep.
async fn counts_today(state: &AppState, scopes: &Scopes, day: &str) -> Result<[i64; 3], ApiError> {
    let names: Vec<&str> = [
        Some(scopes.user.as_str()),
        Some(scopes.device.as_str()),
        scopes.ip.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let rows = ad_daily_count::Entity::find()
        .filter(ad_daily_count::Column::Day.eq(day))
        .filter(ad_daily_count::Column::Scope.is_in(names))
        .all(state.db.conn())
        .await?;
    let count = |name: Option<&str>| {
        rows.iter()
            .find(|r| Some(r.scope.as_str()) == name)
            .map_or(0, |r| i64::from(r.count))
    };
    Ok([
        count(Some(&scopes.user)),
        count(Some(&scopes.device)),
        count(scopes.ip.as_deref()),
    ])
}

/// Time left before the user or the device may be rewarded again.
async fn cooldown_left(state: &AppState, user: Uuid, device: &str) -> Result<Duration, ApiError> {
    let scopes = Scopes::new(user, device, None);
    let (user_key, device_key) = (kv_cool_key(&scopes.user), kv_cool_key(&scopes.device));
    let (user_ttl, device_ttl) =
        futures_util::join!(state.kv.ttl(&user_key), state.kv.ttl(&device_key));
    if let (Ok(a), Ok(b)) = (&user_ttl, &device_ttl) {
        return Ok(a.unwrap_or_default().max(b.unwrap_or_default()));
    }
    // kv cannot answer: the last rewards in the database can.
    last_reward_left(state.db.conn(), state, user, device)
        .await
        .map_err(ApiError::from)
}

async fn last_reward_left(
    conn: &impl ConnectionTrait,
    state: &AppState,
    user: Uuid,
    device: &str,
) -> Result<Duration, sea_orm::DbErr> {
    let interval = chrono::Duration::seconds(i64::from(state.config.ads.min_interval));
    if interval.is_zero() {
        return Ok(Duration::ZERO);
    }
    let now = state.ads.clock.now();
    let last = latest_reward(conn, now - interval, &[user], &[device]).await?;
    Ok(last
        .map(|r| (r.created_at + interval - now).to_std().unwrap_or_default())
        .unwrap_or_default())
}

/// The newest reward after `since` to any of these users or on any of these devices.
pub(super) async fn latest_reward(
    conn: &impl ConnectionTrait,
    since: DateTime<Utc>,
    users: &[Uuid],
    devices: &[&str],
) -> Result<Option<ad_reward::Model>, sea_orm::DbErr> {
    ad_reward::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(ad_reward::Column::UserId.is_in(users.iter().copied()))
                .add(ad_reward::Column::DeviceHash.is_in(devices.iter().copied())),
        )
        .filter(ad_reward::Column::CreatedAt.gt(since))
        .order_by_desc(ad_reward::Column::CreatedAt)
        .one(conn)
        .await
}

fn cap_refusal(which: usize, now: DateTime<Utc>) -> ApiError {
    let (reason, whose) = match which {
        0 => ("daily_cap_user", "your"),
        1 => ("daily_cap_device", "this device's"),
        _ => ("daily_cap_ip", "this network's"),
    };
    refuse(
        ErrorCode::RateLimited,
        reason,
        format!("{whose} ad rewards for today are used up; more after midnight UTC"),
    )
    .with_retry_after(until_midnight(now))
}

fn cooldown_refusal(left: Duration) -> ApiError {
    refuse(
        ErrorCode::RateLimited,
        "cooldown",
        format!(
            "the next ad reward is possible in {} s",
            left.as_secs_f64().ceil() as u64
        ),
    )
    .with_retry_after(left.max(Duration::from_secs(1)))
}

async fn load_user(state: &AppState, user_id: Uuid) -> Result<user::Model, ApiError> {
    user::Entity::find_by_id(user_id)
        .one(state.db.conn())
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(ApiError::unauthenticated)
}

/// A callback's reward for an account disabled since its ad was prepared: not credited.
pub fn account_disabled() -> ApiError {
    refuse(
        ErrorCode::Forbidden,
        "account_disabled",
        "this account is disabled; its ad rewards are not credited",
    )
}

/// Issues a nonce and its ticket after every check on the caller.
pub async fn prepare(
    state: &AppState,
    user_id: Uuid,
    meta: &RequestMeta,
    provider: Provider,
    input: PrepareInput,
) -> Result<Prepared, ApiError> {
    let result = prepare_checked(state, user_id, meta, provider, input).await;
    state.metrics.record_ads(
        "prepare",
        result.as_ref().map_or_else(ApiError::label, |_| "ok"),
    );
    result
}

async fn prepare_checked(
    state: &AppState,
    user_id: Uuid,
    meta: &RequestMeta,
    provider: Provider,
    input: PrepareInput,
) -> Result<Prepared, ApiError> {
    let ads = &state.config.ads;
    if !providers(state).contains(&provider) {
        return Err(ApiError::bad_input(
            "provider_disabled",
            format!("{} ads are not offered here", provider.as_str()),
        ));
    }
    let placement = input.placement.trim();
    if !ads.ads_allowed_placements.iter().any(|p| p == placement) {
        return Err(ApiError::bad_input(
            "placement_not_allowed",
            format!(
                "placement must be one of {}",
                ads.ads_allowed_placements.join(", ")
            ),
        ));
    }
    let ip = meta.client_ip;
    let rate = ads.ads_prepare_rate.0;
    let user_key = format!("ads:prepare:user:{user_id}");
    let ip_key = format!(
        "ads:prepare:ip:{}",
        ip.map(|i| i.to_string()).unwrap_or_default()
    );
    let (by_user, by_ip) = futures_util::join!(
        state.kv.rate_limit(&user_key, rate),
        state.kv.rate_limit(&ip_key, rate)
    );
    for decision in [by_user?, by_ip?] {
        if !decision.allowed {
            return Err(ApiError::rate_limited(decision.retry_after).with_reason("rate_limited"));
        }
    }
    let asn = meta.client.as_ref().and_then(|c| c.asn.as_deref());
    let blocked_ip = ip.is_some_and(|ip| ads.ads_blocked_ips.iter().any(|n| n.contains(&ip)));
    let blocked_asn = asn.is_some_and(|asn| {
        let asn = asn.trim_start_matches(['A', 'S', 'a', 's']);
        ads.ads_blocked_asn
            .iter()
            .any(|b| b.trim().trim_start_matches(['A', 'S', 'a', 's']) == asn)
    });
    if blocked_ip || blocked_asn {
        return Err(refuse(
            ErrorCode::Forbidden,
            "network_blocked",
            "ads cannot be watched from this network",
        ));
    }
    let now = state.ads.clock.now();
    if let Some(secret) = &ads.client_signing_secret {
        let signature = input
            .signature
            .as_deref()
            .or_else(|| meta.client.as_ref().and_then(|c| c.signature.as_deref()));
        let ok = match (input.client_nonce.as_deref(), input.timestamp, signature) {
            (Some(cn), Some(ts), Some(sig)) if !cn.is_empty() && cn.len() <= 128 => {
                ticket::client_signature_ok(
                    secret.expose().as_bytes(),
                    ticket::ClientClaim {
                        user: user_id,
                        client_nonce: cn,
                        timestamp: ts,
                        placement,
                    },
                    sig,
                    now.timestamp(),
                    CLIENT_SIGNATURE_WINDOW,
                )
            }
            _ => false,
        };
        if !ok {
            return Err(refuse(
                ErrorCode::Forbidden,
                "bad_client_signature",
                "the request signature is missing, wrong or too old",
            ));
        }
    }
    if ads.turnstile_secret_key.is_some() {
        match input.turnstile_token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => verify_turnstile(state, token, ip).await?,
            None if ads.turnstile_allow_missing => {}
            None => {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    "turnstile_failed",
                    "complete the challenge first",
                ));
            }
        }
    }
    let device = device_of(state, meta);
    let left = cooldown_left(state, user_id, &device).await?;
    if !left.is_zero() {
        return Err(cooldown_refusal(left));
    }
    let user = load_user(state, user_id).await?;
    let halved = is_halved(state, &user);
    let caps = caps_for(state, halved).await;
    let ip_text = ip.map(|i| i.to_string());
    let scopes = Scopes::new(user_id, &device, ip_text.as_deref());
    let day = day_of(now);
    let counts = counts_today(state, &scopes, &day).await?;
    for (i, cap) in [caps.user, caps.device, caps.ip].into_iter().enumerate() {
        if (i < 2 || scopes.ip.is_some()) && counts[i] >= i64::from(cap) {
            return Err(cap_refusal(i, now));
        }
    }

    let nonce = crate::identity::tokens::random_urlsafe(24);
    let ttl = chrono::Duration::seconds(i64::from(ads.monetag_ticket_ttl));
    let expires_at = now + ttl;
    ad_nonce::ActiveModel {
        nonce: Set(nonce.clone()),
        user_id: Set(user_id),
        provider: Set(provider.as_str().to_owned()),
        placement: Set(placement.to_owned()),
        device_hash: Set(device.clone()),
        ip: Set(ip_text.clone()),
        issued_at: Set(now),
        expires_at: Set(expires_at),
        client_completed_at: Set(None),
        postback_event: Set(None),
        estimated_price: Set(None),
        postback_at: Set(None),
        credited_at: Set(None),
    }
    .insert(state.db.conn())
    .await?;
    let claims = Claims {
        user: user_id,
        nonce: nonce.clone(),
        provider: provider.as_str().to_owned(),
        placement: placement.to_owned(),
        device: device.clone(),
        issued: now.timestamp(),
        expires: expires_at.timestamp(),
        ip: ip_text,
        halved,
    };
    let signed = ticket::sign(&state.ads.ticket_key, &claims);
    let ad_tag_url = match (provider, &state.ads.ad_tag_base) {
        (Provider::Gma, Some(base)) => {
            let tag = ad_tag(
                base,
                user_id,
                &nonce,
                placement,
                &device,
                ads.price_floor.as_deref(),
            );
            Some(match state.ads.dev_tag {
                true => same_origin_path(&tag),
                false => tag,
            })
        }
        _ => None,
    };

    tracing::info!(user.id = %user_id, provider = provider.as_str(), placement, "ad reward prepared");
    Ok(Prepared {
        provider,
        nonce,
        device_hash: device,
        expires_at,
        required_duration: ads.required_duration,
        ticket: signed,
        monetag: match provider {
            Provider::Monetag => state.ads.monetag.clone(),
            Provider::Gma => None,
        },
        ad_tag_url,
    })
}

/// The IMA ad tag: the base with our custom parameters (Google hands `cust_params` back to
/// the SSV callback's `custom_data` only when the app sets it; the nonce is also there).
pub fn ad_tag(
    base: &url::Url,
    user: Uuid,
    nonce: &str,
    placement: &str,
    device: &str,
    price_floor: Option<&str>,
) -> String {
    let mut cust = url::form_urlencoded::Serializer::new(String::new());
    cust.append_pair("uid", &user.to_string())
        .append_pair("nonce", nonce)
        .append_pair("placement", placement)
        .append_pair("device", device);
    if let Some(floor) = price_floor {
        cust.append_pair("floor", floor);
    }
    let mut url = base.clone();
    url.query_pairs_mut()
        .append_pair("cust_params", &cust.finish())
        .append_pair("correlator", &nonce[..Ord::min(8, nonce.len())]);
    url.to_string()
}

/// `/path?query` of an absolute URL.
fn same_origin_path(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

#[derive(serde::Deserialize)]
struct SiteVerify {
    success: bool,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

/// Turnstile siteverify: 2 s, fail closed.
async fn verify_turnstile(
    state: &AppState,
    token: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let ads = &state.config.ads;
    let secret = ads
        .turnstile_secret_key
        .as_ref()
        .map(|s| s.expose().to_owned())
        .unwrap_or_default();
    let mut form = vec![
        ("secret", secret),
        ("response", token.to_owned()),
        ("idempotency_key", Uuid::new_v4().to_string()),
    ];
    if let Some(ip) = ip {
        form.push(("remoteip", ip.to_string()));
    }
    let unavailable = || {
        ApiError::unavailable("the challenge service")
            .with_reason("turnstile_unavailable")
            .with_retry_after(Duration::from_secs(5))
    };
    let response = state
        .ads
        .client
        .post(ads.turnstile_verify_url.clone())
        .form(&form)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "Turnstile siteverify unreachable");
            unavailable()
        })?;
    let body = response.bytes().await.map_err(|_| unavailable())?;
    let verdict: SiteVerify = serde_json::from_slice(&body).map_err(|_| {
        tracing::warn!("Turnstile siteverify answered something other than JSON");
        unavailable()
    })?;
    let hosts: Vec<String> = state
        .allowed_origins
        .iter()
        .filter_map(|o| url::Url::parse(o).ok())
        .filter_map(|u| u.host_str().map(str::to_owned))
        .collect();
    let host_ok = verdict
        .hostname
        .as_deref()
        .is_some_and(|h| hosts.iter().any(|a| a == h));
    let action_ok = verdict.action.as_deref() == Some("ads_prepare");
    if verdict.success && host_ok && action_ok {
        return Ok(());
    }
    tracing::info!(codes = ?verdict.error_codes, action = ?verdict.action, hostname = ?verdict.hostname, "Turnstile refused");
    Err(refuse(
        ErrorCode::Forbidden,
        "turnstile_failed",
        "the challenge was not passed; try again",
    ))
}

/// Checks a Monetag completion and credits it (or, waiting for the postback, answers PENDING).
pub async fn complete(
    state: &AppState,
    user_id: Uuid,
    meta: &RequestMeta,
    ticket_text: &str,
    duration_sec: i64,
) -> Result<Completed, ApiError> {
    let result = complete_checked(state, user_id, meta, ticket_text, duration_sec).await;
    state.metrics.record_ads(
        "complete",
        result
            .as_ref()
            .map_or_else(ApiError::label, |done| done.outcome.as_str()),
    );
    result
}

async fn complete_checked(
    state: &AppState,
    user_id: Uuid,
    meta: &RequestMeta,
    ticket_text: &str,
    duration_sec: i64,
) -> Result<Completed, ApiError> {
    let ads = &state.config.ads;
    let now = state.ads.clock.now();
    let claims = match ticket::verify(&state.ads.ticket_key, ticket_text.trim(), now.timestamp()) {
        Ok(c) => c,
        Err(TicketError::Invalid) => {
            return Err(ApiError::bad_input(
                "ticket_invalid",
                "this is not a ticket we issued",
            ));
        }
        Err(TicketError::Expired) => {
            return Err(ApiError::bad_input(
                "ticket_expired",
                "the ticket expired; prepare a new ad",
            ));
        }
    };
    if claims.user != user_id {
        return Err(ApiError::bad_input(
            "ticket_invalid",
            "this ticket was issued to someone else",
        ));
    }
    if claims.provider != Provider::Monetag.as_str() {
        return Err(ApiError::bad_input(
            "ticket_invalid",
            "GMA rewards arrive through server-side verification, not completion",
        ));
    }
    if device_of(state, meta) != claims.device {
        return Err(refuse(
            ErrorCode::Forbidden,
            "device_mismatch",
            "the ad was prepared on another device",
        ));
    }
    let required = i64::from(ads.required_duration);
    if duration_sec < required || now.timestamp() - claims.issued < required {
        return Err(ApiError::bad_input(
            "duration_too_short",
            format!("the ad must stay visible for {required} s"),
        ));
    }
    let lock_key = format!("ads:nonce:{}", claims.nonce);
    let lock_ttl = Duration::from_secs(u64::from(ads.monetag_ticket_ttl) + 60);
    // The kv lock turns a burst of retries away before the database; the unique nonce
    // below is what holds when kv is down.
    let locked = match state.kv.set_nx(&lock_key, b"1", lock_ttl).await {
        Ok(locked) => locked,
        Err(e) => {
            tracing::warn!(error = %e, "ads nonce lock unavailable; the database decides");
            true
        }
    };
    if !locked {
        let row = ad_nonce::Entity::find_by_id(claims.nonce.clone())
            .one(state.db.conn())
            .await?;
        let outcome = match row {
            Some(r) if r.credited_at.is_none() && r.client_completed_at.is_some() => {
                Outcome::Pending
            }
            _ => Outcome::Duplicate,
        };
        return unchanged(state, user_id, outcome).await;
    }
    let result = complete_locked(state, &claims).await;
    let keep_lock = matches!(
        result,
        Ok(Completed {
            outcome: Outcome::Credited | Outcome::Duplicate,
            ..
        })
    );
    if !keep_lock {
        let _ = state.kv.delete(&lock_key).await;
    }
    result
}

async fn complete_locked(state: &AppState, claims: &Claims) -> Result<Completed, ApiError> {
    let grant = Grant {
        nonce: claims.nonce.clone(),
        user_id: claims.user,
        provider: claims.provider.clone(),
        placement: claims.placement.clone(),
        device_hash: claims.device.clone(),
        ip: claims.ip.clone(),
    };
    if state.config.ads.monetag_require_postback {
        let now = state.ads.clock.now();
        // Record the client's part, then read what the postback said: written before read on
        // both sides, so of a completion and a postback that race, one sees the other.
        ad_nonce::Entity::update_many()
            .col_expr(ad_nonce::Column::ClientCompletedAt, Expr::value(now))
            .filter(ad_nonce::Column::Nonce.eq(claims.nonce.as_str()))
            .filter(ad_nonce::Column::ClientCompletedAt.is_null())
            .exec(state.db.conn())
            .await?;
        let Some(row) = ad_nonce::Entity::find_by_id(claims.nonce.clone())
            .one(state.db.conn())
            .await?
        else {
            return Err(ApiError::bad_input(
                "ticket_invalid",
                "this ticket's nonce is unknown",
            ));
        };
        if row.postback_event.as_deref() != Some("valued") {
            let outcome = if row.credited_at.is_some() {
                Outcome::Duplicate
            } else {
                Outcome::Pending
            };
            return unchanged(state, row.user_id, outcome).await;
        }
    }
    // The ticket carries what the credit needs, the cap's halving included.
    credit(state, &grant, Some(claims.halved), "monetag", None).await
}

/// What one credit is for: an issued nonce and where it was prepared.
#[derive(Debug, Clone)]
pub struct Grant {
    pub nonce: String,
    pub user_id: Uuid,
    pub provider: String,
    pub placement: String,
    pub device_hash: String,
    pub ip: Option<String>,
}

impl From<&ad_nonce::Model> for Grant {
    fn from(row: &ad_nonce::Model) -> Self {
        Self {
            nonce: row.nonce.clone(),
            user_id: row.user_id,
            provider: row.provider.clone(),
            placement: row.placement.clone(),
            device_hash: row.device_hash.clone(),
            ip: row.ip.clone(),
        }
    }
}

/// One reward to credit: the grant, the caps that apply to its user now, and what the
/// network said.
#[derive(Debug, Clone)]
pub struct CreditJob {
    pub grant: Grant,
    pub caps: Caps,
    pub network: String,
    pub event_id: Option<String>,
    pub amount: i64,
}

impl CreditJob {
    /// The scopes this credit counts against, by name.
    pub(super) fn scope_names(&self) -> Vec<String> {
        let Scopes { user, device, ip } = self.scopes();
        [Some(user), Some(device), ip]
            .into_iter()
            .flatten()
            .collect()
    }

    pub(super) fn scopes(&self) -> Scopes {
        Scopes::new(
            self.grant.user_id,
            &self.grant.device_hash,
            self.grant.ip.as_deref(),
        )
    }

    /// The transfer that pays this reward, written as reward `id`.
    pub(super) fn transfer(&self, id: Uuid) -> TransferRequest {
        TransferRequest::new(
            Account::System(SystemAccount::Ads),
            Account::User(self.grant.user_id),
            self.amount,
            TransferKind::AdReward,
        )
        .reference(format!("ad_reward:{id}"))
        .idempotency_key(Some(format!("ads:{}", self.grant.nonce)))
        // The nonce claimed before the transfer is this key's claim: no earlier transfer
        // can hold it.
        .key_claimed()
        .metadata(serde_json::json!({
            "network": self.network,
            "placement": self.grant.placement,
        }))
    }

    pub(super) fn reward(
        &self,
        id: Uuid,
        transfer_id: Uuid,
        now: DateTime<Utc>,
    ) -> ad_reward::Model {
        let grant = &self.grant;
        ad_reward::Model {
            id,
            user_id: grant.user_id,
            nonce: grant.nonce.clone(),
            provider: grant.provider.clone(),
            network: self.network.clone(),
            placement: grant.placement.clone(),
            device_hash: grant.device_hash.clone(),
            ip: grant.ip.clone(),
            event_id: self.event_id.clone(),
            amount: self.amount,
            transfer_id,
            created_at: now,
        }
    }
}

/// A reward written and the user's balance after it; `None` when the nonce or the event
/// was credited already.
pub type Credited = Option<(ad_reward::Model, i64)>;

/// Credits the reward of `nonce` once: cooldown, caps, the reward row and the transfer in
/// one transaction, which it may share with other credits arriving at the same time
/// ([`super::batch`]). A nonce or event id already credited answers DUPLICATE.
/// `halved`: whether the user gets half the cap, when the caller knows (a ticket says);
/// read from the user's row otherwise.
pub async fn credit(
    state: &AppState,
    nonce: &Grant,
    halved: Option<bool>,
    network: &str,
    event_id: Option<String>,
) -> Result<Completed, ApiError> {
    let halved = match halved {
        Some(h) => h,
        None => {
            let user = user::Entity::find_by_id(nonce.user_id)
                .one(state.db.conn())
                .await?
                .filter(|u| u.disabled_at.is_none())
                .ok_or_else(account_disabled)?;
            is_halved(state, &user)
        }
    };
    let job = CreditJob {
        grant: nonce.clone(),
        caps: caps_for(state, halved).await,
        network: network.to_owned(),
        event_id,
        amount: state.config.ads.reward_amount,
    };
    // The notification and the cooldown follow in the batch's task, before this answer.
    let Some((reward, balance)) = super::batch::submit(state, job).await? else {
        return unchanged(state, nonce.user_id, Outcome::Duplicate).await;
    };
    Ok(Completed {
        outcome: Outcome::Credited,
        credited: reward.amount,
        balance,
    })
}

/// Credits `job` in a transaction of its own, again after a lost race or a transient
/// database error; a refusal names its reason.
pub(super) async fn credit_alone(state: &AppState, job: &CreditJob) -> Result<Credited, ApiError> {
    let mut tries = 0;
    loop {
        let txn = state.db.begin_write().await?;
        match credit_in(state, &txn, job).await {
            Ok(credited) => {
                if credited.is_some() {
                    txn.commit().await?;
                } else {
                    txn.rollback().await?;
                }
                return Ok(credited);
            }
            Err(CreditError::Db(e)) => {
                txn.rollback().await?;
                let duplicate = matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)));
                if (duplicate || crate::platform::db::is_retryable(&e)) && tries < 5 {
                    // A racing credit of the same nonce or event won; the next round sees it.
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(2 << tries)).await;
                    continue;
                }
                return Err(ApiError::from(e));
            }
            Err(CreditError::Wallet(e)) => {
                txn.rollback().await?;
                return Err(ApiError::from(e));
            }
            Err(CreditError::Refused(e)) => {
                txn.rollback().await?;
                return Err(e);
            }
        }
    }
}

/// An answer that moved nothing (credited before, or waiting): the user's balance as it is.
pub async fn unchanged(
    state: &AppState,
    user_id: Uuid,
    outcome: Outcome,
) -> Result<Completed, ApiError> {
    let (balance, _) = wallet::balances(state.db.conn(), user_id).await?;
    Ok(Completed {
        outcome,
        credited: 0,
        balance,
    })
}

/// Cooldowns in kv (best effort: the database holds the truth), the wallet notification
/// and the metrics.
pub(super) async fn after_credit(state: &AppState, reward: &ad_reward::Model) {
    let interval = Duration::from_secs(u64::from(state.config.ads.min_interval));
    if !interval.is_zero() {
        let scopes = Scopes::new(reward.user_id, &reward.device_hash, None);
        let (user_key, device_key) = (kv_cool_key(&scopes.user), kv_cool_key(&scopes.device));
        let _ = futures_util::join!(
            state.kv.set(&user_key, b"1", Some(interval)),
            state.kv.set(&device_key, b"1", Some(interval))
        );
    }
    wallet::notify(state, &[reward.user_id]).await;
    state
        .metrics
        .record_ads_reward(&reward.network, &reward.placement, reward.amount as u64);
    tracing::info!(user.id = %reward.user_id, network = %reward.network, placement = %reward.placement, amount = reward.amount, "ad reward credited");
}

enum CreditError {
    Db(sea_orm::DbErr),
    Wallet(crate::wallet::service::WalletError),
    Refused(ApiError),
}

impl From<sea_orm::DbErr> for CreditError {
    fn from(e: sea_orm::DbErr) -> Self {
        CreditError::Db(e)
    }
}

impl From<crate::wallet::service::WalletError> for CreditError {
    /// A database failure inside the transfer is retried like any other in the credit.
    fn from(e: crate::wallet::service::WalletError) -> Self {
        match e {
            crate::wallet::service::WalletError::Db(e) => CreditError::Db(e),
            other => CreditError::Wallet(other),
        }
    }
}

/// The credit transaction: the reward and the user's balance after it, or `None` when the
/// nonce or event was credited already (the caller rolls back).
async fn credit_in(
    state: &AppState,
    txn: &sea_orm::DatabaseTransaction,
    job: &CreditJob,
) -> Result<Credited, CreditError> {
    let now = state.ads.clock.now();
    let grant = &job.grant;
    // Claim the nonce first: a racing credit of the same nonce waits on this row and then
    // finds it claimed.
    let claimed = ad_nonce::Entity::update_many()
        .col_expr(ad_nonce::Column::CreditedAt, Expr::value(now))
        .filter(ad_nonce::Column::Nonce.eq(grant.nonce.as_str()))
        .filter(ad_nonce::Column::CreditedAt.is_null())
        .exec(txn)
        .await?;
    if claimed.rows_affected == 0 {
        return Ok(None);
    }
    let interval = state.config.ads.min_interval > 0;
    if interval {
        // One user's credits run one after another from here.
        wallet::lock_user(txn, grant.user_id).await?;
    }
    let scopes = job.scopes();
    let wanted = scopes.with_caps(job.caps);
    if let Some(&(i, _, _)) = wanted.iter().find(|(_, _, cap)| *cap == 0) {
        return Err(CreditError::Refused(cap_refusal(i, now)));
    }
    let raised = raise_counts(txn, &day_of(now), &wanted).await?;
    // A scope left out was at its cap.
    if let Some(&(i, _, _)) = wanted
        .iter()
        .find(|(_, name, _)| !raised.iter().any(|r| r == name))
    {
        return Err(CreditError::Refused(cap_refusal(i, now)));
    }
    if interval {
        // The device's counter row is locked now too, so two accounts crediting on one
        // device also run one after another and the second sees the first's reward.
        let left = last_reward_left(txn, state, grant.user_id, &grant.device_hash).await?;
        if !left.is_zero() {
            return Err(CreditError::Refused(cooldown_refusal(left)));
        }
    }
    let id = Uuid::now_v7();
    let moved = wallet::transfer_in(txn, &job.transfer(id)).await?;
    let reward = job.reward(id, moved.transfer.id, now);
    // A network event credited under another nonce before: the unique event id says so,
    // and the caller rolls the whole credit back.
    if insert_rewards(txn, [reward.clone()]).await? == 0 {
        return Ok(None);
    }
    Ok(Some((reward, moved.transfer.credit_balance_after)))
}

/// Inserts reward rows, skipping any whose event id was credited before; how many were
/// inserted.
pub(super) async fn insert_rewards(
    txn: &impl ConnectionTrait,
    rewards: impl IntoIterator<Item = ad_reward::Model>,
) -> Result<u64, sea_orm::DbErr> {
    ad_reward::Entity::insert_many(rewards.into_iter().map(IntoActiveModel::into_active_model))
        .on_conflict(
            OnConflict::column(ad_reward::Column::EventId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await
}

/// Adds one to each named scope's count of `day`, each only while below its own cap, in one
/// upsert: a row is inserted at 1 or raised. The scopes raised; one left out was at its
/// cap. A scope must appear once. The rows are written (and locked) in the order of their
/// names, the same in every credit, so two credits never wait on each other's counters in
/// a cycle.
pub(super) async fn raise_counts(
    txn: &impl ConnectionTrait,
    day: &str,
    wanted: &[(usize, &str, u32)],
) -> Result<Vec<String>, sea_orm::DbErr> {
    let mut wanted = wanted.to_vec();
    wanted.sort_unstable_by_key(|(_, name, _)| *name);
    let count = Expr::col((ad_daily_count::Entity, ad_daily_count::Column::Count));
    let scope = Expr::col((ad_daily_count::Entity, ad_daily_count::Column::Scope));
    let cap_of_row = wanted
        .iter()
        .fold(CaseStatement::new(), |case, (_, name, cap)| {
            case.case(scope.clone().eq(*name), *cap as i32)
        })
        .finally(0);
    let raised = ad_daily_count::Entity::insert_many(wanted.iter().map(|(_, name, _)| {
        ad_daily_count::ActiveModel {
            scope: Set((*name).to_owned()),
            day: Set(day.to_owned()),
            count: Set(1),
        }
    }))
    .on_conflict(
        OnConflict::columns([ad_daily_count::Column::Scope, ad_daily_count::Column::Day])
            .value(ad_daily_count::Column::Count, count.clone().add(1))
            .action_and_where(count.lt(cap_of_row))
            .to_owned(),
    )
    .exec_with_returning(txn)
    .await?;
    Ok(raised.into_iter().map(|r| r.scope).collect())
}

fn ratio_key(kind: &str, minute: i64) -> String {
    format!("ads:ssv:{kind}:{minute}")
}

/// How long verified callbacks are summed in memory before their count is written.
const SSV_OK_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Counts one SSV callback in the current minute's bucket. Failures are written at once
/// (they may tip the ratio); successes are summed per instance and written once a second,
/// one kv write instead of one per callback (a stopping instance may drop a second's).
pub async fn record_ssv_outcome(state: &AppState, ok: bool) {
    use std::sync::atomic::Ordering;
    if ok {
        state.ads.ssv_ok_pending.fetch_add(1, Ordering::AcqRel);
        if !state.ads.ssv_ok_flush_due.swap(true, Ordering::AcqRel) {
            let state = state.clone();
            tokio::spawn(async move {
                tokio::time::sleep(SSV_OK_FLUSH_EVERY).await;
                state.ads.ssv_ok_flush_due.store(false, Ordering::Release);
                flush_ssv_ok(&state).await;
            });
        }
        return;
    }
    flush_ssv_ok(state).await;
    count_ssv_outcomes(state, "fail", 1).await;
    // A failure may tip the ratio: read it afresh. Successes wait for the 5 s refresh.
    *state.ads.ratio.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Writes the successes summed so far; kept for the next write when kv cannot take them.
async fn flush_ssv_ok(state: &AppState) {
    use std::sync::atomic::Ordering;
    let n = state.ads.ssv_ok_pending.swap(0, Ordering::AcqRel);
    if n > 0 && !count_ssv_outcomes(state, "ok", n).await {
        state.ads.ssv_ok_pending.fetch_add(n, Ordering::AcqRel);
    }
}

async fn count_ssv_outcomes(state: &AppState, kind: &str, n: i64) -> bool {
    let minute = state.ads.clock.now().timestamp().div_euclid(60);
    let ttl = Duration::from_secs((WINDOW_MINUTES as u64 + 2) * 60);
    match state.kv.incr(&ratio_key(kind, minute), n, ttl).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "SSV outcomes not counted");
            false
        }
    }
}

/// Failed share of the SSV callbacks of the last 30 minutes (0 below [`MIN_SAMPLE`]); read
/// from kv at most every 5 s per instance.
pub async fn failure_ratio(state: &AppState) -> f64 {
    let minute = state.ads.clock.now().timestamp().div_euclid(60);
    if let Some((m, ratio, at)) = *state.ads.ratio.lock().unwrap_or_else(|e| e.into_inner())
        && m == minute
        && at.elapsed() < Duration::from_secs(5)
    {
        return ratio;
    }
    flush_ssv_ok(state).await;
    let read = |kind: &'static str| async move {
        let values = futures_util::future::join_all((minute - WINDOW_MINUTES + 1..=minute).map(
            |m| async move {
                let key = ratio_key(kind, m);
                state.kv.get(&key).await
            },
        ))
        .await;
        values
            .into_iter()
            .filter_map(|v| v.ok().flatten())
            .filter_map(|v| String::from_utf8(v).ok()?.parse::<i64>().ok())
            .sum::<i64>()
    };
    let (ok, fail) = futures_util::join!(read("ok"), read("fail"));
    let total = ok + fail;
    let ratio = if total < MIN_SAMPLE {
        0.0
    } else {
        fail as f64 / total as f64
    };
    state.metrics.record_ads_failure_ratio(ratio);
    *state.ads.ratio.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((minute, ratio, std::time::Instant::now()));
    ratio
}

/// What `adRewardStatus` shows one user.
#[derive(Debug, Clone)]
pub struct Status {
    pub providers: Vec<Provider>,
    pub cooldown_left: Duration,
    pub today: i64,
    pub caps: Caps,
}

pub async fn status(
    state: &AppState,
    user_id: Uuid,
    meta: &RequestMeta,
) -> Result<Status, ApiError> {
    let user = load_user(state, user_id).await?;
    let device = device_of(state, meta);
    let caps = caps_for(state, is_halved(state, &user)).await;
    let scopes = Scopes::new(user_id, &device, None);
    let counts = counts_today(state, &scopes, &day_of(state.ads.clock.now())).await?;
    Ok(Status {
        providers: providers(state),
        cooldown_left: cooldown_left(state, user_id, &device).await?,
        today: counts[0],
        caps,
    })
}

/// A Monetag postback: recorded once per nonce; a `valued` one releases a completion that
/// waits for it. Answers (HTTP status, reason or outcome).
pub async fn postback(
    state: &AppState,
    ymid: &str,
    event: &str,
    estimated_price: Option<&str>,
) -> Result<Option<Completed>, ApiError> {
    let now = state.ads.clock.now();
    let Some(row) = ad_nonce::Entity::find_by_id(ymid.to_owned())
        .filter(ad_nonce::Column::Provider.eq("monetag"))
        .one(state.db.conn())
        .await?
    else {
        return Err(ApiError::conflict(
            "unknown_nonce",
            "no ad was prepared under this ymid",
        ));
    };
    let event = if event.len() <= 32 { event } else { "other" };
    let price = estimated_price.filter(|p| p.len() <= 32 && p.parse::<f64>().is_ok());
    let recorded = ad_nonce::Entity::update_many()
        .col_expr(ad_nonce::Column::PostbackEvent, Expr::value(event))
        .col_expr(ad_nonce::Column::EstimatedPrice, Expr::value(price))
        .col_expr(ad_nonce::Column::PostbackAt, Expr::value(now))
        .filter(ad_nonce::Column::Nonce.eq(ymid))
        .filter(ad_nonce::Column::PostbackAt.is_null())
        .exec(state.db.conn())
        .await?;
    if recorded.rows_affected == 1 {
        tracing::info!(user.id = %row.user_id, event, price = ?price, "Monetag postback recorded");
    }
    // Read again after the write: a completion racing this postback is seen here if this
    // one is not seen there; and a repeated postback still releases a completion whose
    // credit failed the first time.
    let fresh = ad_nonce::Entity::find_by_id(ymid.to_owned())
        .one(state.db.conn())
        .await?
        .unwrap_or(row);
    let waiting = state.config.ads.monetag_require_postback
        && fresh.postback_event.as_deref() == Some("valued")
        && fresh.client_completed_at.is_some()
        && fresh.credited_at.is_none();
    if waiting {
        return credit(state, &Grant::from(&fresh), None, "monetag", None)
            .await
            .map(Some);
    }
    if recorded.rows_affected == 0 {
        // Deduplicated on ymid.
        return Ok(None);
    }
    Ok(Some(Completed {
        outcome: Outcome::Pending,
        credited: 0,
        balance: 0,
    }))
}

/// A user's rewards, newest first.
pub async fn rewards_of(
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    first: u64,
    before: Option<Uuid>,
) -> Result<crate::platform::db::Page<ad_reward::Model>, sea_orm::DbErr> {
    crate::platform::db::newest_first::<ad_reward::Entity>(
        conn,
        sea_orm::Condition::all().add(ad_reward::Column::UserId.eq(user_id)),
        ad_reward::Column::Id,
        first,
        before,
    )
    .await
}

/// Rewards and coins credited since today's UTC midnight.
pub async fn today_totals(state: &AppState) -> Result<(i64, i64), sea_orm::DbErr> {
    let now = state.ads.clock.now();
    let midnight = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let rows: Vec<(i64, i64)> = ad_reward::Entity::find()
        .select_only()
        .column_as(Expr::col(ad_reward::Column::Id).count(), "n")
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(amount), 0) AS BIGINT)"),
            "coins",
        )
        .filter(ad_reward::Column::CreatedAt.gte(midnight))
        .into_tuple()
        .all(state.db.conn())
        .await?;
    Ok(rows.first().copied().unwrap_or((0, 0)))
}
