//! Access tokens: biscuits bought with coins that open the reverse proxy. The token itself
//! is never stored; its authority block's revocation id is (unique), so any token or
//! attenuation of it can be traced to its row and refused once the row is revoked.
//! `idempotency_key` is scoped by user (`<user id>:<key>`), `request_hash` tells a retry
//! from a different purchase under the same key.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    Id,
    UserId,
    Name,
    DurationHours,
    Price,
    TransferId,
    RevocationId,
    KeyId,
    IdempotencyKey,
    RequestHash,
    ExpiresAt,
    RevokedAt,
    LastUsedAt,
    CreatedAt,
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
                    .table(AccessTokens::Table)
                    .if_not_exists()
                    .col(pk_uuid(AccessTokens::Id))
                    .col(uuid(AccessTokens::UserId))
                    .col(string_len_null(AccessTokens::Name, 64))
                    .col(integer(AccessTokens::DurationHours))
                    .col(big_integer(AccessTokens::Price))
                    .col(uuid_null(AccessTokens::TransferId))
                    .col(string_len_uniq(AccessTokens::RevocationId, 128))
                    .col(integer(AccessTokens::KeyId))
                    .col(string_len_null(AccessTokens::IdempotencyKey, 200).unique_key())
                    .col(string_len_null(AccessTokens::RequestHash, 64))
                    .col(timestamp_with_time_zone(AccessTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(AccessTokens::RevokedAt))
                    .col(timestamp_with_time_zone_null(AccessTokens::LastUsedAt))
                    .col(timestamp_with_time_zone(AccessTokens::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_access_tokens_user")
                            .from(AccessTokens::Table, AccessTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_access_tokens_user")
                    .table(AccessTokens::Table)
                    .col(AccessTokens::UserId)
                    .col(AccessTokens::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AccessTokens::Table).to_owned())
            .await
    }
}
