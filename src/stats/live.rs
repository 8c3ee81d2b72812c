//! Counters of live trading: what was sent, what MEXC answered, what had to
//! be reconciled, and whether sending is stopped.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::domain::OrderStatus;
use crate::domain::lifecycle::IN_FLIGHT;

#[derive(Debug, Clone)]
pub struct LiveStats {
    /// Order requests sent (POST /api/v3/order), re-sends included.
    pub sent: IntCounter,
    /// Orders MEXC accepted.
    pub accepted: IntCounter,
    /// Orders MEXC refused, by its code.
    pub rejected: IntCounterVec,
    /// Requests whose outcome the answer did not tell (timeout, reset, 5xx).
    pub unknown_outcomes: IntCounter,
    /// Orders marked UNKNOWN after LIVE_RESOLVE_DEADLINE_SECS.
    pub unknown: IntCounter,
    /// Order states learnt by a lookup rather than from the send.
    pub reconciled: IntCounter,
    /// Orders sent again after searches did not find them (only with
    /// `LIVE_RESEND_NOT_PLACED`).
    pub resends: IntCounter,
    /// Orders reported not placed (REJECTED, then watched).
    pub not_placed: IntCounter,
    /// Orders reported not placed that turned up at MEXC after all
    /// (operator alert: a result corrected).
    pub late_appearances: IntCounter,
    /// Cancel requests sent (DELETE /api/v3/order).
    pub cancels: IntCounter,
    /// Waits for the fleet-wide request budget or a Retry-After.
    pub rate_limit_waits: IntCounter,
    /// Results of live statuses beyond FILLED / REJECTED / ERROR.
    pub results: IntCounterVec,
    /// 1 while the circuit breaker stops sending on this replica.
    pub breaker_open: IntGauge,
    /// Live orders in each state still watched (`UNKNOWN` among them), as
    /// Postgres holds them at the last scrape: the same on every replica.
    pub orders: IntGaugeVec,
    /// `MEXC_MAX_ORDERS_PER_SEC`: the fleet-wide order budget per second.
    pub max_orders_per_second: IntGauge,
    /// The user data stream, as this replica sees it.
    pub stream: StreamStats,
    /// Exchange checks run here, by outcome (`ok`, `failed`).
    pub exchange_checks: IntCounterVec,
    /// Exchange orders with this service's client id form and no row,
    /// found here for the first time (operator alert).
    pub orphans: IntCounter,
    /// Such orders still open at MEXC and not cancelled by the service, as
    /// Postgres holds them after the last check here.
    pub orphans_open: IntGauge,
}

/// The user data stream: whether this replica holds it and is subscribed,
/// what arrived, and what it changed.
#[derive(Debug, Clone)]
pub struct StreamStats {
    /// 1 while this replica holds the deployment's stream lease.
    pub holder: IntGauge,
    /// 1 while this replica's connection is subscribed.
    pub connected: IntGauge,
    /// Connections that ended (dropped, stalled, refused key, 24 h limit).
    pub reconnects: IntCounter,
    /// Frames that arrived, by kind (`order`, `deal`, `other`).
    pub frames: IntCounterVec,
    /// Frames that did not decode (logged at error with their channel).
    pub decode_errors: IntCounter,
    /// Order changes recorded from pushes: each a lookup not made.
    pub applied: IntCounter,
    /// Pushes for client order ids with no row here.
    pub foreign: IntCounter,
    /// Pushes older than what is recorded (out of order, twice).
    pub stale: IntCounter,
    /// Orders handed to a REST lookup: after a gap, or when a push's fills
    /// did not add up in time.
    pub lookups_forced: IntCounter,
    /// Unix time of the last frame that arrived (0 before any).
    pub last_frame: IntGauge,
    /// Unix time this replica's connection was subscribed (0 while not).
    pub connected_since: IntGauge,
    /// 1 while the deployment's stream (whichever replica holds it) is
    /// subscribed: orders MEXC described are polled slowly meanwhile.
    pub healthy: IntGauge,
}

impl LiveStats {
    pub(super) fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(format!("execution_live_{name}"), help)
                .expect("valid counter name");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique counter");
            counter
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let counter =
                IntCounterVec::new(Opts::new(format!("execution_live_{name}"), help), &[label])
                    .expect("valid counter name");
            registry
                .register(Box::new(counter.clone()))
                .expect("unique counter");
            counter
        };
        let gauge = |name: &str, help: &str| {
            let gauge =
                IntGauge::new(format!("execution_live_{name}"), help).expect("valid gauge name");
            registry
                .register(Box::new(gauge.clone()))
                .expect("unique gauge");
            gauge
        };
        let orders = IntGaugeVec::new(
            Opts::new(
                "execution_live_orders",
                "Live orders in each state still watched, as stored (UNKNOWN needs a person)",
            ),
            &["status"],
        )
        .expect("valid gauge name");
        registry
            .register(Box::new(orders.clone()))
            .expect("unique gauge");
        LiveStats {
            sent: counter("orders_sent_total", "Order requests sent to MEXC"),
            accepted: counter("orders_accepted_total", "Orders MEXC accepted"),
            rejected: counter_vec(
                "orders_rejected_total",
                "Orders MEXC refused, by MEXC's code",
                "code",
            ),
            unknown_outcomes: counter(
                "unknown_outcomes_total",
                "Order requests whose answer did not tell whether MEXC applied them",
            ),
            unknown: counter(
                "orders_unknown_total",
                "Orders marked UNKNOWN after LIVE_RESOLVE_DEADLINE_SECS (operator alert)",
            ),
            reconciled: counter(
                "orders_reconciled_total",
                "Order states learnt by looking the order up",
            ),
            resends: counter(
                "orders_resent_total",
                "Orders sent again after searches did not find them (LIVE_RESEND_NOT_PLACED)",
            ),
            not_placed: counter(
                "orders_not_placed_total",
                "Orders reported not placed after MEXC's order list and trades did not show them",
            ),
            late_appearances: counter(
                "late_appearances_total",
                "Orders reported not placed that appeared at MEXC afterwards (operator alert)",
            ),
            cancels: counter("cancels_sent_total", "Cancel requests sent to MEXC"),
            rate_limit_waits: counter(
                "rate_limit_waits_total",
                "Waits for the fleet-wide request budget or MEXC's Retry-After",
            ),
            results: {
                let results = counter_vec(
                    "results_total",
                    "Results published with a live-only status",
                    "status",
                );
                // Every status from zero, so a rate over it exists at once.
                for status in [
                    OrderStatus::PartiallyFilled,
                    OrderStatus::Canceled,
                    OrderStatus::Unknown,
                ] {
                    results.with_label_values(&[status.as_str()]);
                }
                results
            },
            breaker_open: gauge(
                "breaker_open",
                "1 while a credentials error stops live sending on this replica",
            ),
            orders,
            max_orders_per_second: gauge(
                "max_orders_per_second",
                "MEXC_MAX_ORDERS_PER_SEC: the fleet-wide budget of order requests per second",
            ),
            exchange_checks: {
                let checks = counter_vec(
                    "exchange_checks_total",
                    "Comparisons of MEXC's orders with the service's, by outcome",
                    "outcome",
                );
                for outcome in ["ok", "failed"] {
                    checks.with_label_values(&[outcome]);
                }
                checks
            },
            orphans: counter(
                "orphan_orders_total",
                "Exchange orders with this service's client id form and no row here (operator alert)",
            ),
            orphans_open: gauge(
                "orphan_orders_open",
                "Orphan exchange orders still open and not cancelled by the service",
            ),
            stream: StreamStats {
                holder: gauge(
                    "stream_holder",
                    "1 while this replica holds the deployment's user data stream",
                ),
                connected: gauge(
                    "stream_connected",
                    "1 while this replica's user data stream is connected and subscribed",
                ),
                reconnects: counter(
                    "stream_reconnects_total",
                    "User data stream connections that ended (dropped, stalled, key refused, 24 h limit)",
                ),
                frames: {
                    let frames = counter_vec(
                        "stream_frames_total",
                        "User data stream frames that arrived, by kind",
                        "kind",
                    );
                    for kind in ["order", "deal", "other"] {
                        frames.with_label_values(&[kind]);
                    }
                    frames
                },
                decode_errors: counter(
                    "stream_decode_errors_total",
                    "User data stream frames that did not decode (each logged with its channel)",
                ),
                applied: counter(
                    "stream_changes_applied_total",
                    "Order changes recorded from the user data stream: lookups not made",
                ),
                foreign: counter(
                    "stream_foreign_pushes_total",
                    "Pushes for client order ids this deployment has no order for",
                ),
                stale: counter(
                    "stream_stale_pushes_total",
                    "Pushes older than what was recorded (out of order or repeated)",
                ),
                lookups_forced: counter(
                    "stream_lookups_forced_total",
                    "Orders handed to a REST lookup after a stream gap or unmatched fills",
                ),
                last_frame: gauge(
                    "stream_last_frame_timestamp_seconds",
                    "Unix time of the last user data stream frame (0 before any)",
                ),
                connected_since: gauge(
                    "stream_connected_since_timestamp_seconds",
                    "Unix time this replica's user data stream was subscribed (0 while not)",
                ),
                healthy: gauge(
                    "stream_healthy",
                    "1 while the deployment's user data stream is subscribed (any replica)",
                ),
            },
        }
    }

    /// The live orders still watched, by status (states absent count 0).
    pub fn set_in_flight(&self, counts: &[(String, i64)]) {
        for status in IN_FLIGHT {
            let n = counts
                .iter()
                .find(|(name, _)| name == status.as_str())
                .map_or(0, |(_, n)| *n);
            self.orders.with_label_values(&[status.as_str()]).set(n);
        }
    }

    /// Orders MEXC refused, all codes together.
    pub fn rejected_total(&self) -> u64 {
        use prometheus::core::Collector;
        self.rejected
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|metric| metric.get_counter().get_value() as u64)
            .sum()
    }

    pub fn count_result(&self, status: OrderStatus) {
        self.results.with_label_values(&[status.as_str()]).inc();
    }
}
