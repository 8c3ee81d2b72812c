//! Trading halts, kept in Postgres so that a restarted or new replica starts
//! halted where it should: `halts` holds every halt with when and by whom it
//! was set and lifted (lifting keeps the history), and `halt_entries` every
//! kill-switch stream entry the fleet has applied, so that replicas applying
//! the same entry at once record it once.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Halts::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Halts::Id))
                    .col(string_len(Halts::Scope, 16))
                    .col(string_len_null(Halts::Target, 255))
                    .col(text(Halts::Reason))
                    .col(text(Halts::Source))
                    .col(timestamp_with_time_zone(Halts::SetAt).default(Expr::current_timestamp()))
                    .col(string_len_null(Halts::SetEntry, 64))
                    .col(timestamp_with_time_zone_null(Halts::LiftedAt))
                    .col(text_null(Halts::LiftedBy))
                    .col(text_null(Halts::LiftReason))
                    .col(string_len_null(Halts::LiftedEntry, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_halts_set_at")
                    .table(Halts::Table)
                    .col(Halts::SetAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HaltEntries::Table)
                    .if_not_exists()
                    .col(string_len(HaltEntries::EntryId, 64).primary_key())
                    // Stream ids order by (milliseconds, sequence), not as text;
                    // NULL for changes made while the stream was out of reach.
                    .col(big_integer_null(HaltEntries::EntryMs))
                    .col(big_integer_null(HaltEntries::EntrySeq))
                    .col(string_len(HaltEntries::Outcome, 16))
                    .col(text_null(HaltEntries::Detail))
                    .col(
                        timestamp_with_time_zone(HaltEntries::AppliedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_halt_entries_position")
                    .table(HaltEntries::Table)
                    .col(HaltEntries::EntryMs)
                    .col(HaltEntries::EntrySeq)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(HaltEntries::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Halts::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Halts {
    Table,
    Id,
    Scope,
    Target,
    Reason,
    Source,
    SetAt,
    SetEntry,
    LiftedAt,
    LiftedBy,
    LiftReason,
    LiftedEntry,
}

#[derive(DeriveIden)]
enum HaltEntries {
    Table,
    EntryId,
    EntryMs,
    EntrySeq,
    Outcome,
    Detail,
    AppliedAt,
}
