//! Tables of access tokens (see migration m20261125_000005).

pub mod access_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "access_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub name: Option<String>,
        pub duration_hours: i32,
        pub price: i64,
        pub transfer_id: Option<Uuid>,
        /// Hex of the authority block's revocation id.
        pub revocation_id: String,
        pub key_id: i32,
        pub idempotency_key: Option<String>,
        pub request_hash: Option<String>,
        pub expires_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
        pub last_used_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
