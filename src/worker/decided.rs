//! The batch path of paper and mock orders, whose outcomes are a pure
//! function of the order (DESIGN rule 4): every outcome is decided first,
//! then one statement inserts the new orders as they end, with their
//! trades, and returns the stored row of every order that existed. One
//! round trip and one commit per batch.
//!
//! An order stored before keeps its row: its outcome here is discarded
//! and its result re-emitted from the row, so nothing executes twice. A
//! stored row that is not finished (left by the live path) takes the
//! transaction path, which may finish it.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use futures_util::future::join_all;

use super::{BatchError, BatchReport, StageClock, Worker, settled, spans_of, trace_results};
use crate::bus::Entry;
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

        // 2. Decide every distinct order's outcome.
        let spans = spans_of(&plan);
        let outcomes: HashMap<&str, Outcome> = join_all(plan.orders().map(|order| async {
            let outcome = self.execute(order, &plan, &spans).await;
            (order.order_id.as_str(), outcome)
        }))
        .await
        .into_iter()
        .collect();
        let mut fills = Vec::new();
        let rows: Vec<NewOrder> = plan
            .rows
            .iter()
            .map(|row| match outcomes.get(row.order_id.as_str()) {
                Some(outcome) if row.status == OrderStatus::Pending.as_str() => {
                    let (status, fill, reason) = settled(outcome);
                    let (row, trade) = store::decided_row(row, status, fill, reason);
                    fills.extend(trade);
                    row
                }
                _ => row.clone(),
            })
            .collect();
        clock.lap("execute");

        // 3. Write what is new, read what is not.
        let written = self.store.write_decided(&rows, &fills).await?;
        clock.lap("write");
        // One order_id, one order: a message contradicting its stored
        // order is answered as a conflict.
        plan.check_conflicts(|id| written.get(id).map(|w| &w.row));
        let unfinished: HashSet<String> = written
            .values()
            .filter(|w| !w.inserted && !w.row.is_terminal())
            .map(|w| w.row.order_id.clone())
            .collect();

        // 4. Publish a result for every entry that names an order, and the
        // dead letters; then acknowledge.
        let mut results = plan.results(|id| written.get(id).map(|w| &w.row), mode, now);
        results.retain(|result| !unfinished.contains(&result.order_id));
        trace_results(&mut results, &spans);
        self.publisher.publish(&results, &plan.dead_letters).await?;
        clock.lap("publish");
        let (entry_ids, left) = plan.entry_ids_split(&unfinished);
        self.consumer.ack(&entry_ids).await?;
        clock.lap("ack");

        let new = |id: &str| written.get(id).is_some_and(|w| w.inserted);
        let executed = plan
            .orders()
            .filter(|o| new(&o.order_id) && plan.stale_reason(&o.order_id).is_none())
            .count();
        let halted = plan
            .orders()
            .filter(|o| new(&o.order_id) && plan.is_halted(&o.order_id))
            .count();
        let left: HashSet<String> = left.into_iter().collect();
        let here = entries.iter().filter(|entry| !left.contains(&entry.id));
        let mut report = self.report(here, results, &plan, executed, halted, Vec::new());

        // 5. Rows left unfinished by another path are finished in a
        // transaction, with their entries.
        if !left.is_empty() {
            tracing::warn!(orders = ?unfinished, "stored orders are unfinished; finishing them in a transaction");
            let rest: Vec<Entry> = entries
                .iter()
                .filter(|entry| left.contains(&entry.id))
                .cloned()
                .collect();
            let finished = self.process_in_transaction(&rest).await?;
            report.results.extend(finished.results);
            report.executed += finished.executed;
            report.held = finished.held;
        }
        Ok(report)
    }
}
