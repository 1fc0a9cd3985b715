//! Tessera: a GraphQL API server for a coin economy.
//!
//! The binary (`src/main.rs`) is a thin CLI over this library; the integration tests boot
//! the same [`app::Application`] on an ephemeral port. See ARCHITECTURE.md for the map.

#![forbid(unsafe_code)]

pub mod access;
pub mod ads;
pub mod app;
pub mod billing;
pub mod cli;
pub mod config;
pub mod graphql;
pub mod identity;
pub mod platform;
pub mod vps;
pub mod wallet;

pub use app::{AppState, Application};
pub use config::Config;
