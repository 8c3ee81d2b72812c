//! What the life of a live order needs to be told in full: a state
//! sequence number on each order (every change of status or filled
//! quantity takes the next one; results carry it, so consumers can tell
//! changes apart), the fees per asset, when the exchange last answered for
//! it, how long an order reported not placed is still watched for, the
//! change a late appearance corrects, and `order_events`: one row per
//! change of state, with the observation that caused it and its evidence.

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
                    .add_column_if_not_exists(integer(Orders::StateSeq).default(1))
                    .add_column_if_not_exists(json_binary_null(Orders::Fees))
                    .add_column_if_not_exists(timestamp_with_time_zone_null(Orders::ResolvedAt))
                    .add_column_if_not_exists(timestamp_with_time_zone_null(Orders::WatchUntil))
                    .add_column_if_not_exists(integer_null(Orders::CorrectsSeq))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrderEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(OrderEvents::Id))
                    .col(string_len(OrderEvents::OrderId, 255))
                    .col(integer(OrderEvents::Seq))
                    .col(string_len_null(OrderEvents::FromStatus, 32))
                    .col(string_len(OrderEvents::ToStatus, 32))
                    .col(string_len(OrderEvents::Observation, 32))
                    .col(json_binary_null(OrderEvents::Evidence))
                    .col(string_len_null(OrderEvents::Replica, 255))
                    .col(
                        timestamp_with_time_zone(OrderEvents::At)
                            .default(Expr::current_timestamp()),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS idx_order_events_order_seq \
                 ON order_events (order_id, seq)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(OrderEvents::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::StateSeq)
                    .drop_column(Orders::Fees)
                    .drop_column(Orders::ResolvedAt)
                    .drop_column(Orders::WatchUntil)
                    .drop_column(Orders::CorrectsSeq)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    StateSeq,
    Fees,
    ResolvedAt,
    WatchUntil,
    CorrectsSeq,
}

#[derive(DeriveIden)]
enum OrderEvents {
    Table,
    Id,
    OrderId,
    Seq,
    FromStatus,
    ToStatus,
    Observation,
    Evidence,
    Replica,
    At,
}
