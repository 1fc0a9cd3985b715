//! External identities remember the provider's username (Discord username, GitHub login) so
//! `User.identities` can show which account is linked, and a user holds at most one identity
//! per provider (`unlinkIdentity(provider)` names exactly one).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Identities {
    Table,
    UserId,
    Provider,
    Username,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Identities::Table)
                    .add_column(string_null(Identities::Username))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_identities_user_provider")
                    .table(Identities::Table)
                    .col(Identities::UserId)
                    .col(Identities::Provider)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("uq_identities_user_provider")
                    .table(Identities::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Identities::Table)
                    .drop_column(Identities::Username)
                    .to_owned(),
            )
            .await
    }
}
