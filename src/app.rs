//! The application: built from settings (connections, migrations, the
//! executor), then run until a cancellation token fires.
//!
//! Tests build the same application with their own names and databases.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};

use anyhow::Context;
use futures_util::FutureExt;
use sea_orm::DbErr;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::bus::{self, Consumer, Probe, Publisher};
use crate::config::{MexcSettings, PaperPriceSource, PostgresSettings, Settings, TradingSettings};
use crate::domain::TradingMode;
use crate::execution::mexc::{Credentials, Limits, MexcClient, MexcConfig, TickerPrices};
use crate::execution::{
    DryRunExecutor, Executor, LiveOrders, MockExecutor, PaperExecutor, PriceBook,
};
use crate::http::{self, ApiContext};
use crate::kill_switch::{HaltBoard, KillSwitch};
use crate::live::{self, LiveDesk, LiveOptions, LiveParts};
use crate::retry::Backoff;
use crate::stats::Stats;
use crate::store::{self, ConnectFailure, PoolSettings, Store};
use crate::worker::Worker;

mod supervise;
pub use supervise::{Task, supervise};

pub struct Application {
    settings: Settings,
    store: Store,
    redis: redis::Client,
    pool: deadpool_redis::Pool,
    executor: Arc<dyn Executor>,
    /// Real orders' path, with `TRADING_MODE=live` and `DRY_RUN=false`.
    live: Option<Arc<LiveDesk>>,
    /// Stops the live path's waits when the application stops.
    live_stop: CancellationToken,
    stats: Arc<Stats>,
    kill_switch: KillSwitch,
    http: TcpAcceptor,
    http_addr: SocketAddr,
    started_at: DateTime<Utc>,
    started: Instant,
}

impl Application {
    /// Connects to Postgres and Redis and applies migrations (unless
    /// `RUN_MIGRATIONS=false`).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let executor = executor_for(&settings.trading, &settings.mexc)?;
        let startup = StoreStartup {
            create_database: true,
            migrate: settings.postgres.run_migrations,
        };
        let store = connect_store(&settings, settings.postgres.max_connections, startup).await?;
        let redis_url = settings.redis.url.expose_secret();
        let redis = redis::Client::open(redis_url).context("parsing the Redis URL")?;
        let pool =
            bus::pool(redis_url, settings.redis.pool_size).context("creating the Redis pool")?;
        let address = format!("{}:{}", settings.http.host, settings.http.port);
        let http = TcpListener::bind(address.clone())
            .into_acceptor()
            .await
            .with_context(|| format!("binding the HTTP listener to {address}"))?;
        let http_addr = http
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().copied())
            .context("the HTTP listener has no address")?;
        let stats = Arc::new(Stats::new());
        let kill_switch = KillSwitch::new(
            store.clone(),
            pool.clone(),
            redis.clone(),
            settings.streams.topology.clone(),
            settings.streams.shutdown_stream.clone(),
            stats.clone(),
        );
        let live_stop = CancellationToken::new();
        let live = live_desk(
            &settings,
            &store,
            &pool,
            &stats,
            &kill_switch.board(),
            &live_stop,
        )?;
        Ok(Application {
            settings,
            store,
            redis,
            pool,
            executor,
            live,
            live_stop,
            stats,
            kill_switch,
            http,
            http_addr,
            started_at: Utc::now(),
            started: Instant::now(),
        })
    }

    /// Where the HTTP API listens (the real port when `HTTP_PORT=0`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn api_context(&self) -> ApiContext {
        let topology = self.settings.streams.topology.clone();
        let block = Duration::from_millis(self.settings.streams.worker.block_ms);
        ApiContext {
            store: self.store.clone(),
            probe: Probe::new(self.pool.clone(), topology.clone()),
            stats: self.stats.clone(),
            topology,
            mode: self.executor.mode(),
            dry_run: self.settings.trading.dry_run,
            started_at: self.started_at,
            started: self.started,
            read_freshness: (block * 4).max(Duration::from_secs(10)),
            kill_switch: self.kill_switch.clone(),
            admin_token: self.settings.http.admin_token.clone(),
            live: self.live.clone(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    pub fn worker(&self) -> Worker {
        let topology = self.settings.streams.topology.clone();
        let mut options = self.settings.streams.worker.clone();
        if self.live.is_some() {
            // A batch's results go out when its last order is decided: at
            // most a second's worth of real orders per batch keeps each
            // result close to its fill.
            options.batch_size = options
                .batch_size
                .min(self.settings.mexc.max_orders_per_sec as usize);
        }
        Worker {
            consumer: Consumer::new(self.pool.clone(), topology.clone()),
            publisher: Publisher::new(self.pool.clone(), topology),
            store: self.store.clone(),
            executor: self.executor.clone(),
            options,
            stats: self.stats.clone(),
            leases: Default::default(),
            halts: self.kill_switch.board(),
            live: self.live.clone(),
        }
    }

    /// The live path, when real orders are enabled.
    pub fn live(&self) -> Option<&Arc<LiveDesk>> {
        self.live.as_ref()
    }

    /// The kill switch: the halts in force, and how to set and lift them.
    pub fn kill_switch(&self) -> &KillSwitch {
        &self.kill_switch
    }

    /// Runs the HTTP API, the shim, the kill switch, the worker and the
    /// trimmer until
    /// `cancel` fires; the batch in flight is finished and acknowledged
    /// before this returns. If any of them ends on its own (it failed or
    /// panicked), the others are stopped the same way and this returns an
    /// error: a process that looks alive must be working.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let topology = self.settings.streams.topology.clone();
        tracing::info!(
            mode = self.executor.mode().as_str(),
            consumer = %topology.consumer,
            group = %topology.group,
            stream = %topology.orders_stream,
            http = %self.http_addr,
            "execution service running; Swagger UI at /docs"
        );
        let worker = self.worker();
        let context = self.api_context();
        let mut tasks: Vec<Task> = Vec::new();
        let http_cancel = cancel.clone();
        tasks.push((
            "HTTP server",
            Box::pin(async move {
                http::serve(self.http, context, http_cancel)
                    .await
                    .context("serving HTTP")
            }),
        ));
        if self.settings.streams.shim_enabled {
            let shim = bus::Shim {
                client: self.redis,
                pool: self.pool.clone(),
                topology: topology.clone(),
                retries: self.stats.shim_retries.clone(),
                dead_lettered: self.stats.dead_lettered.clone(),
            };
            tasks.push(("order shim", Box::pin(shim.run(cancel.clone()).map(Ok))));
        }
        let trimmer = bus::Trimmer {
            pool: self.pool.clone(),
            topology,
            every: self.settings.streams.trim_interval,
        };
        tasks.push((
            "stream trimmer",
            Box::pin(trimmer.run(cancel.clone()).map(Ok)),
        ));
        let kill_switch = self.kill_switch.clone();
        let kill_switch_cancel = cancel.clone();
        tasks.push((
            "kill switch",
            Box::pin(async move {
                kill_switch.run_until_stopped(kill_switch_cancel).await;
                Ok(())
            }),
        ));
        if let Some(desk) = self.live.clone() {
            let publisher =
                Publisher::new(self.pool.clone(), self.settings.streams.topology.clone());
            let tick = self.settings.mexc.reconcile_interval;
            let stop = cancel.clone();
            let live_stop = self.live_stop.clone();
            tasks.push((
                "live reconciler",
                Box::pin(async move {
                    let ran = live::reconcile::run(desk, publisher, tick, stop).await;
                    live_stop.cancel();
                    ran
                }),
            ));
        }
        let worker_cancel = cancel.clone();
        let halts = self.kill_switch.clone();
        let keys = bus::expected_keys(
            &self.settings.streams.topology,
            &self.settings.streams.shutdown_stream,
        );
        let pool = self.pool.clone();
        tasks.push((
            "worker",
            Box::pin(async move {
                // A Redis too old or a key of the wrong kind would fail
                // every batch: stop here.
                // Then every halt on the stream is applied before the first
                // batch.
                if bus::check_redis(&pool, &keys, &worker_cancel).await?
                    && halts.wait_until_caught_up(&worker_cancel).await
                {
                    worker.run_until_stopped(worker_cancel).await;
                }
                Ok(())
            }),
        ));
        supervise(tasks, cancel, self.stats.task_failures.clone()).await?;
        tracing::info!("execution service stopped");
        Ok(())
    }
}

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

/// The executor the settings ask for.
pub fn executor_for(
    trading: &TradingSettings,
    mexc: &MexcSettings,
) -> anyhow::Result<Arc<dyn Executor>> {
    let prices = PriceBook {
        reference_prices: trading.reference_prices.clone(),
    };
    match trading.mode {
        TradingMode::Paper => {
            let paper = PaperExecutor::new(trading.paper_fee_rate, prices);
            Ok(match trading.paper_price_source {
                PaperPriceSource::Reference => Arc::new(paper),
                PaperPriceSource::Mexc => {
                    // Public prices only: no credentials.
                    let client = MexcClient::new(&mexc_config(mexc), None)?;
                    Arc::new(paper.with_market_prices(Arc::new(TickerPrices::new(client))))
                }
            })
        }
        TradingMode::Mock => Ok(Arc::new(MockExecutor {
            success_rate: trading.mock_success_rate,
            seed: trading.mock_seed,
            max_slippage_bps: trading.mock_max_slippage_bps,
            fee_rate: trading.paper_fee_rate,
            prices,
        })),
        TradingMode::Live | TradingMode::DryRun if trading.dry_run => {
            let credentials = match (&mexc.api_key, &mexc.api_secret) {
                (Some(key), Some(secret)) => Some(Credentials::new(key.clone(), secret.clone())),
                _ => None,
            };
            let client = MexcClient::new(&mexc_config(mexc), credentials)?;
            let limits = live_limits(mexc);
            let paper = PaperExecutor::new(trading.paper_fee_rate, prices);
            Ok(Arc::new(DryRunExecutor::new(
                client,
                paper,
                limits,
                mexc.client_id_namespace.clone(),
            )))
        }
        // Real orders take the live path (see `live_desk`), never the batch.
        TradingMode::Live | TradingMode::DryRun => Ok(Arc::new(LiveOrders)),
    }
}

/// The live path of real orders (`TRADING_MODE=live`, `DRY_RUN=false`,
/// the gates passed at start-up), else `None`.
fn live_desk(
    settings: &Settings,
    store: &Store,
    pool: &deadpool_redis::Pool,
    stats: &Arc<Stats>,
    halts: &HaltBoard,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Arc<LiveDesk>>> {
    let (trading, mexc) = (&settings.trading, &settings.mexc);
    if !matches!(trading.mode, TradingMode::Live | TradingMode::DryRun) || trading.dry_run {
        return Ok(None);
    }
    let (Some(key), Some(secret)) = (&mexc.api_key, &mexc.api_secret) else {
        anyhow::bail!("real orders need MEXC_API_KEY and MEXC_API_SECRET");
    };
    let client = MexcClient::new(
        &mexc_config(mexc),
        Some(Credentials::new(key.clone(), secret.clone())),
    )?;
    let limiter = bus::RateLimiter::new(
        pool.clone(),
        format!("mexc-orders:{}", budget_name(mexc, key)),
        mexc.max_orders_per_sec,
    );
    let options = LiveOptions {
        lease: mexc.lease,
        order_ttl: mexc.order_ttl,
        resolve_deadline: mexc.resolve_deadline,
        max_order_age: settings.streams.worker.max_order_age,
        absence_window: mexc.absence_window,
        resend_not_placed: mexc.resend_not_placed,
        watch_not_placed: mexc.watch_not_placed,
        max_send_attempts: mexc.max_send_attempts as i32,
        max_poll_interval: Duration::from_secs(5),
        namespace: mexc.client_id_namespace.clone(),
        limits: live_limits(mexc),
        cancel_on_halt: mexc.cancel_open_orders_on_halt,
    };
    stats
        .live
        .max_orders_per_second
        .set(i64::from(mexc.max_orders_per_sec));
    tracing::warn!(
        base_url = %mexc.base_url,
        max_orders_per_sec = mexc.max_orders_per_sec,
        "LIVE TRADING: real orders will be sent to MEXC"
    );
    let parts = LiveParts {
        client,
        store: store.clone(),
        limiter,
        halts: halts.clone(),
        stats: stats.clone(),
        stop: stop.clone(),
    };
    let replica = settings.streams.topology.consumer.clone();
    Ok(Some(Arc::new(LiveDesk::new(parts, replica, options))))
}

/// The name of the request budget: MEXC limits an account (and an
/// address), not a deployment, so every deployment trading with one key
/// shares it. `MEXC_RATE_LIMIT_KEY` when set (several keys of one
/// account), else a digest of the API key (never the key itself in Redis).
fn budget_name(mexc: &MexcSettings, api_key: &secrecy::SecretString) -> String {
    use secrecy::ExposeSecret;
    use sha2::Digest;
    match &mexc.rate_limit_key {
        Some(name) => name.clone(),
        None => {
            let digest = sha2::Sha256::digest(api_key.expose_secret().as_bytes());
            format!("key-{}", hex::encode(&digest[..8]))
        }
    }
}

/// `SYMBOL_ALLOWLIST` and `MAX_ORDER_NOTIONAL` as the pre-trade checks take them.
fn live_limits(mexc: &MexcSettings) -> Limits {
    Limits {
        symbol_allowlist: (!mexc.symbol_allowlist.is_empty())
            .then(|| mexc.symbol_allowlist.iter().cloned().collect()),
        max_order_notional: mexc.max_order_notional,
    }
}

/// What the MEXC client needs of the settings.
pub fn mexc_config(mexc: &MexcSettings) -> MexcConfig {
    MexcConfig {
        base_url: mexc.base_url.clone(),
        timeout: mexc.timeout,
        recv_window_ms: mexc.recv_window_ms,
    }
}
