//! Postgres through SeaORM: the entities and every query the service runs.
//!
//! `orders.order_id` is unique, and a batch's rows are locked from the
//! upsert to the commit, so two replicas that meet the same order never both
//! execute it: the second waits, then finds the row terminal.

mod batch;
pub mod entity;
mod halts;
mod live;
mod nodelay;
mod orphans;
mod queries;
mod rows;
mod startup;
mod writers;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::{ConnectOptions as _, PgPool};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, RuntimeErr, TransactionTrait};

pub use batch::{BatchTx, Written};
pub use halts::{EntryOutcome, halt_of, halts_in_force};
pub use live::{Lease, LiveClaim, LiveUpdate};
pub use orphans::{Orphan, OrphanCounts};
pub use queries::{OrderCounts, OrderQuery};
pub use rows::{
    NewOrder, NewTrade, TradeParty, completed_row, decided_row, pending_row, rejected_row,
    result_from_row, stored_content, trade_for,
};
pub use startup::{
    CommitDurability, ConnectFailure, Created, classify, create_database, database_name,
};

/// Whether Postgres refused the data itself (a data exception, a violated
/// constraint, a program limit): the fault of a message, not of the
/// database, and retrying the same rows will fail again.
pub fn is_data_error(err: &DbErr) -> bool {
    sqlstate(err).is_some_and(|code| {
        ["22", "23", "54"]
            .iter()
            .any(|class| code.starts_with(class))
    })
}

/// Whether a statement gave up waiting for a lock another transaction
/// holds (`lock_timeout`, SQLSTATE 55P03).
pub fn is_lock_timeout(err: &DbErr) -> bool {
    sqlstate(err).as_deref() == Some("55P03")
}

/// The SQLSTATE Postgres answered with, if the error came from Postgres.
fn sqlstate(err: &DbErr) -> Option<String> {
    let (DbErr::Exec(RuntimeErr::SqlxError(sqlx))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx))
    | DbErr::Conn(RuntimeErr::SqlxError(sqlx))) = err
    else {
        return None;
    };
    match sqlx.as_ref() {
        sea_orm::sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// An arbitrary constant that serialises concurrent migration runs: the
/// key of the transaction-level advisory lock every change of the schema
/// takes.
pub const MIGRATION_LOCK: i64 = 0x0065_7865_6373_7663;

/// How the connection pool behaves, and what each Postgres session is told
/// to end on its own when the service is no longer there to end it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// Longest wait for a connection from the pool, connecting included.
    pub acquire_timeout: Duration,
    /// `statement_timeout`: the server cancels a statement running longer.
    pub statement_timeout: Duration,
    /// `lock_timeout`: the server gives up waiting for a row lock.
    pub lock_timeout: Duration,
    /// `idle_in_transaction_session_timeout`: the server ends a session whose
    /// transaction waits this long for its client (one the client abandoned).
    pub idle_in_transaction_timeout: Duration,
    /// `tcp_keepalives_idle`: the server probes a silent client after this
    /// long, and drops it after three unanswered probes.
    pub keepalive_idle: Duration,
}

impl PoolSettings {
    /// A pool for tools and tests: `max_connections`, no session timeouts
    /// (Postgres' 0). The service's timeouts come from its settings
    /// (`BATCH_TIMEOUT_SECS` and the `POSTGRES_*_TIMEOUT_MS` variables).
    pub fn untimed(max_connections: u32) -> Self {
        PoolSettings {
            max_connections,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::ZERO,
            lock_timeout: Duration::ZERO,
            idle_in_transaction_timeout: Duration::ZERO,
            keepalive_idle: Duration::from_secs(15),
        }
    }

    /// The session settings every connection starts with.
    fn session_options(&self) -> [(&'static str, u128); 6] {
        let probes = 3;
        let interval = (self.keepalive_idle / 3).max(Duration::from_secs(1));
        [
            ("statement_timeout", self.statement_timeout.as_millis()),
            ("lock_timeout", self.lock_timeout.as_millis()),
            (
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_timeout.as_millis(),
            ),
            (
                "tcp_keepalives_idle",
                u128::from(self.keepalive_idle.as_secs().max(1)),
            ),
            ("tcp_keepalives_interval", u128::from(interval.as_secs())),
            (
                "tcp_user_timeout",
                (self.keepalive_idle + interval * probes).as_millis(),
            ),
        ]
    }

    fn pool_options(&self, port: u16) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .after_connect(move |_, _| {
                Box::pin(async move {
                    nodelay::set_on_sockets_to(port);
                    Ok(())
                })
            })
            // In place of sqlx's ping before each use, one round trip
            // that also tells a primary from a standby: after a
            // switchover, a connection to a node that is (or became) a
            // standby is closed rather than failing every write
            // ("read-only transaction") for as long as it lives.
            .test_before_acquire(false)
            .before_acquire(|conn, _| {
                Box::pin(async move {
                    let standby: bool = sea_orm::sqlx::query_scalar("SELECT pg_is_in_recovery()")
                        .fetch_one(&mut *conn)
                        .await?;
                    if standby {
                        tracing::warn!(
                            "a Postgres connection leads to a standby (read-only); closing it"
                        );
                    }
                    Ok(!standby)
                })
            })
    }

    fn connect_options(&self, url: &str) -> Result<PgConnectOptions, DbErr> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))))?;
        // The URL may name the application (`?application_name=`), to tell
        // replicas apart in `pg_stat_activity`.
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name("execution-service"),
        };
        Ok(options
            .options(self.session_options())
            .options([("tcp_keepalives_count", 3)])
            .disable_statement_logging())
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    writers: writers::Writers,
}

/// A change of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// Apply every pending migration.
    Up,
    /// Roll back the last one.
    Down,
    /// Drop everything and apply every migration again.
    Fresh,
}

impl Store {
    /// Connects with the default pool settings and `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        Self::connect_with(url, &PoolSettings::untimed(max_connections)).await
    }

    /// Connects; an error is not logged here, since it may quote the URL:
    /// the caller reports it, redacted.
    #[tracing::instrument(skip_all)]
    pub async fn connect_with(url: &str, settings: &PoolSettings) -> Result<Self, DbErr> {
        let options = settings.connect_options(url)?;
        let pool = settings
            .pool_options(options.get_port())
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))))?;
        Ok(Store::from_pool(pool))
    }

    /// A store whose connections open on first use: building it needs no
    /// running Postgres.
    pub async fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        let settings = PoolSettings::untimed(max_connections);
        let options = settings.connect_options(url)?;
        let pool = settings
            .pool_options(options.get_port())
            .connect_lazy_with(options);
        Ok(Store::from_pool(pool))
    }

    fn from_pool(pool: PgPool) -> Self {
        Store {
            db: DatabaseConnection::from(pool.clone()),
            writers: writers::Writers::new(pool),
        }
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Applies pending migrations; replicas starting together take turns.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        self.change_schema(Migration::Up).await
    }

    /// Changes the schema in one transaction under the migration lock, so
    /// that no two changes (a replica starting, an operator's `migrate
    /// down`) ever interleave.
    #[tracing::instrument(skip_all, fields(change = ?change), err)]
    pub async fn change_schema(&self, change: Migration) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        // A migration may wait for another replica's and may take its time.
        txn.execute_unprepared("SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0")
            .await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
        match change {
            Migration::Up => Migrator::up(&txn, None).await?,
            Migration::Down => Migrator::down(&txn, Some(1)).await?,
            Migration::Fresh => Migrator::fresh(&txn).await?,
        }
        txn.commit().await
    }

    /// Starts the transaction one batch is recorded in, on a connection of
    /// its own that is closed (never pooled again) unless the batch commits.
    pub async fn begin_batch(&self) -> Result<BatchTx, DbErr> {
        BatchTx::begin(&self.writers).await
    }

    /// Writes a batch whose outcomes are decided (see
    /// [`BatchTx::write_decided`]) in one statement.
    pub async fn write_decided(
        &self,
        rows: Vec<NewOrder>,
        fills: &[NewTrade],
    ) -> Result<HashMap<String, Written>, DbErr> {
        // A batch of dead letters and ignored messages writes nothing.
        if rows.is_empty() {
            return Ok(HashMap::new());
        }
        BatchTx::autocommit(&self.writers)
            .await?
            .write_decided(rows, fills)
            .await
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_is_told_to_end_what_its_client_abandons() {
        let settings = PoolSettings {
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(30),
            ..PoolSettings::untimed(16)
        };
        let options: std::collections::HashMap<_, _> =
            settings.session_options().into_iter().collect();
        assert_eq!(options["statement_timeout"], 30_000);
        assert_eq!(options["lock_timeout"], 10_000);
        assert_eq!(options["idle_in_transaction_session_timeout"], 30_000);
        assert_eq!(options["tcp_keepalives_idle"], 15);
        assert_eq!(options["tcp_keepalives_interval"], 5);
        // Idle time plus three unanswered probes.
        assert_eq!(options["tcp_user_timeout"], 30_000);
    }
}
