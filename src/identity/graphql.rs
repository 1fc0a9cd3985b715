//! GraphQL surface of identity: `me`, sign-up and sign-in, sessions, and admin user actions.
//! Resolvers parse, authorize with the guards, call the service and map the result. Mutations
//! that sign in also set HttpOnly cookies, so browsers need not handle tokens at all.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Role,
    auth::{AuthContextExt, REFRESH_COOKIE, cleared_session_cookies, cookie, session_cookies},
    codes,
    entity::{identity, session, user},
    external,
    oauth::AuthProviderKind,
    service::{self, IdentityError, IssuedSession, Registration},
};
use crate::{
    app::AppState,
    graphql::{ApiError, RequestMeta},
};

/// A person with an account. `me` knows the id from the token alone, so the row is loaded
/// only when a field other than `id` is asked for (`{ me { id } }` costs no database trip).
pub struct User {
    id: Uuid,
    row: tokio::sync::OnceCell<user::Model>,
}

impl User {
    pub fn loaded(row: user::Model) -> Self {
        Self {
            id: row.id,
            row: tokio::sync::OnceCell::new_with(Some(row)),
        }
    }

    pub fn lazy(id: Uuid) -> Self {
        Self {
            id,
            row: tokio::sync::OnceCell::new(),
        }
    }

    async fn row(&self, ctx: &Context<'_>) -> Result<&user::Model> {
        let state = ctx.data::<AppState>()?;
        self.row
            .get_or_try_init(|| async {
                service::find_user(state, self.id)
                    .await
                    .map_err(|e| async_graphql::Error::from(ApiError::from(e)))
            })
            .await
    }
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    /// Shown to the user themself and to admins only.
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        let Some(viewer) = ctx.viewer_opt() else {
            return Ok(None);
        };
        if viewer.user_id != self.id && viewer.role != Role::Admin {
            return Ok(None);
        }
        Ok(self.row(ctx).await?.email.as_deref())
    }

    async fn email_verified(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(self.row(ctx).await?.email_verified_at.is_some())
    }

    async fn username(&self, ctx: &Context<'_>) -> Result<&str> {
        Ok(&self.row(ctx).await?.username)
    }

    async fn display_name(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        Ok(self.row(ctx).await?.display_name.as_deref())
    }

    async fn avatar_url(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        Ok(self.row(ctx).await?.avatar_url.as_deref())
    }

    async fn role(&self, ctx: &Context<'_>) -> Result<Role> {
        Ok(Role::parse(&self.row(ctx).await?.role).unwrap_or(Role::User))
    }

    /// Set when an admin disabled the account.
    async fn disabled_at(&self, ctx: &Context<'_>) -> Result<Option<DateTime<Utc>>> {
        Ok(self.row(ctx).await?.disabled_at)
    }

    async fn created_at(&self, ctx: &Context<'_>) -> Result<DateTime<Utc>> {
        Ok(self.row(ctx).await?.created_at)
    }

    /// Coins. The user themself or admins only.
    async fn wallet(&self, ctx: &Context<'_>) -> Result<crate::wallet::graphql::Wallet> {
        ctx.owner_or_admin(self.id)?;
        Ok(crate::wallet::graphql::Wallet::of(self.id))
    }

    /// Bought access tokens, newest first. The user themself or admins only.
    async fn access_tokens(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(default = true)] active_only: bool,
    ) -> Result<crate::access::graphql::AccessTokenConnection> {
        ctx.owner_or_admin(self.id)?;
        crate::access::graphql::connection(ctx, Some(self.id), first, after, active_only).await
    }

    /// Credited ad rewards, newest first. The user themself or admins only.
    async fn ad_rewards(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<crate::ads::graphql::AdRewardConnection> {
        ctx.owner_or_admin(self.id)?;
        crate::ads::graphql::connection(ctx, self.id, first, after).await
    }

    /// The current plan subscription, if any. The user themself or admins only.
    async fn subscription(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<crate::billing::graphql::BillingSubscription>> {
        ctx.owner_or_admin(self.id)?;
        crate::billing::graphql::current(ctx, self.id).await
    }

    /// Paid invoices, newest first. The user themself or admins only.
    async fn payments(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<crate::billing::graphql::PaymentConnection> {
        ctx.owner_or_admin(self.id)?;
        crate::billing::graphql::payments(ctx, self.id, first, after).await
    }

    /// VPS sessions, newest first (one status with `status`). The user themself or admins
    /// only.
    async fn vps_sessions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<crate::vps::SessionStatus>,
    ) -> Result<crate::vps::graphql::VpsSessionConnection> {
        ctx.owner_or_admin(self.id)?;
        crate::vps::graphql::connection(ctx, Some(self.id), status, first, after).await
    }

    /// Linked sign-in providers, oldest first. The user themself or admins only.
    async fn identities(&self, ctx: &Context<'_>) -> Result<Vec<LinkedIdentity>> {
        ctx.owner_or_admin(self.id)?;
        let state = ctx.data::<AppState>()?;
        let rows = external::identities_of(state, self.id)
            .await
            .map_err(ApiError::from)?;
        Ok(rows.into_iter().map(LinkedIdentity).collect())
    }

    /// Signed-in sessions (devices), newest first. The user themself or admins only.
    async fn sessions(&self, ctx: &Context<'_>) -> Result<Vec<Session>> {
        let viewer = ctx.owner_or_admin(self.id)?;
        let state = ctx.data::<AppState>()?;
        let rows = service::active_sessions(state, self.id)
            .await
            .map_err(ApiError::from)?;
        Ok(rows
            .into_iter()
            .map(|row| Session {
                current: row.family_id == viewer.session_id,
                row,
            })
            .collect())
    }
}

/// A sign-in provider account linked to a user.
pub struct LinkedIdentity(identity::Model);

#[Object(name = "Identity")]
impl LinkedIdentity {
    async fn provider(&self) -> Option<AuthProviderKind> {
        AuthProviderKind::parse(&self.0.provider)
    }

    /// The address the provider reported, verified or not.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }

    async fn email_verified(&self) -> bool {
        self.0.email_verified
    }

    /// The provider's username (Discord username, GitHub login).
    async fn username(&self) -> Option<&str> {
        self.0.username.as_deref()
    }

    async fn linked_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn last_login_at(&self) -> DateTime<Utc> {
        self.0.last_login_at
    }
}

/// A configured way to sign in with another service.
#[derive(SimpleObject)]
pub struct AuthProvider {
    kind: AuthProviderKind,
    /// Name to show on the button.
    name: &'static str,
    /// Where the browser goes to start (`GET`; add `redirect_to` for where to come back).
    login_url: String,
}

/// A signed-in device: one refresh-token family.
pub struct Session {
    row: session::Model,
    current: bool,
}

#[Object]
impl Session {
    /// Pass to `revokeSession` to sign this device out.
    async fn id(&self) -> ID {
        ID(self.row.family_id.to_string())
    }

    async fn user_agent(&self) -> Option<&str> {
        self.row.user_agent.as_deref()
    }

    async fn ip(&self) -> Option<&str> {
        self.row.ip.as_deref()
    }

    /// When the current refresh token was issued.
    async fn refreshed_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }

    async fn last_used_at(&self) -> DateTime<Utc> {
        self.row.last_used_at
    }

    async fn expires_at(&self) -> DateTime<Utc> {
        self.row.expires_at
    }

    /// Whether this is the session making the request.
    async fn current(&self) -> bool {
        self.current
    }
}

/// Credentials of a new session. Browsers also get them as HttpOnly cookies.
#[derive(SimpleObject)]
pub struct AuthPayload {
    user: User,
    /// Short-lived bearer token (`Authorization: Bearer …`).
    access_token: String,
    /// Long-lived token for `refreshSession`; each use replaces it.
    refresh_token: String,
    access_token_expires_at: DateTime<Utc>,
}

#[derive(InputObject)]
pub struct UpdateProfileInput {
    pub username: Option<String>,
    pub display_name: Option<String>,
    /// An https:// URL.
    pub avatar_url: Option<String>,
}

#[derive(InputObject)]
pub struct RegisterInput {
    pub email: String,
    pub password: String,
    pub username: String,
}

fn parse_id(id: &ID, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(what))
}

fn set_cookie(ctx: &Context<'_>, header: String) {
    ctx.append_http_header("set-cookie", header);
}

/// Hands the session to the client: the payload, and cookies for browsers.
fn deliver(ctx: &Context<'_>, state: &AppState, issued: IssuedSession) -> AuthPayload {
    for header in session_cookies(state, &issued) {
        set_cookie(ctx, header);
    }
    AuthPayload {
        user: User::loaded(issued.user),
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        access_token_expires_at: issued.access_expires_at,
    }
}

fn clear_cookies(ctx: &Context<'_>, state: &AppState) {
    for header in cleared_session_cookies(state) {
        set_cookie(ctx, header);
    }
}

#[derive(Default)]
pub struct IdentityQuery;

#[Object]
impl IdentityQuery {
    /// The signed-in user; null when anonymous. A refused credential is an UNAUTHENTICATED
    /// error with the reason, so a client knows to refresh.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        match ctx.viewer() {
            Ok(viewer) => Ok(Some(User::lazy(viewer.user_id))),
            Err(err) if err.reason.is_none() => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Sign-in providers that are configured, with the URL that starts each.
    async fn auth_providers(&self, ctx: &Context<'_>) -> Result<Vec<AuthProvider>> {
        let state = ctx.data::<AppState>()?;
        let base = state.config.public_url();
        let base = base.as_str().trim_end_matches('/');
        Ok(state
            .identity
            .providers
            .configured()
            .into_iter()
            .map(|kind| AuthProvider {
                kind,
                name: kind.label(),
                login_url: format!("{base}/auth/{}/login", kind.slug()),
            })
            .collect())
    }
}

#[derive(Default)]
pub struct IdentityMutation;

#[Object]
impl IdentityMutation {
    /// Creates an account with email and password, and signs it in.
    async fn register(&self, ctx: &Context<'_>, input: RegisterInput) -> Result<AuthPayload> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let issued = service::register(
            state,
            Registration {
                email: input.email,
                password: input.password,
                username: input.username,
            },
            meta,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(deliver(ctx, state, issued))
    }

    /// Signs in with email and password. Wrong email and wrong password get the same answer.
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> Result<AuthPayload> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let issued = service::login(state, &email, &password, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(deliver(ctx, state, issued))
    }

    /// Exchanges a refresh token (the argument, or the cookie) for new tokens. A token that
    /// was already exchanged ends its session.
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        refresh_token: Option<String>,
    ) -> Result<AuthPayload> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let token = match refresh_token {
            Some(token) => token,
            None => meta
                .cookies
                .as_deref()
                .and_then(|c| cookie(c, REFRESH_COOKIE))
                .map(str::to_owned)
                .ok_or_else(|| ApiError::unauthenticated().with_reason("refresh_token_missing"))?,
        };
        match service::refresh(state, &token, meta).await {
            Ok(issued) => Ok(deliver(ctx, state, issued)),
            Err(err) => {
                // Only a refusal ends the browser's session; an outage (database, kv) leaves
                // the cookies for the next try.
                if matches!(
                    err,
                    IdentityError::RefreshInvalid
                        | IdentityError::RefreshReused
                        | IdentityError::Disabled
                ) {
                    clear_cookies(ctx, state);
                }
                Err(ApiError::from(err).into())
            }
        }
    }

    /// Mails a six-digit sign-in code. Always true, whether or not the address has an account.
    async fn request_login_code(&self, ctx: &Context<'_>, email: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        codes::request_login_code(state, &email, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(true)
    }

    /// Signs in with a mailed code; the first use of a new address creates the account.
    async fn login_with_code(
        &self,
        ctx: &Context<'_>,
        email: String,
        code: String,
    ) -> Result<AuthPayload> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let issued = codes::login_with_code(state, &email, &code, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(deliver(ctx, state, issued))
    }

    /// Confirms the email address with the mailed link token, or (signed in) the mailed code.
    async fn verify_email(&self, ctx: &Context<'_>, token: String) -> Result<User> {
        let state = ctx.data::<AppState>()?;
        let user = codes::verify_email(state, &token, ctx.viewer_opt())
            .await
            .map_err(ApiError::from)?;
        Ok(User::loaded(user))
    }

    /// Mails a new verification link and code to the signed-in user.
    async fn request_email_verification(&self, ctx: &Context<'_>) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let viewer = ctx.viewer()?;
        codes::request_verification(state, viewer, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(true)
    }

    /// Mails a password-reset link. Always true, whether or not the address has an account.
    async fn request_password_reset(&self, ctx: &Context<'_>, email: String) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        codes::request_password_reset(state, &email, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(true)
    }

    /// Sets a new password with a reset link's token (single use, 30 minutes); every session ends.
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        token: String,
        new_password: String,
    ) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        codes::reset_password(state, &token, &new_password)
            .await
            .map_err(ApiError::from)?;
        Ok(true)
    }

    /// Ends this session, or every session of the account.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] all_sessions: bool,
    ) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let viewer = ctx.viewer()?;
        service::logout(state, viewer, all_sessions)
            .await
            .map_err(ApiError::from)?;
        clear_cookies(ctx, state);
        Ok(true)
    }

    /// Changes the password; every other session ends.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let viewer = ctx.viewer()?;
        service::change_password(state, viewer, &current_password, &new_password)
            .await
            .map_err(ApiError::from)?;
        Ok(true)
    }

    /// Changes your username, display name or avatar; omitted fields stay, "" clears an
    /// optional one.
    async fn update_profile(&self, ctx: &Context<'_>, input: UpdateProfileInput) -> Result<User> {
        let state = ctx.data::<AppState>()?;
        let viewer = ctx.viewer()?;
        let user = service::update_profile(
            state,
            viewer,
            service::ProfileChange {
                username: input.username,
                display_name: input.display_name,
                avatar_url: input.avatar_url,
            },
        )
        .await
        .map_err(ApiError::from)?;
        Ok(User::loaded(user))
    }

    /// Signs one of your devices out.
    async fn revoke_session(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let viewer = ctx.viewer()?;
        let family = parse_id(&id, "session")?;
        service::revoke_session(state, viewer, family)
            .await
            .map_err(ApiError::from)?;
        Ok(true)
    }

    /// Removes a linked provider. Refused when it is the only way left to sign in.
    async fn unlink_identity(&self, ctx: &Context<'_>, provider: AuthProviderKind) -> Result<User> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let viewer = ctx.viewer()?;
        let user = external::unlink(state, viewer, provider, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(User::loaded(user))
    }

    /// Admin: changes a user's role (audited). Their sessions end so the change holds at once.
    async fn set_user_role(&self, ctx: &Context<'_>, user_id: ID, role: Role) -> Result<User> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let admin = ctx.admin()?;
        let user_id = parse_id(&user_id, "user")?;
        let user = service::set_role(state, admin, user_id, role, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(User::loaded(user))
    }

    /// Admin: disables an account (audited); its sessions end at once.
    async fn disable_user(&self, ctx: &Context<'_>, user_id: ID) -> Result<User> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        let admin = ctx.admin()?;
        let user_id = parse_id(&user_id, "user")?;
        let user = service::disable_user(state, admin, user_id, meta)
            .await
            .map_err(ApiError::from)?;
        Ok(User::loaded(user))
    }
}
