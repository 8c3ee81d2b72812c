//! What Postgres alone accepts for the rows a run writes, measured on the
//! same machine just before the run: finished orders and their trades,
//! inserted in batches from as many writers as the service runs batches at
//! once, into a scratch schema shaped like the real tables (dropped after).
//! A service figure divided by this survives a noisy machine better than
//! the figure alone.

use std::time::Instant;

use anyhow::Context;
use futures_util::future::try_join_all;
use sea_orm::sqlx::{self, AssertSqlSafe, Connection, Executor, PgConnection};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::config::Settings;

/// Orders (and as many trades) per statement.
pub const PER_STATEMENT: usize = 200;

/// The orders as they end and their trades, in one statement (an implicit
/// transaction), as the service writes a paper batch; nothing of the
/// service's skipping of stored orders.
const INSERT_FINISHED: &str = r#"
WITH stored AS (
    INSERT INTO orders (order_id, symbol, side, order_type, quantity, price, status, filled_quantity,
                        fill_price, fee, mode, created_at, updated_at, filled_at)
    SELECT order_id, symbol, side, 'MARKET', quantity, price, 'FILLED', quantity, price, fee, 'paper',
           now(), now(), now()
    FROM json_to_recordset($1::json) AS r(order_id text, symbol text, side text, quantity numeric,
         price numeric, fee numeric)
    RETURNING order_id, symbol, side, price, quantity, fee
)
INSERT INTO trades (trade_id, order_id, symbol, side, price, quantity, fee, mode, executed_at)
SELECT 'trd-' || order_id, order_id, symbol, side, price, quantity, fee, 'paper', now()
FROM stored
"#;

/// The ceiling of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    pub orders_per_sec: f64,
    pub writers: usize,
}

/// Inserts `orders` finished orders and their trades from `writers`
/// connections at once, [`PER_STATEMENT`] per statement, into a
/// scratch schema; returns the rate.
pub async fn measure(
    settings: &Settings,
    orders: usize,
    writers: usize,
) -> anyhow::Result<Ceiling> {
    let url = settings.postgres.url.expose_secret();
    let schema = format!(
        "bench_ceiling_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut admin = PgConnection::connect(url)
        .await
        .context("connecting to Postgres for the ceiling")?;
    admin
        .execute(sqlx::raw_sql(AssertSqlSafe(
            format!(
                "CREATE SCHEMA {schema}; \
                 CREATE TABLE {schema}.orders (LIKE public.orders INCLUDING ALL) WITH (fillfactor = 50); \
                 CREATE TABLE {schema}.trades (LIKE public.trades INCLUDING ALL); \
                 ALTER TABLE {schema}.trades ADD FOREIGN KEY (order_id) \
                   REFERENCES {schema}.orders (order_id) ON DELETE CASCADE"
            ),
        )))
        .await
        .context("creating the scratch schema (run the service once first, so the tables exist)")?;
    let writers = writers.max(1);
    let per_writer = orders.div_ceil(writers);
    // Connected before the clock starts: the service's pool is too.
    let connected = try_join_all((0..writers).map(|_| connect(url, &schema))).await;
    let started = Instant::now();
    let written = match connected {
        Ok(connections) => {
            try_join_all(
                connections
                    .into_iter()
                    .enumerate()
                    .map(|(writer, conn)| write(conn, writer, per_writer)),
            )
            .await
        }
        Err(err) => Err(err),
    };
    let elapsed = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let dropped = admin
        .execute(sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP SCHEMA {schema} CASCADE"
        ))))
        .await;
    let written: usize = written?.into_iter().sum();
    dropped.context("dropping the scratch schema")?;
    Ok(Ceiling {
        orders_per_sec: written as f64 / elapsed,
        writers,
    })
}

/// A writer's connection, writing into the scratch schema.
async fn connect(url: &str, schema: &str) -> anyhow::Result<PgConnection> {
    let mut conn = PgConnection::connect(url).await?;
    // The schema's name is this module's own (letters, digits, `_`).
    conn.execute(sqlx::raw_sql(AssertSqlSafe(format!(
        "SET search_path TO {schema}"
    ))))
    .await?;
    Ok(conn)
}

/// One writer: its share of the rows, a statement per batch.
async fn write(mut conn: PgConnection, writer: usize, orders: usize) -> anyhow::Result<usize> {
    let mut written = 0;
    while written < orders {
        let count = PER_STATEMENT.min(orders - written);
        let rows: Vec<_> = (written..written + count)
            .map(|n| {
                json!({
                    "order_id": format!("ceiling-{writer}-{n}"), "symbol": "BTCUSDT", "side": "BUY",
                    "quantity": "0.00100000", "price": "50000.00000000", "fee": "0.05000000",
                })
            })
            .collect();
        let rows = serde_json::to_string(&rows)?;
        sqlx::query(INSERT_FINISHED)
            .bind(&rows)
            .execute(&mut conn)
            .await?;
        written += count;
    }
    Ok(written)
}
