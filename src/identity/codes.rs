//! Proofs of control of an email address: verification links and codes, password-reset
//! links, and sign-in codes.
//!
//! - Link tokens are random (`tsr_ev_…` to verify, `tsr_pr_…` to reset) and found by their
//!   HMAC. Six-digit codes would collide between users, so they are found by (email,
//!   purpose) and compared by HMAC over purpose, email and code, in constant time.
//! - Every proof is single use: consuming it is a conditional update that only one caller
//!   can win. A new request replaces the previous unconsumed proof of the same purpose.
//! - Sign-in codes die after five wrong attempts. Requests answer the same whether or not
//!   the address has an account.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use rand::{Rng, RngCore};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait,
    QueryFilter, QueryOrder, sea_query::Expr,
};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{
    Role,
    auth::Viewer,
    entity::{one_time_code, user},
    password,
    service::{self, IdentityError, IssuedSession, normalize_email},
};
use crate::{
    app::AppState,
    graphql::RequestMeta,
    platform::mail::{OutgoingMail, escape_html},
};

type Result<T> = std::result::Result<T, IdentityError>;

const VERIFY_LINK: &str = "verify_email";
const VERIFY_CODE: &str = "verify_email_code";
const RESET: &str = "reset_password";
const LOGIN: &str = "login_code";

const VERIFY_TTL: Duration = Duration::from_secs(24 * 3600);
const RESET_TTL: Duration = Duration::from_secs(30 * 60);
const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);
const MAX_ATTEMPTS: i32 = 5;

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn six_digits() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

fn code_hash(state: &AppState, purpose: &str, email: &str, secret: &str) -> String {
    state.identity.keys.hmac(
        "one-time-code",
        &[purpose.as_bytes(), email.as_bytes(), secret.as_bytes()],
    )
}

/// Replaces any open proof of `purpose` for `email` with a new one.
async fn store(
    conn: &impl ConnectionTrait,
    user_id: Option<Uuid>,
    email: &str,
    purpose: &str,
    hash: String,
    ttl: Duration,
) -> Result<()> {
    let now = Utc::now();
    one_time_code::Entity::update_many()
        .col_expr(one_time_code::Column::ConsumedAt, Expr::value(now))
        .filter(one_time_code::Column::Email.eq(email))
        .filter(one_time_code::Column::Purpose.eq(purpose))
        .filter(one_time_code::Column::ConsumedAt.is_null())
        .exec(conn)
        .await?;
    one_time_code::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        email: Set(email.to_owned()),
        purpose: Set(purpose.to_owned()),
        code_hash: Set(hash),
        expires_at: Set(now + ttl),
        attempts: Set(0),
        consumed_at: Set(None),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Marks `row` consumed; false when someone else already did (or it expired meanwhile).
async fn consume(conn: &impl ConnectionTrait, row: &one_time_code::Model) -> Result<bool> {
    let now = Utc::now();
    let done = one_time_code::Entity::update_many()
        .col_expr(one_time_code::Column::ConsumedAt, Expr::value(now))
        .filter(one_time_code::Column::Id.eq(row.id))
        .filter(one_time_code::Column::ConsumedAt.is_null())
        .filter(one_time_code::Column::ExpiresAt.gt(now))
        .exec(conn)
        .await?;
    Ok(done.rows_affected == 1)
}

/// The open link proof with this token, if any.
async fn find_link(
    state: &AppState,
    purpose: &str,
    token: &str,
) -> Result<Option<one_time_code::Model>> {
    let hash = code_hash(state, purpose, "", token);
    Ok(one_time_code::Entity::find()
        .filter(one_time_code::Column::CodeHash.eq(hash))
        .filter(one_time_code::Column::Purpose.eq(purpose))
        .filter(one_time_code::Column::ConsumedAt.is_null())
        .filter(one_time_code::Column::ExpiresAt.gt(Utc::now()))
        .one(state.db.conn())
        .await?)
}

fn invalid_code(reason: &'static str, message: &str) -> IdentityError {
    IdentityError::InvalidInput {
        reason,
        message: message.to_owned(),
    }
}

fn link(state: &AppState, path: &str, token: &str) -> String {
    let mut url = state.config.public_url();
    url.set_path(path);
    url.query_pairs_mut().append_pair("token", token);
    url.to_string()
}

async fn deliver(state: &AppState, to: &str, subject: &str, text: String, html: String) {
    let mail = OutgoingMail {
        to: to.to_owned(),
        subject: subject.to_owned(),
        text,
        html,
    };
    // A mail failure must not tell the caller whether the address exists; log it instead.
    if let Err(e) = state.mailer.send(mail).await {
        tracing::error!(error = %e, subject, "sending mail failed");
    }
}

async fn rate_limit_email(
    state: &AppState,
    what: &str,
    email: &str,
    meta: &RequestMeta,
) -> Result<()> {
    service::limit_ip(state, what, meta).await?;
    service::limit_email(state, what, email).await
}

/// Sends a verification link and code to the user's address.
pub async fn send_verification(state: &AppState, user: &user::Model) -> Result<()> {
    let Some(email) = user.email.as_deref() else {
        return Err(invalid_code(
            "no_email",
            "this account has no email address",
        ));
    };
    let token = random_token("tsr_ev_");
    let code = six_digits();
    let txn = state.db.begin_write().await?;
    store(
        &txn,
        Some(user.id),
        email,
        VERIFY_LINK,
        code_hash(state, VERIFY_LINK, "", &token),
        VERIFY_TTL,
    )
    .await?;
    store(
        &txn,
        Some(user.id),
        email,
        VERIFY_CODE,
        code_hash(state, VERIFY_CODE, email, &code),
        VERIFY_TTL,
    )
    .await?;
    txn.commit().await?;
    let url = link(state, "/verify-email", &token);
    let name = &user.username;
    deliver(
        state,
        email,
        "Confirm your email address",
        format!("Hello {name},\n\nconfirm your email address by opening\n{url}\n\nor by entering the code {code}.\nThe link and the code are valid for 24 hours.\n"),
        format!(
            "<p>Hello {},</p><p>confirm your email address: <a href=\"{}\">confirm</a></p><p>or enter the code <strong>{code}</strong>.</p><p>The link and the code are valid for 24 hours.</p>",
            escape_html(name),
            escape_html(&url)
        ),
    )
    .await;
    Ok(())
}

/// `requestEmailVerification` for the signed-in user.
pub async fn request_verification(
    state: &AppState,
    viewer: &Viewer,
    meta: &RequestMeta,
) -> Result<()> {
    let user = service::find_user(state, viewer.user_id).await?;
    let email = user.email.clone().unwrap_or_default();
    rate_limit_email(state, "verify", &email, meta).await?;
    if user.email_verified_at.is_some() {
        return Ok(());
    }
    send_verification(state, &user).await
}

/// `verifyEmail`: the link token, or (signed in) the six-digit code.
pub async fn verify_email(
    state: &AppState,
    token: &str,
    viewer: Option<&Viewer>,
) -> Result<user::Model> {
    let token = token.trim();
    let row = if token.starts_with("tsr_ev_") {
        find_link(state, VERIFY_LINK, token).await?
    } else if token.len() == 6 && token.bytes().all(|b| b.is_ascii_digit()) {
        let viewer = viewer
            .ok_or_else(|| invalid_code("sign_in_required", "sign in to confirm with a code"))?;
        let user = service::find_user(state, viewer.user_id).await?;
        let email = user.email.clone().unwrap_or_default();
        check_code(state, VERIFY_CODE, &email, token).await?
    } else {
        None
    };
    let row = row.ok_or_else(|| {
        invalid_code(
            "invalid_token",
            "this link or code is invalid or has expired",
        )
    })?;
    let txn = state.db.begin_write().await?;
    if !consume(&txn, &row).await? {
        return Err(invalid_code(
            "invalid_token",
            "this link or code is invalid or has expired",
        ));
    }
    let user_id = row.user_id.ok_or(IdentityError::NotFound("user"))?;
    let user = user::Entity::find_by_id(user_id)
        .one(&txn)
        .await?
        .ok_or(IdentityError::NotFound("user"))?;
    // The proof is for the address it was sent to; a changed address needs a new one.
    if user.email.as_deref() != Some(row.email.as_str()) {
        return Err(invalid_code(
            "invalid_token",
            "this link or code is invalid or has expired",
        ));
    }
    // Close the sibling proof (link or code) too.
    one_time_code::Entity::update_many()
        .col_expr(one_time_code::Column::ConsumedAt, Expr::value(Utc::now()))
        .filter(one_time_code::Column::UserId.eq(user_id))
        .filter(one_time_code::Column::Purpose.is_in([VERIFY_LINK, VERIFY_CODE]))
        .filter(one_time_code::Column::ConsumedAt.is_null())
        .exec(&txn)
        .await?;
    let user = if user.email_verified_at.is_none() {
        let mut active: user::ActiveModel = user.into();
        active.email_verified_at = Set(Some(Utc::now()));
        active.updated_at = Set(Utc::now());
        active.update(&txn).await?
    } else {
        user
    };
    txn.commit().await?;
    Ok(user)
}

/// The open code row for (purpose, email) if `code` matches it. A wrong code counts an
/// attempt; the fifth wrong one kills the code.
async fn check_code(
    state: &AppState,
    purpose: &str,
    email: &str,
    code: &str,
) -> Result<Option<one_time_code::Model>> {
    let Some(row) = one_time_code::Entity::find()
        .filter(one_time_code::Column::Email.eq(email))
        .filter(one_time_code::Column::Purpose.eq(purpose))
        .filter(one_time_code::Column::ConsumedAt.is_null())
        .filter(one_time_code::Column::ExpiresAt.gt(Utc::now()))
        .order_by_desc(one_time_code::Column::CreatedAt)
        .one(state.db.conn())
        .await?
    else {
        return Ok(None);
    };
    if row.attempts >= MAX_ATTEMPTS {
        return Err(invalid_code(
            "code_exhausted",
            "too many wrong codes; request a new one",
        ));
    }
    let expected = code_hash(state, purpose, email, code);
    if bool::from(expected.as_bytes().ct_eq(row.code_hash.as_bytes())) {
        return Ok(Some(row));
    }
    one_time_code::Entity::update_many()
        .col_expr(
            one_time_code::Column::Attempts,
            Expr::col(one_time_code::Column::Attempts).add(1),
        )
        .filter(one_time_code::Column::Id.eq(row.id))
        .exec(state.db.conn())
        .await?;
    Ok(None)
}

/// `requestLoginCode`: always succeeds from the caller's point of view.
pub async fn request_login_code(state: &AppState, email: &str, meta: &RequestMeta) -> Result<()> {
    let email = normalize_email(email)?;
    rate_limit_email(state, "login-code", &email, meta).await?;
    let existing = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(state.db.conn())
        .await?;
    if existing.as_ref().is_some_and(|u| u.disabled_at.is_some()) {
        // Same answer as for anyone else; no code for a disabled account.
        return Ok(());
    }
    let code = six_digits();
    store(
        state.db.conn(),
        existing.as_ref().map(|u| u.id),
        &email,
        LOGIN,
        code_hash(state, LOGIN, &email, &code),
        LOGIN_TTL,
    )
    .await?;
    deliver(
        state,
        &email,
        "Your sign-in code",
        format!("Your Tessera sign-in code is {code}\n\nIt is valid for 10 minutes. If you did not ask for it, ignore this mail.\n"),
        format!("<p>Your Tessera sign-in code is <strong>{code}</strong>.</p><p>It is valid for 10 minutes. If you did not ask for it, ignore this mail.</p>"),
    )
    .await;
    Ok(())
}

/// `loginWithCode`: signs in, creating the account on first use of a new address.
pub async fn login_with_code(
    state: &AppState,
    email: &str,
    code: &str,
    meta: &RequestMeta,
) -> Result<IssuedSession> {
    let refused = || invalid_code("invalid_code", "this code is invalid or has expired");
    let Ok(email) = normalize_email(email) else {
        return Err(refused());
    };
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refused());
    }
    let row = check_code(state, LOGIN, &email, code)
        .await?
        .ok_or_else(refused)?;
    let txn = state.db.begin_write().await?;
    if !consume(&txn, &row).await? {
        return Err(refused());
    }
    let existing = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&txn)
        .await?;
    let now = Utc::now();
    let user = match existing {
        Some(user) if user.disabled_at.is_some() => return Err(IdentityError::Disabled),
        Some(user) => {
            // Receiving the code proves control of the address.
            let promote =
                state.config.identity.is_admin_email(&email) && user.role != Role::Admin.as_str();
            if user.email_verified_at.is_none() || promote {
                let mut active: user::ActiveModel = user.into();
                active.email_verified_at = Set(Some(now));
                if promote {
                    active.role = Set(Role::Admin.as_str().to_owned());
                }
                active.updated_at = Set(now);
                active.update(&txn).await?
            } else {
                user
            }
        }
        None => {
            let username = service::free_username(&txn, &email).await?;
            let role = if state.config.identity.is_admin_email(&email) {
                Role::Admin
            } else {
                Role::User
            };
            let user = service::verified_user(&email, username, role, None)
                .insert(&txn)
                .await?;
            crate::wallet::service::open_user_account(&txn, user.id).await?;
            user
        }
    };
    let issued = service::issue_in(state, &txn, user, meta).await?;
    txn.commit().await?;
    Ok(issued)
}

/// `requestPasswordReset`: always succeeds from the caller's point of view.
pub async fn request_password_reset(
    state: &AppState,
    email: &str,
    meta: &RequestMeta,
) -> Result<()> {
    let Ok(email) = normalize_email(email) else {
        return Ok(());
    };
    rate_limit_email(state, "reset", &email, meta).await?;
    let Some(user) = user::Entity::find()
        .filter(user::Column::Email.eq(email.as_str()))
        .one(state.db.conn())
        .await?
        .filter(|u| u.disabled_at.is_none())
    else {
        return Ok(());
    };
    let token = random_token("tsr_pr_");
    store(
        state.db.conn(),
        Some(user.id),
        &email,
        RESET,
        code_hash(state, RESET, "", &token),
        RESET_TTL,
    )
    .await?;
    let url = link(state, "/reset-password", &token);
    deliver(
        state,
        &email,
        "Reset your password",
        format!("Hello {},\n\nset a new password here:\n{url}\n\nThe link is valid for 30 minutes and works once. If you did not ask for it, ignore this mail.\n", user.username),
        format!(
            "<p>Hello {},</p><p><a href=\"{}\">Set a new password</a>. The link is valid for 30 minutes and works once.</p><p>If you did not ask for it, ignore this mail.</p>",
            escape_html(&user.username),
            escape_html(&url)
        ),
    )
    .await;
    Ok(())
}

/// `resetPassword`: sets the password and ends every session.
pub async fn reset_password(state: &AppState, token: &str, new_password: &str) -> Result<()> {
    let refused = || invalid_code("invalid_token", "this link is invalid or has expired");
    let row = if token.starts_with("tsr_pr_") {
        find_link(state, RESET, token.trim()).await?
    } else {
        None
    };
    let row = row.ok_or_else(refused)?;
    let user_id = row.user_id.ok_or_else(refused)?;
    let user = service::find_user(state, user_id).await?;
    let email = user.email.clone().unwrap_or_default();
    password::check_policy(
        new_password,
        &[
            &email,
            email.split('@').next().unwrap_or(""),
            &user.username,
        ],
    )
    .map_err(|m| IdentityError::InvalidInput {
        reason: "weak_password",
        message: m,
    })?;
    let hash = state.identity.passwords.hash(new_password).await?;
    let txn = state.db.begin_write().await?;
    if !consume(&txn, &row).await? {
        return Err(refused());
    }
    let mut active: user::ActiveModel = user.into();
    active.password_hash = Set(Some(hash));
    active.updated_at = Set(Utc::now());
    active.update(&txn).await?;
    txn.commit().await?;
    service::revoke_families(state, user_id, None, None).await?;
    Ok(())
}
