//! The statements of one batch, inside one transaction: upsert every order
//! by `order_id`, then record outcomes and fills, then commit.
//!
//! Each statement carries the whole batch as one JSON parameter expanded by
//! `json_to_recordset`: one short statement to parse and plan whatever the
//! batch size, with amounts passed as decimal text, never as floats.

use std::collections::HashMap;

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, Statement,
    Value as DbValue,
};
use serde::Serialize;

use super::entity::orders;
use super::rows::{NewOrder, NewTrade};

const UPSERT_ORDERS: &str = r#"
INSERT INTO orders (order_id, symbol, side, order_type, quantity, price, status, filled_quantity, fee,
                    client_id, strategy_id, bot_id, mode, reject_reason, attempts, order_timestamp,
                    created_at, updated_at)
SELECT order_id, symbol, side, order_type, quantity, price, status, filled_quantity, fee,
       client_id, strategy_id, bot_id, mode, reject_reason, 1, order_timestamp, created_at, created_at
FROM json_to_recordset($1::json) AS r(order_id text, symbol text, side text, order_type text, quantity numeric,
     price numeric, status text, filled_quantity numeric, fee numeric, client_id text, strategy_id text,
     bot_id text, mode text, reject_reason text, order_timestamp timestamptz, created_at timestamptz)
ORDER BY order_id COLLATE "C"
ON CONFLICT (order_id) DO UPDATE SET attempts = orders.attempts + 1
RETURNING *
"#;

const RECORD_OUTCOMES: &str = r#"
UPDATE orders AS o
SET status = r.status, filled_quantity = r.filled_quantity, fill_price = r.fill_price, fee = r.fee,
    reject_reason = r.reject_reason, exchange_order_id = r.exchange_order_id,
    updated_at = r.updated_at, filled_at = r.filled_at
FROM json_to_recordset($1::json) AS r(order_id text, status text, filled_quantity numeric, fill_price numeric,
     fee numeric, reject_reason text, exchange_order_id text, updated_at timestamptz, filled_at timestamptz)
WHERE o.order_id = r.order_id
"#;

const INSERT_TRADES: &str = r#"
INSERT INTO trades (trade_id, order_id, symbol, side, price, quantity, fee, mode, exchange_order_id, executed_at)
SELECT trade_id, order_id, symbol, side, price, quantity, fee, mode, exchange_order_id, executed_at
FROM json_to_recordset($1::json) AS r(trade_id text, order_id text, symbol text, side text, price numeric,
     quantity numeric, fee numeric, mode text, exchange_order_id text, executed_at timestamptz)
ORDER BY trade_id COLLATE "C"
ON CONFLICT (trade_id) DO NOTHING
"#;

/// The columns an outcome changes.
#[derive(Serialize)]
struct Outcome<'a> {
    order_id: &'a str,
    status: &'a str,
    filled_quantity: Option<rust_decimal::Decimal>,
    fill_price: Option<rust_decimal::Decimal>,
    fee: Option<rust_decimal::Decimal>,
    reject_reason: Option<&'a str>,
    exchange_order_id: Option<&'a str>,
    updated_at: chrono::DateTime<chrono::FixedOffset>,
    filled_at: Option<chrono::DateTime<chrono::FixedOffset>>,
}

pub struct BatchTx {
    txn: DatabaseTransaction,
}

impl BatchTx {
    pub(super) fn new(txn: DatabaseTransaction) -> Self {
        BatchTx { txn }
    }

    /// Inserts the rows that are new and counts one more attempt on those
    /// that exist, in one statement, returning every row as it now stands.
    /// Rows are locked in `order_id` order (the same on every replica, so
    /// overlapping batches cannot deadlock) until the batch ends.
    #[tracing::instrument(name = "postgres.upsert_orders", skip_all, fields(rows = rows.len()), err)]
    pub async fn upsert_orders(
        &self,
        rows: &[NewOrder],
    ) -> Result<HashMap<String, orders::Model>, DbErr> {
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        let stored = orders::Entity::find()
            .from_raw_sql(statement(UPSERT_ORDERS, rows)?)
            .all(&self.txn)
            .await?;
        Ok(stored
            .into_iter()
            .map(|row| (row.order_id.clone(), row))
            .collect())
    }

    /// Writes the outcomes of executed orders and their fills.
    #[tracing::instrument(name = "postgres.record_outcomes", skip_all, fields(orders = finished.len(), trades = fills.len()), err)]
    pub async fn record(
        &self,
        finished: &[orders::Model],
        fills: &[NewTrade],
    ) -> Result<(), DbErr> {
        if !finished.is_empty() {
            let outcomes: Vec<Outcome<'_>> = finished
                .iter()
                .map(|row| Outcome {
                    order_id: &row.order_id,
                    status: &row.status,
                    filled_quantity: row.filled_quantity,
                    fill_price: row.fill_price,
                    fee: row.fee,
                    reject_reason: row.reject_reason.as_deref(),
                    exchange_order_id: row.exchange_order_id.as_deref(),
                    updated_at: row.updated_at,
                    filled_at: row.filled_at,
                })
                .collect();
            self.txn
                .execute_raw(statement(RECORD_OUTCOMES, &outcomes)?)
                .await?;
        }
        if !fills.is_empty() {
            self.txn
                .execute_raw(statement(INSERT_TRADES, fills)?)
                .await?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "postgres.commit", skip_all, err)]
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
}

/// `sql` with the rows as its one parameter: JSON text, written straight
/// from the rows and parsed once by `json_to_recordset`.
fn statement<T: Serialize>(sql: &str, rows: &[T]) -> Result<Statement, DbErr> {
    let json = serde_json::to_string(rows)
        .map_err(|err| DbErr::Custom(format!("encoding a batch: {err}")))?;
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [DbValue::String(Some(json))],
    ))
}
