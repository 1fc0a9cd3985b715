//! Identity operations, free of HTTP and GraphQL: register, sign in, refresh, sign out,
//! change password, list and revoke sessions, and the admin actions on users.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Role,
    auth::{self, Admin, Viewer},
    entity::{session, user},
    password,
    tokens::{self, AccessClaims},
};
use crate::{
    app::AppState,
    graphql::{ApiError, ErrorCode, RequestMeta},
    platform::{
        audit::{self, AuditEntry},
        kv::RateLimit,
    },
};

/// What callers of this module may be told.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("{message}")]
    InvalidInput {
        reason: &'static str,
        message: String,
    },
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("this username is taken")]
    UsernameTaken,
    #[error("this account is disabled")]
    Disabled,
    #[error("the refresh token is invalid or expired; sign in again")]
    RefreshInvalid,
    #[error("this refresh token was already used; the session has been ended, sign in again")]
    RefreshReused,
    #[error("too many attempts; try again later")]
    RateLimited(Duration),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Refused(&'static str),
    #[error("{message}")]
    Conflict {
        reason: &'static str,
        message: String,
    },
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Kv(#[from] crate::platform::kv::KvError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> Self {
        let message = err.to_string();
        match err {
            IdentityError::InvalidCredentials => ApiError::new(ErrorCode::Unauthenticated, message)
                .with_reason("invalid_credentials"),
            IdentityError::InvalidInput { reason, message } => ApiError::bad_input(reason, message),
            IdentityError::EmailTaken => ApiError::conflict("email_taken", message),
            IdentityError::UsernameTaken => ApiError::conflict("username_taken", message),
            IdentityError::Disabled => {
                ApiError::new(ErrorCode::Forbidden, message).with_reason("account_disabled")
            }
            IdentityError::RefreshInvalid => ApiError::new(ErrorCode::Unauthenticated, message)
                .with_reason("refresh_token_invalid"),
            IdentityError::RefreshReused => ApiError::new(ErrorCode::Unauthenticated, message)
                .with_reason("refresh_token_reused"),
            IdentityError::RateLimited(retry) => ApiError::rate_limited(retry),
            IdentityError::NotFound(what) => ApiError::not_found(what),
            IdentityError::Refused(reason) => {
                ApiError::new(ErrorCode::Forbidden, "you are not allowed to do this")
                    .with_reason(reason)
            }
            IdentityError::Conflict { reason, message } => ApiError::conflict(reason, message),
            IdentityError::Db(e) => e.into(),
            IdentityError::Kv(e) => e.into(),
            IdentityError::Internal(e) => ApiError::internal(format!("{e:#}")),
        }
    }
}

pub(super) type Result<T> = std::result::Result<T, IdentityError>;

fn invalid(reason: &'static str, message: impl Into<String>) -> IdentityError {
    IdentityError::InvalidInput {
        reason,
        message: message.into(),
    }
}

/// A fresh session's credentials, returned once.
#[derive(Debug)]
pub struct IssuedSession {
    pub user: user::Model,
    /// The family: what the access token carries and what logout revokes.
    pub session_id: Uuid,
    /// The row holding this refresh token's hash.
    pub row_id: Uuid,
    pub access_token: String,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
}

pub struct Registration {
    pub email: String,
    pub password: String,
    pub username: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Lowercased, trimmed, and shaped like an address.
pub fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(invalid("invalid_email", "this is not an email address"));
    }
    Ok(email)
}

pub(super) fn check_username(username: &str) -> Result<String> {
    let username = username.trim();
    let ok = (3..=32).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(invalid(
            "invalid_username",
            "use 3 to 32 letters, digits, '_', '-' or '.'",
        ));
    }
    Ok(username.to_owned())
}

fn client_ip(meta: &RequestMeta) -> String {
    meta.client_ip
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Counts one attempt of `what` from the request's client address.
pub(super) async fn limit_ip(state: &AppState, what: &str, meta: &RequestMeta) -> Result<()> {
    let key = format!("{what}:ip:{}", client_ip(meta));
    limit(state, key, state.config.identity.login_rate_limit_per_ip).await
}

/// Counts one attempt of `what` for a (normalized) address. The key is an HMAC, so the kv
/// store never holds addresses.
pub(super) async fn limit_email(state: &AppState, what: &str, email: &str) -> Result<()> {
    let email_key = state.identity.keys.hmac("limit-email", &[email.as_bytes()]);
    let key = format!("{what}:email:{email_key}");
    limit(state, key, state.config.identity.login_rate_limit_per_email).await
}

async fn limit(state: &AppState, key: String, per_minute: u32) -> Result<()> {
    let decision = state
        .kv
        .rate_limit(&key, RateLimit::per_minute(per_minute))
        .await?;
    if decision.allowed {
        Ok(())
    } else {
        Err(IdentityError::RateLimited(decision.retry_after))
    }
}

pub(super) fn now() -> DateTime<Utc> {
    Utc::now()
}

fn to_chrono(t: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

/// Creates a session (a new family) for `user` and mints its first tokens, inside the
/// caller's transaction.
pub async fn issue_in(
    state: &AppState,
    conn: &impl ConnectionTrait,
    user: user::Model,
    meta: &RequestMeta,
) -> Result<IssuedSession> {
    let family = Uuid::now_v7();
    rotate_into(state, conn, user, family, meta).await
}

/// Inserts a session row in `family` with a new refresh token and mints an access token.
async fn rotate_into(
    state: &AppState,
    conn: &impl ConnectionTrait,
    user: user::Model,
    family: Uuid,
    meta: &RequestMeta,
) -> Result<IssuedSession> {
    let identity = &state.identity;
    let config = &state.config.identity;
    let refresh_token = tokens::new_refresh_token();
    let now = now();
    let refresh_expires_at = now + config.refresh_token_ttl.0;
    let row_id = Uuid::now_v7();
    session::ActiveModel {
        id: Set(row_id),
        user_id: Set(user.id),
        family_id: Set(family),
        refresh_hash: Set(identity.keys.hmac("refresh", &[refresh_token.as_bytes()])),
        user_agent: Set(meta
            .user_agent
            .as_ref()
            .map(|ua| ua.chars().take(255).collect())),
        ip: Set(Some(client_ip(meta))),
        created_at: Set(now),
        last_used_at: Set(now),
        expires_at: Set(refresh_expires_at),
        revoked_at: Set(None),
        replaced_by: Set(None),
    }
    .insert(conn)
    .await?;
    let expires = SystemTime::now() + config.access_token_ttl.0;
    let role = Role::parse(&user.role).unwrap_or(Role::User);
    let access_token = identity
        .keys
        .mint_access(&AccessClaims {
            user_id: user.id,
            session_id: family,
            role,
            expires_at: expires,
        })
        .map_err(|e| anyhow::anyhow!("minting an access token failed: {e}"))?;
    Ok(IssuedSession {
        user,
        session_id: family,
        row_id,
        access_token,
        access_expires_at: to_chrono(expires),
        refresh_token,
        refresh_expires_at,
    })
}

/// The role an account should have now: admins stay admins; ADMIN_EMAILS promote.
pub(super) fn role_for(state: &AppState, email: Option<&str>, current: Role) -> Role {
    match email {
        Some(email) if state.config.identity.is_admin_email(email) => Role::Admin,
        _ => current,
    }
}

#[tracing::instrument(skip_all, err(level = "info", Display))]
pub async fn register(
    state: &AppState,
    input: Registration,
    meta: &RequestMeta,
) -> Result<IssuedSession> {
    limit_ip(state, "register", meta).await?;
    let email = normalize_email(&input.email)?;
    let username = check_username(&input.username)?;
    password::check_policy(
        &input.password,
        &[&email, email.split('@').next().unwrap_or(""), &username],
    )
    .map_err(|m| invalid("weak_password", m))?;

    let db = &state.db;
    if user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(db.conn())
        .await?
        .is_some()
    {
        return Err(IdentityError::EmailTaken);
    }
    if user::Entity::find()
        .filter(user::Column::UsernameKey.eq(username.to_lowercase()))
        .one(db.conn())
        .await?
        .is_some()
    {
        return Err(IdentityError::UsernameTaken);
    }
    let hash = state.identity.passwords.hash(&input.password).await?;
    let now = now();
    let role = role_for(state, Some(&email), Role::User);
    let txn = db.begin_write().await?;
    let user = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(Some(email)),
        email_verified_at: Set(None),
        username_key: Set(username.to_lowercase()),
        username: Set(username),
        display_name: Set(None),
        avatar_url: Set(None),
        role: Set(role.as_str().to_owned()),
        password_hash: Set(Some(hash)),
        disabled_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| match e.sql_err() {
        // Lost a race with another registration of the same email or username; the
        // violated index names which (users.username_key / users_username_key_key).
        Some(sea_orm::SqlErr::UniqueConstraintViolation(detail)) if detail.contains("username") => {
            IdentityError::UsernameTaken
        }
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => IdentityError::EmailTaken,
        _ => IdentityError::Db(e),
    })?;
    crate::wallet::service::open_user_account(&txn, user.id).await?;
    let issued = issue_in(state, &txn, user, meta).await?;
    txn.commit().await?;
    tracing::info!(user.id = %issued.user.id, "user registered");
    if let Err(e) = super::codes::send_verification(state, &issued.user).await {
        tracing::error!(error = %e, "could not send the verification mail");
    }
    Ok(issued)
}

#[tracing::instrument(skip_all, err(level = "info", Display))]
pub async fn login(
    state: &AppState,
    email: &str,
    password: &str,
    meta: &RequestMeta,
) -> Result<IssuedSession> {
    limit_ip(state, "login", meta).await?;
    let Ok(email) = normalize_email(email) else {
        return Err(IdentityError::InvalidCredentials);
    };
    limit_email(state, "login", &email).await?;
    if password.len() > password::MAX_LEN {
        return Err(IdentityError::InvalidCredentials);
    }

    let found = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(state.db.conn())
        .await?;
    let phc = found.as_ref().and_then(|u| u.password_hash.as_deref());
    if !state.identity.passwords.verify(password, phc).await {
        return Err(IdentityError::InvalidCredentials);
    }
    let mut user = found.ok_or(IdentityError::InvalidCredentials)?;
    if user.disabled_at.is_some() {
        return Err(IdentityError::Disabled);
    }
    let txn = state.db.begin_write().await?;
    let current = Role::parse(&user.role).unwrap_or(Role::User);
    let role = role_for(state, user.email.as_deref(), current);
    if role != current {
        let mut active: user::ActiveModel = user.into();
        active.role = Set(role.as_str().to_owned());
        active.updated_at = Set(now());
        user = active.update(&txn).await?;
    }
    let issued = issue_in(state, &txn, user, meta).await?;
    txn.commit().await?;
    tracing::info!(user.id = %issued.user.id, "signed in with password");
    Ok(issued)
}

#[tracing::instrument(skip_all, err(level = "info", Display))]
pub async fn refresh(
    state: &AppState,
    refresh_token: &str,
    meta: &RequestMeta,
) -> Result<IssuedSession> {
    if !tokens::looks_like_refresh_token(refresh_token) {
        return Err(IdentityError::RefreshInvalid);
    }
    let hash = state
        .identity
        .keys
        .hmac("refresh", &[refresh_token.as_bytes()]);
    let txn = state.db.begin_write().await?;
    let Some(row) = session::Entity::find()
        .filter(session::Column::RefreshHash.eq(hash.as_str()))
        .one(&txn)
        .await?
    else {
        return Err(IdentityError::RefreshInvalid);
    };
    if row.revoked_at.is_some() {
        if row.replaced_by.is_some() {
            drop(txn);
            // A rotated token came back: someone holds a copy. End the whole family.
            tracing::warn!(user.id = %row.user_id, session.id = %row.family_id, "refresh token reuse; revoking the session");
            revoke_families(state, row.user_id, Some(row.family_id), None).await?;
            return Err(IdentityError::RefreshReused);
        }
        return Err(IdentityError::RefreshInvalid);
    }
    if row.expires_at <= now() {
        return Err(IdentityError::RefreshInvalid);
    }
    let user = user::Entity::find_by_id(row.user_id)
        .one(&txn)
        .await?
        .ok_or(IdentityError::RefreshInvalid)?;
    if user.disabled_at.is_some() {
        return Err(IdentityError::Disabled);
    }
    let issued = rotate_into(state, &txn, user, row.family_id, meta).await?;
    // Only the first of two concurrent refreshes with one token may rotate it.
    let rotated = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now()))
        .col_expr(session::Column::ReplacedBy, Expr::value(issued.row_id))
        .filter(session::Column::Id.eq(row.id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if rotated.rows_affected != 1 {
        drop(txn);
        revoke_families(state, row.user_id, Some(row.family_id), None).await?;
        return Err(IdentityError::RefreshReused);
    }
    txn.commit().await?;
    Ok(issued)
}

/// Revokes the given family (or every family of the user, except `keep`), in the database
/// and in kv so that access tokens die at once. Returns how many families ended.
pub async fn revoke_families(
    state: &AppState,
    user_id: Uuid,
    family: Option<Uuid>,
    keep: Option<Uuid>,
) -> Result<usize> {
    let mut query = session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null());
    if let Some(family) = family {
        query = query.filter(session::Column::FamilyId.eq(family));
    }
    let rows = query.all(state.db.conn()).await?;
    let mut families: Vec<Uuid> = rows
        .iter()
        .map(|r| r.family_id)
        .chain(family)
        .filter(|f| Some(*f) != keep)
        .collect();
    families.sort_unstable();
    families.dedup();
    if families.is_empty() {
        return Ok(0);
    }
    // kv first: if it fails, nothing is half-revoked in a way that leaves tokens alive.
    auth::mark_revoked(state, &families).await?;
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now()))
        .filter(session::Column::FamilyId.is_in(families.clone()))
        .filter(session::Column::RevokedAt.is_null())
        .exec(state.db.conn())
        .await?;
    Ok(families.len())
}

pub async fn logout(state: &AppState, viewer: &Viewer, all: bool) -> Result<usize> {
    let family = (!all).then_some(viewer.session_id);
    revoke_families(state, viewer.user_id, family, None).await
}

pub async fn change_password(
    state: &AppState,
    viewer: &Viewer,
    current: &str,
    new: &str,
) -> Result<()> {
    let user = find_user(state, viewer.user_id).await?;
    if !state
        .identity
        .passwords
        .verify(current, user.password_hash.as_deref())
        .await
    {
        return Err(IdentityError::InvalidCredentials);
    }
    let email = user.email.clone().unwrap_or_default();
    password::check_policy(new, &[&email, &user.username])
        .map_err(|m| invalid("weak_password", m))?;
    let hash = state.identity.passwords.hash(new).await?;
    let mut active: user::ActiveModel = user.into();
    active.password_hash = Set(Some(hash));
    active.updated_at = Set(now());
    active.update(state.db.conn()).await?;
    // Every other session ends: whoever knew the old password is signed out.
    revoke_families(state, viewer.user_id, None, Some(viewer.session_id)).await?;
    Ok(())
}

/// Changes to a profile; `None` leaves a field as it is, `Some("")` clears an optional one.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

fn optional_text(
    value: String,
    max: usize,
    reason: &'static str,
    what: &str,
) -> Result<Option<String>> {
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(invalid(
            reason,
            format!("{what} must be at most {max} characters, without control characters"),
        ));
    }
    Ok(Some(value))
}

pub async fn update_profile(
    state: &AppState,
    viewer: &Viewer,
    change: ProfileChange,
) -> Result<user::Model> {
    let user = find_user(state, viewer.user_id).await?;
    let mut active: user::ActiveModel = user.into();
    if let Some(username) = change.username {
        let username = check_username(&username)?;
        let taken = user::Entity::find()
            .filter(user::Column::UsernameKey.eq(username.to_lowercase()))
            .filter(user::Column::Id.ne(viewer.user_id))
            .one(state.db.conn())
            .await?
            .is_some();
        if taken {
            return Err(IdentityError::UsernameTaken);
        }
        active.username_key = Set(username.to_lowercase());
        active.username = Set(username);
    }
    if let Some(name) = change.display_name {
        active.display_name = Set(optional_text(
            name,
            64,
            "invalid_display_name",
            "the display name",
        )?);
    }
    if let Some(url) = change.avatar_url {
        let url = optional_text(url, 512, "invalid_avatar_url", "the avatar URL")?;
        if let Some(url) = &url {
            let ok =
                url::Url::parse(url).is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
            if !ok {
                return Err(invalid(
                    "invalid_avatar_url",
                    "the avatar URL must be an https:// URL",
                ));
            }
        }
        active.avatar_url = Set(url);
    }
    active.updated_at = Set(now());
    active
        .update(state.db.conn())
        .await
        .map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => IdentityError::UsernameTaken,
            _ => IdentityError::Db(e),
        })
}

pub async fn find_user(state: &AppState, id: Uuid) -> Result<user::Model> {
    user::Entity::find_by_id(id)
        .one(state.db.conn())
        .await?
        .ok_or(IdentityError::NotFound("user"))
}

/// Active sessions (one row per family, the newest), newest first.
pub async fn active_sessions(state: &AppState, user_id: Uuid) -> Result<Vec<session::Model>> {
    Ok(session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(now()))
        .order_by_desc(session::Column::CreatedAt)
        .all(state.db.conn())
        .await?)
}

/// Ends one of the viewer's sessions; someone else's is NOT_FOUND.
pub async fn revoke_session(state: &AppState, viewer: &Viewer, family: Uuid) -> Result<()> {
    let owned = session::Entity::find()
        .filter(session::Column::UserId.eq(viewer.user_id))
        .filter(session::Column::FamilyId.eq(family))
        .one(state.db.conn())
        .await?;
    if owned.is_none() {
        return Err(IdentityError::NotFound("session"));
    }
    revoke_families(state, viewer.user_id, Some(family), None).await?;
    Ok(())
}

pub async fn set_role(
    state: &AppState,
    admin: Admin<'_>,
    user_id: Uuid,
    role: Role,
    meta: &RequestMeta,
) -> Result<user::Model> {
    if user_id == admin.user_id() && role != Role::Admin {
        return Err(IdentityError::Refused("cannot_demote_self"));
    }
    let user = find_user(state, user_id).await?;
    let previous = user.role.clone();
    let txn = state.db.begin_write().await?;
    let mut active: user::ActiveModel = user.into();
    active.role = Set(role.as_str().to_owned());
    active.updated_at = Set(now());
    let user = active.update(&txn).await?;
    audit::record(
        &txn,
        AuditEntry::by(admin.user_id(), "user.set_role", meta)
            .on("user", user_id)
            .details(serde_json::json!({ "from": previous, "to": role.as_str() })),
    )
    .await?;
    txn.commit().await?;
    // Access tokens carry the role: end the sessions so the change holds at once.
    revoke_families(state, user_id, None, None).await?;
    Ok(user)
}

pub async fn disable_user(
    state: &AppState,
    admin: Admin<'_>,
    user_id: Uuid,
    meta: &RequestMeta,
) -> Result<user::Model> {
    if user_id == admin.user_id() {
        return Err(IdentityError::Refused("cannot_disable_self"));
    }
    let user = find_user(state, user_id).await?;
    let txn = state.db.begin_write().await?;
    let user = if user.disabled_at.is_none() {
        let mut active: user::ActiveModel = user.into();
        active.disabled_at = Set(Some(now()));
        active.updated_at = Set(now());
        active.update(&txn).await?
    } else {
        user
    };
    audit::record(
        &txn,
        AuditEntry::by(admin.user_id(), "user.disable", meta).on("user", user_id),
    )
    .await?;
    txn.commit().await?;
    revoke_families(state, user_id, None, None).await?;
    if let Err(e) = crate::access::service::revoke_all_for_user(state, user_id).await {
        tracing::error!(error = %e, "could not revoke a disabled user's access tokens");
    }
    Ok(user)
}

/// `tessera create-admin`: creates the account (with `password` when given) or promotes an
/// existing one. Returns the user and whether it was created.
pub async fn create_admin(
    db: &crate::platform::db::Db,
    passwords: &password::Passwords,
    email: &str,
    password: Option<&str>,
) -> Result<(user::Model, bool)> {
    let email = normalize_email(email)?;
    if let Some(pw) = password {
        password::check_policy(pw, &[&email]).map_err(|m| invalid("weak_password", m))?;
    }
    let hash = match password {
        Some(pw) => Some(passwords.hash(pw).await?),
        None => None,
    };
    let txn = db.begin_write().await?;
    let existing = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&txn)
        .await?;
    let now = now();
    let (user, created) = match existing {
        Some(user) => {
            let mut active: user::ActiveModel = user.into();
            active.role = Set(Role::Admin.as_str().to_owned());
            active.disabled_at = Set(None);
            if let Some(hash) = hash {
                active.password_hash = Set(Some(hash));
            }
            active.updated_at = Set(now);
            (active.update(&txn).await?, false)
        }
        None => {
            let username = free_username(&txn, &email).await?;
            let user = verified_user(&email, username, Role::Admin, hash)
                .insert(&txn)
                .await?;
            crate::wallet::service::open_user_account(&txn, user.id).await?;
            (user, true)
        }
    };
    audit::record(
        &txn,
        AuditEntry {
            actor_id: None,
            action: "user.create_admin",
            target_type: Some("user"),
            target_id: Some(user.id.to_string()),
            details: serde_json::json!({ "created": created, "via": "cli" }),
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    Ok((user, created))
}

/// A new account whose address is already proven (a mailed code, or the operator's word).
pub fn verified_user(
    email: &str,
    username: String,
    role: Role,
    password_hash: Option<String>,
) -> user::ActiveModel {
    let now = Utc::now();
    user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(Some(email.to_owned())),
        email_verified_at: Set(Some(now)),
        username_key: Set(username.to_lowercase()),
        username: Set(username),
        display_name: Set(None),
        avatar_url: Set(None),
        role: Set(role.as_str().to_owned()),
        password_hash: Set(password_hash),
        disabled_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// A username derived from an address's local part that nobody has yet.
pub async fn free_username(conn: &impl ConnectionTrait, email: &str) -> Result<String> {
    let base: String = email
        .split('@')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(24)
        .collect();
    let base = if base.len() < 3 {
        "user".to_owned()
    } else {
        base
    };
    for attempt in 0..8 {
        let candidate = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}-{}", &Uuid::new_v4().simple().to_string()[..6])
        };
        let taken = user::Entity::find()
            .filter(user::Column::UsernameKey.eq(candidate.to_lowercase()))
            .one(conn)
            .await?
            .is_some();
        if !taken {
            return Ok(candidate);
        }
    }
    Err(IdentityError::Internal(anyhow::anyhow!(
        "no free username for a new account"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_usernames_are_checked() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        assert_eq!(check_username("Alice_01").unwrap(), "Alice_01");
        for bad in ["ab", "has space", "emoji😀", &"x".repeat(33)] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }
}
