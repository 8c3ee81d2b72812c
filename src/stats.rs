//! The service's counters and histograms, kept in a Prometheus registry:
//! the worker records, `/status` and `/metrics` read.
//!
//! Each application instance owns its own registry, so instances in one
//! process (tests) never share counts.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::domain::OrderStatus;

mod live;
mod process;

pub use live::{LiveStats, StreamStats};
pub use process::{CLOCK_TICKS_PER_SEC, proc_cpu_ticks};
use process::{cpu_ticks, resident_memory_bytes};

/// Stages of a batch, as the `stage` label of the latency histogram: a
/// paper or mock batch goes parse, execute, write (one statement),
/// publish (results and acknowledgement in one round trip); a batch in a
/// transaction parse, upsert, execute, commit, live, publish.
pub const STAGES: [&str; 7] = [
    "parse", "upsert", "execute", "commit", "write", "live", "publish",
];

#[derive(Debug, Clone)]
pub struct Stats {
    registry: Registry,
    pub received: IntCounter,
    pub filled: IntCounter,
    pub rejected: IntCounter,
    pub errored: IntCounter,
    pub dead_lettered: IntCounter,
    pub ignored: IntCounter,
    /// Entries delivered more than once (after a crash, a claim or a retry).
    pub redeliveries: IntCounter,
    /// Orders actually handed to the executor (re-emitted results excluded).
    pub executed: IntCounter,
    /// Messages whose `order_id` belongs to an order with other content.
    pub conflicts: IntCounter,
    /// Orders rejected because a halt covered them.
    pub halted: IntCounter,
    /// Halts in force, as of the last reload.
    pub halts_active: IntGauge,
    /// Unix milliseconds at which the oldest halt in force was set, as of
    /// the last reload (0: none); `execution_halt_oldest_seconds` is its age.
    halt_oldest_set_ms: std::sync::Arc<AtomicI64>,
    pub halt_oldest_seconds: IntGauge,
    /// Batch attempts that gave up waiting for a row lock another
    /// transaction held (`lock_timeout`).
    pub lock_timeouts: IntCounter,
    /// Batch attempts abandoned after `BATCH_TIMEOUT_SECS`.
    pub batch_timeouts: IntCounter,
    /// Batch attempts that failed for another infrastructure reason.
    pub batch_failures: IntCounter,
    /// Attempts of the shim to mirror messages that Redis refused (each
    /// is retried; none is dropped).
    pub shim_retries: IntCounter,
    /// Messages the shim mirrored that fewer replicas than
    /// `REDIS_WAIT_REPLICAS` have confirmed yet.
    pub shim_unconfirmed: IntGauge,
    /// Times the Sentinels named another Redis primary.
    pub redis_primary_moves: IntCounter,
    /// Results announced again after the primary moved (each is dropped
    /// by Redis when the new primary knows it was announced).
    pub results_replayed: IntCounter,
    /// Long-lived tasks (HTTP, shim, worker, trimmer) that ended on their
    /// own; the process then exits non-zero.
    pub task_failures: IntCounter,
    pub batch_size: Histogram,
    pub stage_seconds: HistogramVec,
    pub stream_length: IntGauge,
    pub pending: IntGauge,
    pub lag: IntGauge,
    pub backlog: IntGauge,
    pub dlq_length: IntGauge,
    /// Age of the oldest entry the group read and has not acknowledged.
    pub oldest_pending_seconds: IntGauge,
    /// 1 while a readiness check passes, 0 while it fails, by `check`
    /// (the names `/ready` gives in `failing`); refreshed at each scrape.
    pub ready: IntGaugeVec,
    pub uptime_seconds: IntGauge,
    /// This process's resident memory (Linux), read at each render.
    pub resident_memory_bytes: IntGauge,
    /// This process's CPU time, user and system (Linux), brought up to
    /// date at each render.
    pub cpu_seconds: prometheus::Counter,
    /// The CPU clock ticks `cpu_seconds` has counted so far.
    cpu_ticks_counted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub live: LiveStats,
    /// Unix milliseconds of the worker's last successful read (0: never).
    last_read_ms: std::sync::Arc<AtomicI64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let counter =
                IntCounter::new(format!("execution_{name}"), help).expect("valid counter name");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique counter");
            counter
        };
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(format!("execution_{name}"), help).expect("valid gauge name");
            registry
                .register(Box::new(gauge.clone()))
                .expect("unique gauge");
            gauge
        };
        let stats = Stats {
            received: counter("orders_received_total", "Stream entries received"),
            filled: counter(
                "orders_filled_total",
                "Results published with status FILLED",
            ),
            rejected: counter(
                "orders_rejected_total",
                "Results published with status REJECTED",
            ),
            errored: counter(
                "orders_errored_total",
                "Results published with status ERROR",
            ),
            dead_lettered: counter(
                "orders_dead_lettered_total",
                "Messages moved to the dead-letter stream",
            ),
            ignored: counter(
                "orders_ignored_total",
                "Messages of another type, acknowledged and ignored",
            ),
            redeliveries: counter(
                "orders_redeliveries_total",
                "Entries delivered more than once",
            ),
            executed: counter("orders_executed_total", "Orders handed to the executor"),
            halted: counter(
                "orders_halted_total",
                "Orders rejected unexecuted because a trading halt covered them",
            ),
            halts_active: gauge("halts_active", "Trading halts in force"),
            halt_oldest_set_ms: Default::default(),
            halt_oldest_seconds: gauge(
                "halt_oldest_seconds",
                "Seconds since the oldest halt in force was set (0: none)",
            ),
            conflicts: counter(
                "orders_conflicts_total",
                "Messages whose order_id was already used by an order with other content (answered REJECTED)",
            ),
            lock_timeouts: counter(
                "batch_lock_timeouts_total",
                "Batch attempts that gave up waiting for a row lock held by another transaction",
            ),
            batch_timeouts: counter(
                "batch_timeouts_total",
                "Batch attempts abandoned after BATCH_TIMEOUT_SECS (connection closed, backend terminated)",
            ),
            batch_failures: counter(
                "batch_failures_total",
                "Batch attempts that failed on Postgres or Redis and were retried",
            ),
            shim_retries: counter(
                "shim_retries_total",
                "Attempts to mirror pub/sub messages that Redis refused; each is retried",
            ),
            shim_unconfirmed: gauge(
                "shim_unconfirmed_messages",
                "Messages the shim mirrored that fewer replicas than REDIS_WAIT_REPLICAS have confirmed yet",
            ),
            redis_primary_moves: counter(
                "redis_primary_moves_total",
                "Times the Sentinels named another Redis primary than before",
            ),
            results_replayed: counter(
                "results_replayed_total",
                "Results of orders finished shortly before a Redis failover, announced again",
            ),
            task_failures: counter(
                "task_failures_total",
                "Service tasks that ended on their own; the process exits non-zero",
            ),
            batch_size: Histogram::with_opts(
                HistogramOpts::new("execution_batch_size", "Entries per processed batch").buckets(
                    vec![
                        1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0,
                    ],
                ),
            )
            .expect("valid histogram"),
            stage_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "execution_stage_seconds",
                    "Time a batch spends in each stage",
                )
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets")),
                &["stage"],
            )
            .expect("valid histogram"),
            stream_length: gauge("stream_length", "Entries in the orders stream"),
            pending: gauge(
                "stream_pending",
                "Entries read by the group but not yet acknowledged",
            ),
            lag: gauge(
                "consumer_lag",
                "Entries in the orders stream not yet read by the group",
            ),
            backlog: gauge(
                "stream_backlog",
                "Entries in the orders stream the group has not acknowledged (lag + pending)",
            ),
            dlq_length: gauge("dlq_length", "Entries in the dead-letter stream"),
            oldest_pending_seconds: gauge(
                "stream_oldest_pending_seconds",
                "Age of the oldest orders-stream entry read and not yet acknowledged (0: none)",
            ),
            ready: {
                let gauge = IntGaugeVec::new(
                    Opts::new(
                        "execution_ready",
                        "1 while a readiness check of /ready passes, 0 while it fails",
                    ),
                    &["check"],
                )
                .expect("valid gauge name");
                registry
                    .register(Box::new(gauge.clone()))
                    .expect("unique gauge");
                gauge
            },
            uptime_seconds: gauge("uptime_seconds", "Seconds since the service started"),
            cpu_seconds: {
                let counter = prometheus::Counter::new(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds",
                )
                .expect("valid counter name");
                registry
                    .register(Box::new(counter.clone()))
                    .expect("unique counter");
                counter
            },
            cpu_ticks_counted: Default::default(),
            resident_memory_bytes: {
                let gauge = IntGauge::new(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes",
                )
                .expect("valid gauge name");
                registry
                    .register(Box::new(gauge.clone()))
                    .expect("unique gauge");
                gauge
            },
            live: LiveStats::new(&registry),
            last_read_ms: Default::default(),
            registry: registry.clone(),
        };
        registry
            .register(Box::new(stats.batch_size.clone()))
            .expect("unique histogram");
        registry
            .register(Box::new(stats.stage_seconds.clone()))
            .expect("unique histogram");
        for stage in STAGES {
            stats.stage_seconds.with_label_values(&[stage]);
        }
        stats
    }

    pub fn count_result(&self, status: OrderStatus) {
        match status {
            OrderStatus::Filled => self.filled.inc(),
            OrderStatus::Rejected => self.rejected.inc(),
            OrderStatus::Error | OrderStatus::Pending | OrderStatus::Submitted => {
                self.errored.inc()
            }
            OrderStatus::PartiallyFilled | OrderStatus::Canceled | OrderStatus::Unknown => {
                self.live.count_result(status)
            }
        }
    }

    pub fn observe_stage(&self, stage: &str, took: Duration) {
        self.stage_seconds
            .with_label_values(&[stage])
            .observe(took.as_secs_f64());
    }

    /// The worker read the stream successfully just now.
    pub fn mark_read(&self) {
        self.last_read_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// How long ago the worker last read the stream, if ever.
    pub fn since_last_read(&self) -> Option<Duration> {
        let at = self.last_read_ms.load(Ordering::Relaxed);
        (at > 0).then(|| {
            Duration::from_millis((chrono::Utc::now().timestamp_millis() - at).max(0) as u64)
        })
    }

    /// The halts in force changed: how many, and when the oldest was set.
    pub fn set_halts(&self, active: usize, oldest_set_at: Option<chrono::DateTime<chrono::Utc>>) {
        self.halts_active.set(active as i64);
        self.halt_oldest_set_ms.store(
            oldest_set_at.map_or(0, |at| at.timestamp_millis()),
            Ordering::Relaxed,
        );
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(bytes) = resident_memory_bytes() {
            self.resident_memory_bytes.set(bytes);
        }
        if let Some(ticks) = cpu_ticks() {
            let counted = self.cpu_ticks_counted.fetch_max(ticks, Ordering::Relaxed);
            if ticks > counted {
                self.cpu_seconds
                    .inc_by((ticks - counted) as f64 / CLOCK_TICKS_PER_SEC);
            }
        }
        let oldest = self.halt_oldest_set_ms.load(Ordering::Relaxed);
        self.halt_oldest_seconds.set(if oldest > 0 {
            (chrono::Utc::now().timestamp_millis() - oldest).max(0) / 1000
        } else {
            0
        });
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_page_counts_this_process_cpu() {
        let stats = Stats::new();
        let page = stats.render();
        assert!(page.contains("process_cpu_seconds_total"), "{page}");
    }
}
