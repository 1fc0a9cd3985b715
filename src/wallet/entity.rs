//! Tables of the wallet (see migration m20261125_000004).

pub mod account {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub user_id: Option<Uuid>,
        pub asset: String,
        pub kind: String,
        /// Posted.
        pub balance: i64,
        /// Reserved by pending transfers out of this account.
        pub pending_debits: i64,
        /// Reserved by pending transfers into this account.
        pub pending_credits: i64,
        pub allow_negative: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod transfer {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "transfers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub debit_account_id: Uuid,
        pub credit_account_id: Uuid,
        pub asset: String,
        pub amount: i64,
        pub kind: String,
        /// `single`, `pending` or `post`.
        pub phase: String,
        /// `posted`, `pending`, `voided` or `expired`.
        pub status: String,
        pub pending_id: Option<Uuid>,
        pub refund_of: Option<Uuid>,
        pub timeout_at: Option<DateTimeUtc>,
        pub resolved_at: Option<DateTimeUtc>,
        pub reference: Option<String>,
        pub idempotency_key: Option<String>,
        pub request_hash: Option<String>,
        pub metadata: Json,
        pub debit_balance_after: i64,
        pub credit_balance_after: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
