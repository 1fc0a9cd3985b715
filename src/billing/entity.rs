//! Tables of billing (see migration m20261126_000008).

pub mod plan {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plans")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        /// Orders plans: a higher tier is an upgrade.
        pub tier: i32,
        pub description: String,
        pub price_cents: i64,
        /// ISO 4217, lower case as Stripe writes it.
        pub currency: String,
        /// `month` or `year`.
        pub interval: String,
        pub coin_allowance: i64,
        pub active: bool,
        pub stripe_product_id: Option<String>,
        /// The Price that currently sells this plan (under the plan's lookup key).
        pub stripe_price_id: Option<String>,
        /// `<cents>:<currency>:<interval>` of that Price (a change of any needs a new one).
        pub stripe_price_terms: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod customer {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_customers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub stripe_customer_id: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod subscription {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_subscriptions")]
    pub struct Model {
        /// Stripe's subscription id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: Uuid,
        pub customer_id: String,
        /// The plan whose Price the subscription's item has (none for a Price we do not know).
        pub plan_id: Option<Uuid>,
        pub price_id: String,
        /// The subscription item that carries the price (a plan change names it).
        pub item_id: String,
        /// Stripe's status, as it writes it (`active`, `past_due`, …).
        pub status: String,
        pub current_period_start: DateTimeUtc,
        pub current_period_end: DateTimeUtc,
        pub cancel_at_period_end: bool,
        pub canceled_at: Option<DateTimeUtc>,
        pub ended_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod payment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub invoice_id: String,
        pub subscription_id: Option<String>,
        pub plan_id: Option<Uuid>,
        pub amount_cents: i64,
        pub currency: String,
        pub status: String,
        pub hosted_invoice_url: Option<String>,
        pub billing_reason: Option<String>,
        /// End of the subscription period the invoice paid for: a renewal's line and an
        /// upgrade's proration lines within one period share it.
        pub period_end: Option<DateTimeUtc>,
        /// Coins this payment credited (the plan's allowance, or what an upgrade added).
        pub allowance: i64,
        pub transfer_id: Option<Uuid>,
        pub paid_at: DateTimeUtc,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod stripe_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stripe_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(column_name = "type")]
        pub kind: String,
        /// The body exactly as Stripe sent it.
        pub payload: String,
        pub customer_id: Option<String>,
        pub received_at: DateTimeUtc,
        /// A processor holds the event until then.
        pub locked_until: Option<DateTimeUtc>,
        pub attempts: i32,
        pub processed_at: Option<DateTimeUtc>,
        pub error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod mail {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "billing_mails")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub subscription_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub period: String,
        pub sent_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
