//! A kill-switch entry is known by its id and its content: a stream that
//! was deleted and recreated (or a Redis restarted with its clock behind)
//! can hand out an id an applied entry had, for another entry. Keyed by
//! the id alone, that entry would be taken for the old one and never
//! applied; keyed by both, it is applied, and an entry read twice is still
//! applied once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE halt_entries ADD COLUMN IF NOT EXISTS digest varchar(64) NOT NULL DEFAULT ''; \
                 ALTER TABLE halt_entries DROP CONSTRAINT IF EXISTS halt_entries_pkey; \
                 ALTER TABLE halt_entries ADD PRIMARY KEY (entry_id, digest)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DELETE FROM halt_entries a USING halt_entries b \
                   WHERE a.entry_id = b.entry_id AND a.ctid > b.ctid; \
                 ALTER TABLE halt_entries DROP CONSTRAINT IF EXISTS halt_entries_pkey; \
                 ALTER TABLE halt_entries DROP COLUMN IF EXISTS digest; \
                 ALTER TABLE halt_entries ADD PRIMARY KEY (entry_id)",
            )
            .await?;
        Ok(())
    }
}
