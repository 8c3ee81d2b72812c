//! The statements of one batch, inside one transaction: upsert every order
//! by `order_id`, then record outcomes and fills, then commit.
//!
//! Each statement carries the whole batch as one JSON parameter expanded by
//! `json_to_recordset`: one short statement to parse and plan whatever the
//! batch size, with amounts passed as decimal text, never as floats.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::{
    self, Error as SqlxError, Executor, PgPool, Postgres, Row, pool::PoolConnection,
};
use sea_orm::{ConnAcquireErr, DbErr, FromQueryResult, QueryResult, RuntimeErr};
use serde::Serialize;

use super::entity::orders;
use super::rows::{NewOrder, NewTrade};

const UPSERT_ORDERS: &str = r#"
INSERT INTO orders (order_id, symbol, side, order_type, quantity, price, status, filled_quantity, fee,
                    client_id, strategy_id, bot_id, mode, reject_reason, attempts, order_timestamp,
                    created_at, updated_at, raw_message)
SELECT order_id, symbol, side, order_type, quantity, price, status, filled_quantity, fee,
       client_id, strategy_id, bot_id, mode, reject_reason, 1, order_timestamp, created_at, created_at,
       raw_message
FROM json_to_recordset($1::json) AS r(order_id text, symbol text, side text, order_type text, quantity numeric,
     price numeric, status text, filled_quantity numeric, fee numeric, client_id text, strategy_id text,
     bot_id text, mode text, reject_reason text, order_timestamp timestamptz, created_at timestamptz,
     raw_message text)
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
INSERT INTO trades (trade_id, order_id, symbol, side, price, quantity, fee, mode, exchange_order_id, executed_at,
                    fee_asset)
SELECT trade_id, order_id, symbol, side, price, quantity, fee, mode, exchange_order_id, executed_at, fee_asset
FROM json_to_recordset($1::json) AS r(trade_id text, order_id text, symbol text, side text, price numeric,
     quantity numeric, fee numeric, mode text, exchange_order_id text, executed_at timestamptz, fee_asset text)
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

/// One batch's transaction, on a connection taken from the pool for it.
///
/// A batch that does not commit, because a statement failed or because the
/// worker gave up on it (its future dropped mid-statement), never returns
/// its connection to the pool: the connection is closed, and when a
/// statement was still running its server backend is terminated from
/// another connection, so no backend outlives the attempt holding locks.
pub struct BatchTx {
    conn: Option<PoolConnection<Postgres>>,
    /// The server process behind `conn`, once known.
    backend: Option<i32>,
    /// Whether a statement was sent and its answer not yet read.
    in_flight: bool,
    pool: PgPool,
}

impl BatchTx {
    pub(super) async fn begin(pool: &PgPool) -> Result<Self, DbErr> {
        let conn = pool.acquire().await.map_err(|err| match err {
            SqlxError::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            other => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(other))),
        })?;
        // Held by the batch before the first statement: abandoned even
        // here, the connection is closed, never pooled inside a BEGIN.
        let mut batch = BatchTx {
            conn: Some(conn),
            backend: None,
            in_flight: false,
            pool: pool.clone(),
        };
        let conn = batch.start()?;
        let started = sqlx::raw_sql("BEGIN; SELECT pg_backend_pid()")
            .fetch_one(&mut **conn)
            .await
            .and_then(|row| row.try_get::<i32, _>(0));
        batch.backend = Some(batch.answered(started)?);
        Ok(batch)
    }

    /// Inserts the rows that are new and counts one more attempt on those
    /// that exist, in one statement, returning every row as it now stands.
    /// Rows are locked in `order_id` order (the same on every replica, so
    /// overlapping batches cannot deadlock) until the batch ends.
    #[tracing::instrument(name = "postgres.upsert_orders", skip_all, fields(rows = rows.len()), err(level = "debug"))]
    pub async fn upsert_orders(
        &mut self,
        rows: &[NewOrder],
    ) -> Result<HashMap<String, orders::Model>, DbErr> {
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        let json = batch_json(rows)?;
        let conn = self.start()?;
        let stored = sqlx::query(UPSERT_ORDERS)
            .bind(json)
            .fetch_all(&mut **conn)
            .await;
        self.answered(stored)?
            .into_iter()
            .map(|row| {
                let row = orders::Model::from_query_result(&QueryResult::from(row), "")?;
                Ok((row.order_id.clone(), row))
            })
            .collect()
    }

    /// Writes the outcomes of executed orders and their fills.
    #[tracing::instrument(name = "postgres.record_outcomes", skip_all, fields(orders = finished.len(), trades = fills.len()), err(level = "debug"))]
    pub async fn record(
        &mut self,
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
            self.run(sqlx::query(RECORD_OUTCOMES).bind(batch_json(&outcomes)?))
                .await?;
        }
        if !fills.is_empty() {
            self.run(sqlx::query(INSERT_TRADES).bind(batch_json(fills)?))
                .await?;
        }
        Ok(())
    }

    /// Commits; only then does the connection go back to the pool.
    #[tracing::instrument(name = "postgres.commit", skip_all, err(level = "debug"))]
    pub async fn commit(mut self) -> Result<(), DbErr> {
        self.run(sqlx::raw_sql("COMMIT")).await?;
        // Committed: the connection is clean and may serve again.
        drop(self.conn.take());
        Ok(())
    }

    /// Runs a statement whose rows are not needed.
    async fn run<'q, E>(&mut self, statement: E) -> Result<(), DbErr>
    where
        E: sqlx::Execute<'q, Postgres> + 'q,
    {
        let conn = self.start()?;
        let done = conn.execute(statement).await;
        self.answered(done).map(drop)
    }

    /// Takes a statement's answer. Once the server has answered, rows or an
    /// error of its own, nothing of this batch runs there any more.
    fn answered<T>(&mut self, answer: Result<T, SqlxError>) -> Result<T, DbErr> {
        if matches!(answer, Ok(_) | Err(SqlxError::Database(_))) {
            self.in_flight = false;
        }
        answer.map_err(query_err)
    }

    /// The connection, marked as having a statement in flight until the
    /// caller clears the mark on its answer.
    fn start(&mut self) -> Result<&mut PoolConnection<Postgres>, DbErr> {
        self.in_flight = true;
        self.conn
            .as_mut()
            .ok_or_else(|| DbErr::Custom("the batch transaction has ended".to_owned()))
    }
}

impl Drop for BatchTx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // Closing the socket ends the session once the server next reads it;
        // a backend still busy with a statement (waiting on a lock, say)
        // reads nothing until that ends, so it is terminated outright.
        drop(conn.detach());
        // Without its pid (abandoned before BEGIN answered) the backend is
        // idle or about to be, and ends when it reads the closed socket.
        if let (true, Some(backend)) = (self.in_flight, self.backend) {
            let pool = self.pool.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(terminate_backend(pool, backend));
            }
        }
    }
}

/// How long ending an abandoned backend may take before the server's own
/// timeouts are left to do it.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ends the server backend of an abandoned batch, saying what it was
/// waiting for. When Postgres cannot be reached, `statement_timeout`,
/// `lock_timeout` and `idle_in_transaction_session_timeout` end it on the
/// server instead.
async fn terminate_backend(pool: PgPool, backend: i32) {
    let ending = async {
        let (wait_type, wait_event, blockers, ended): (
            Option<String>,
            Option<String>,
            Option<Vec<i32>>,
            bool,
        ) = sqlx::query_as(
            "SELECT a.wait_event_type, a.wait_event, pg_blocking_pids(a.pid), pg_terminate_backend(a.pid)
             FROM pg_stat_activity a WHERE a.pid = $1",
        )
        .bind(backend)
        .fetch_optional(&pool)
        .await?
        .unwrap_or_default();
        Ok::<_, SqlxError>((wait_type, wait_event, blockers, ended))
    };
    match tokio::time::timeout(TERMINATE_TIMEOUT, ending).await {
        Ok(Ok((Some(wait_type), wait_event, blockers, ended))) if wait_type == "Lock" => {
            tracing::warn!(backend, ended, wait_event = ?wait_event, blocked_by = ?blockers.unwrap_or_default(),
                "an abandoned batch was waiting for a lock held by another transaction; its backend was terminated");
        }
        Ok(Ok((_, wait_event, _, ended))) => {
            tracing::warn!(backend, ended, wait_event = ?wait_event, "terminated the backend of an abandoned batch");
        }
        Ok(Err(err)) => {
            tracing::warn!(backend, error = %err, "cannot terminate the backend of an abandoned batch; the server's timeouts will end it");
        }
        Err(_) => {
            tracing::warn!(
                backend,
                "Postgres did not answer in time to terminate the backend of an abandoned batch; the server's timeouts will end it"
            );
        }
    }
}

fn query_err(err: SqlxError) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
}

/// The batch upsert of `rows` as a statement, for callers outside a batch
/// transaction (the live path claims one order at a time).
pub(super) fn upsert_statement(rows: &[NewOrder]) -> Result<sea_orm::Statement, DbErr> {
    Ok(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        UPSERT_ORDERS,
        [batch_json(rows)?.into()],
    ))
}

/// The insert of `fills` (each recorded once, by `trade_id`) as a statement.
pub(super) fn insert_trades_statement(fills: &[NewTrade]) -> Result<sea_orm::Statement, DbErr> {
    Ok(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        INSERT_TRADES,
        [batch_json(fills)?.into()],
    ))
}

/// The rows as one JSON text parameter, written straight from the rows and
/// parsed once by `json_to_recordset`.
fn batch_json<T: Serialize>(rows: &[T]) -> Result<String, DbErr> {
    serde_json::to_string(rows).map_err(|err| DbErr::Custom(format!("encoding a batch: {err}")))
}
