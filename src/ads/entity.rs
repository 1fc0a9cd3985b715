//! Tables of rewarded ads (see migration m20261126_000007).

pub mod ad_nonce {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ad_nonces")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub nonce: String,
        pub user_id: Uuid,
        pub provider: String,
        pub placement: String,
        pub device_hash: String,
        pub ip: Option<String>,
        pub issued_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        /// When the client's completion passed every check (Monetag).
        pub client_completed_at: Option<DateTimeUtc>,
        /// The first Monetag postback's event (`valued`, `not_valued`, …).
        pub postback_event: Option<String>,
        pub estimated_price: Option<String>,
        pub postback_at: Option<DateTimeUtc>,
        pub credited_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// Who the nonce was issued to: read with it when a callback arrives.
        #[sea_orm(
            belongs_to = "crate::identity::entity::user::Entity",
            from = "Column::UserId",
            to = "crate::identity::entity::user::Column::Id"
        )]
        User,
    }

    impl Related<crate::identity::entity::user::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::User.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ad_reward {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ad_rewards")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub nonce: String,
        pub provider: String,
        pub network: String,
        pub placement: String,
        pub device_hash: String,
        pub ip: Option<String>,
        /// The network's id of the event (`gma:<transaction_id>`, `ssv:<eventId>`).
        pub event_id: Option<String>,
        pub amount: i64,
        pub transfer_id: Uuid,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ad_daily_count {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ad_daily_counts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: String,
        pub count: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
