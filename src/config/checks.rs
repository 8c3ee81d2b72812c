//! The checks that look at more than one variable, or at more than a
//! number: the rules between settings, and the log filter.

use super::env::Env;
use super::{Mode, PaperPriceSource, Settings};

/// Rules between settings, each checked once both sides are valid.
///
/// - `CLAIM_IDLE_MS >= 3 × READ_BLOCK_MS`: in-flight entries are refreshed
///   every `CLAIM_IDLE_MS / 3`, and a refresh may wait for a pooled
///   connection about as long as one blocking read. The worst gap between
///   refreshes then stays within two thirds of `CLAIM_IDLE_MS`, so no
///   replica claims an entry that is still being worked on.
/// - `POSTGRES_MAX_CONNECTIONS >= WORKER_CONCURRENCY + 1`: every batch in
///   flight holds a connection for its transaction; one more serves the
///   HTTP API.
/// - `REDIS_POOL_SIZE >= WORKER_CONCURRENCY + 2`: every batch publishes and
///   acknowledges on one, the reader blocks on one, and the lease refresher
///   needs one.
/// - `LIVE_LEASE_SECS >= 4 × MEXC_TIMEOUT_MS`: a replica renews its lease
///   between requests; a lease shorter than a few requests could expire
///   while its holder still waits on MEXC. Like every rule here it holds in
///   every mode, so a setting that would stop live trading stops paper
///   trading too, before anyone relies on it.
/// - `RESULT_DEDUP_SECS > LIVE_WATCH_NOT_PLACED_SECS`: an order watched is
///   announced again; only a remembered state keeps that from reaching the
///   streams twice.
/// - `PAPER_PRICE_SOURCE=mexc` only with `TRADING_MODE=paper`: no other
///   mode reads it, and a setting that silently does nothing misleads.
pub(super) fn relations(env: &mut Env<'_>, settings: &Settings) {
    let live = settings.trading.mode == Mode::Live;
    let missing =
        super::mexc::missing_for_real_orders(&settings.mexc, live, settings.trading.dry_run);
    if env.all_valid(&["TRADING_MODE", "DRY_RUN"]) && !missing.is_empty() {
        env.invalid(
            "DRY_RUN",
            "false",
            &format!(
                "true, unless real orders are meant: with TRADING_MODE=live and DRY_RUN=false they also need {}",
                missing.join(", ")
            ),
        );
    }
    if env.all_valid(&["PAPER_PRICE_SOURCE", "TRADING_MODE"])
        && settings.trading.paper_price_source == PaperPriceSource::Mexc
        && settings.trading.mode != Mode::Paper
    {
        env.invalid(
            "PAPER_PRICE_SOURCE",
            "mexc",
            &format!(
                "reference with TRADING_MODE={} (MEXC ticker prices are for paper trading only)",
                settings.trading.mode.as_str()
            ),
        );
    }
    let mexc = &settings.mexc;
    if env.all_valid(&["LIVE_LEASE_SECS", "MEXC_TIMEOUT_MS"]) && mexc.lease < 4 * mexc.timeout {
        env.invalid(
            "LIVE_LEASE_SECS",
            mexc.lease.as_secs(),
            &format!(
                "at least 4 × MEXC_TIMEOUT_MS = {} s (a lease outlives the requests its holder makes between renewals)",
                (4 * mexc.timeout).as_secs_f64().ceil()
            ),
        );
    }
    let dedup = settings.streams.topology.announced_ttl_secs;
    if env.all_valid(&["RESULT_DEDUP_SECS", "LIVE_WATCH_NOT_PLACED_SECS"])
        && dedup <= mexc.watch_not_placed.as_secs()
    {
        env.invalid(
            "RESULT_DEDUP_SECS",
            dedup,
            &format!(
                "more than LIVE_WATCH_NOT_PLACED_SECS = {} (an order watched is announced again; only a remembered state keeps that from reaching the streams twice)",
                mexc.watch_not_placed.as_secs()
            ),
        );
    }
    let worker = &settings.streams.worker;
    if env.all_valid(&["CLAIM_IDLE_MS", "READ_BLOCK_MS"])
        && worker.claim_idle_ms < 3 * worker.block_ms
    {
        env.invalid(
            "CLAIM_IDLE_MS",
            worker.claim_idle_ms,
            &format!(
                "at least 3 × READ_BLOCK_MS = {} (in-flight entries are refreshed every CLAIM_IDLE_MS / 3)",
                3 * worker.block_ms
            ),
        );
    }
    distinct_names(env, settings);
    if env.all_valid(&["POSTGRES_MAX_CONNECTIONS", "WORKER_CONCURRENCY"])
        && (settings.postgres.max_connections as usize) < worker.concurrency + 1
    {
        env.invalid(
            "POSTGRES_MAX_CONNECTIONS",
            settings.postgres.max_connections,
            &format!(
                "at least WORKER_CONCURRENCY + 1 = {} (a connection per batch in flight, one for the API)",
                worker.concurrency + 1
            ),
        );
    }
    if env.all_valid(&["REDIS_POOL_SIZE", "WORKER_CONCURRENCY"])
        && settings.redis.pool_size < worker.concurrency + 2
    {
        env.invalid(
            "REDIS_POOL_SIZE",
            settings.redis.pool_size,
            &format!(
                "at least WORKER_CONCURRENCY + 2 = {} (a connection per batch in flight, the reader and the lease refresher)",
                worker.concurrency + 2
            ),
        );
    }
}

/// `RUST_LOG` when set, else `LOG_LEVEL`: a level, or `tracing` directives
/// such as `info,execution_service=debug`. A bare word must be a level, so
/// a misspelt one (`warning`, `verbose`) is an error, not a filter for a
/// module of that name.
pub(super) fn log_filter(env: &mut Env<'_>) -> String {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let (name, filter) = match env.var("RUST_LOG").filter(|v| !v.trim().is_empty()) {
        Some(filter) => ("RUST_LOG", filter),
        None => ("LOG_LEVEL", env.text("LOG_LEVEL", "info")),
    };
    let bare_word = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.contains('=') && !d.contains('['))
        .find(|d| !LEVELS.contains(&d.to_ascii_lowercase().as_str()));
    let problem = match (bare_word, tracing_subscriber::EnvFilter::try_new(&filter)) {
        (Some(word), _) => Some(format!("{word:?} is not a level")),
        (None, Err(err)) => Some(err.to_string()),
        (None, Ok(_)) => None,
    };
    if let Some(problem) = problem {
        env.invalid(
            name,
            &filter,
            &format!(
                "trace, debug, info, warn, error or off, or directives like info,execution_service=debug ({problem})"
            ),
        );
        return "info".to_owned();
    }
    filter
}

/// Every stream, key and channel the settings name is its own: two
/// settings naming one key would loop (dead letters written to the stream
/// they are read from grow until Redis runs out of memory) or cross-feed
/// (every result read back as an order, every order taken for a
/// kill-switch entry). Each clash is refused naming both settings.
fn distinct_names(env: &mut Env<'_>, settings: &Settings) {
    let topology = &settings.streams.topology;
    // The bus's failure notes key (`Topology::failures_key`).
    let failures = format!("{}:failures", topology.orders_stream);
    let mut keys: Vec<(&str, &str)> = vec![
        ("ORDERS_STREAM", &topology.orders_stream),
        ("RESULTS_STREAM", &topology.results_stream),
        ("DLQ_STREAM", &topology.dlq_stream),
        ("SHUTDOWN_STREAM", &settings.streams.shutdown_stream),
        (
            "the failure notes (ORDERS_STREAM + \":failures\")",
            &failures,
        ),
    ];
    if let Some(fills) = &topology.fills_stream {
        keys.push(("FILLS_STREAM", fills));
    }
    let channels: [(&str, &str); 2] = [
        ("ORDERS_CHANNEL", &topology.orders_channel),
        ("RESULTS_CHANNEL", &topology.results_channel),
    ];
    for names in [&keys[..], &channels[..]] {
        for (i, (first, value)) in names.iter().enumerate() {
            for (second, other) in &names[i + 1..] {
                if value == other && env.all_valid(&[first, second]) {
                    env.invalid(
                        second,
                        *other,
                        &format!("a name of its own, not the one {first} names (it would loop or cross-feed)"),
                    );
                }
            }
        }
    }
}
