//! The live part of `/status`: this replica's live counters, its circuit
//! breaker, the orders in flight and the orphans over all replicas, and the
//! user data stream as this replica sees it.

use poem_openapi::Object;

/// The live path of this replica: its counters since start, its circuit
/// breaker, and the orders in flight over all replicas.
#[derive(Debug, Object)]
pub struct LiveStatus {
    /// True while MEXC's refusal of the key or signature stops sending.
    pub breaker_open: bool,
    /// Why the breaker opened (MEXC's code and message), while it is open.
    #[oai(nullable)]
    pub breaker_reason: Option<String>,
    /// When it opened (RFC 3339), while it is open.
    #[oai(nullable)]
    pub breaker_since: Option<String>,
    /// Order requests sent, re-sends included.
    pub sent: u64,
    pub accepted: u64,
    /// Orders MEXC refused, all codes together (by code in `/metrics`).
    pub rejected: u64,
    /// Requests whose answer did not tell whether MEXC applied them.
    pub unknown_outcomes: u64,
    /// Orders marked UNKNOWN (operator alerts).
    pub unknown: u64,
    /// Order states learnt by lookups.
    pub reconciled: u64,
    pub resent: u64,
    pub cancels: u64,
    pub rate_limit_waits: u64,
    /// Orders in flight by status (SUBMITTED, PARTIALLY_FILLED, UNKNOWN),
    /// all replicas; `null` when Postgres does not answer.
    #[oai(nullable)]
    pub in_flight: Option<std::collections::BTreeMap<String, i64>>,
    /// Exchange orders with this service's client order id form and no row
    /// here, ever found (`exchange_orphans`; an operator alert each);
    /// `null` when Postgres does not answer.
    #[oai(nullable)]
    pub orphan_orders: Option<i64>,
    /// Of those, still open at MEXC and not cancelled by the service.
    #[oai(nullable)]
    pub orphan_orders_open: Option<i64>,
    pub stream: StreamStatus,
}

/// MEXC's user data stream as this replica sees it. One replica of the
/// deployment holds the connection; every replica knows whether it is up.
#[derive(Debug, Object)]
pub struct StreamStatus {
    /// The deployment's stream is subscribed (on any replica): orders MEXC
    /// described are looked up only every `LIVE_STREAM_POLL_SECS`. False
    /// while it is down or off: REST polling carries on alone.
    pub healthy: bool,
    /// This replica holds the deployment's stream.
    pub holder: bool,
    /// This replica's connection is subscribed.
    pub connected: bool,
    /// Since when (RFC 3339), while connected.
    #[oai(nullable)]
    pub connected_since: Option<String>,
    /// Connections of this replica that ended.
    pub reconnects: u64,
    /// Seconds since the last frame here; `null` before any.
    #[oai(nullable)]
    pub last_frame_age_secs: Option<i64>,
    /// Frames that did not decode (each logged with its channel).
    pub decode_errors: u64,
    /// Order changes recorded from pushes: each a lookup not made.
    pub changes_applied: u64,
    /// Pushes for client order ids this deployment has no order for.
    pub foreign_pushes: u64,
    /// Pushes older than what was recorded (repeated, out of order).
    pub stale_pushes: u64,
    /// Orders handed to a lookup after a gap or unmatched fills.
    pub lookups_forced: u64,
}

/// The live part of `/status`.
pub(super) fn live_status(
    breaker: &crate::live::BreakerView,
    stats: &crate::stats::Stats,
    in_flight: Option<Vec<(String, i64)>>,
    orphans: Option<crate::store::OrphanCounts>,
) -> LiveStatus {
    let live = &stats.live;
    let state = breaker.state();
    LiveStatus {
        breaker_open: breaker.blocks(),
        breaker_reason: state.as_ref().map(|b| b.reason.clone()),
        breaker_since: state.map(|b| b.since.to_rfc3339()),
        sent: live.sent.get(),
        accepted: live.accepted.get(),
        rejected: live.rejected_total(),
        unknown_outcomes: live.unknown_outcomes.get(),
        unknown: live.unknown.get(),
        reconciled: live.reconciled.get(),
        resent: live.resends.get(),
        cancels: live.cancels.get(),
        rate_limit_waits: live.rate_limit_waits.get(),
        in_flight: in_flight.map(|rows| rows.into_iter().collect()),
        orphan_orders: orphans.map(|c| c.total),
        orphan_orders_open: orphans.map(|c| c.open),
        stream: stream_status(&live.stream),
    }
}

/// The user data stream part of `/status`, from this replica's counters.
fn stream_status(stream: &crate::stats::StreamStats) -> StreamStatus {
    let now = chrono::Utc::now().timestamp();
    let since = stream.connected_since.get();
    let last = stream.last_frame.get();
    StreamStatus {
        healthy: stream.healthy.get() == 1,
        holder: stream.holder.get() == 1,
        connected: stream.connected.get() == 1,
        connected_since: (since > 0)
            .then(|| chrono::DateTime::from_timestamp(since, 0))
            .flatten()
            .map(|at| at.to_rfc3339()),
        reconnects: stream.reconnects.get(),
        last_frame_age_secs: (last > 0).then(|| (now - last).max(0)),
        decode_errors: stream.decode_errors.get(),
        changes_applied: stream.applied.get(),
        foreign_pushes: stream.foreign.get(),
        stale_pushes: stream.stale.get(),
        lookups_forced: stream.lookups_forced.get(),
    }
}
