//! What a live order needs beyond a simulated one: the id the exchange
//! knows it by, a lease (which replica owns it until when, so a redelivery
//! or a second replica never sends it again while it is in hand), when it
//! was sent, how often it was sent and looked up, the exchange's own status,
//! and the asset its fees are charged in.
//!
//! No index here has a column the paper and mock path updates in its
//! predicate or key, so their outcome update stays a HOT update.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column_if_not_exists(string_len_null(Orders::ClientOrderId, 32))
                    .add_column_if_not_exists(string_len_null(Orders::LeaseOwner, 255))
                    .add_column_if_not_exists(timestamp_with_time_zone_null(Orders::LeaseUntil))
                    .add_column_if_not_exists(timestamp_with_time_zone_null(Orders::SentAt))
                    .add_column_if_not_exists(integer(Orders::SendAttempts).default(0))
                    .add_column_if_not_exists(integer(Orders::Lookups).default(0))
                    .add_column_if_not_exists(string_len_null(Orders::ExchangeStatus, 32))
                    .add_column_if_not_exists(string_len_null(Orders::FeeAsset, 16))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Trades::Table)
                    .add_column_if_not_exists(string_len_null(Trades::FeeAsset, 16))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_orders_client_order_id ON orders (client_order_id) \
             WHERE client_order_id IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idx_orders_lease_until ON orders (lease_until) \
             WHERE lease_until IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "DROP INDEX IF EXISTS idx_orders_client_order_id; DROP INDEX IF EXISTS idx_orders_lease_until",
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Trades::Table)
                    .drop_column(Trades::FeeAsset)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::ClientOrderId)
                    .drop_column(Orders::LeaseOwner)
                    .drop_column(Orders::LeaseUntil)
                    .drop_column(Orders::SentAt)
                    .drop_column(Orders::SendAttempts)
                    .drop_column(Orders::Lookups)
                    .drop_column(Orders::ExchangeStatus)
                    .drop_column(Orders::FeeAsset)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    ClientOrderId,
    LeaseOwner,
    LeaseUntil,
    SentAt,
    SendAttempts,
    Lookups,
    ExchangeStatus,
    FeeAsset,
}

#[derive(DeriveIden)]
enum Trades {
    Table,
    FeeAsset,
}
