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
use tokio_util::sync::CancellationToken;

use crate::bus::{self, Consumer, Probe, Publisher};
use crate::config::Settings;
use crate::execution::Executor;
use crate::http::{self, ApiContext};
use crate::kill_switch::KillSwitch;
use crate::live::{self, LiveDesk};
use crate::stats::Stats;
use crate::store::Store;
use crate::worker::{Worker, WorkerOptions};

mod connect;
mod parts;
mod supervise;

pub use connect::{StoreStartup, connect_store, pool_settings, redis_pool, redis_target};
use parts::live_desk;
pub use parts::{executor_for, mexc_config, topology, worker_options};
pub use supervise::{Task, supervise};

pub struct Application {
    settings: Settings,
    /// The bus's names and the worker's options, from the settings.
    topology: bus::Topology,
    worker: WorkerOptions,
    store: Store,
    pool: crate::bus::Pool,
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
        let pool = redis_pool(&settings, settings.redis.pool_size)?;
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
        pool.target()
            .count_moves_in(stats.redis_primary_moves.clone());
        let kill_switch = KillSwitch::new(
            store.clone(),
            pool.clone(),
            topology(&settings.streams.topology),
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
        if live.is_some() {
            warn_unless_commits_wait_for_a_standby(&store).await;
        }
        if !settings.redis.cluster_nodes.is_empty() {
            // Scripts and pipelines touch several keys at once.
            bus::one_slot(&parts::used_keys(&settings, live.is_some()))
                .map_err(|why| anyhow::anyhow!(why))?;
        }
        Ok(Application {
            topology: topology(&settings.streams.topology),
            worker: worker_options(&settings.streams.worker),
            settings,
            store,
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
        let topology = self.topology.clone();
        let block = Duration::from_millis(self.worker.block_ms);
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
            breaker: self.live.as_ref().map(|desk| desk.breaker_view()),
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
        let topology = self.topology.clone();
        let mut options = self.worker.clone();
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
            in_flight: Default::default(),
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
        let topology = self.topology.clone();
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
                pool: self.pool.clone(),
                topology: topology.clone(),
                wait: bus::WaitFor {
                    replicas: self.settings.redis.wait_replicas,
                    timeout_ms: self.settings.redis.wait_timeout.as_millis() as u64,
                },
                retries: self.stats.shim_retries.clone(),
                dead_lettered: self.stats.dead_lettered.clone(),
                unconfirmed: self.stats.shim_unconfirmed.clone(),
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
            match &self.settings.mexc.ws_url {
                Some(ws_url) => {
                    let stream = live::stream::UserStream::new(
                        desk.clone(),
                        Publisher::new(self.pool.clone(), self.topology.clone()),
                        self.pool.clone(),
                        live::stream::StreamOptions {
                            ws_url: ws_url.clone(),
                            lease_key: parts::user_stream_lease_key(&self.settings.mexc),
                            silence: self.settings.mexc.stream_silence,
                        },
                    );
                    let stop = cancel.clone();
                    tasks.push(("user data stream", Box::pin(stream.run(stop))));
                }
                None => tracing::warn!(
                    "the user data stream is off (LIVE_USER_STREAM=false, or MEXC_BASE_URL is not MEXC's and MEXC_WS_URL is unset): fills are learnt by polling alone"
                ),
            }
            let check = live::exchange_check::ExchangeCheck::new(
                desk.clone(),
                self.pool.clone(),
                live::exchange_check::CheckOptions {
                    every: self.settings.mexc.exchange_check,
                    cancel_orphans: self.settings.mexc.cancel_orphans,
                    symbols: self.settings.mexc.symbol_allowlist.clone(),
                    lease_key: parts::exchange_check_lease_key(&self.settings.mexc),
                },
            );
            tasks.push(("exchange check", Box::pin(check.run(cancel.clone()))));
            let publisher = Publisher::new(self.pool.clone(), self.topology.clone());
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
        let target = self.pool.target().clone();
        if target.follows_a_primary() {
            tasks.push((
                "Sentinel watcher",
                Box::pin(target.clone().watch_switches(cancel.clone()).map(Ok)),
            ));
            let replayer = crate::worker::Replayer {
                store: self.store.clone(),
                publisher: Publisher::new(self.pool.clone(), self.topology.clone()),
                target,
                window: self.settings.redis.replay_window,
                replayed: self.stats.results_replayed.clone(),
            };
            tasks.push(("result replayer", Box::pin(replayer.run(cancel.clone()))));
        }
        let worker_cancel = cancel.clone();
        let halts = self.kill_switch.clone();
        let keys = bus::expected_keys(&self.topology, &self.settings.streams.shutdown_stream);
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

/// Live orders: a row committed on a primary whose standby has not got it
/// is lost by an asynchronous failover, while its order is at the
/// exchange. Said at start-up (the exchange check would find that order
/// later, as an orphan).
async fn warn_unless_commits_wait_for_a_standby(store: &Store) {
    match store.commit_durability().await {
        Ok(durability) if durability.waits_for_a_standby() => tracing::info!(
            synchronous_standby_names = %durability.standby_names,
            synchronous_commit = %durability.synchronous_commit,
            "Postgres commits wait for a synchronous standby"
        ),
        Ok(durability) => tracing::warn!(
            synchronous_standby_names = %durability.standby_names,
            synchronous_commit = %durability.synchronous_commit,
            "Postgres commits wait for no standby: a failover to an asynchronous standby can forget a live order that is at the exchange (the exchange check then reports it as an orphan); set synchronous_standby_names and synchronous_commit=on (or remote_apply) on the primary"
        ),
        Err(err) => tracing::warn!(error = %err, "cannot read Postgres' replication settings"),
    }
}
