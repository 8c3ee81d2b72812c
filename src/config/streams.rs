//! The channels, streams and consumer group, and how the worker reads them.

use std::time::Duration;

use super::env::Env;

/// Names of the channels, streams and consumer group, and how they are read.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub topology: TopologySettings,
    pub worker: WorkerSettings,
    pub shutdown_stream: String,
    /// Whether this replica mirrors the orders channel into the stream.
    pub shim_enabled: bool,
    /// How often the orders stream is trimmed of acknowledged entries.
    pub trim_interval: Duration,
}

/// The channels, streams and group (`ORDERS_CHANNEL`, ..., `CONSUMER_NAME`)
/// and the limits on what travels through them; the bus's `Topology`.
#[derive(Debug, Clone)]
pub struct TopologySettings {
    pub orders_channel: String,
    pub results_channel: String,
    pub orders_stream: String,
    pub results_stream: String,
    /// `FILLS_STREAM`; none when set empty.
    pub fills_stream: Option<String>,
    pub dlq_stream: String,
    pub group: String,
    pub consumer: String,
    /// `STREAM_MAXLEN`.
    pub stream_maxlen: u64,
    /// `DEDUP_WINDOW_MS`, at most `DEDUP_TTL_SECS` × 1000.
    pub dedup_window_ms: u64,
    /// `MAX_MESSAGE_BYTES`.
    pub max_message_bytes: usize,
    /// `RESULT_DEDUP_SECS`.
    pub announced_ttl_secs: u64,
}

/// How the worker reads and processes the orders stream; the worker's
/// `WorkerOptions`.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `BATCH_SIZE`.
    pub batch_size: usize,
    /// `READ_BLOCK_MS`.
    pub block_ms: u64,
    /// `CLAIM_IDLE_MS`.
    pub claim_idle_ms: u64,
    /// `CLAIM_INTERVAL_MS`.
    pub claim_interval_ms: u64,
    /// `MAX_DELIVERIES`.
    pub max_deliveries: u64,
    /// `WORKER_CONCURRENCY`.
    pub concurrency: usize,
    /// `BATCH_TIMEOUT_SECS`.
    pub batch_timeout: Duration,
    /// `ORDER_MAX_AGE_SECS`; none when 0.
    pub max_order_age: Option<Duration>,
    /// `ORDER_MAX_FUTURE_SECS`.
    pub max_order_future: Duration,
}

/// `FILLS_STREAM`: `stream.fills` when unset, none when set empty.
fn fills_stream(env: &Env<'_>) -> Option<String> {
    match env.var("FILLS_STREAM") {
        None => Some("stream.fills".to_owned()),
        Some(name) if name.trim().is_empty() => None,
        Some(name) => Some(name),
    }
}

pub(super) fn stream_settings(env: &mut Env<'_>) -> StreamSettings {
    let default_consumer = format!(
        "{}-{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    );
    StreamSettings {
        topology: TopologySettings {
            orders_channel: env.text("ORDERS_CHANNEL", "orders"),
            results_channel: env.text("RESULTS_CHANNEL", "order_results"),
            orders_stream: env.text("ORDERS_STREAM", "stream.orders"),
            results_stream: env.text("RESULTS_STREAM", "stream.order_results"),
            fills_stream: fills_stream(env),
            dlq_stream: env.text("DLQ_STREAM", "stream.orders.dlq"),
            group: env.text("CONSUMER_GROUP", "execution"),
            consumer: env.text("CONSUMER_NAME", &default_consumer),
            // The results and dead-letter streams are capped at this; the
            // orders stream keeps about this many acknowledged entries.
            stream_maxlen: env.ranged("STREAM_MAXLEN", 1_000_000, 1000..=100_000_000),
            dedup_window_ms: dedup_window_ms(env),
            // Below 1 KiB real orders would be refused; above 16 MiB one
            // message could take hundreds of megabytes to parse.
            max_message_bytes: env.ranged("MAX_MESSAGE_BYTES", 65_536, 1024..=16 * 1024 * 1024),
            // Two days: past the one day an order reported not placed is
            // watched, so its result is never announced twice.
            announced_ttl_secs: env.ranged("RESULT_DEDUP_SECS", 172_800, 60..=31_536_000),
        },
        worker: WorkerSettings {
            batch_size: env.ranged("BATCH_SIZE", 500, 1..=2000),
            // Redis treats 0 as "block forever"; the pool gives up on any
            // command after 5 s, so a read must return well before that.
            block_ms: env.ranged("READ_BLOCK_MS", 500, 1..=4000),
            claim_idle_ms: env.ranged("CLAIM_IDLE_MS", 30_000, 1000..=86_400_000),
            claim_interval_ms: env.ranged("CLAIM_INTERVAL_MS", 5_000, 10..=3_600_000),
            max_deliveries: env.ranged("MAX_DELIVERIES", 5, 1..=1000),
            concurrency: env.ranged("WORKER_CONCURRENCY", 8, 1..=64),
            batch_timeout: Duration::from_secs(env.ranged("BATCH_TIMEOUT_SECS", 30, 1..=3600)),
            // 0: orders never go stale.
            max_order_age: match env.ranged("ORDER_MAX_AGE_SECS", 120, 0..=86_400) {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            // The clock skew allowed between a producer and this service.
            max_order_future: Duration::from_secs(env.ranged("ORDER_MAX_FUTURE_SECS", 5, 0..=300)),
        },
        shutdown_stream: env.text("SHUTDOWN_STREAM", "stream.bot_shutdown"),
        shim_enabled: env.flag("SHIM_ENABLED", true),
        trim_interval: Duration::from_millis(env.ranged(
            "STREAM_TRIM_INTERVAL_MS",
            10_000,
            100..=3_600_000,
        )),
    }
}

/// How long the shim merges copies of one message: `DEDUP_WINDOW_MS`, at
/// most `DEDUP_TTL_SECS` × 1000 (its older, upper bound; more is refused). Copies of one publish
/// reach the replicas' shims milliseconds apart; a re-send after the
/// window is mirrored again, and answered from the stored order.
fn dedup_window_ms(env: &mut Env<'_>) -> u64 {
    let window = env.ranged("DEDUP_WINDOW_MS", 3_000, 100..=60_000);
    let ttl_secs = env.ranged("DEDUP_TTL_SECS", 86_400, 1..=7 * 86_400);
    if env.all_valid(&["DEDUP_WINDOW_MS", "DEDUP_TTL_SECS"]) && window > ttl_secs * 1000 {
        env.invalid(
            "DEDUP_WINDOW_MS",
            window,
            &format!("at most DEDUP_TTL_SECS × 1000 = {}", ttl_secs * 1000),
        );
    }
    window
}
