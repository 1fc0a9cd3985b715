//! Identity: who is asking. Users, passwords, sessions and roles, and the guards every other
//! domain uses (`ctx.viewer()?`, `ctx.admin()?`).
//!
//! Invariants:
//! - A session is a refresh-token family. Its id (the family id) is what access tokens carry
//!   and what `logout`/`revokeSession` revoke; each refresh rotates the token inside the
//!   family, and presenting a rotated token revokes the whole family (reuse detection).
//! - Access tokens are checked without the database: signature and expiry offline, then the
//!   family's revocation marker in kv, which logout, role changes and disabling write at once.
//! - Secrets are stored only as HMACs (refresh tokens) or argon2id hashes (passwords), and
//!   never logged.

pub mod auth;
pub mod codes;
pub mod config;
pub mod entity;
pub mod external;
pub mod graphql;
pub mod http;
pub mod oauth;
pub mod password;
pub mod service;
pub mod tokens;

use crate::config::Config;

/// A user's role.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The identity domain's long-lived parts, shared through `AppState`.
pub struct Identity {
    pub keys: tokens::AuthKeys,
    pub passwords: password::Passwords,
    pub verified: tokens::VerifiedCache,
    pub providers: oauth::Providers,
    /// Sessions used since the last flush of `sessions.last_used_at`.
    touched: std::sync::Mutex<std::collections::HashSet<uuid::Uuid>>,
}

impl Identity {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            keys: tokens::AuthKeys::load(&config.identity, &config.data_dir)?,
            passwords: password::Passwords::new(&config.identity)?,
            verified: tokens::VerifiedCache::new(),
            providers: oauth::Providers::new(&config.identity)?,
            touched: Default::default(),
        })
    }

    /// Notes that a session was used; [`flush_last_used`] writes it down later, so the hot
    /// path never writes to the database.
    pub fn touch(&self, session: uuid::Uuid) {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: past this many distinct sessions per interval the rest wait for the next.
        if touched.len() < 100_000 {
            touched.insert(session);
        }
    }

    fn take_touched(&self) -> Vec<uuid::Uuid> {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        touched.drain().collect()
    }
}

/// Writes `last_used_at` for the sessions used since the last call.
pub async fn flush_last_used(state: &crate::app::AppState) -> Result<u64, sea_orm::DbErr> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let families = state.identity.take_touched();
    let mut updated = 0;
    for chunk in families.chunks(500) {
        let result = entity::session::Entity::update_many()
            .col_expr(
                entity::session::Column::LastUsedAt,
                Expr::value(chrono::Utc::now()),
            )
            .filter(entity::session::Column::FamilyId.is_in(chunk.to_vec()))
            .filter(entity::session::Column::RevokedAt.is_null())
            .exec(state.db.conn())
            .await?;
        updated += result.rows_affected;
    }
    Ok(updated)
}

/// Flushes `last_used_at` every SESSION_TOUCH_INTERVAL, and once more at shutdown.
pub async fn run_last_used_flusher(state: crate::app::AppState) {
    let period = state.config.identity.session_touch_interval.0;
    crate::platform::every(&state.shutdown, period, true, || async {
        if let Err(e) = flush_last_used(&state).await {
            tracing::warn!(error = %e, "could not record session use");
        }
    })
    .await;
}
