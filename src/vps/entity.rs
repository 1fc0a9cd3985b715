//! Tables of VPS sessions (see migration m20261125_000006).

pub mod product {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "vps_products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub description: String,
        pub vcpu: i32,
        pub memory_mb: i32,
        pub disk_gb: i32,
        pub region: String,
        pub price_per_hour: i64,
        pub active: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod worker {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub key_id: String,
        /// The HMAC key of its requests. Never logged (no `Debug`).
        pub secret: String,
        pub capacity: i32,
        /// `online`, `draining` or `disabled`: what an admin set.
        pub status: String,
        /// False once it stayed silent past the heartbeat timeout.
        pub reachable: bool,
        pub last_heartbeat_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Worker")
                .field("id", &self.id)
                .field("name", &self.name)
                .field("key_id", &self.key_id)
                .field("status", &self.status)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod session {
    use sea_orm::entity::prelude::*;
    use serde::{Deserialize, Serialize};

    /// A session. Serialized (without its credentials) into every progress event.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
    #[sea_orm(table_name = "vps_sessions")]
    #[serde(rename_all = "camelCase")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub product_id: Uuid,
        pub worker_id: Option<Uuid>,
        pub status: String,
        /// Hours paid for, extensions included.
        pub hours: i32,
        pub price_per_hour: i64,
        /// Coins reserved or paid, extensions included.
        pub amount_paid: i64,
        /// Coins given back (unused whole hours, or everything when it never ran).
        pub amount_refunded: i64,
        #[serde(skip)]
        pub idempotency_key: Option<String>,
        #[serde(skip)]
        pub request_hash: Option<String>,
        pub last_seq: i32,
        #[serde(skip)]
        pub ssh_key: Option<String>,
        pub username: String,
        /// One-time password when no SSH key was given. Never logged, never in events.
        #[serde(skip)]
        pub password: Option<String>,
        pub host: Option<String>,
        pub port: Option<i32>,
        pub failure_reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub provisioning_at: Option<DateTimeUtc>,
        pub running_at: Option<DateTimeUtc>,
        pub ends_at: Option<DateTimeUtc>,
        pub ended_at: Option<DateTimeUtc>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("VpsSession")
                .field("id", &self.id)
                .field("user_id", &self.user_id)
                .field("status", &self.status)
                .field("last_seq", &self.last_seq)
                .finish_non_exhaustive()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod checklist_item {
    use sea_orm::entity::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
    #[sea_orm(table_name = "vps_checklist_items")]
    #[serde(rename_all = "camelCase")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        #[serde(skip)]
        pub session_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub title: String,
        pub position: i32,
        /// `pending`, `running`, `done` or `failed`.
        pub status: String,
        pub message: Option<String>,
        pub updated_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "vps_session_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i32,
        /// `{"session": …, "changedSteps": […]}`: the session after the change.
        pub payload: Json,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod job {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "vps_jobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub worker_id: Uuid,
        pub session_id: Uuid,
        /// `provision` or `teardown`.
        pub kind: String,
        pub created_at: DateTimeUtc,
        pub claimed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
