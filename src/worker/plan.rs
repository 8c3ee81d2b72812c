//! The first step of a batch: what each entry is and what it needs, decided
//! without I/O.
//!
//! Within a batch the first entry of an `order_id` decides its row; later
//! entries with the same id only receive that row's result.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::bus::{DeadLetter, Entry, FailureNote};
use crate::domain::valid_traceparent;
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
    /// Why an order must not be executed although it is valid (too old).
    stale: HashMap<String, String>,
    pub rows: Vec<NewOrder>,
    pub dead_letters: Vec<DeadLetter>,
    pub entry_ids: Vec<String>,
    pub ignored: usize,
}

impl BatchPlan {
    /// `notes` holds the recorded failures of entries delivered too often.
    pub fn new(
        entries: &[Entry],
        limits: &Limits,
        notes: &HashMap<String, FailureNote>,
        mode: TradingMode,
        now: DateTime<Utc>,
    ) -> Self {
        let max_deliveries = limits.max_deliveries;
        let mut plan = BatchPlan::default();
        let mut seen = HashSet::new();
        for entry in entries {
            plan.entry_ids.push(entry.id.clone());
            let fields = match readable(entry, limits) {
                Ok(fields) => fields,
                Err(letter) => {
                    tracing::warn!(entry = %entry.id, reason = %letter.reason, "dead-lettering an unreadable entry");
                    plan.dead_letters.push(*letter);
                    continue;
                }
            };
            if entry.deliveries > max_deliveries {
                let reason = format!(
                    "delivered {} times, more than MAX_DELIVERIES={max_deliveries}",
                    entry.deliveries
                );
                let note = notes.get(&entry.id).cloned().unwrap_or_default();
                let order_id = match Parsed::from_incoming(Incoming::from_entry(&fields)) {
                    Parsed::Order(order) => Some(order.order_id),
                    Parsed::Rejected(rejection) => Some(rejection.order_id),
                    Parsed::Unidentified(_) | Parsed::Ignored(_) => None,
                };
                plan.dead_letter(entry, order_id, reason, note);
                continue;
            }
            let disposition = match Parsed::from_incoming(Incoming::from_entry(&fields)) {
                Parsed::Order(mut order) => {
                    if let Some(traceparent) = forwarded_traceparent(entry) {
                        order.traceparent = Some(traceparent);
                    }
                    let order_id = order.order_id.clone();
                    let traceparent = order.traceparent.clone();
                    if seen.insert(order_id.clone()) {
                        let issued_at = order
                            .timestamp
                            .or_else(|| stream_time(&entry.id))
                            .unwrap_or(now);
                        if let Some(reason) = limits.staleness(issued_at, now) {
                            plan.stale.insert(order_id.clone(), reason);
                        }
                        plan.rows.push(store::pending_row(&order, mode, now));
                        plan.orders.push(order);
                    }
                    Disposition::Order {
                        order_id,
                        traceparent,
                    }
                }
                Parsed::Rejected(mut rejection) => {
                    if let Some(traceparent) = forwarded_traceparent(entry) {
                        rejection.traceparent = Some(traceparent);
                    }
                    if !rejection.fits_columns {
                        let reason = format!(
                            "rejected and does not fit the orders table: {}",
                            rejection.reason
                        );
                        let order_id = Some(rejection.order_id.clone());
                        plan.dead_letter(entry, order_id, reason, FailureNote::default());
                    } else if seen.insert(rejection.order_id.clone()) {
                        plan.rows.push(store::rejected_row(&rejection, mode, now));
                    }
                    Disposition::Rejected {
                        rejection: Box::new(rejection),
                    }
                }
                Parsed::Unidentified(reason) => {
                    plan.dead_letter(entry, None, reason, FailureNote::default());
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

    fn dead_letter(
        &mut self,
        entry: &Entry,
        order_id: Option<String>,
        reason: String,
        note: FailureNote,
    ) {
        tracing::warn!(entry = %entry.id, order_id = ?order_id, reason = %reason, "dead-lettering a message");
        self.dead_letters
            .push(DeadLetter::of_entry(entry, order_id, reason, note));
    }

    /// The distinct valid orders of the batch.
    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.iter()
    }

    /// Why this order is too old to execute, if it is.
    pub fn stale_reason(&self, order_id: &str) -> Option<&str> {
        self.stale.get(order_id).map(String::as_str)
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
                        .filter(|row| row.is_terminal())
                        .map(|row| store::result_from_row(row, rejection.traceparent.clone()))
                        .unwrap_or_else(|| rejection_result(rejection, mode, now)),
                ),
                Disposition::DeadLetter | Disposition::Ignored => None,
            })
            .collect()
    }
}

/// An entry's fields with their names as text, or the dead letter it
/// becomes unparsed: larger than `MAX_MESSAGE_BYTES` (only its first bytes
/// are kept), a field name that is not UTF-8, or nothing left of it.
fn readable(entry: &Entry, limits: &Limits) -> Result<Vec<(String, Vec<u8>)>, Box<DeadLetter>> {
    let letter = |reason: String| {
        Box::new(DeadLetter::of_entry(
            entry,
            None,
            reason,
            FailureNote::default(),
        ))
    };
    if entry.size() > limits.max_message_bytes {
        return Err(Box::new(DeadLetter::oversized_entry(
            entry,
            limits.max_message_bytes,
        )));
    }
    if entry.fields.is_empty() {
        return Err(letter(
            "the entry was deleted from the stream before it was acknowledged".to_owned(),
        ));
    }
    entry.named_fields().map_err(letter)
}

/// The limits planning applies to entries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_deliveries: u64,
    /// Larger entries are dead-lettered unparsed.
    pub max_message_bytes: usize,
    /// Orders issued longer ago than this are rejected unexecuted.
    pub max_order_age: Option<chrono::Duration>,
}

impl Limits {
    fn staleness(&self, issued_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<String> {
        let max_age = self.max_order_age?;
        let age = now - issued_at;
        (age > max_age).then(|| {
            format!(
                "stale: issued {} s ago, more than ORDER_MAX_AGE_SECS={}",
                age.num_seconds(),
                max_age.num_seconds()
            )
        })
    }
}

/// The trace context the shim put beside an entry's payload: the shim's own
/// span, which continues the trace the message named.
fn forwarded_traceparent(entry: &Entry) -> Option<String> {
    let (_, value) = entry
        .fields
        .iter()
        .find(|(name, _)| name == b"traceparent")?;
    valid_traceparent(std::str::from_utf8(value).ok()?).map(str::to_owned)
}

/// When an entry was added, from its id (`<unix ms>-<seq>`).
fn stream_time(id: &str) -> Option<DateTime<Utc>> {
    let millis = id.split('-').next()?.parse::<i64>().ok()?;
    DateTime::from_timestamp_millis(millis)
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
