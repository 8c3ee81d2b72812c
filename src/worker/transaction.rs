//! The batch's second way of storing: in a transaction, for orders whose
//! outcome needs someone else (real orders, dry runs, paper fills at
//! market prices). Upsert and lock the rows, execute what is not finished,
//! commit, then take real orders to the exchange with no transaction open.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use tracing::Instrument;

use super::bookkeeping::StageClock;
use super::plan::BatchPlan;
use super::{BatchError, Stored, Worker, settled};
use crate::domain::{Order, OrderStatus};
use crate::execution::Outcome;
use crate::store::entity::orders;
use crate::store::{self, NewTrade, Written};

/// Live orders of one batch handled at the same time.
const LIVE_ORDERS_AT_ONCE: usize = 4;

impl Worker {
    pub(super) async fn store_in_transaction(
        &self,
        plan: &mut BatchPlan,
        spans: &HashMap<String, tracing::Span>,
        clock: &mut StageClock<'_>,
        now: chrono::DateTime<Utc>,
    ) -> Result<Stored, BatchError> {
        // Upsert all rows in one statement; they stay locked until commit.
        let mut batch = self.store.begin_batch().await?;
        let stored = batch.upsert_orders(&plan.rows).await?;
        // One order_id, one order: a message contradicting its stored order
        // is answered as a conflict and never executed.
        let conflicting = plan.check_conflicts(|id| stored.get(id));
        clock.lap("upsert");

        // Execute the orders whose rows are not terminal yet (real orders
        // only after the commit, on the live path).
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
                .map(|order| self.execute(order, plan, spans)),
        )
        .await;
        clock.lap("execute");

        // Record outcomes and fills, and commit.
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

        // Real orders, one by one, no transaction open while sending.
        let (sent, held, sent_now) = self.send_live(&to_send, plan, &stored, spans).await?;
        if self.live.is_some() {
            clock.lap("live");
        }

        // Each order's row as it now stands: sent, else finished, else stored.
        let mut rows: HashMap<String, Written> = stored
            .into_iter()
            .map(|(id, row)| {
                (
                    id,
                    Written {
                        row,
                        inserted: false,
                    },
                )
            })
            .collect();
        for row in finished.into_iter().chain(sent.values().cloned()) {
            rows.insert(
                row.order_id.clone(),
                Written {
                    row,
                    inserted: false,
                },
            );
        }
        Ok(Stored {
            rows,
            held,
            sent: sent.into_values().collect(),
            executed: executed + sent_now,
        })
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
