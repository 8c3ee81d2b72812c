//! The batch pipeline: parse → execute and store → announce and
//! acknowledge.
//!
//! [`Worker::process_batch`] is that sequence, in one place, with its two
//! ways of storing (decided in one statement, `decided.rs`; in a
//! transaction, then real orders to the exchange, `transaction.rs`):
//! nothing is acknowledged before its outcome is committed in Postgres and
//! its result published. [`Worker::run_until_stopped`] feeds it: first this consumer's
//! own pending entries, then new ones, with periodic claims of entries that
//! other consumers left idle. A batch that fails on infrastructure is kept
//! and retried with backoff, so an outage never consumes deliveries.

mod bookkeeping;
mod consume;
mod decided;
mod in_flight;
mod plan;
mod replay;
mod transaction;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::bus::{Announce, BusError, Consumer, Entry, Publisher};
use crate::domain::{ExecutionResult, Fill, Order, OrderStatus, halted_reason};
use crate::execution::{Executor, Outcome};
use crate::kill_switch::HaltBoard;
use crate::live::{LiveDesk, LiveError};
use crate::propagation;
use crate::stats::Stats;
use crate::store::entity::orders;
use crate::store::{self, Store, Written};

use bookkeeping::{StageClock, spans_of, trace_results};
use decided::Decided;
pub use in_flight::InFlight;
use plan::{BatchPlan, Limits};
pub use replay::Replayer;

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
    /// Handles one batch of entries from start to acknowledgement.
    #[tracing::instrument(
        name = "worker.batch",
        skip_all,
        fields(entries = entries.len(), trace_id = tracing::field::Empty, span_id = tracing::field::Empty),
        // The retry loop logs a failed batch once, at the level it deserves.
        err(level = "debug")
    )]
    pub async fn process_batch(&self, entries: &[Entry]) -> Result<BatchReport, BatchError> {
        propagation::record_ids(&tracing::Span::current());
        let mode = self.executor.mode();
        let now = Utc::now();
        let mut clock = StageClock::start(&self.stats);

        // 1. Parse every entry and decide what it needs.
        let mut plan = self.plan(entries, now).await?;
        clock.lap("parse");
        let spans = spans_of(&plan);

        // 2. Execute and store the outcomes, one of two ways. Decided: when
        // every outcome is known before Postgres is asked (paper, mock), one
        // statement inserts the orders as they end, with their trades. In a
        // transaction: upsert and lock the rows, execute what is not
        // finished, commit, then take real orders to the exchange with no
        // transaction open. A decided batch that meets a stored row left
        // unfinished is planned again and takes the transaction.
        let stored = if self.live.is_none() && self.executor.decides_alone() {
            match self.store_decided(&mut plan, &spans, &mut clock).await? {
                Decided::Stored(stored) => stored,
                Decided::Unfinished { executed } => {
                    tracing::warn!(
                        "a stored order of the batch is unfinished; the batch takes the transaction path"
                    );
                    plan = self.plan(entries, now).await?;
                    let mut stored = self
                        .store_in_transaction(&mut plan, &spans, &mut clock, now)
                        .await?;
                    stored.executed += executed;
                    stored
                }
            }
        } else {
            self.store_in_transaction(&mut plan, &spans, &mut clock, now)
                .await?
        };

        // 3. A result for every entry that names an order, from its row as
        // it now stands, and the dead letters. A row this batch inserted was
        // announced by nobody yet: its first answer is its change (unless a
        // duplicate in a concurrent batch announces it first, see
        // `Announce::FirstAnswer`), later entries of the same order get a
        // replay of it. An order still in flight has
        // no result yet (the reconciler announces it when it is decided);
        // one another replica holds gets its result from that replica.
        let mut results = plan.results(|id| stored.rows.get(id).map(|w| &w.row), mode, now);
        let mut first = HashSet::new();
        for announcement in &mut results {
            let id = announcement.result.order_id.as_str();
            if stored.rows.get(id).is_some_and(|w| w.inserted) && first.insert(id.to_owned()) {
                announcement.kind = Announce::FirstAnswer;
            }
        }
        results.retain(|a| {
            a.result.status.is_announced() && !stored.held.contains(&a.result.order_id)
        });
        trace_results(&mut results, &spans);

        // 4. Announce and acknowledge in one call (not the entries of held
        // orders): an attempt that fails has published nothing its retry
        // publishes again.
        let (entry_ids, held_entries) = plan.entry_ids_split(&stored.held);
        self.publisher
            .publish_and_ack(&results, &plan.dead_letters, &entry_ids)
            .await?;
        clock.lap("publish");

        // 5. Only then are finished live orders let go of (until then their
        // leases let the reconciler announce them, should this batch never
        // do it). Past the acknowledgement nothing is retried: a release
        // that fails costs one more announcement, when the lease expires.
        if let Some(desk) = &self.live
            && let Err(err) = desk.release_announced(&stored.sent).await
        {
            tracing::warn!(error = %err, "cannot let go of announced live orders; the reconciler announces them again when their leases expire");
        }

        Ok(self.report(entries, results, &plan, stored.executed, held_entries))
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
}

/// What storing a batch's outcomes left for its announcement.
struct Stored {
    /// Each order's row as it now stands, and whether this batch inserted it.
    rows: HashMap<String, Written>,
    /// Orders whose entries stay pending, with no result: held by another
    /// replica, or not sent yet.
    held: HashSet<String>,
    /// Live rows this batch recorded, let go of once announced.
    sent: Vec<orders::Model>,
    /// Orders this batch executed.
    executed: usize,
}

/// How an outcome ends an order: its status, fill and reason.
fn settled(outcome: &Outcome) -> (OrderStatus, Option<&Fill>, Option<String>) {
    match outcome {
        Outcome::Filled(fill) => (OrderStatus::Filled, Some(fill), None),
        Outcome::Rejected(reason) => (OrderStatus::Rejected, None, Some(reason.clone())),
        Outcome::Failed(reason) => (OrderStatus::Error, None, Some(reason.clone())),
    }
}
