//! Orders by the time their row last changed: after a Redis failover, the
//! results of orders changed shortly before it are announced again, found
//! by `updated_at`. A BRIN index: rows are mostly appended in time order,
//! so block ranges summarise well, and it costs inserts next to nothing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS orders_updated_at ON orders USING brin (updated_at)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS orders_updated_at")
            .await?;
        Ok(())
    }
}
