//! Billing. `plans` are ours (Stripe gets one Product per plan and a Price under the lookup
//! key `tessera_plan_<id>`); `billing_customers` maps a user to a Stripe customer;
//! `billing_subscriptions` mirrors what Stripe's API said last about each subscription (it is
//! rewritten from the API, never from a webhook's payload). `stripe_events` is every verified
//! webhook by its unique event id with the raw JSON, and doubles as the job queue: a row with
//! no `processed_at` is work to do, claimed through `locked_until`. `payments` holds one row per
//! paid invoice (unique invoice id) with the allowance it credited for its period (a
//! period is named by its end: a renewal's line and an upgrade's proration lines share it);
//! `billing_mails` makes each mail go once per subscription, kind and period.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Plans {
    Table,
    Id,
    Name,
    Tier,
    Description,
    PriceCents,
    Currency,
    Interval,
    CoinAllowance,
    Active,
    StripeProductId,
    StripePriceId,
    StripePriceTerms,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BillingCustomers {
    Table,
    UserId,
    StripeCustomerId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum BillingSubscriptions {
    Table,
    Id,
    UserId,
    CustomerId,
    PlanId,
    PriceId,
    ItemId,
    Status,
    CurrentPeriodStart,
    CurrentPeriodEnd,
    CancelAtPeriodEnd,
    CanceledAt,
    EndedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    UserId,
    InvoiceId,
    SubscriptionId,
    PlanId,
    AmountCents,
    Currency,
    Status,
    HostedInvoiceUrl,
    BillingReason,
    PeriodEnd,
    Allowance,
    TransferId,
    PaidAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StripeEvents {
    Table,
    Id,
    Type,
    Payload,
    CustomerId,
    ReceivedAt,
    LockedUntil,
    Attempts,
    ProcessedAt,
    Error,
}

#[derive(DeriveIden)]
enum BillingMails {
    Table,
    SubscriptionId,
    Kind,
    Period,
    SentAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Plans::Table)
                    .if_not_exists()
                    .col(pk_uuid(Plans::Id))
                    .col(string_len(Plans::Name, 100))
                    .col(integer(Plans::Tier))
                    .col(string_len(Plans::Description, 1000))
                    .col(big_integer(Plans::PriceCents))
                    .col(string_len(Plans::Currency, 3))
                    .col(string_len(Plans::Interval, 8))
                    .col(big_integer(Plans::CoinAllowance))
                    .col(boolean(Plans::Active))
                    .col(string_len_null(Plans::StripeProductId, 255))
                    .col(string_len_null(Plans::StripePriceId, 255))
                    .col(string_len_null(Plans::StripePriceTerms, 64))
                    .col(timestamp_with_time_zone(Plans::CreatedAt))
                    .col(timestamp_with_time_zone(Plans::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BillingCustomers::Table)
                    .if_not_exists()
                    .col(uuid(BillingCustomers::UserId).primary_key())
                    .col(string_len_uniq(BillingCustomers::StripeCustomerId, 255))
                    .col(timestamp_with_time_zone(BillingCustomers::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_billing_customers_user")
                            .from(BillingCustomers::Table, BillingCustomers::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BillingSubscriptions::Table)
                    .if_not_exists()
                    .col(string_len(BillingSubscriptions::Id, 255).primary_key())
                    .col(uuid(BillingSubscriptions::UserId))
                    .col(string_len(BillingSubscriptions::CustomerId, 255))
                    .col(uuid_null(BillingSubscriptions::PlanId))
                    .col(string_len(BillingSubscriptions::PriceId, 255))
                    .col(string_len(BillingSubscriptions::ItemId, 255))
                    .col(string_len(BillingSubscriptions::Status, 32))
                    .col(timestamp_with_time_zone(
                        BillingSubscriptions::CurrentPeriodStart,
                    ))
                    .col(timestamp_with_time_zone(
                        BillingSubscriptions::CurrentPeriodEnd,
                    ))
                    .col(boolean(BillingSubscriptions::CancelAtPeriodEnd))
                    .col(timestamp_with_time_zone_null(
                        BillingSubscriptions::CanceledAt,
                    ))
                    .col(timestamp_with_time_zone_null(BillingSubscriptions::EndedAt))
                    .col(timestamp_with_time_zone(BillingSubscriptions::CreatedAt))
                    .col(timestamp_with_time_zone(BillingSubscriptions::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_billing_subscriptions_user")
                            .from(BillingSubscriptions::Table, BillingSubscriptions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_billing_subscriptions_user")
                    .table(BillingSubscriptions::Table)
                    .col(BillingSubscriptions::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_billing_subscriptions_period_end")
                    .table(BillingSubscriptions::Table)
                    .col(BillingSubscriptions::CurrentPeriodEnd)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .if_not_exists()
                    .col(pk_uuid(Payments::Id))
                    .col(uuid(Payments::UserId))
                    .col(string_len_uniq(Payments::InvoiceId, 255))
                    .col(string_len_null(Payments::SubscriptionId, 255))
                    .col(uuid_null(Payments::PlanId))
                    .col(big_integer(Payments::AmountCents))
                    .col(string_len(Payments::Currency, 3))
                    .col(string_len(Payments::Status, 32))
                    .col(string_len_null(Payments::HostedInvoiceUrl, 1000))
                    .col(string_len_null(Payments::BillingReason, 64))
                    .col(timestamp_with_time_zone_null(Payments::PeriodEnd))
                    .col(big_integer(Payments::Allowance))
                    .col(uuid_null(Payments::TransferId))
                    .col(timestamp_with_time_zone(Payments::PaidAt))
                    .col(timestamp_with_time_zone(Payments::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_payments_user")
                            .from(Payments::Table, Payments::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_payments_user")
                    .table(Payments::Table)
                    .col(Payments::UserId)
                    .col(Payments::PaidAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_payments_subscription_period")
                    .table(Payments::Table)
                    .col(Payments::SubscriptionId)
                    .col(Payments::PeriodEnd)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(StripeEvents::Table)
                    .if_not_exists()
                    .col(string_len(StripeEvents::Id, 255).primary_key())
                    .col(string_len(StripeEvents::Type, 100))
                    .col(text(StripeEvents::Payload))
                    .col(string_len_null(StripeEvents::CustomerId, 255))
                    .col(timestamp_with_time_zone(StripeEvents::ReceivedAt))
                    .col(timestamp_with_time_zone_null(StripeEvents::LockedUntil))
                    .col(integer(StripeEvents::Attempts))
                    .col(timestamp_with_time_zone_null(StripeEvents::ProcessedAt))
                    .col(string_len_null(StripeEvents::Error, 1000))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_stripe_events_pending")
                    .table(StripeEvents::Table)
                    .col(StripeEvents::ProcessedAt)
                    .col(StripeEvents::ReceivedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BillingMails::Table)
                    .if_not_exists()
                    .col(string_len(BillingMails::SubscriptionId, 255))
                    .col(string_len(BillingMails::Kind, 32))
                    .col(string_len(BillingMails::Period, 64))
                    .col(timestamp_with_time_zone(BillingMails::SentAt))
                    .primary_key(
                        Index::create()
                            .col(BillingMails::SubscriptionId)
                            .col(BillingMails::Kind)
                            .col(BillingMails::Period),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            BillingMails::Table.into_iden(),
            StripeEvents::Table.into_iden(),
            Payments::Table.into_iden(),
            BillingSubscriptions::Table.into_iden(),
            BillingCustomers::Table.into_iden(),
            Plans::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
