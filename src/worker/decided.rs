//! The batch's first way of storing, for paper and mock orders, whose
//! outcomes are a pure function of the order (DESIGN rule 4): every outcome
//! is decided first, then one statement inserts the new orders as they
//! end, with their trades, and returns the stored row of every order that
//! existed. One round trip and one commit per batch.
//!
//! An order stored before keeps its row: its outcome here is discarded
//! and its result re-emitted from the row, so nothing executes twice. A
//! batch meeting a stored row that is not finished takes the transaction
//! instead, which finishes it.

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;

use super::bookkeeping::StageClock;
use super::plan::BatchPlan;
use super::{BatchError, Stored, Worker, settled};
use crate::domain::OrderStatus;
use crate::execution::Outcome;
use crate::store::{self, NewOrder};

/// How the decided way ended.
pub(super) enum Decided {
    Stored(Stored),
    /// A stored order of the batch is unfinished (a live-path row, or one
    /// from before this way existed): the batch must take the transaction.
    /// Its new rows are finished already, and `executed` of them counted;
    /// they are answered from Postgres there, counted once more in their
    /// `attempts`.
    Unfinished {
        executed: usize,
    },
}

impl Worker {
    pub(super) async fn store_decided(
        &self,
        plan: &mut BatchPlan,
        spans: &HashMap<String, tracing::Span>,
        clock: &mut StageClock<'_>,
    ) -> Result<Decided, BatchError> {
        // Decide every distinct order's outcome. The plan's rows are not
        // needed past this step: they become the rows as they end.
        let planned = std::mem::take(&mut plan.rows);
        let outcomes: HashMap<&str, Outcome> = join_all(plan.orders().map(|order| async {
            let outcome = self.execute(order, plan, spans).await;
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

        // Write what is new, read what is not.
        let written = self.store.write_decided(rows, &fills).await?;
        clock.lap("write");
        let inserted = |id: &str| written.get(id).is_some_and(|w| w.inserted);
        let executed = plan
            .orders()
            .filter(|o| inserted(&o.order_id) && plan.held_back_reason(&o.order_id).is_none())
            .count();
        let halted = plan
            .orders()
            .filter(|o| inserted(&o.order_id) && plan.is_halted(&o.order_id))
            .count();
        self.count_executed(executed, halted);
        if written
            .values()
            .any(|w| !w.inserted && !w.row.is_terminal())
        {
            return Ok(Decided::Unfinished { executed });
        }
        // One order_id, one order: a message contradicting its stored
        // order is answered as a conflict.
        plan.check_conflicts(|id| written.get(id).map(|w| &w.row));
        Ok(Decided::Stored(Stored {
            rows: written,
            held: HashSet::new(),
            sent: Vec::new(),
            executed,
        }))
    }
}
