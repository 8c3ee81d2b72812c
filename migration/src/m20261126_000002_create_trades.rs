//! The `trades` table: one row per fill, keyed by a `trade_id` derived from
//! the order, so a replayed fill can never be recorded twice.

use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261126_000001_create_orders::Orders;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Trades::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Trades::Id))
                    .col(string_len_uniq(Trades::TradeId, 64).extra("COLLATE \"C\""))
                    .col(string_len(Trades::OrderId, 255).extra("COLLATE \"C\""))
                    .col(string_len(Trades::Symbol, 64))
                    .col(string_len(Trades::Side, 10))
                    .col(decimal_len(Trades::Price, 20, 8))
                    .col(decimal_len(Trades::Quantity, 20, 8))
                    .col(decimal_len(Trades::Fee, 20, 8))
                    .col(string_len(Trades::Mode, 10))
                    .col(string_len_null(Trades::ExchangeOrderId, 255))
                    .col(
                        timestamp_with_time_zone(Trades::ExecutedAt)
                            .default(Expr::current_timestamp()),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_trades_order_id")
                            .from(Trades::Table, Trades::OrderId)
                            .to(Orders::Table, Orders::OrderId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_trades_order_id")
                    .table(Trades::Table)
                    .col(Trades::OrderId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Trades::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Trades {
    Table,
    Id,
    TradeId,
    OrderId,
    Symbol,
    Side,
    Price,
    Quantity,
    Fee,
    Mode,
    ExchangeOrderId,
    ExecutedAt,
}
