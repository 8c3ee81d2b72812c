//! The `orders` table: one row per `order_id`, the unit of idempotency.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Orders::Id))
                    .col(string_len_uniq(Orders::OrderId, 255).extra("COLLATE \"C\""))
                    .col(string_len(Orders::Symbol, 64))
                    .col(string_len(Orders::Side, 10))
                    .col(string_len(Orders::OrderType, 10))
                    .col(decimal_len(Orders::Quantity, 20, 8))
                    .col(decimal_len_null(Orders::Price, 20, 8))
                    .col(string_len(Orders::Status, 20))
                    .col(decimal_len_null(Orders::FilledQuantity, 20, 8))
                    .col(decimal_len_null(Orders::FillPrice, 20, 8))
                    .col(decimal_len_null(Orders::Fee, 20, 8))
                    .col(string_len_null(Orders::ClientId, 255))
                    .col(string_len_null(Orders::StrategyId, 255))
                    .col(string_len_null(Orders::BotId, 255))
                    .col(string_len(Orders::Mode, 10))
                    .col(text_null(Orders::RejectReason))
                    .col(string_len_null(Orders::ExchangeOrderId, 255))
                    .col(integer(Orders::Attempts).default(1))
                    .col(timestamp_with_time_zone_null(Orders::OrderTimestamp))
                    .col(
                        timestamp_with_time_zone(Orders::CreatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .col(
                        timestamp_with_time_zone(Orders::UpdatedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .col(timestamp_with_time_zone_null(Orders::FilledAt))
                    .to_owned(),
            )
            .await?;
        // Every row is updated once, when its outcome is recorded. Half of each
        // page is left free so that update is HOT (it touches no indexed
        // column, which is why `status` has no index of its own) and writes
        // no index entries. Ids compare bytewise ("C"), which is cheaper and
        // is the order batches lock rows in.
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE orders SET (fillfactor = 50)")
            .await?;
        for (name, column) in [
            ("idx_orders_symbol", Orders::Symbol),
            ("idx_orders_created_at", Orders::CreatedAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(name)
                        .table(Orders::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Orders::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Orders {
    Table,
    Id,
    OrderId,
    Symbol,
    Side,
    OrderType,
    Quantity,
    Price,
    Status,
    FilledQuantity,
    FillPrice,
    Fee,
    ClientId,
    StrategyId,
    BotId,
    Mode,
    RejectReason,
    ExchangeOrderId,
    Attempts,
    OrderTimestamp,
    CreatedAt,
    UpdatedAt,
    FilledAt,
}
