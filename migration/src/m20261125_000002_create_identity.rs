//! Identity: users, their external sign-in identities, sessions (refresh-token families) and
//! one-time codes (email verification, password reset, sign-in codes).
//!
//! Secrets are never stored: sessions keep an HMAC of the refresh token, codes an HMAC of
//! the code bound to its email and purpose (six digits alone would collide between users,
//! so codes are looked up by email and purpose, never by hash). Emails are stored lowercased; `username_key` is the lowercased username so
//! that two users never differ by case alone.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    EmailVerifiedAt,
    Username,
    UsernameKey,
    DisplayName,
    AvatarUrl,
    Role,
    PasswordHash,
    DisabledAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Identities {
    Table,
    Id,
    UserId,
    Provider,
    Subject,
    Email,
    EmailVerified,
    LastLoginAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    FamilyId,
    RefreshHash,
    UserAgent,
    Ip,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    RevokedAt,
    ReplacedBy,
}

#[derive(DeriveIden)]
enum OneTimeCodes {
    Table,
    Id,
    UserId,
    Email,
    Purpose,
    CodeHash,
    ExpiresAt,
    Attempts,
    ConsumedAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(pk_uuid(Users::Id))
                    .col(string_len_null(Users::Email, 254).unique_key())
                    .col(timestamp_with_time_zone_null(Users::EmailVerifiedAt))
                    .col(string_len(Users::Username, 32))
                    .col(string_len_uniq(Users::UsernameKey, 32))
                    .col(string_len_null(Users::DisplayName, 64))
                    .col(string_len_null(Users::AvatarUrl, 512))
                    .col(string_len(Users::Role, 16).default("user"))
                    .col(string_len_null(Users::PasswordHash, 255))
                    .col(timestamp_with_time_zone_null(Users::DisabledAt))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Identities::Table)
                    .if_not_exists()
                    .col(pk_uuid(Identities::Id))
                    .col(uuid(Identities::UserId))
                    .col(string_len(Identities::Provider, 32))
                    .col(string_len(Identities::Subject, 255))
                    .col(string_len_null(Identities::Email, 254))
                    .col(boolean(Identities::EmailVerified).default(false))
                    .col(timestamp_with_time_zone(Identities::LastLoginAt))
                    .col(timestamp_with_time_zone(Identities::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_identities_user")
                            .from(Identities::Table, Identities::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_identities_provider_subject")
                    .table(Identities::Table)
                    .col(Identities::Provider)
                    .col(Identities::Subject)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_identities_user")
                    .table(Identities::Table)
                    .col(Identities::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(pk_uuid(Sessions::Id))
                    .col(uuid(Sessions::UserId))
                    .col(uuid(Sessions::FamilyId))
                    .col(string_len_uniq(Sessions::RefreshHash, 64))
                    .col(string_len_null(Sessions::UserAgent, 255))
                    .col(string_len_null(Sessions::Ip, 64))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .col(timestamp_with_time_zone(Sessions::LastUsedAt))
                    .col(timestamp_with_time_zone(Sessions::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Sessions::RevokedAt))
                    .col(uuid_null(Sessions::ReplacedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_user")
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_sessions_user", Sessions::UserId),
            ("idx_sessions_family", Sessions::FamilyId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Sessions::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(OneTimeCodes::Table)
                    .if_not_exists()
                    .col(pk_uuid(OneTimeCodes::Id))
                    .col(uuid_null(OneTimeCodes::UserId))
                    .col(string_len(OneTimeCodes::Email, 254))
                    .col(string_len(OneTimeCodes::Purpose, 32))
                    .col(string_len(OneTimeCodes::CodeHash, 64))
                    .col(timestamp_with_time_zone(OneTimeCodes::ExpiresAt))
                    .col(integer(OneTimeCodes::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(OneTimeCodes::ConsumedAt))
                    .col(timestamp_with_time_zone(OneTimeCodes::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_one_time_codes_user")
                            .from(OneTimeCodes::Table, OneTimeCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_one_time_codes_email_purpose")
                    .table(OneTimeCodes::Table)
                    .col(OneTimeCodes::Email)
                    .col(OneTimeCodes::Purpose)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_one_time_codes_hash")
                    .table(OneTimeCodes::Table)
                    .col(OneTimeCodes::CodeHash)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OneTimeCodes::Table.into_iden(),
            Sessions::Table.into_iden(),
            Identities::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
