//! Rewarded ads. `ad_nonces` holds every nonce `prepareAdReward` issued (so an SSV callback
//! or a Monetag postback is honoured only for a nonce we gave out, to that user, even after
//! the kv store lost its state), with what its completion and postback said. `ad_rewards`
//! is one row per credit: the unique `nonce` and the unique network `event_id` are what make
//! a reward land once. `ad_daily_counts` is the authoritative per-day counter of each cap
//! scope (`user:<id>`, `device:<hash>`, `ip:<addr>`), bumped with `count < cap` in the
//! credit's transaction.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AdNonces {
    Table,
    Nonce,
    UserId,
    Provider,
    Placement,
    DeviceHash,
    Ip,
    IssuedAt,
    ExpiresAt,
    ClientCompletedAt,
    PostbackEvent,
    EstimatedPrice,
    PostbackAt,
    CreditedAt,
}

#[derive(DeriveIden)]
enum AdRewards {
    Table,
    Id,
    UserId,
    Nonce,
    Provider,
    Network,
    Placement,
    DeviceHash,
    Ip,
    EventId,
    Amount,
    TransferId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AdDailyCounts {
    Table,
    Scope,
    Day,
    Count,
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
                    .table(AdNonces::Table)
                    .if_not_exists()
                    .col(string_len(AdNonces::Nonce, 64).primary_key())
                    .col(uuid(AdNonces::UserId))
                    .col(string_len(AdNonces::Provider, 16))
                    .col(string_len(AdNonces::Placement, 32))
                    .col(string_len(AdNonces::DeviceHash, 64))
                    .col(string_len_null(AdNonces::Ip, 64))
                    .col(timestamp_with_time_zone(AdNonces::IssuedAt))
                    .col(timestamp_with_time_zone(AdNonces::ExpiresAt))
                    .col(timestamp_with_time_zone_null(AdNonces::ClientCompletedAt))
                    .col(string_len_null(AdNonces::PostbackEvent, 32))
                    .col(string_len_null(AdNonces::EstimatedPrice, 32))
                    .col(timestamp_with_time_zone_null(AdNonces::PostbackAt))
                    .col(timestamp_with_time_zone_null(AdNonces::CreditedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_ad_nonces_user")
                            .from(AdNonces::Table, AdNonces::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_ad_nonces_issued")
                    .table(AdNonces::Table)
                    .col(AdNonces::IssuedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdRewards::Table)
                    .if_not_exists()
                    .col(pk_uuid(AdRewards::Id))
                    .col(uuid(AdRewards::UserId))
                    .col(string_len_uniq(AdRewards::Nonce, 64))
                    .col(string_len(AdRewards::Provider, 16))
                    .col(string_len(AdRewards::Network, 32))
                    .col(string_len(AdRewards::Placement, 32))
                    .col(string_len(AdRewards::DeviceHash, 64))
                    .col(string_len_null(AdRewards::Ip, 64))
                    .col(string_len_null(AdRewards::EventId, 160).unique_key())
                    .col(big_integer(AdRewards::Amount))
                    .col(uuid(AdRewards::TransferId))
                    .col(timestamp_with_time_zone(AdRewards::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_ad_rewards_user")
                            .from(AdRewards::Table, AdRewards::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_ad_rewards_user")
                    .table(AdRewards::Table)
                    .col(AdRewards::UserId)
                    .col(AdRewards::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_ad_rewards_device")
                    .table(AdRewards::Table)
                    .col(AdRewards::DeviceHash)
                    .col(AdRewards::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_ad_rewards_created")
                    .table(AdRewards::Table)
                    .col(AdRewards::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AdDailyCounts::Table)
                    .if_not_exists()
                    .col(string_len(AdDailyCounts::Scope, 100))
                    .col(string_len(AdDailyCounts::Day, 10))
                    .col(integer(AdDailyCounts::Count))
                    .primary_key(
                        Index::create()
                            .col(AdDailyCounts::Scope)
                            .col(AdDailyCounts::Day),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AdDailyCounts::Table.into_iden(),
            AdRewards::Table.into_iden(),
            AdNonces::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
