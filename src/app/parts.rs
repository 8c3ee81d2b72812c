//! From settings to parts: the settings are plain values; here they become
//! each part's options (the bus's topology, the worker's options, the
//! executor, the live desk and its MEXC client).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::bus::{self, Topology};
use crate::config::{
    MexcSettings, Mode, PaperPriceSource, Settings, TopologySettings, TradingSettings,
    WorkerSettings,
};
use crate::execution::mexc::{Credentials, Limits, MexcClient, MexcConfig, TickerPrices};
use crate::execution::{
    DryRunExecutor, Executor, LiveOrders, MockExecutor, PaperExecutor, PriceBook,
};
use crate::kill_switch::HaltBoard;
use crate::live::{LiveDesk, LiveOptions, LiveParts};
use crate::stats::Stats;
use crate::store::Store;
use crate::worker::WorkerOptions;

/// The bus's names and limits.
pub fn topology(settings: &TopologySettings) -> Topology {
    Topology {
        orders_channel: settings.orders_channel.clone(),
        results_channel: settings.results_channel.clone(),
        orders_stream: settings.orders_stream.clone(),
        results_stream: settings.results_stream.clone(),
        fills_stream: settings.fills_stream.clone(),
        dlq_stream: settings.dlq_stream.clone(),
        group: settings.group.clone(),
        consumer: settings.consumer.clone(),
        stream_maxlen: settings.stream_maxlen,
        dedup_window_ms: settings.dedup_window_ms,
        max_message_bytes: settings.max_message_bytes,
        announced_ttl_secs: settings.announced_ttl_secs,
    }
}

/// How the worker reads and processes the stream.
pub fn worker_options(settings: &WorkerSettings) -> WorkerOptions {
    WorkerOptions {
        batch_size: settings.batch_size,
        block_ms: settings.block_ms,
        claim_idle_ms: settings.claim_idle_ms,
        claim_interval_ms: settings.claim_interval_ms,
        max_deliveries: settings.max_deliveries,
        concurrency: settings.concurrency,
        max_order_age: settings.max_order_age,
        max_order_future: settings.max_order_future,
        batch_timeout: settings.batch_timeout,
    }
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
        Mode::Paper => {
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
        Mode::Mock => Ok(Arc::new(MockExecutor {
            success_rate: trading.mock_success_rate,
            seed: trading.mock_seed,
            max_slippage_bps: trading.mock_max_slippage_bps,
            fee_rate: trading.paper_fee_rate,
            prices,
        })),
        Mode::Live if trading.dry_run => {
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
        Mode::Live => Ok(Arc::new(LiveOrders)),
    }
}

/// The live path of real orders (`TRADING_MODE=live`, `DRY_RUN=false`,
/// the gates passed at start-up), else `None`.
pub(super) fn live_desk(
    settings: &Settings,
    store: &Store,
    pool: &crate::bus::Pool,
    stats: &Arc<Stats>,
    halts: &HaltBoard,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Arc<LiveDesk>>> {
    let (trading, mexc) = (&settings.trading, &settings.mexc);
    if trading.mode != Mode::Live || trading.dry_run {
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
        rate_limit_key(mexc, key),
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
        namespace: mexc.client_id_namespace.clone(),
        limits: live_limits(mexc),
        cancel_on_halt: mexc.cancel_open_orders_on_halt,
        stream_poll: mexc.stream_poll,
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
/// The Redis key of the fleet's MEXC request budget.
fn rate_limit_key(mexc: &MexcSettings, api_key: &secrecy::SecretString) -> String {
    format!("mexc-orders:{}", budget_name(mexc, api_key))
}

/// The Redis lease of the replica that holds the user data stream.
pub(super) fn user_stream_lease_key(mexc: &MexcSettings) -> String {
    format!("mexc-user-stream:{}", mexc.client_id_namespace)
}

/// The Redis lease of the replica that runs the exchange check.
pub(super) fn exchange_check_lease_key(mexc: &MexcSettings) -> String {
    format!("mexc-exchange-check:{}", mexc.client_id_namespace)
}

/// Every key the service uses with these settings (live mode's too, when
/// real orders are on), for the one-slot check of a Redis Cluster.
pub(super) fn used_keys(settings: &Settings, live: bool) -> Vec<bus::NamedKey> {
    let mut keys = bus::used_keys(
        &topology(&settings.streams.topology),
        &settings.streams.shutdown_stream,
    );
    let mexc = &settings.mexc;
    if live {
        let stream = user_stream_lease_key(mexc);
        let check = exchange_check_lease_key(mexc);
        for key in [format!("{stream}:healthy"), stream, check] {
            keys.push(bus::NamedKey::new("LIVE_CLIENT_ID_NAMESPACE", key));
        }
        if let Some(api_key) = &mexc.api_key {
            let budget = rate_limit_key(mexc, api_key);
            for key in [format!("{budget}:seq"), format!("{budget}:pause"), budget] {
                keys.push(bus::NamedKey::new("MEXC_RATE_LIMIT_KEY", key));
            }
        }
    }
    keys
}

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
