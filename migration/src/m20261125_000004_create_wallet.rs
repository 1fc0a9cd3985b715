//! Wallet: a double-entry ledger. `accounts` hold one asset each and keep their balances;
//! `transfers` move an amount from a debit account to a credit account of the same asset.
//! Balances change only in the database transaction that inserts the transfer.
//!
//! - `balance` is what has been posted; `pending_debits` / `pending_credits` are reserved by
//!   two-phase transfers not yet posted or voided, so `available = balance - pending_debits`.
//! - A user account never goes below zero available (the CHECK is the backstop; the service
//!   refuses first). System accounts (`allow_negative`) may: their negative balance is the
//!   coins they issued.
//! - `transfers.phase`: `single` (moves at once), `pending` (reserves; `status` becomes
//!   `posted`, `voided` or `expired`), `post` (moves what a pending transfer reserved, all
//!   or part; `pending_id` names it, at most one post per pending).
//! - `idempotency_key` is unique: the same key never moves twice. `request_hash` tells a
//!   replay from a different request under the same key. `refund_of` is unique: a transfer
//!   is refunded at most once.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Name,
    UserId,
    Asset,
    Kind,
    Balance,
    PendingDebits,
    PendingCredits,
    AllowNegative,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    Id,
    DebitAccountId,
    CreditAccountId,
    Asset,
    Amount,
    Kind,
    Phase,
    Status,
    PendingId,
    RefundOf,
    TimeoutAt,
    ResolvedAt,
    Reference,
    IdempotencyKey,
    RequestHash,
    Metadata,
    DebitBalanceAfter,
    CreditBalanceAfter,
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
                    .table(Accounts::Table)
                    .if_not_exists()
                    .col(pk_uuid(Accounts::Id))
                    .col(string_len_uniq(Accounts::Name, 64))
                    .col(uuid_null(Accounts::UserId))
                    .col(string_len(Accounts::Asset, 16))
                    .col(string_len(Accounts::Kind, 16))
                    .col(big_integer(Accounts::Balance).default(0))
                    .col(big_integer(Accounts::PendingDebits).default(0))
                    .col(big_integer(Accounts::PendingCredits).default(0))
                    .col(boolean(Accounts::AllowNegative).default(false))
                    .col(timestamp_with_time_zone(Accounts::CreatedAt))
                    .col(timestamp_with_time_zone(Accounts::UpdatedAt))
                    .check((
                        "ck_accounts_available",
                        Expr::cust("allow_negative OR balance - pending_debits >= 0"),
                    ))
                    .check((
                        "ck_accounts_pending",
                        Expr::cust("pending_debits >= 0 AND pending_credits >= 0"),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_accounts_user")
                            .from(Accounts::Table, Accounts::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_accounts_user_asset")
                    .table(Accounts::Table)
                    .col(Accounts::UserId)
                    .col(Accounts::Asset)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Transfers::Table)
                    .if_not_exists()
                    .col(pk_uuid(Transfers::Id))
                    .col(uuid(Transfers::DebitAccountId))
                    .col(uuid(Transfers::CreditAccountId))
                    .col(string_len(Transfers::Asset, 16))
                    .col(big_integer(Transfers::Amount))
                    .col(string_len(Transfers::Kind, 32))
                    .col(string_len(Transfers::Phase, 16))
                    .col(string_len(Transfers::Status, 16))
                    .col(uuid_null(Transfers::PendingId).unique_key())
                    .col(uuid_null(Transfers::RefundOf).unique_key())
                    .col(timestamp_with_time_zone_null(Transfers::TimeoutAt))
                    .col(timestamp_with_time_zone_null(Transfers::ResolvedAt))
                    .col(string_len_null(Transfers::Reference, 255))
                    .col(string_len_null(Transfers::IdempotencyKey, 160).unique_key())
                    .col(string_len_null(Transfers::RequestHash, 64))
                    .col(json_binary(Transfers::Metadata))
                    .col(big_integer(Transfers::DebitBalanceAfter))
                    .col(big_integer(Transfers::CreditBalanceAfter))
                    .col(timestamp_with_time_zone(Transfers::CreatedAt))
                    .check(("ck_transfers_amount", Expr::cust("amount > 0")))
                    .check((
                        "ck_transfers_accounts",
                        Expr::cust("debit_account_id <> credit_account_id"),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_transfers_debit")
                            .from(Transfers::Table, Transfers::DebitAccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_transfers_credit")
                            .from(Transfers::Table, Transfers::CreditAccountId)
                            .to(Accounts::Table, Accounts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_transfers_debit", Transfers::DebitAccountId),
            ("idx_transfers_credit", Transfers::CreditAccountId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Transfers::Table)
                        .col(column)
                        .col(Transfers::Id)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_transfers_pending_timeout")
                    .table(Transfers::Table)
                    .col(Transfers::Status)
                    .col(Transfers::TimeoutAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Transfers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Accounts::Table).to_owned())
            .await
    }
}
