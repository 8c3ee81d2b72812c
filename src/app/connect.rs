//! Start-up against Postgres: connect (and migrate) with backoff while it
//! is unreachable or starting, create a missing database, and stop at once
//! on a refusal no retry can fix.

use std::time::Duration;

use anyhow::Context;
use sea_orm::DbErr;
use secrecy::ExposeSecret;

use crate::config::{PostgresSettings, Settings};
use crate::retry::Backoff;
use crate::store::{self, ConnectFailure, PoolSettings, Store};

/// What start-up may do to the database besides connecting to it.
#[derive(Debug, Clone, Copy)]
pub struct StoreStartup {
    /// Create the database when it does not exist (and the role may).
    pub create_database: bool,
    /// Apply pending migrations.
    pub migrate: bool,
}

/// Connects to Postgres (and migrates, when asked), retrying with backoff
/// while Postgres is unreachable or still starting: a replica started
/// before its database waits for it instead of crash-looping. A refusal
/// that no retry can fix (a wrong password, an unknown role) stops at
/// once; a missing database is created when `startup` allows. Every error
/// and warning is redacted: client errors may quote the URL.
pub async fn connect_store(
    settings: &Settings,
    max_connections: u32,
    startup: StoreStartup,
) -> anyhow::Result<Store> {
    let postgres = &settings.postgres;
    let url = postgres.url.expose_secret();
    let redactor = settings.redactor();
    let database = store::database_name(url).unwrap_or_default();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let mut created = false;
    loop {
        let pool = PoolSettings {
            max_connections,
            ..pool_settings(postgres)
        };
        let (stage, err) = match connect_once(url, &pool, startup.migrate).await {
            Ok(store) => return Ok(store),
            Err(failed) => failed,
        };
        let detail = redactor.redact(&err.to_string());
        match store::classify(&err) {
            ConnectFailure::Transient => {}
            ConnectFailure::MissingDatabase if startup.create_database && !created => {
                match store::create_database(url).await {
                    Ok(outcome) => {
                        tracing::info!(database = %database, ?outcome, "created the database");
                        created = true;
                        continue;
                    }
                    Err(err) => match store::classify(&err) {
                        ConnectFailure::Transient => {}
                        ConnectFailure::MissingDatabase => anyhow::bail!(
                            "Postgres has no database {database:?}, nor a postgres or template1 \
                             database to create it from"
                        ),
                        ConnectFailure::Refused { reason } => anyhow::bail!(
                            "Postgres has no database {database:?}, and it cannot be created with \
                             the credentials of {}: {reason}: {}",
                            postgres.url_source,
                            redactor.redact(&err.to_string())
                        ),
                    },
                }
            }
            ConnectFailure::MissingDatabase => anyhow::bail!(
                "Postgres has no database {database:?} (SQLSTATE 3D000); check {}, or run \
                 `execution-service migrate` to create it: {detail}",
                postgres.url_source
            ),
            ConnectFailure::Refused { reason } => match stage {
                Stage::Connect => anyhow::bail!(
                    "Postgres refused the connection: {reason}; check {}: {detail}",
                    postgres.url_source
                ),
                Stage::Migrate => anyhow::bail!("applying migrations failed: {reason}: {detail}"),
            },
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            error = detail,
            retry_in_ms = delay.as_millis() as u64,
            "Postgres is not reachable yet; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Where Redis is (one address, or the Sentinels' primary), from the
/// settings; an error is redacted, as it may quote an address.
pub fn redis_target(settings: &Settings) -> anyhow::Result<crate::bus::RedisTarget> {
    crate::bus::RedisTarget::from_settings(
        &settings.redis,
        &settings.streams.topology.orders_stream,
    )
    .map_err(|err| anyhow::anyhow!(settings.redactor().redact(&err.to_string())))
    .context("reading the Redis address")
}

/// A pool of `size` connections to the Redis the settings name.
pub fn redis_pool(settings: &Settings, size: usize) -> anyhow::Result<crate::bus::Pool> {
    crate::bus::pool_for(redis_target(settings)?, size).context("creating the Redis pool")
}

/// What the store needs of the Postgres settings.
pub fn pool_settings(postgres: &PostgresSettings) -> PoolSettings {
    PoolSettings {
        max_connections: postgres.max_connections,
        acquire_timeout: postgres.acquire_timeout,
        statement_timeout: postgres.statement_timeout,
        lock_timeout: postgres.lock_timeout,
        idle_in_transaction_timeout: postgres.idle_in_transaction_timeout,
        keepalive_idle: postgres.keepalive_idle,
    }
}

/// Which step of start-up failed.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Connect,
    Migrate,
}

async fn connect_once(
    url: &str,
    pool: &PoolSettings,
    migrate: bool,
) -> Result<Store, (Stage, DbErr)> {
    let store = Store::connect_with(url, pool)
        .await
        .map_err(|err| (Stage::Connect, err))?;
    if migrate {
        store.migrate().await.map_err(|err| (Stage::Migrate, err))?;
    }
    Ok(store)
}
