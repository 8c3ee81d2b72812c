//! The first step of a batch: what each entry is and what it needs, decided
//! without I/O.
//!
//! Within a batch the first entry of an `order_id` decides its row; later
//! entries with the same id only receive that row's result.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::bus::{DeadLetter, Entry};
use crate::domain::{
    ExecutionResult, Incoming, Order, OrderStatus, Parsed, Rejection, TradingMode,
};
use crate::store::{self, NewOrder, entity::orders};

/// What becomes of one entry.
#[derive(Debug)]
enum Disposition {
    /// A valid order: its result comes from its row.
    Order {
        order_id: String,
        traceparent: Option<String>,
    },
    /// A named but invalid order: REJECTED.
    Rejected {
        rejection: Box<Rejection>,
    },
    DeadLetter,
    Ignored,
}

#[derive(Debug, Default)]
pub(super) struct BatchPlan {
    dispositions: Vec<Disposition>,
    orders: Vec<Order>,
    pub rows: Vec<NewOrder>,
    pub dead_letters: Vec<DeadLetter>,
    pub entry_ids: Vec<String>,
    pub ignored: usize,
}

impl BatchPlan {
    pub fn new(
        entries: &[Entry],
        max_deliveries: u64,
        mode: TradingMode,
        now: DateTime<Utc>,
    ) -> Self {
        let mut plan = BatchPlan::default();
        let mut seen = HashSet::new();
        for entry in entries {
            plan.entry_ids.push(entry.id.clone());
            if entry.deliveries > max_deliveries {
                let reason = format!(
                    "delivered {} times, more than MAX_DELIVERIES={max_deliveries}",
                    entry.deliveries
                );
                plan.dead_letter(entry, None, reason);
                continue;
            }
            let disposition = match Parsed::from_incoming(Incoming::from_entry(&entry.fields)) {
                Parsed::Order(order) => {
                    let order_id = order.order_id.clone();
                    let traceparent = order.traceparent.clone();
                    if seen.insert(order_id.clone()) {
                        plan.rows.push(store::pending_row(&order, mode, now));
                        plan.orders.push(order);
                    }
                    Disposition::Order {
                        order_id,
                        traceparent,
                    }
                }
                Parsed::Rejected(rejection) => {
                    if !rejection.fits_columns {
                        let reason = format!(
                            "rejected and does not fit the orders table: {}",
                            rejection.reason
                        );
                        plan.dead_letter(entry, Some(rejection.order_id.clone()), reason);
                    } else if seen.insert(rejection.order_id.clone()) {
                        plan.rows.push(store::rejected_row(&rejection, mode, now));
                    }
                    Disposition::Rejected {
                        rejection: Box::new(rejection),
                    }
                }
                Parsed::Unidentified(reason) => {
                    plan.dead_letter(entry, None, reason);
                    Disposition::DeadLetter
                }
                Parsed::Ignored(kind) => {
                    tracing::debug!(entry = %entry.id, kind = %kind, "ignoring a message that is not an order");
                    plan.ignored += 1;
                    Disposition::Ignored
                }
            };
            plan.dispositions.push(disposition);
        }
        plan
    }

    fn dead_letter(&mut self, entry: &Entry, order_id: Option<String>, reason: String) {
        tracing::warn!(entry = %entry.id, order_id = ?order_id, reason = %reason, "dead-lettering a message");
        self.dead_letters.push(DeadLetter {
            original_id: entry.id.clone(),
            order_id,
            reason,
            deliveries: entry.deliveries,
            fields: entry.fields.clone(),
        });
    }

    /// The distinct valid orders of the batch.
    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.iter()
    }

    /// A result for every entry that names an order, in entry order:
    /// from its row as it now stands, or from the rejection itself when the
    /// rejection has no row to speak for it.
    pub fn results<'a>(
        &self,
        current: impl Fn(&str) -> Option<&'a orders::Model>,
        mode: TradingMode,
        now: DateTime<Utc>,
    ) -> Vec<ExecutionResult> {
        self.dispositions
            .iter()
            .filter_map(|disposition| match disposition {
                Disposition::Order {
                    order_id,
                    traceparent,
                } => current(order_id).map(|row| store::result_from_row(row, traceparent.clone())),
                Disposition::Rejected { rejection } => Some(
                    current(&rejection.order_id)
                        .filter(|row| {
                            OrderStatus::parse(&row.status).is_some_and(OrderStatus::is_terminal)
                        })
                        .map(|row| store::result_from_row(row, rejection.traceparent.clone()))
                        .unwrap_or_else(|| rejection_result(rejection, mode, now)),
                ),
                Disposition::DeadLetter | Disposition::Ignored => None,
            })
            .collect()
    }
}

/// The result of a rejected order that has no row to speak for it.
fn rejection_result(
    rejection: &Rejection,
    mode: TradingMode,
    now: DateTime<Utc>,
) -> ExecutionResult {
    let mut result = ExecutionResult::new(
        rejection.order_id.clone(),
        OrderStatus::Rejected,
        mode,
        now.timestamp(),
    );
    result.symbol = rejection.symbol.clone();
    result.side = rejection.side.clone();
    result.quantity = rejection.quantity;
    result.client_id = rejection.client_id.clone();
    result.strategy_id = rejection.strategy_id.clone();
    result.bot_id = rejection.bot_id.clone();
    result.error_message = Some(rejection.reason.clone());
    result.traceparent = rejection.traceparent.clone();
    result
}
