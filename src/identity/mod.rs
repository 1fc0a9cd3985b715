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
pub mod graphql;
pub mod http;
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
}

impl Identity {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            keys: tokens::AuthKeys::load(&config.identity, &config.data_dir)?,
            passwords: password::Passwords::new(&config.identity)?,
            verified: tokens::VerifiedCache::new(),
        })
    }
}
