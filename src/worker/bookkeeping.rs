//! The bookkeeping around a batch: the stage clock, each order's span and
//! the trace its result carries on, and the counts a batch adds to the
//! metrics.

use std::collections::HashMap;
use std::time::Instant;

use super::plan::BatchPlan;
use super::{BatchReport, Worker};
use crate::bus::{Announcement, Entry};
use crate::domain::{ExecutionResult, Order};
use crate::propagation;
use crate::stats::Stats;

impl Worker {
    /// Counts executions as they are stored, not when their batch is
    /// acknowledged: an attempt that stores them and then fails is followed
    /// by one that finds them stored.
    pub(super) fn count_executed(&self, executed: usize, halted: usize) {
        self.stats.executed.inc_by(executed as u64);
        self.stats.halted.inc_by(halted as u64);
    }

    /// Counts what a batch did into the metrics (its executions were
    /// counted when stored), and reports it.
    pub(super) fn report(
        &self,
        entries: &[Entry],
        announcements: Vec<Announcement>,
        plan: &BatchPlan,
        executed: usize,
        held: Vec<String>,
    ) -> BatchReport {
        let results: Vec<ExecutionResult> = announcements.into_iter().map(|a| a.result).collect();
        let stats = &self.stats;
        let received = entries.len();
        stats.batch_size.observe(received as f64);
        stats.received.inc_by(received as u64);
        stats
            .redeliveries
            .inc_by(entries.iter().filter(|e| e.deliveries > 1).count() as u64);
        stats.dead_lettered.inc_by(plan.dead_letters.len() as u64);
        stats.ignored.inc_by(plan.ignored as u64);
        stats.conflicts.inc_by(plan.conflict_count() as u64);
        for result in &results {
            stats.count_result(result.status);
        }
        tracing::debug!(
            executed,
            results = results.len(),
            dead_lettered = plan.dead_letters.len(),
            "batch processed"
        );
        BatchReport {
            results,
            executed,
            dead_lettered: plan.dead_letters.len(),
            ignored: plan.ignored,
            held,
        }
    }
}

/// Gives each result the trace of its order's span (downstream continues
/// from this service's span) and records its status there.
pub(super) fn trace_results(results: &mut [Announcement], spans: &HashMap<String, tracing::Span>) {
    for Announcement { result, .. } in results {
        if let Some(span) = spans.get(result.order_id.as_str()) {
            span.record("status", result.status.as_str());
            result.traceparent = propagation::traceparent(span).or(result.traceparent.take());
        }
    }
}

/// Each order of a batch continues its own trace (one trace per order,
/// across hops).
pub(super) fn spans_of(plan: &BatchPlan) -> HashMap<String, tracing::Span> {
    plan.orders()
        .map(|order| (order.order_id.clone(), order_span(order)))
        .collect()
}

/// The span of one order's processing, continuing the trace it carries.
fn order_span(order: &Order) -> tracing::Span {
    let span = tracing::info_span!(
        "order.process",
        order_id = %order.order_id,
        symbol = %order.symbol,
        side = order.side.as_str(),
        status = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    propagation::continue_trace(&span, order.traceparent.as_deref());
    propagation::record_ids(&span);
    span
}

/// Times the stages of one batch into the stage histogram.
pub(super) struct StageClock<'a> {
    stats: &'a Stats,
    since: Instant,
}

impl<'a> StageClock<'a> {
    pub(super) fn start(stats: &'a Stats) -> Self {
        StageClock {
            stats,
            since: Instant::now(),
        }
    }

    pub(super) fn lap(&mut self, stage: &str) {
        let now = Instant::now();
        self.stats.observe_stage(stage, now - self.since);
        self.since = now;
    }
}
