//! The audit log: one append-only row per privileged action. Written in the caller's
//! transaction, so an action and its audit row are committed together or not at all.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait, QueryOrder, QuerySelect};
use uuid::Uuid;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub actor_id: Option<Uuid>,
        pub action: String,
        pub target_type: Option<String>,
        pub target_id: Option<String>,
        pub details: Json,
        pub ip: Option<String>,
        pub request_id: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What happened, by whom, to what.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    pub actor_id: Option<Uuid>,
    pub action: &'static str,
    pub target_type: Option<&'static str>,
    pub target_id: Option<String>,
    /// Never secrets: no tokens, passwords or codes.
    pub details: serde_json::Value,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl AuditEntry {
    /// An action by `actor` during the request `meta` describes.
    pub fn by(actor: Uuid, action: &'static str, meta: &crate::graphql::RequestMeta) -> Self {
        Self {
            actor_id: Some(actor),
            action,
            ip: meta.client_ip.map(|ip| ip.to_string()),
            request_id: Some(meta.request_id.clone()),
            ..Default::default()
        }
    }

    /// The object acted on.
    pub fn on(mut self, target_type: &'static str, target_id: impl ToString) -> Self {
        self.target_type = Some(target_type);
        self.target_id = Some(target_id.to_string());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Appends `entry` through `conn` (pass the transaction of the action it records).
pub async fn record(conn: &impl ConnectionTrait, entry: AuditEntry) -> Result<Uuid, DbErr> {
    let id = Uuid::now_v7();
    let now: DateTime<Utc> = Utc::now();
    let row = entity::ActiveModel {
        id: Set(id),
        actor_id: Set(entry.actor_id),
        action: Set(entry.action.to_owned()),
        target_type: Set(entry.target_type.map(str::to_owned)),
        target_id: Set(entry.target_id),
        details: Set(if entry.details.is_null() {
            serde_json::json!({})
        } else {
            entry.details
        }),
        ip: Set(entry.ip),
        request_id: Set(entry.request_id),
        created_at: Set(now),
    };
    entity::Entity::insert(row).exec(conn).await?;
    Ok(id)
}

/// The newest entries first, for the admin view and tests.
pub async fn recent(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<entity::Model>, DbErr> {
    entity::Entity::find()
        .order_by_desc(entity::Column::CreatedAt)
        .limit(limit)
        .all(conn)
        .await
}
