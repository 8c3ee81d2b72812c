//! The statements of one batch. Paper and mock batches, whose outcomes are
//! decided before Postgres is asked, take one statement: insert the orders
//! as they end and their trades, leave what is stored already, return the
//! rows that were stored before (the batch knows the others). Live batches
//! take a transaction: upsert every order by `order_id`, record outcomes,
//! commit.
//!
//! A batch's rows travel as one typed array per column (see `columns`);
//! the live path's statements, built for SeaORM, carry them as one JSON
//! parameter expanded by `json_to_recordset`. Either way one short
//! statement to parse and plan whatever the batch size, with amounts as
//! decimals, never as floats.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::sqlx::{self, Error as SqlxError, Executor, Postgres, pool::PoolConnection};
use sea_orm::{DbErr, FromQueryResult, QueryResult, RuntimeErr};
use serde::Serialize;

use super::entity::orders;
use super::rows::{NewOrder, NewTrade};
use super::writers::{Writer, Writers, terminate_backend};

#[macro_use]
mod columns;
mod statements;

use statements::{
    INSERT_TRADES, RECORD_OUTCOMES, UPSERT_ORDERS, UPSERT_ORDERS_JSON, WRITE_DECIDED,
};

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

/// One batch's statements, on a writer of its own: either a transaction
/// (`begin`) or one statement in an implicit transaction (`autocommit`).
///
/// A batch that does not finish, because a statement failed or because the
/// worker gave up on it (its future dropped mid-statement), never returns
/// its connection: the connection is closed, and when a statement was
/// still running its server backend is terminated from another
/// connection, so no backend outlives the attempt holding locks.
pub struct BatchTx {
    writer: Option<Writer>,
    /// Whether a statement was sent and its answer not yet read.
    in_flight: bool,
    /// Whether the writer serves the next batch once this one is done;
    /// otherwise its connection goes back to the pool.
    keep: bool,
    writers: Writers,
}

impl BatchTx {
    /// A transaction, whose connection goes back to the pool when it
    /// commits (what follows, the live path, needs the pool).
    pub(super) async fn begin(writers: &Writers) -> Result<Self, DbErr> {
        let mut batch = Self::on_writer(writers, false).await?;
        batch.run(sqlx::raw_sql("BEGIN")).await?;
        Ok(batch)
    }

    /// A batch whose statements each commit on their own, on a writer
    /// kept for the next batch.
    pub(super) async fn autocommit(writers: &Writers) -> Result<Self, DbErr> {
        Self::on_writer(writers, true).await
    }

    async fn on_writer(writers: &Writers, keep: bool) -> Result<Self, DbErr> {
        Ok(BatchTx {
            writer: Some(writers.take().await?),
            in_flight: false,
            keep,
            writers: writers.clone(),
        })
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
        let statement = columns::bind_orders(sqlx::query(UPSERT_ORDERS), rows);
        let conn = self.start()?;
        let stored = statement.fetch_all(&mut **conn).await;
        self.answered(stored)?
            .into_iter()
            .map(|row| {
                let row = orders::Model::from_query_result(&QueryResult::from(row), "")?;
                Ok((row.order_id.clone(), row))
            })
            .collect()
    }

    /// Writes rows whose outcome is already decided, and their fills, in
    /// one statement that commits on its own: a row whose `order_id` is
    /// stored already is left as it is (one more attempt counted), and so
    /// are the fills of its order. Returns every row, and whether this
    /// statement inserted it: an inserted row is the one given, as
    /// [`NewOrder::into_inserted`] makes it (its `id` unknown, 0); a stored
    /// one as Postgres has it.
    #[tracing::instrument(name = "postgres.write_decided", skip_all, fields(rows = rows.len(), trades = fills.len()), err(level = "debug"))]
    pub async fn write_decided(
        mut self,
        rows: Vec<NewOrder>,
        fills: &[NewTrade],
    ) -> Result<HashMap<String, Written>, DbErr> {
        let statement = columns::bind_orders(sqlx::query(WRITE_DECIDED), &rows);
        let statement = columns::bind_trades(statement, fills);
        let conn = self.start()?;
        let written = statement.fetch_all(&mut **conn).await;
        let written = match self.answered(written) {
            Ok(written) => written,
            Err(err) => {
                // Refused by the server, the statement rolled back on its
                // own: the session is clean.
                if !self.in_flight && !is_connection_error(&err) {
                    self.finish();
                }
                return Err(err);
            }
        };
        let mut written = written
            .into_iter()
            .map(|row| {
                let row = orders::Model::from_query_result(&QueryResult::from(row), "")?;
                let written = Written {
                    row,
                    inserted: false,
                };
                Ok((written.row.order_id.clone(), written))
            })
            .collect::<Result<HashMap<_, _>, DbErr>>()?;
        self.finish();
        for row in rows {
            if !written.contains_key(&row.order_id) {
                let row = row.into_inserted();
                let inserted = Written {
                    row,
                    inserted: true,
                };
                written.insert(inserted.row.order_id.clone(), inserted);
            }
        }
        Ok(written)
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
                    status: row.status.as_str(),
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

    /// Commits; only then is the connection used again.
    #[tracing::instrument(name = "postgres.commit", skip_all, err(level = "debug"))]
    pub async fn commit(mut self) -> Result<(), DbErr> {
        self.run(sqlx::raw_sql("COMMIT")).await?;
        self.finish();
        Ok(())
    }

    /// The session is clean (committed, nothing in flight): the writer
    /// serves the next batch.
    fn finish(&mut self) {
        match self.writer.take() {
            Some(writer) if self.keep => self.writers.put_back(writer),
            Some(writer) => self.writers.release(writer),
            None => {}
        }
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
    /// error of its own, nothing of this batch runs there any more. A
    /// failure of the connection (or the server ending the session) is
    /// likely to have struck the idle writers too: they are closed.
    fn answered<T>(&mut self, answer: Result<T, SqlxError>) -> Result<T, DbErr> {
        if matches!(answer, Ok(_) | Err(SqlxError::Database(_))) {
            self.in_flight = false;
        }
        let answer = answer.map_err(query_err);
        if answer.as_ref().is_err_and(is_connection_error) {
            self.writers.discard_idle();
        }
        answer
    }

    /// The connection, marked as having a statement in flight until the
    /// caller clears the mark on its answer.
    fn start(&mut self) -> Result<&mut PoolConnection<Postgres>, DbErr> {
        self.in_flight = true;
        self.writer
            .as_mut()
            .map(|writer| &mut writer.conn)
            .ok_or_else(|| DbErr::Custom("the batch transaction has ended".to_owned()))
    }
}

/// A row as a decided write left it.
#[derive(Debug, Clone)]
pub struct Written {
    pub row: orders::Model,
    /// False when the order was stored before: the row is the stored one.
    pub inserted: bool,
}

impl Drop for BatchTx {
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        // Closing the socket ends the session once the server next reads it;
        // a backend still busy with a statement (waiting on a lock, say)
        // reads nothing until that ends, so it is terminated outright.
        let backend = writer.backend;
        self.writers.close(writer);
        if self.in_flight {
            // Given up on mid-statement: the network may be what failed.
            self.writers.discard_idle();
            let pool = self.writers.pool().clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(terminate_backend(pool, backend));
            }
        }
    }
}

/// Whether the connection failed, or the server ended the session
/// (SQLSTATE class 08, or 57P01-57P03: shutdown, crash, cannot connect).
fn is_connection_error(err: &DbErr) -> bool {
    match err {
        DbErr::Query(RuntimeErr::SqlxError(sqlx)) => match sqlx.as_ref() {
            SqlxError::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => true,
        },
        _ => false,
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
        UPSERT_ORDERS_JSON,
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
