//! The service's side: when no Redis or Postgres is named (no `REDIS_URL`,
//! `REDIS_HOST`, ... / `DATABASE_URL`, `POSTGRES_HOST`, ...) and the
//! defaults do not serve (nothing listens, or the server refuses the
//! default login), `serve` starts private ones under `LOCAL_SERVICES_DIR`
//! and records where they are in `services.json` there, so that the other
//! subcommands (`publish`, `dlq`, `halt`, ...) find them while it runs.
//! Never with `TRADING_MODE=live`; never with `LOCAL_SERVICES=off`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::{Mode, Settings};

/// How long the defaults may take to answer before they count as absent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The database the service uses on a private Postgres.
const DATABASE: &str = "execution_service";

/// What `services.json` records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LocalServices {
    /// `host:port` of the private Redis, when one was needed.
    pub redis: Option<String>,
    /// `host:port` of the private Postgres, when one was needed.
    pub postgres: Option<String>,
    /// The `serve` process they stop with.
    pub pid: u32,
}

impl LocalServices {
    fn file(dir: &Path) -> PathBuf {
        dir.join("services.json")
    }

    fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(Self::file(dir)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(Self::file(dir), text)
            .with_context(|| format!("writing {}", Self::file(dir).display()))
    }

    fn redis_url(addr: &str) -> String {
        format!("redis://{addr}/")
    }

    fn postgres_url(addr: &str) -> String {
        format!("postgres://postgres@{addr}/{DATABASE}")
    }
}

/// Points `settings` at private servers where the named or default ones do
/// not serve: the ones a running `serve` started (any subcommand), else,
/// when `may_start` (`serve`), new ones. Says in the log what it did.
pub async fn use_private_services(settings: &mut Settings, may_start: bool) -> anyhow::Result<()> {
    let local = settings.local.clone();
    if !local.enabled {
        return Ok(());
    }
    let need_redis = !local.redis_named
        && redis_serves(settings.redis.url.expose_secret())
            .await
            .is_err();
    let need_postgres = !local.postgres_named
        && postgres_serves(settings.postgres.url.expose_secret())
            .await
            .is_err();
    if !need_redis && !need_postgres {
        return Ok(());
    }
    let missing = match (need_redis, need_postgres) {
        (true, true) => "Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432)",
        (true, false) => "Redis (127.0.0.1:6379)",
        _ => "PostgreSQL (127.0.0.1:5432, user claire_user, no password)",
    };
    if settings.trading.mode == Mode::Live {
        anyhow::bail!(
            "{missing} did not serve, and live trading never starts private servers: \
             set REDIS_URL and DATABASE_URL (or their _FILE) to the deployment's own"
        );
    }
    let dir = &local.dir;
    let running = LocalServices::read(dir).filter(|running| {
        (!need_redis || running.redis.as_deref().is_some_and(super::answers))
            && (!need_postgres || running.postgres.as_deref().is_some_and(super::answers))
    });
    let services = match running {
        Some(running) => {
            tracing::info!(dir = %dir.display(), pid = running.pid,
                "using the private servers of a running `serve`");
            running
        }
        None if may_start => start(dir, need_redis, need_postgres).await?,
        None => anyhow::bail!(
            "{missing} did not serve and no private servers run under {}: start \
             `execution-service serve` first (it starts them), or set REDIS_URL and DATABASE_URL",
            dir.display()
        ),
    };
    if need_redis && let Some(addr) = services.redis.as_deref() {
        settings.redis.url = LocalServices::redis_url(addr).into();
    }
    if need_postgres && let Some(addr) = services.postgres.as_deref() {
        settings.postgres.url = LocalServices::postgres_url(addr).into();
        settings.postgres.url_source = format!("the private PostgreSQL under {}", dir.display());
    }
    Ok(())
}

async fn start(dir: &Path, redis: bool, postgres: bool) -> anyhow::Result<LocalServices> {
    let shown = dir.display().to_string();
    let dir = dir.to_path_buf();
    let services = tokio::task::spawn_blocking(move || -> anyhow::Result<LocalServices> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pid = std::process::id();
        let services = LocalServices {
            redis: redis
                .then(|| super::start_redis(Some(&dir.join("redis")), pid))
                .transpose()?,
            postgres: postgres
                .then(|| super::start_postgres(&dir.join("postgres"), true, pid))
                .transpose()?,
            pid,
        };
        services.write(&dir)?;
        Ok(services)
    })
    .await??;
    tracing::warn!(
        redis = services.redis.as_deref().map(LocalServices::redis_url),
        postgres = services
            .postgres
            .as_deref()
            .map(LocalServices::postgres_url),
        data = shown,
        "started private servers for this machine: nothing was configured and the defaults did not serve. \
         They keep their data across runs and stop when this process ends. A real deployment names its own \
         (REDIS_URL, DATABASE_URL or REDIS_HOST/POSTGRES_HOST, ...); LOCAL_SERVICES=off never starts these"
    );
    Ok(services)
}

/// Whether a Redis at `url` answers PING (a password it wants and does not
/// get counts as not serving): why not, when it does not.
pub async fn redis_serves(url: &str) -> Result<(), String> {
    let ping = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(PROBE_TIMEOUT, ping)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())))
}

/// Whether Postgres at `url` takes the login (a database it lacks is
/// fine: the service creates it): why not, when it does not.
pub async fn postgres_serves(url: &str) -> Result<(), String> {
    use sea_orm::sqlx::{Connection, postgres::PgConnection};
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(err))
            if err
                .as_database_error()
                .and_then(|db| db.code())
                .is_some_and(|code| code == "3D000") =>
        {
            Ok(())
        }
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}
