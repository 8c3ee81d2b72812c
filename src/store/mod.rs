//! Postgres through SeaORM: the entities and every query the service runs.
//!
//! `orders.order_id` is unique, and a batch's rows are locked from the
//! upsert to the commit, so two replicas that meet the same order never both
//! execute it: the second waits, then finds the row terminal.

mod batch;
pub mod entity;
mod queries;
mod rows;
mod startup;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, RuntimeErr,
    TransactionTrait,
};

pub use batch::BatchTx;
pub use queries::{OrderCounts, OrderQuery};
pub use rows::{
    NewOrder, NewTrade, completed_row, pending_row, rejected_row, result_from_row, trade_for,
};
pub use startup::{ConnectFailure, Created, classify, create_database, database_name};

/// Whether Postgres refused the data itself (a data exception, a violated
/// constraint, a program limit): the fault of a message, not of the
/// database, and retrying the same rows will fail again.
pub fn is_data_error(err: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(sqlx)) | DbErr::Query(RuntimeErr::SqlxError(sqlx))) =
        err
    else {
        return false;
    };
    match sqlx.as_ref() {
        sea_orm::sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            ["22", "23", "54"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        _ => false,
    }
}

fn options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    options
}

/// An arbitrary constant that serialises concurrent migration runs: the
/// key of the transaction-level advisory lock every change of the schema
/// takes.
pub const MIGRATION_LOCK: i64 = 0x0065_7865_6373_7663;

#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
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
    /// Connects; an error is not logged here, since it may quote the URL:
    /// the caller reports it, redacted.
    #[tracing::instrument(skip_all)]
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        Ok(Store {
            db: Database::connect(options(url, max_connections)).await?,
        })
    }

    /// A store whose connections open on first use: building it needs no
    /// running Postgres.
    pub async fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        let mut options = options(url, max_connections);
        options.connect_lazy(true).min_connections(0);
        Ok(Store {
            db: Database::connect(options).await?,
        })
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
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
        match change {
            Migration::Up => Migrator::up(&txn, None).await?,
            Migration::Down => Migrator::down(&txn, Some(1)).await?,
            Migration::Fresh => Migrator::fresh(&txn).await?,
        }
        txn.commit().await
    }

    /// Starts the transaction one batch is recorded in.
    pub async fn begin_batch(&self) -> Result<BatchTx, DbErr> {
        Ok(BatchTx::new(self.db.begin().await?))
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }
}
