//! The batch path of paper and mock orders, whose outcomes are a pure
//! function of the order (DESIGN rule 4): every outcome is decided first,
//! then one statement inserts the new orders as they end, with their
//! trades, and returns the stored row of every order that existed. One
//! round trip and one commit per batch.
//!
//! An order stored before keeps its row: its outcome here is discarded
//! and its result re-emitted from the row, so nothing executes twice. A
//! batch meeting a stored row that is not finished takes the transaction
//! path instead, which finishes it.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use futures_util::future::join_all;

use super::{BatchError, BatchReport, StageClock, Worker, settled, spans_of, trace_results};
use crate::bus::{Announce, Entry};
use crate::domain::OrderStatus;
use crate::execution::Outcome;
use crate::store::{self, NewOrder};

impl Worker {
    pub(super) async fn process_decided(
        &self,
        entries: &[Entry],
    ) -> Result<BatchReport, BatchError> {
        let mode = self.executor.mode();
        let now = Utc::now();
        let mut clock = StageClock::start(&self.stats);

        // 1. Parse every entry and decide what it needs.
        let mut plan = self.plan(entries, now).await?;
        clock.lap("parse");

        // 2. Decide every distinct order's outcome. The plan's rows are not
        // needed past this step: they become the rows as they end.
        let planned = std::mem::take(&mut plan.rows);
        let spans = spans_of(&plan);
        let outcomes: HashMap<&str, Outcome> = join_all(plan.orders().map(|order| async {
            let outcome = self.execute(order, &plan, &spans).await;
            (order.order_id.as_str(), outcome)
        }))
        .await
        .into_iter()
        .collect();
        let mut fills = Vec::new();
        let rows: Vec<NewOrder> = planned
            .into_iter()
            .map(|row| match outcomes.get(row.order_id.as_str()) {
                Some(outcome) if row.status == OrderStatus::Pending => {
                    let (status, fill, reason) = settled(outcome);
                    let (row, trade) = store::decided_row(row, status, fill, reason);
                    fills.extend(trade);
                    row
                }
                _ => row,
            })
            .collect();
        clock.lap("execute");

        // 3. Write what is new, read what is not.
        let written = self.store.write_decided(&rows, &fills).await?;
        clock.lap("write");
        // A stored row left unfinished (a live-path row, or one from before
        // this path existed) needs the transaction path: the whole batch
        // takes it, before anything is announced. Its new rows are finished
        // already (and counted) and are answered from Postgres there,
        // counted once more in their `attempts`.
        let inserted = |id: &str| written.get(id).is_some_and(|w| w.inserted);
        let fresh = plan
            .orders()
            .filter(|o| inserted(&o.order_id) && plan.held_back_reason(&o.order_id).is_none())
            .count();
        let halted = plan
            .orders()
            .filter(|o| inserted(&o.order_id) && plan.is_halted(&o.order_id))
            .count();
        self.count_executed(fresh, halted);
        if written
            .values()
            .any(|w| !w.inserted && !w.row.is_terminal())
        {
            tracing::warn!(
                "a stored order of the batch is unfinished; the batch takes the transaction path"
            );
            let mut report = self.process_in_transaction(entries).await?;
            report.executed += fresh;
            return Ok(report);
        }
        // One order_id, one order: a message contradicting its stored
        // order is answered as a conflict.
        plan.check_conflicts(|id| written.get(id).map(|w| &w.row));

        // 4. Publish a result for every entry that names an order, and the
        // dead letters, then acknowledge, in one round trip.
        let mut results = plan.results(|id| written.get(id).map(|w| &w.row), mode, now);
        // A row this batch inserted was announced by nobody: its first
        // answer is its change (no replay to prepare); later entries of the
        // same order in the batch are answered with a replay of it.
        let mut first = HashSet::new();
        for announcement in &mut results {
            let id = announcement.result.order_id.as_str();
            if inserted(id) && first.insert(id.to_owned()) {
                announcement.kind = Announce::Change;
            }
        }
        trace_results(&mut results, &spans);
        self.publisher
            .publish_and_ack(&results, &plan.dead_letters, &plan.entry_ids)
            .await?;
        clock.lap("publish");
        Ok(self.report(entries, results, &plan, fresh, Vec::new()))
    }
}
