//! The statements of one batch, inside one transaction: upsert every order
//! by `order_id`, then record outcomes and fills, then commit.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel};

use super::entity::{orders, trades};

pub struct BatchTx {
    txn: DatabaseTransaction,
}

impl BatchTx {
    pub(super) fn new(txn: DatabaseTransaction) -> Self {
        BatchTx { txn }
    }

    /// Inserts the rows that are new and counts one more attempt on those
    /// that exist, in one statement, returning every row as it now stands.
    /// The rows stay locked until the batch commits or rolls back.
    #[tracing::instrument(skip_all, fields(rows = rows.len()), err)]
    pub async fn upsert_orders(
        &self,
        mut rows: Vec<orders::ActiveModel>,
    ) -> Result<HashMap<String, orders::Model>, DbErr> {
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        // One lock order for every replica, so overlapping batches cannot deadlock.
        rows.sort_by(|a, b| order_id_of(a).cmp(order_id_of(b)));
        let stored = orders::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(orders::Column::OrderId)
                    .value(
                        orders::Column::Attempts,
                        Expr::col((orders::Entity, orders::Column::Attempts)).add(1),
                    )
                    .to_owned(),
            )
            .exec_with_returning(&self.txn)
            .await?;
        Ok(stored
            .into_iter()
            .map(|row| (row.order_id.clone(), row))
            .collect())
    }

    /// Writes the outcomes of executed orders and their fills.
    #[tracing::instrument(skip_all, fields(orders = finished.len(), trades = fills.len()), err)]
    pub async fn record(
        &self,
        finished: Vec<orders::Model>,
        fills: Vec<trades::ActiveModel>,
    ) -> Result<(), DbErr> {
        if !finished.is_empty() {
            let rows = finished.into_iter().map(|row| {
                let mut active = row.into_active_model();
                active.id = ActiveValue::NotSet;
                active
            });
            orders::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::column(orders::Column::OrderId)
                        .update_columns([
                            orders::Column::Status,
                            orders::Column::FilledQuantity,
                            orders::Column::FillPrice,
                            orders::Column::Fee,
                            orders::Column::RejectReason,
                            orders::Column::ExchangeOrderId,
                            orders::Column::UpdatedAt,
                            orders::Column::FilledAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&self.txn)
                .await?;
        }
        if !fills.is_empty() {
            trades::Entity::insert_many(fills)
                .on_conflict_do_nothing_on([trades::Column::TradeId])
                .exec_without_returning(&self.txn)
                .await?;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
}

fn order_id_of(row: &orders::ActiveModel) -> &str {
    match &row.order_id {
        ActiveValue::Set(id) | ActiveValue::Unchanged(id) => id,
        ActiveValue::NotSet => "",
    }
}
