//! Accounts behind external identities: first sign-in provisions a user, later ones refresh
//! the profile, a signed-in user links another provider, and `unlinkIdentity` removes one
//! unless it is the last way in.
//!
//! Merging rule: a provider's address joins an existing account only when the provider has
//! verified it. If that account's own address was never verified, whoever registered it did
//! not prove they own it, so the merge also removes its password and ends its sessions (an
//! account created in advance by someone else must not stay open to them).

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use super::{
    Role,
    auth::Viewer,
    entity::{identity, user},
    oauth::{AuthProviderKind, ExternalProfile},
    service::{
        self, IdentityError, IssuedSession, Result, check_username, free_username, now, role_for,
    },
};
use crate::{
    app::AppState,
    graphql::RequestMeta,
    platform::audit::{self, AuditEntry},
};

/// Why the provider flow was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Purpose {
    /// Sign in (or sign up).
    Login,
    /// Attach the provider account to this signed-in user.
    Link { user_id: Uuid },
}

/// What a completed provider flow did.
#[derive(Debug)]
pub enum Outcome {
    SignedIn(IssuedSession),
    Linked(user::Model),
}

fn conflict(reason: &'static str, message: impl Into<String>) -> IdentityError {
    IdentityError::Conflict {
        reason,
        message: message.into(),
    }
}

fn identity_row(user_id: Uuid, profile: &ExternalProfile) -> identity::ActiveModel {
    let now = now();
    identity::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        provider: Set(profile.kind.slug().to_owned()),
        subject: Set(profile.subject.clone()),
        email: Set(profile.email.clone()),
        email_verified: Set(profile.email_verified),
        username: Set(profile.username.clone()),
        last_login_at: Set(now),
        created_at: Set(now),
    }
}

/// The provider's address, when it vouches for it.
fn verified_email(profile: &ExternalProfile) -> Option<String> {
    profile
        .email
        .as_deref()
        .filter(|_| profile.email_verified)
        .and_then(|e| service::normalize_email(e).ok())
}

async fn user_by_email(
    conn: &impl sea_orm::ConnectionTrait,
    email: &str,
) -> Result<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(conn)
        .await?)
}

/// Completes a provider flow for `purpose`.
#[tracing::instrument(skip_all, fields(provider = profile.kind.slug()), err(Display))]
pub async fn complete(
    state: &AppState,
    profile: &ExternalProfile,
    purpose: Purpose,
    meta: &RequestMeta,
) -> Result<Outcome> {
    let txn = state.db.begin_write().await?;
    let existing = identity::Entity::find()
        .filter(identity::Column::Provider.eq(profile.kind.slug()))
        .filter(identity::Column::Subject.eq(profile.subject.as_str()))
        .one(&txn)
        .await?;
    let label = profile.kind.label();
    let mut ended_sessions_of = None;
    let mut ended_families = Vec::new();
    let user = match (existing, purpose) {
        (Some(found), Purpose::Link { user_id }) => {
            if found.user_id != user_id {
                return Err(conflict(
                    "identity_in_use",
                    format!("this {label} account is already linked to another account"),
                ));
            }
            refresh_identity(&txn, found, profile).await?;
            find_active(&txn, user_id).await?
        }
        (None, Purpose::Link { user_id }) => {
            let user = find_active(&txn, user_id).await?;
            link_new(&txn, &user, profile).await?;
            audit::record(
                &txn,
                AuditEntry::by(user.id, "identity.link", meta)
                    .on("user", user.id)
                    .details(serde_json::json!({ "provider": profile.kind.slug() })),
            )
            .await?;
            user
        }
        (Some(found), Purpose::Login) => {
            let user = find_active(&txn, found.user_id).await?;
            let previous = found.email.clone();
            refresh_identity(&txn, found, profile).await?;
            refresh_profile(state, &txn, user, profile, previous.as_deref()).await?
        }
        (None, Purpose::Login) => {
            let email = verified_email(profile);
            let owner = match &email {
                Some(email) => user_by_email(&txn, email).await?,
                None => None,
            };
            match owner {
                Some(owner) => {
                    if owner.disabled_at.is_some() {
                        return Err(IdentityError::Disabled);
                    }
                    let mut active: user::ActiveModel = owner.clone().into();
                    if owner.email_verified_at.is_none() {
                        // Whoever registered the address never proved it: nothing they set
                        // up stays (password, other sign-in methods, sessions, tokens).
                        active.email_verified_at = Set(Some(now()));
                        active.password_hash = Set(None);
                        identity::Entity::delete_many()
                            .filter(identity::Column::UserId.eq(owner.id))
                            .exec(&txn)
                            .await?;
                        ended_families = end_sessions_in(&txn, owner.id).await?;
                        ended_sessions_of = Some(owner.id);
                    }
                    link_new(&txn, &owner, profile).await?;
                    active.updated_at = Set(now());
                    let owner = active.update(&txn).await?;
                    audit::record(
                        &txn,
                        AuditEntry::by(owner.id, "identity.link", meta)
                            .on("user", owner.id)
                            .details(serde_json::json!({
                                "provider": profile.kind.slug(),
                                "by_verified_email": true,
                                "unverified_account_claimed": ended_sessions_of.is_some(),
                            })),
                    )
                    .await?;
                    refresh_profile(state, &txn, owner, profile, None).await?
                }
                None => provision(state, &txn, profile, email).await?,
            }
        }
    };
    let outcome = match purpose {
        Purpose::Login => Outcome::SignedIn(service::issue_in(state, &txn, user, meta).await?),
        Purpose::Link { .. } => Outcome::Linked(user),
    };
    txn.commit().await?;
    if let Some(user_id) = ended_sessions_of {
        // Their sessions are already ended in the database; now at once everywhere.
        if let Err(e) = super::auth::mark_revoked(state, &ended_families).await {
            tracing::warn!(error = %e, "could not broadcast ended sessions");
        }
        if let Err(e) = crate::access::service::revoke_all_for_user(state, user_id).await {
            tracing::error!(error = %e, "could not revoke a claimed account's access tokens");
        }
    }
    Ok(outcome)
}

/// Ends every session of `user_id` in the database (inside the caller's transaction) and
/// returns their families, for the kv markers after commit.
async fn end_sessions_in(conn: &impl sea_orm::ConnectionTrait, user_id: Uuid) -> Result<Vec<Uuid>> {
    use super::entity::session;
    let families: Vec<Uuid> = session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .all(conn)
        .await?
        .into_iter()
        .map(|s| s.family_id)
        .collect();
    session::Entity::update_many()
        .col_expr(
            session::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(families)
}

async fn find_active(conn: &impl sea_orm::ConnectionTrait, user_id: Uuid) -> Result<user::Model> {
    let user = user::Entity::find_by_id(user_id)
        .one(conn)
        .await?
        .ok_or(IdentityError::NotFound("user"))?;
    if user.disabled_at.is_some() {
        return Err(IdentityError::Disabled);
    }
    Ok(user)
}

async fn link_new(
    conn: &impl sea_orm::ConnectionTrait,
    user: &user::Model,
    profile: &ExternalProfile,
) -> Result<()> {
    let already = identity::Entity::find()
        .filter(identity::Column::UserId.eq(user.id))
        .filter(identity::Column::Provider.eq(profile.kind.slug()))
        .one(conn)
        .await?;
    if already.is_some() {
        return Err(conflict(
            "provider_already_linked",
            format!(
                "this account already has a {} account linked; unlink it first",
                profile.kind.label()
            ),
        ));
    }
    identity_row(user.id, profile).insert(conn).await?;
    Ok(())
}

async fn refresh_identity(
    conn: &impl sea_orm::ConnectionTrait,
    found: identity::Model,
    profile: &ExternalProfile,
) -> Result<()> {
    let mut active: identity::ActiveModel = found.into();
    active.email = Set(profile.email.clone());
    active.email_verified = Set(profile.email_verified);
    active.username = Set(profile.username.clone());
    active.last_login_at = Set(now());
    active.update(conn).await?;
    Ok(())
}

/// Takes the provider's current address, username, display name and avatar, each only when
/// it fits (a verified address nobody else has, that replaces one the provider gave; a
/// valid username nobody else has).
async fn refresh_profile(
    state: &AppState,
    conn: &impl sea_orm::ConnectionTrait,
    user: user::Model,
    profile: &ExternalProfile,
    previous_provider_email: Option<&str>,
) -> Result<user::Model> {
    let mut active: user::ActiveModel = user.clone().into();
    let mut changed = false;
    // The address follows the provider only where it came from the provider (or there is
    // none): an address the user set themselves is not replaced behind their back.
    let follows_provider = user.email.is_none() || user.email.as_deref() == previous_provider_email;
    if let Some(email) = verified_email(profile)
        && follows_provider
        && user.email.as_deref() != Some(email.as_str())
        && user_by_email(conn, &email).await?.is_none()
    {
        active.email = Set(Some(email));
        active.email_verified_at = Set(Some(now()));
        changed = true;
    }
    if let Some(username) = profile
        .username
        .as_deref()
        .and_then(|u| check_username(u).ok())
        && username != user.username
    {
        let taken = user::Entity::find()
            .filter(user::Column::UsernameKey.eq(username.to_lowercase()))
            .filter(user::Column::Id.ne(user.id))
            .count(conn)
            .await?
            > 0;
        if !taken {
            active.username_key = Set(username.to_lowercase());
            active.username = Set(username);
            changed = true;
        }
    }
    if profile.display_name.is_some() && profile.display_name != user.display_name {
        active.display_name = Set(profile.display_name.clone());
        changed = true;
    }
    if profile.avatar_url.is_some() && profile.avatar_url != user.avatar_url {
        active.avatar_url = Set(profile.avatar_url.clone());
        changed = true;
    }
    let current = Role::parse(&user.role).unwrap_or(Role::User);
    let email_now = match &active.email {
        sea_orm::ActiveValue::Set(e) | sea_orm::ActiveValue::Unchanged(e) => e.clone(),
        sea_orm::ActiveValue::NotSet => user.email.clone(),
    };
    let role = role_for(state, email_now.as_deref(), current);
    if role != current {
        active.role = Set(role.as_str().to_owned());
        changed = true;
    }
    if !changed {
        return Ok(user);
    }
    active.updated_at = Set(now());
    Ok(active.update(conn).await?)
}

/// A new account for a first sign-in. Without a verified address the account has none: the
/// provider's unverified address is kept on the identity only.
async fn provision(
    state: &AppState,
    conn: &impl sea_orm::ConnectionTrait,
    profile: &ExternalProfile,
    email: Option<String>,
) -> Result<user::Model> {
    let seed = profile
        .username
        .clone()
        .or_else(|| email.clone())
        .unwrap_or_else(|| "user".to_owned());
    let username = free_username(conn, &seed).await?;
    let role = role_for(state, email.as_deref(), Role::User);
    let now = now();
    let user = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email.clone()),
        email_verified_at: Set(email.as_ref().map(|_| now)),
        username_key: Set(username.to_lowercase()),
        username: Set(username),
        display_name: Set(profile.display_name.clone()),
        avatar_url: Set(profile.avatar_url.clone()),
        role: Set(role.as_str().to_owned()),
        password_hash: Set(None),
        disabled_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(conn)
    .await?;
    identity_row(user.id, profile).insert(conn).await?;
    crate::wallet::service::open_user_account(conn, user.id).await?;
    tracing::info!(user.id = %user.id, "account created by external sign-in");
    Ok(user)
}

/// The user's linked identities, oldest first.
pub async fn identities_of(state: &AppState, user_id: Uuid) -> Result<Vec<identity::Model>> {
    Ok(identity::Entity::find()
        .filter(identity::Column::UserId.eq(user_id))
        .order_by_asc(identity::Column::CreatedAt)
        .all(state.db.conn())
        .await?)
}

/// Removes the viewer's identity at `kind`, refusing when nothing else could sign them in
/// (a password, an address for mailed codes, or another identity).
pub async fn unlink(
    state: &AppState,
    viewer: &Viewer,
    kind: AuthProviderKind,
    meta: &RequestMeta,
) -> Result<user::Model> {
    let txn = state.db.begin_write().await?;
    // Lock the user's row so two unlinks cannot each count the other's identity.
    user::Entity::update_many()
        .col_expr(
            user::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(user::Column::Id.eq(viewer.user_id))
        .exec(&txn)
        .await?;
    let user = find_active(&txn, viewer.user_id).await?;
    let found = identity::Entity::find()
        .filter(identity::Column::UserId.eq(user.id))
        .filter(identity::Column::Provider.eq(kind.slug()))
        .one(&txn)
        .await?
        .ok_or(IdentityError::NotFound("linked identity"))?;
    let others = identity::Entity::find()
        .filter(identity::Column::UserId.eq(user.id))
        .filter(identity::Column::Id.ne(found.id))
        .count(&txn)
        .await?;
    if user.password_hash.is_none() && user.email.is_none() && others == 0 {
        return Err(conflict(
            "last_sign_in_method",
            format!(
                "{} is your only way to sign in; link another provider first",
                kind.label()
            ),
        ));
    }
    identity::Entity::delete_by_id(found.id).exec(&txn).await?;
    audit::record(
        &txn,
        AuditEntry::by(user.id, "identity.unlink", meta)
            .on("user", user.id)
            .details(serde_json::json!({ "provider": kind.slug() })),
    )
    .await?;
    txn.commit().await?;
    Ok(user)
}
