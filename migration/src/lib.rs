//! Schema migrations, one file per change, written with sea-query so each runs on SQLite and
//! PostgreSQL alike. A migration that has landed is never edited: change the schema with a new one.
//!
//! Column conventions: ids are UUIDs, times are `timestamp with time zone` (`DateTimeUtc`;
//! text on SQLite, compared only through bound parameters), JSON is `json_binary` (jsonb on
//! PostgreSQL, text on SQLite).

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_audit_log;
mod m20261125_000002_create_identity;
mod m20261125_000003_identity_profiles;
mod m20261125_000004_create_wallet;
mod m20261125_000005_create_access_tokens;
mod m20261125_000006_create_vps;
mod m20261126_000007_create_ads;
mod m20261126_000008_create_billing;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_audit_log::Migration),
            Box::new(m20261125_000002_create_identity::Migration),
            Box::new(m20261125_000003_identity_profiles::Migration),
            Box::new(m20261125_000004_create_wallet::Migration),
            Box::new(m20261125_000005_create_access_tokens::Migration),
            Box::new(m20261125_000006_create_vps::Migration),
            Box::new(m20261126_000007_create_ads::Migration),
            Box::new(m20261126_000008_create_billing::Migration),
        ]
    }
}
