//! The application: built from settings (connections, migrations, the
//! executor), then run until a cancellation token fires.
//!
//! Tests build the same application with their own names and databases.

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::bus::{self, Consumer, Publisher};
use crate::config::{Settings, TradingSettings};
use crate::domain::TradingMode;
use crate::execution::{Executor, MockExecutor, PaperExecutor, PriceBook};
use crate::stats::Stats;
use crate::store::Store;
use crate::worker::Worker;

pub struct Application {
    settings: Settings,
    store: Store,
    redis: redis::Client,
    pool: deadpool_redis::Pool,
    executor: Arc<dyn Executor>,
    stats: Arc<Stats>,
}

impl Application {
    /// Connects to Postgres and Redis and applies migrations (unless
    /// `RUN_MIGRATIONS=false`).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let executor = executor_for(&settings.trading)?;
        let store = Store::connect(
            settings.postgres.url.expose_secret(),
            settings.postgres.max_connections,
        )
        .await
        .context("connecting to Postgres")?;
        if settings.postgres.run_migrations {
            store.migrate().await.context("applying migrations")?;
        }
        let redis_url = settings.redis.url.expose_secret();
        let redis = redis::Client::open(redis_url).context("parsing the Redis URL")?;
        let pool =
            bus::pool(redis_url, settings.redis.pool_size).context("creating the Redis pool")?;
        Ok(Application {
            settings,
            store,
            redis,
            pool,
            executor,
            stats: Arc::new(Stats::default()),
        })
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
        Worker {
            consumer: Consumer::new(self.pool.clone(), topology.clone()),
            publisher: Publisher::new(self.pool.clone(), topology),
            store: self.store.clone(),
            executor: self.executor.clone(),
            options: self.settings.streams.worker.clone(),
            stats: self.stats.clone(),
        }
    }

    /// Runs the shim and the worker until `cancel` fires; the batch in
    /// flight is finished and acknowledged before this returns.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let topology = &self.settings.streams.topology;
        tracing::info!(
            mode = self.executor.mode().as_str(),
            consumer = %topology.consumer,
            group = %topology.group,
            stream = %topology.orders_stream,
            "execution service running"
        );
        let shim = self.settings.streams.shim_enabled.then(|| {
            tokio::spawn(bus::run_shim(
                self.redis.clone(),
                self.pool.clone(),
                topology.clone(),
                cancel.clone(),
            ))
        });
        self.worker().run_until_stopped(cancel.clone()).await;
        cancel.cancel();
        if let Some(shim) = shim {
            shim.await.context("the order shim panicked")?;
        }
        tracing::info!("execution service stopped");
        Ok(())
    }
}

/// The executor the settings ask for.
pub fn executor_for(trading: &TradingSettings) -> anyhow::Result<Arc<dyn Executor>> {
    let prices = PriceBook {
        reference_prices: trading.reference_prices.clone(),
    };
    match trading.mode {
        TradingMode::Paper => Ok(Arc::new(PaperExecutor::new(trading.paper_fee_rate, prices))),
        TradingMode::Mock => Ok(Arc::new(MockExecutor {
            success_rate: trading.mock_success_rate,
            seed: trading.mock_seed,
            max_slippage_bps: trading.mock_max_slippage_bps,
            fee_rate: trading.paper_fee_rate,
            prices,
        })),
        TradingMode::Live => {
            anyhow::bail!("TRADING_MODE=live is not available in this build; use paper or mock")
        }
    }
}
