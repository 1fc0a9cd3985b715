//! GraphQL surface of access tokens: prices, buying, listing, revoking, the proxy's
//! public facts, and the admin listing.

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{entity::access_token, service};
use crate::{
    app::AppState,
    graphql::{
        ApiError, RequestMeta,
        pagination::{self, PageInfo},
    },
    identity::{Role, auth::AuthContextExt},
    wallet::{Account, entity::transfer, graphql::Transfer},
};

#[derive(SimpleObject)]
pub struct AccessTokenPrice {
    duration_hours: i32,
    /// Coins.
    price: i64,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessTokenStatus {
    Active,
    Expired,
    Revoked,
}

/// A bought access token (never the secret itself).
pub struct AccessToken(pub access_token::Model);

#[Object]
impl AccessToken {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    async fn duration_hours(&self) -> i32 {
        self.0.duration_hours
    }

    async fn price(&self) -> i64 {
        self.0.price
    }

    async fn status(&self) -> AccessTokenStatus {
        if self.0.revoked_at.is_some() {
            AccessTokenStatus::Revoked
        } else if self.0.expires_at <= Utc::now() {
            AccessTokenStatus::Expired
        } else {
            AccessTokenStatus::Active
        }
    }

    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }

    /// Recorded in batches: may trail real use by a minute.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }

    /// The payment (none for a free duration).
    async fn transfer(&self, ctx: &Context<'_>) -> Result<Option<Transfer>> {
        let Some(id) = self.0.transfer_id else {
            return Ok(None);
        };
        let state = ctx.data::<AppState>()?;
        let row = <transfer::Entity as sea_orm::EntityTrait>::find_by_id(id)
            .one(state.db.conn())
            .await
            .map_err(ApiError::from)?;
        Ok(row.map(|row| Transfer::seen_by(row, Account::User(self.0.user_id))))
    }
}

#[derive(SimpleObject)]
pub struct AccessTokenConnection {
    edges: Vec<AccessTokenEdge>,
    page_info: PageInfo,
    total_count: u64,
}

#[derive(SimpleObject)]
pub struct AccessTokenEdge {
    cursor: String,
    node: AccessToken,
}

/// One page of tokens as a connection.
pub async fn connection(
    ctx: &Context<'_>,
    user: Option<Uuid>,
    first: Option<i32>,
    after: Option<String>,
    active_only: bool,
) -> Result<AccessTokenConnection> {
    let state = ctx.data::<AppState>()?;
    let first = pagination::page_size(first)?;
    let after = pagination::after(after.as_deref())?;
    let page = service::list(state.db.conn(), user, active_only, first, after)
        .await
        .map_err(ApiError::from)?;
    let edges: Vec<AccessTokenEdge> = page
        .rows
        .into_iter()
        .map(|row| AccessTokenEdge {
            cursor: pagination::cursor(row.id),
            node: AccessToken(row),
        })
        .collect();
    let cursors: Vec<String> = edges.iter().map(|e| e.cursor.clone()).collect();
    Ok(AccessTokenConnection {
        page_info: PageInfo::new(&cursors, page.has_next),
        edges,
        total_count: page.total,
    })
}

#[derive(SimpleObject)]
pub struct PurchasedAccessToken {
    /// The secret (`tsr_at_…`). Shown once: it is not stored anywhere.
    token: String,
    access_token: AccessToken,
}

#[derive(InputObject)]
pub struct PurchaseAccessTokenInput {
    pub duration_hours: i32,
    pub name: Option<String>,
    pub idempotency_key: Option<String>,
}

/// What a holder or a service needs to use and check tokens.
#[derive(SimpleObject)]
pub struct AccessProxyInfo {
    configured: bool,
    /// Where proxied requests go (`PUBLIC_URL/proxy`, or the proxy host).
    base_url: Option<String>,
    /// The root public key (`ed25519/<hex>`), to verify tokens offline.
    public_key: String,
}

#[derive(Default)]
pub struct AccessQuery;

#[Object]
impl AccessQuery {
    /// Durations on offer (hours) and their prices in coins.
    async fn access_token_prices(&self, ctx: &Context<'_>) -> Result<Vec<AccessTokenPrice>> {
        let state = ctx.data::<AppState>()?;
        Ok(state
            .access
            .prices
            .iter()
            .map(|(hours, price)| AccessTokenPrice {
                duration_hours: *hours,
                price: *price,
            })
            .collect())
    }

    async fn access_proxy(&self, ctx: &Context<'_>) -> Result<AccessProxyInfo> {
        let state = ctx.data::<AppState>()?;
        let config = &state.config.access;
        let configured = config.access_proxy_upstream.is_some();
        let base_url = configured.then(|| match &config.access_proxy_host {
            Some(host) => format!("{}://{host}/", state.config.public_url().scheme()),
            None => format!(
                "{}{}/",
                state.config.public_url().as_str().trim_end_matches('/'),
                super::proxy::PREFIX
            ),
        });
        Ok(AccessProxyInfo {
            configured,
            base_url,
            public_key: state.access.keys.public_key(),
        })
    }
}

#[derive(Default)]
pub struct AccessAdminQuery;

#[Object]
impl AccessAdminQuery {
    /// Anyone's tokens (one user's with `userId`), newest first.
    async fn access_tokens(
        &self,
        ctx: &Context<'_>,
        user_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(default = false)] active_only: bool,
    ) -> Result<AccessTokenConnection> {
        ctx.admin()?;
        let user = match user_id {
            Some(id) => Some(Uuid::parse_str(&id).map_err(|_| ApiError::not_found("user"))?),
            None => None,
        };
        connection(ctx, user, first, after, active_only).await
    }
}

#[derive(Default)]
pub struct AccessMutation;

#[Object]
impl AccessMutation {
    /// Buys a token with coins. The same `idempotencyKey` returns the same purchase.
    async fn purchase_access_token(
        &self,
        ctx: &Context<'_>,
        input: PurchaseAccessTokenInput,
    ) -> Result<PurchasedAccessToken> {
        let state = ctx.data::<AppState>()?;
        let viewer = ctx.viewer()?;
        let purchased = service::purchase(
            state,
            viewer.user_id,
            service::Purchase {
                duration_hours: input.duration_hours,
                name: input.name,
                idempotency_key: input.idempotency_key,
            },
        )
        .await
        .map_err(ApiError::from)?;
        Ok(PurchasedAccessToken {
            token: purchased.token,
            access_token: AccessToken(purchased.row),
        })
    }

    /// Revokes a token at once, on every instance (its open WebSockets close). Yours, or
    /// anyone's for an admin. Revoking twice returns it unchanged.
    async fn revoke_access_token(&self, ctx: &Context<'_>, id: ID) -> Result<AccessToken> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let viewer = ctx.viewer()?;
        let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("access token"))?;
        let row = service::revoke(state, viewer.user_id, viewer.role == Role::Admin, id, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(AccessToken(row))
    }
}
