//! VPS sessions: products on sale, the workers that run sessions, the sessions themselves,
//! each session's checklist (current state, one row per step), the append-only event log
//! that live streams and `afterSeq` catch-up read, and the job queue workers pull from.
//!
//! - `vps_sessions.last_seq` is the seq of the session's newest event; an event row and the
//!   change it describes are written in one transaction, so `(session_id, seq)` has no gaps.
//! - `vps_sessions.idempotency_key` is scoped by user (`<user id>:<key>`).
//! - A session's coin reservations are wallet transfers whose `reference` is
//!   `vps_session:<id>`; `idx_transfers_reference` finds them.
//! - `workers.secret` is the HMAC key of the worker's signed requests (shown once).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum VpsProducts {
    Table,
    Id,
    Name,
    Description,
    Vcpu,
    MemoryMb,
    DiskGb,
    Region,
    PricePerHour,
    Active,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Workers {
    Table,
    Id,
    Name,
    KeyId,
    Secret,
    Capacity,
    Status,
    Reachable,
    LastHeartbeatAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum VpsSessions {
    Table,
    Id,
    UserId,
    ProductId,
    WorkerId,
    Status,
    Hours,
    PricePerHour,
    AmountPaid,
    AmountRefunded,
    IdempotencyKey,
    RequestHash,
    LastSeq,
    SshKey,
    Username,
    Password,
    Host,
    Port,
    FailureReason,
    CreatedAt,
    UpdatedAt,
    ProvisioningAt,
    RunningAt,
    EndsAt,
    EndedAt,
}

#[derive(DeriveIden)]
enum VpsChecklistItems {
    Table,
    SessionId,
    Key,
    Title,
    Position,
    Status,
    Message,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum VpsSessionEvents {
    Table,
    SessionId,
    Seq,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum VpsJobs {
    Table,
    Id,
    WorkerId,
    SessionId,
    Kind,
    CreatedAt,
    ClaimedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    Reference,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(VpsProducts::Table)
                    .if_not_exists()
                    .col(pk_uuid(VpsProducts::Id))
                    .col(string_len(VpsProducts::Name, 80))
                    .col(text(VpsProducts::Description))
                    .col(integer(VpsProducts::Vcpu))
                    .col(integer(VpsProducts::MemoryMb))
                    .col(integer(VpsProducts::DiskGb))
                    .col(string_len(VpsProducts::Region, 40))
                    .col(big_integer(VpsProducts::PricePerHour))
                    .col(boolean(VpsProducts::Active))
                    .col(timestamp_with_time_zone(VpsProducts::CreatedAt))
                    .col(timestamp_with_time_zone(VpsProducts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Workers::Table)
                    .if_not_exists()
                    .col(pk_uuid(Workers::Id))
                    .col(string_len_uniq(Workers::Name, 80))
                    .col(string_len_uniq(Workers::KeyId, 40))
                    .col(string_len(Workers::Secret, 128))
                    .col(integer(Workers::Capacity))
                    .col(string_len(Workers::Status, 16))
                    .col(boolean(Workers::Reachable))
                    .col(timestamp_with_time_zone_null(Workers::LastHeartbeatAt))
                    .col(timestamp_with_time_zone(Workers::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(VpsSessions::Table)
                    .if_not_exists()
                    .col(pk_uuid(VpsSessions::Id))
                    .col(uuid(VpsSessions::UserId))
                    .col(uuid(VpsSessions::ProductId))
                    .col(uuid_null(VpsSessions::WorkerId))
                    .col(string_len(VpsSessions::Status, 16))
                    .col(integer(VpsSessions::Hours))
                    .col(big_integer(VpsSessions::PricePerHour))
                    .col(big_integer(VpsSessions::AmountPaid))
                    .col(big_integer(VpsSessions::AmountRefunded))
                    .col(string_len_null(VpsSessions::IdempotencyKey, 200).unique_key())
                    .col(string_len_null(VpsSessions::RequestHash, 64))
                    .col(integer(VpsSessions::LastSeq))
                    .col(text_null(VpsSessions::SshKey))
                    .col(string_len(VpsSessions::Username, 32))
                    .col(string_len_null(VpsSessions::Password, 64))
                    .col(string_len_null(VpsSessions::Host, 255))
                    .col(integer_null(VpsSessions::Port))
                    .col(text_null(VpsSessions::FailureReason))
                    .col(timestamp_with_time_zone(VpsSessions::CreatedAt))
                    .col(timestamp_with_time_zone(VpsSessions::UpdatedAt))
                    .col(timestamp_with_time_zone_null(VpsSessions::ProvisioningAt))
                    .col(timestamp_with_time_zone_null(VpsSessions::RunningAt))
                    .col(timestamp_with_time_zone_null(VpsSessions::EndsAt))
                    .col(timestamp_with_time_zone_null(VpsSessions::EndedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_vps_sessions_user")
                            .from(VpsSessions::Table, VpsSessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_vps_sessions_product")
                            .from(VpsSessions::Table, VpsSessions::ProductId)
                            .to(VpsProducts::Table, VpsProducts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_vps_sessions_worker")
                            .from(VpsSessions::Table, VpsSessions::WorkerId)
                            .to(Workers::Table, Workers::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, first, second) in [
            (
                "idx_vps_sessions_user",
                VpsSessions::UserId,
                VpsSessions::Id,
            ),
            (
                "idx_vps_sessions_status",
                VpsSessions::Status,
                VpsSessions::CreatedAt,
            ),
            (
                "idx_vps_sessions_worker",
                VpsSessions::WorkerId,
                VpsSessions::Status,
            ),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(VpsSessions::Table)
                        .col(first)
                        .col(second)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(VpsChecklistItems::Table)
                    .if_not_exists()
                    .col(uuid(VpsChecklistItems::SessionId))
                    .col(string_len(VpsChecklistItems::Key, 40))
                    .col(string_len(VpsChecklistItems::Title, 80))
                    .col(integer(VpsChecklistItems::Position))
                    .col(string_len(VpsChecklistItems::Status, 16))
                    .col(text_null(VpsChecklistItems::Message))
                    .col(timestamp_with_time_zone_null(VpsChecklistItems::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(VpsChecklistItems::SessionId)
                            .col(VpsChecklistItems::Key),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_vps_checklist_session")
                            .from(VpsChecklistItems::Table, VpsChecklistItems::SessionId)
                            .to(VpsSessions::Table, VpsSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(VpsSessionEvents::Table)
                    .if_not_exists()
                    .col(uuid(VpsSessionEvents::SessionId))
                    .col(integer(VpsSessionEvents::Seq))
                    .col(json_binary(VpsSessionEvents::Payload))
                    .col(timestamp_with_time_zone(VpsSessionEvents::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(VpsSessionEvents::SessionId)
                            .col(VpsSessionEvents::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_vps_events_session")
                            .from(VpsSessionEvents::Table, VpsSessionEvents::SessionId)
                            .to(VpsSessions::Table, VpsSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(VpsJobs::Table)
                    .if_not_exists()
                    .col(pk_uuid(VpsJobs::Id))
                    .col(uuid(VpsJobs::WorkerId))
                    .col(uuid(VpsJobs::SessionId))
                    .col(string_len(VpsJobs::Kind, 16))
                    .col(timestamp_with_time_zone(VpsJobs::CreatedAt))
                    .col(timestamp_with_time_zone_null(VpsJobs::ClaimedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_vps_jobs_worker")
                            .from(VpsJobs::Table, VpsJobs::WorkerId)
                            .to(Workers::Table, Workers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_vps_jobs_session")
                            .from(VpsJobs::Table, VpsJobs::SessionId)
                            .to(VpsSessions::Table, VpsSessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_vps_jobs_worker")
                    .table(VpsJobs::Table)
                    .col(VpsJobs::WorkerId)
                    .col(VpsJobs::ClaimedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_transfers_reference")
                    .table(Transfers::Table)
                    .col(Transfers::Reference)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_transfers_reference")
                    .table(Transfers::Table)
                    .to_owned(),
            )
            .await?;
        for table in [
            VpsJobs::Table.into_iden(),
            VpsSessionEvents::Table.into_iden(),
            VpsChecklistItems::Table.into_iden(),
            VpsSessions::Table.into_iden(),
            Workers::Table.into_iden(),
            VpsProducts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
