//! The batch pipeline: parse → upsert → execute → commit → publish → ack.
//!
//! [`Worker::process_batch`] is that sequence, in one place: nothing is
//! acknowledged before its outcome is committed in Postgres and its result
//! published. [`Worker::run_until_stopped`] feeds it: first this consumer's
//! own pending entries, then new ones, with periodic claims of entries that
//! other consumers left idle. A batch that fails on infrastructure is kept
//! and retried with backoff, so an outage never consumes deliveries.

mod consume;
mod decided;
mod in_flight;
mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use tracing::Instrument;

use crate::bus::{Announcement, BusError, Consumer, Entry, Publisher};
use crate::domain::{ExecutionResult, Fill, Order, OrderStatus, halted_reason};
use crate::execution::{Executor, Outcome};
use crate::kill_switch::HaltBoard;
use crate::live::{LiveDesk, LiveError};
use crate::propagation;
use crate::stats::Stats;
use crate::store::entity::orders;
use crate::store::{self, NewTrade, Store};

pub use in_flight::InFlight;
use plan::{BatchPlan, Limits};

/// Live orders of one batch handled at the same time.
const LIVE_ORDERS_AT_ONCE: usize = 4;

/// How the worker reads the stream.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub batch_size: usize,
    pub block_ms: u64,
    pub claim_idle_ms: u64,
    pub claim_interval_ms: u64,
    pub max_deliveries: u64,
    /// Batches processed at the same time by one instance.
    pub concurrency: usize,
    /// Orders issued longer ago are rejected as stale, never executed.
    pub max_order_age: Option<Duration>,
    /// Orders stamped further ahead of this service's clock are rejected.
    pub max_order_future: Duration,
    /// A batch still unfinished after this long (a hung connection) is
    /// abandoned, rolled back and retried.
    pub batch_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("postgres: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("redis: {0}")]
    Redis(#[from] BusError),
    #[error("the batch did not finish within {0:?}")]
    TimedOut(Duration),
    #[error("live path: {0}")]
    Live(#[from] LiveError),
    /// The kill-switch stream has not been read lately: a halt may be in
    /// force that this replica cannot know of, so nothing is executed.
    #[error("the kill-switch stream cannot be read; orders wait (a halt may be in force)")]
    HaltsUnknown,
}

impl BatchError {
    /// A failure caused by some message's content rather than by an outage.
    pub fn is_message_level(&self) -> bool {
        matches!(self, BatchError::Database(err) if store::is_data_error(err))
    }

    /// The batch waited too long for a row lock another transaction holds:
    /// a duplicate in flight elsewhere, or a transaction its client left.
    pub fn is_lock_timeout(&self) -> bool {
        matches!(self, BatchError::Database(err) if store::is_lock_timeout(err))
    }
}

/// What one batch did, for callers and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchReport {
    pub results: Vec<ExecutionResult>,
    pub executed: usize,
    pub dead_lettered: usize,
    pub ignored: usize,
    /// Entries left unacknowledged: their live order is held by another
    /// replica, or could not be sent yet.
    pub held: Vec<String>,
}

#[derive(Clone)]
pub struct Worker {
    pub consumer: Consumer,
    pub publisher: Publisher,
    pub store: Store,
    pub executor: Arc<dyn Executor>,
    pub options: WorkerOptions,
    pub stats: Arc<Stats>,
    pub in_flight: InFlight,
    /// The trading halts in force.
    pub halts: HaltBoard,
    /// Real orders: they take the live path after their rows are stored.
    pub live: Option<Arc<LiveDesk>>,
}

impl Worker {
    /// Handles one batch of entries from start to acknowledgement: in one
    /// statement when every outcome can be decided before Postgres is
    /// asked (paper and mock), else in a transaction (real orders then go
    /// one by one to the exchange).
    #[tracing::instrument(
        name = "worker.batch",
        skip_all,
        fields(entries = entries.len(), trace_id = tracing::field::Empty, span_id = tracing::field::Empty),
        // The retry loop logs a failed batch once, at the level it deserves.
        err(level = "debug")
    )]
    pub async fn process_batch(&self, entries: &[Entry]) -> Result<BatchReport, BatchError> {
        propagation::record_ids(&tracing::Span::current());
        if self.live.is_none() && self.executor.decides_alone() {
            self.process_decided(entries).await
        } else {
            self.process_in_transaction(entries).await
        }
    }

    /// Parses every entry of a batch and decides what it needs.
    async fn plan(&self, entries: &[Entry], now: DateTime<Utc>) -> Result<BatchPlan, BatchError> {
        let limits = Limits {
            max_deliveries: self.options.max_deliveries,
            max_message_bytes: self.consumer.topology().max_message_bytes,
            max_order_age: self
                .options
                .max_order_age
                .and_then(|age| chrono::Duration::from_std(age).ok()),
            max_order_future: chrono::Duration::from_std(self.options.max_order_future)
                .unwrap_or_default(),
        };
        let worn_out: Vec<&str> = entries
            .iter()
            .filter(|entry| entry.deliveries > limits.max_deliveries)
            .map(|entry| entry.id.as_str())
            .collect();
        let notes = self.consumer.failure_notes(&worn_out).await?;
        let mut plan = BatchPlan::new(entries, &limits, &notes, self.executor.mode(), now);
        // A halt in force when the batch starts covers its orders; while
        // the halts cannot be learnt, none is executed.
        if !self.halts.is_current() {
            return Err(BatchError::HaltsUnknown);
        }
        let halts = self.halts.snapshot();
        plan.hold_halted(|order| halted_reason(&halts, order));
        Ok(plan)
    }

    /// One order's outcome: rejected when stale or halted, else executed.
    async fn execute(
        &self,
        order: &Order,
        plan: &BatchPlan,
        spans: &HashMap<String, tracing::Span>,
    ) -> Outcome {
        if let Some(reason) = plan.held_back_reason(&order.order_id) {
            return Outcome::Rejected(reason.to_owned());
        }
        let parent = spans
            .get(order.order_id.as_str())
            .cloned()
            .unwrap_or_else(tracing::Span::none);
        let span = tracing::info_span!(parent: &parent, "order.execute", mode = self.executor.mode().as_str());
        self.executor.execute(order).instrument(span).await
    }

    /// The batch path of orders whose outcome needs someone else (real
    /// orders, dry runs, paper fills at market prices): upsert and lock the
    /// rows, execute what is not finished, commit, then take real orders
    /// to the exchange with no transaction open.
    async fn process_in_transaction(&self, entries: &[Entry]) -> Result<BatchReport, BatchError> {
        let mode = self.executor.mode();
        let now = Utc::now();
        let mut clock = StageClock::start(&self.stats);

        // 1. Parse every entry and decide what it needs.
        let mut plan = self.plan(entries, now).await?;
        clock.lap("parse");

        // 2. Upsert all rows in one statement; they stay locked until commit.
        let mut batch = self.store.begin_batch().await?;
        let stored = batch.upsert_orders(&plan.rows).await?;
        // One order_id, one order: a message contradicting its stored order
        // is answered as a conflict and never executed.
        let conflicting = plan.check_conflicts(|id| stored.get(id));
        clock.lap("upsert");

        let order_spans = spans_of(&plan);

        // 3. Execute the orders whose rows are not terminal yet (real
        // orders only after the commit, on the live path).
        let (to_send, to_execute): (Vec<&Order>, Vec<&Order>) = plan
            .orders()
            .filter(|order| {
                !conflicting.contains(&order.order_id)
                    && stored
                        .get(&order.order_id)
                        .is_some_and(|row| !row.is_terminal())
            })
            .partition(|order| {
                // A live order already past PENDING is in flight: only the
                // live path may touch it (stale or halted, it is still
                // looked up, never overwritten).
                self.live.is_some()
                    && (plan.held_back_reason(&order.order_id).is_none()
                        || stored
                            .get(&order.order_id)
                            .is_some_and(|row| row.status != OrderStatus::Pending))
            });
        let outcomes = join_all(
            to_execute
                .iter()
                .map(|order| self.execute(order, &plan, &order_spans)),
        )
        .await;
        clock.lap("execute");

        // 4. Record outcomes and fills, and commit.
        let (finished, fills) = completions(&to_execute, &outcomes, &stored, now);
        batch.record(&finished, &fills).await?;
        batch.commit().await?;
        clock.lap("commit");
        // Counted once committed: a retry finds these rows finished.
        let executed = to_execute
            .iter()
            .filter(|o| plan.held_back_reason(&o.order_id).is_none())
            .count();
        let halted = to_execute
            .iter()
            .filter(|o| plan.is_halted(&o.order_id))
            .count();
        self.count_executed(executed, halted);

        // 4b. Real orders, one by one, no transaction open while sending.
        let (sent, held, sent_now) = self
            .send_live(&to_send, &plan, &stored, &order_spans)
            .await?;
        if self.live.is_some() {
            clock.lap("live");
        }

        // 5. Publish a result for every entry that names an order, and the dead letters.
        let finished: HashMap<&str, &orders::Model> = finished
            .iter()
            .map(|row| (row.order_id.as_str(), row))
            .collect();
        let mut results = plan.results(
            |id| {
                sent.get(id)
                    .or_else(|| finished.get(id).copied())
                    .or_else(|| stored.get(id))
            },
            mode,
            now,
        );
        // An order still in flight has no result yet: the reconciler
        // announces it when it is decided. An order another holder has
        // gets its result from that holder (this snapshot may be older).
        results.retain(|a| a.result.status.is_announced() && !held.contains(&a.result.order_id));
        trace_results(&mut results, &order_spans);

        // 6. Announce and acknowledge (not the entries of orders another
        // replica holds, or that could not be sent yet) in one call: an
        // attempt that fails has published nothing its retry publishes
        // again.
        let (entry_ids, held_entries) = plan.entry_ids_split(&held);
        self.publisher
            .publish_and_ack(&results, &plan.dead_letters, &entry_ids)
            .await?;
        clock.lap("publish");
        // Only then are finished live orders let go of (until then their
        // leases let the reconciler announce them, should this batch never
        // do it). Past the acknowledgement nothing is retried: a release
        // that fails costs one more announcement, when the lease expires.
        if let Some(desk) = &self.live
            && let Err(err) = desk.release_announced(sent.values()).await
        {
            tracing::warn!(error = %err, "cannot let go of announced live orders; the reconciler announces them again when their leases expire");
        }

        Ok(self.report(entries, results, &plan, executed + sent_now, held_entries))
    }

    /// Takes real orders to the exchange: the rows they stand as now, the
    /// orders whose entries must stay unacknowledged, and how many were
    /// sent for the first time (the desk counts them as they leave).
    async fn send_live(
        &self,
        orders: &[&Order],
        plan: &BatchPlan,
        stored: &HashMap<String, orders::Model>,
        spans: &HashMap<String, tracing::Span>,
    ) -> Result<(HashMap<String, orders::Model>, HashSet<String>, usize), BatchError> {
        let mut sent = HashMap::new();
        let mut held = HashSet::new();
        let mut sent_now = 0;
        let Some(desk) = &self.live else {
            return Ok((sent, held, sent_now));
        };
        let known: Vec<(&Order, &store::NewOrder)> = orders
            .iter()
            .filter(|order| stored.contains_key(&order.order_id))
            .filter_map(|order| Some((*order, plan.row(&order.order_id)?)))
            .collect();
        let handling: Vec<_> = known
            .iter()
            .map(|(order, row)| {
                let parent = spans
                    .get(order.order_id.as_str())
                    .cloned()
                    .unwrap_or_else(tracing::Span::none);
                desk.handle(order, row).instrument(tracing::info_span!(
                    parent: &parent,
                    "order.execute",
                    mode = "live"
                ))
            })
            .collect();
        let handled: Vec<_> = stream::iter(handling)
            .buffered(LIVE_ORDERS_AT_ONCE)
            .collect()
            .await;
        for ((order, _), handled) in known.iter().zip(handled) {
            let handled = handled?;
            sent_now += usize::from(handled.executed);
            if handled.hold {
                held.insert(order.order_id.clone());
            }
            if let Some(row) = handled.row {
                sent.insert(order.order_id.clone(), row);
            }
        }
        Ok((sent, held, sent_now))
    }

    /// Counts executions as they are stored, not when their batch is
    /// acknowledged: an attempt that stores them and then fails is followed
    /// by one that finds them stored.
    fn count_executed(&self, executed: usize, halted: usize) {
        self.stats.executed.inc_by(executed as u64);
        self.stats.halted.inc_by(halted as u64);
    }

    /// Counts what a batch did into the metrics (its executions were
    /// counted when stored), and reports it.
    fn report(
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
fn trace_results(results: &mut [Announcement], spans: &HashMap<String, tracing::Span>) {
    for Announcement { result, .. } in results {
        if let Some(span) = spans.get(result.order_id.as_str()) {
            span.record("status", result.status.as_str());
            result.traceparent = propagation::traceparent(span).or(result.traceparent.take());
        }
    }
}

/// How an outcome ends an order: its status, fill and reason.
fn settled(outcome: &Outcome) -> (OrderStatus, Option<&Fill>, Option<String>) {
    match outcome {
        Outcome::Filled(fill) => (OrderStatus::Filled, Some(fill), None),
        Outcome::Rejected(reason) => (OrderStatus::Rejected, None, Some(reason.clone())),
        Outcome::Failed(reason) => (OrderStatus::Error, None, Some(reason.clone())),
    }
}

/// The rows executed orders end up as, and the fills to record.
fn completions(
    orders: &[&Order],
    outcomes: &[Outcome],
    stored: &HashMap<String, orders::Model>,
    now: chrono::DateTime<Utc>,
) -> (Vec<orders::Model>, Vec<NewTrade>) {
    let mut finished = Vec::with_capacity(orders.len());
    let mut fills = Vec::new();
    for (order, outcome) in orders.iter().zip(outcomes) {
        let Some(row) = stored.get(&order.order_id) else {
            continue;
        };
        let (status, fill, reason) = settled(outcome);
        let done = store::completed_row(row, status, fill, reason, now);
        if let Some(fill) = fill {
            fills.push(store::trade_for(&done, fill, 1));
        }
        finished.push(done);
    }
    (finished, fills)
}

/// Each order of a batch continues its own trace (one trace per order,
/// across hops).
fn spans_of(plan: &BatchPlan) -> HashMap<String, tracing::Span> {
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
struct StageClock<'a> {
    stats: &'a Stats,
    since: Instant,
}

impl<'a> StageClock<'a> {
    fn start(stats: &'a Stats) -> Self {
        StageClock {
            stats,
            since: Instant::now(),
        }
    }

    fn lap(&mut self, stage: &str) {
        let now = Instant::now();
        self.stats.observe_stage(stage, now - self.since);
        self.since = now;
    }
}
