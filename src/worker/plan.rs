//! The first step of a batch: what each entry is and what it needs, decided
//! without I/O.
//!
//! Within a batch the first entry of an `order_id` decides its row; later
//! entries with the same id only receive that row's result. Once the rows
//! are known, every entry is checked against its order's stored content:
//! one that says something else is a conflict, answered REJECTED and never
//! executed, the stored order untouched.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::bus::{Announce, Announcement, DeadLetter, Entry, FailureNote};
use crate::domain::{
    Content, Incoming, MAX_ID_LEN, Order, Parsed, Rejection, TradingMode, fits_column,
};
use crate::store::{self, NewOrder, entity::orders};

mod answers;
mod reading;

use answers::{conflict_reason, order_conflict, rejection_result};
pub(super) use reading::Limits;
use reading::{forwarded_traceparent, readable};

/// What becomes of one entry.
#[derive(Debug)]
enum Disposition {
    /// A valid order, as this entry says it: its result comes from its
    /// row (or, in a conflict, from what it asked for).
    Order(Box<Order>),
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
    /// Whether each disposition's entry was delivered before.
    redelivered: Vec<bool>,
    orders: Vec<Order>,
    /// Why an order must not be executed although it is valid: stamped
    /// too far from now, or covered by a trading halt.
    held_back: HashMap<String, String>,
    /// Orders held back by a trading halt.
    halted: HashSet<String>,
    /// Entries (by position) that contradict their stored order, with the
    /// fields that differ.
    conflicts: HashMap<usize, Vec<&'static str>>,
    pub rows: Vec<NewOrder>,
    pub dead_letters: Vec<DeadLetter>,
    pub entry_ids: Vec<String>,
    /// The order each entry naming a valid order names, by entry id.
    order_of_entry: HashMap<String, String>,
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
                    // Entries of an order that cannot be answered yet
                    // stay pending.
                    plan.order_of_entry
                        .insert(entry.id.clone(), order.order_id.clone());
                    if seen.insert(order.order_id.clone()) {
                        if let Some(reason) = limits.staleness(order.timestamp, &entry.id, now) {
                            plan.held_back.insert(order.order_id.clone(), reason);
                        }
                        plan.rows.push(store::pending_row(&order, mode, now));
                        plan.orders.push(order.clone());
                    }
                    Disposition::Order(Box::new(order))
                }
                Parsed::Rejected(mut rejection) => {
                    if let Some(traceparent) = forwarded_traceparent(entry) {
                        rejection.traceparent = Some(traceparent);
                    }
                    let id_fits = fits_column(&rejection.order_id, MAX_ID_LEN);
                    if !rejection.fits_columns {
                        let kept = if id_fits {
                            "its row keeps them in raw_message"
                        } else {
                            "the order_id itself is too long to key a row: this letter is the only record"
                        };
                        let reason = format!(
                            "rejected, with values that fit no column of the orders table ({kept}): {}",
                            rejection.reason
                        );
                        let order_id = Some(rejection.order_id.clone());
                        plan.dead_letter(entry, order_id, reason, FailureNote::default());
                    }
                    // The id keeps this outcome: a row even when some value
                    // did not fit (the row then keeps the raw fields).
                    if id_fits && seen.insert(rejection.order_id.clone()) {
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
            plan.redelivered.push(entry.deliveries > 1);
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

    /// The row an order of the batch is stored from.
    pub fn row(&self, order_id: &str) -> Option<&NewOrder> {
        self.rows.iter().find(|row| row.order_id == order_id)
    }

    /// The entries of the batch split in two: those to acknowledge, and
    /// those naming one of `held` (left pending).
    pub fn entry_ids_split(
        &self,
        held: &HashSet<String>,
    ) -> (std::borrow::Cow<'_, [String]>, Vec<String>) {
        if held.is_empty() {
            return (std::borrow::Cow::Borrowed(&self.entry_ids), Vec::new());
        }
        let (acknowledged, kept): (Vec<String>, Vec<String>) =
            self.entry_ids.iter().cloned().partition(|id| {
                self.order_of_entry
                    .get(id.as_str())
                    .is_none_or(|order| !held.contains(order))
            });
        (std::borrow::Cow::Owned(acknowledged), kept)
    }

    /// The distinct valid orders of the batch.
    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.iter()
    }

    /// Compares every entry that names an order with that order's stored
    /// row, and returns the ids whose row-deciding message conflicts with
    /// the row (an order stored earlier with other content): they are not
    /// executed.
    pub fn check_conflicts<'a>(
        &mut self,
        stored: impl Fn(&str) -> Option<&'a orders::Model>,
    ) -> HashSet<String> {
        let mut blocked = HashSet::new();
        // Each stored row's content, worked out once per order.
        let mut known: HashMap<&str, Content> = HashMap::new();
        for (position, disposition) in self.dispositions.iter().enumerate() {
            let (order_id, content) = match disposition {
                Disposition::Order(order) => (order.order_id.as_str(), order.content()),
                Disposition::Rejected { rejection } => {
                    (rejection.order_id.as_str(), rejection.content())
                }
                Disposition::DeadLetter | Disposition::Ignored => continue,
            };
            let Some(row) = stored(order_id) else {
                continue;
            };
            let deciding = !known.contains_key(order_id);
            // A row this batch's upsert inserted (its first attempt) was
            // made from its deciding entry: nothing to compare.
            if deciding && row.attempts == 1 {
                known.insert(order_id, content);
                continue;
            }
            let stored_content = known
                .entry(order_id)
                .or_insert_with(|| store::stored_content(row));
            let differing = stored_content.differences(&content);
            if !differing.is_empty() {
                if deciding && matches!(disposition, Disposition::Order(_)) {
                    blocked.insert(order_id.to_owned());
                }
                tracing::warn!(order_id = %order_id, differing = ?differing,
                    "an order_id was reused with different content; answered as a conflict");
                self.conflicts.insert(position, differing);
            }
        }
        blocked
    }

    /// Entries answered as conflicts.
    pub fn conflict_count(&self) -> usize {
        self.conflicts.len()
    }

    /// Holds back every order a halt covers (`reason` says which), before
    /// anything is executed; a halt outranks staleness.
    pub fn hold_halted(&mut self, reason: impl Fn(&Order) -> Option<String>) {
        for order in &self.orders {
            if let Some(reason) = reason(order) {
                self.held_back.insert(order.order_id.clone(), reason);
                self.halted.insert(order.order_id.clone());
            }
        }
    }

    pub fn is_halted(&self, order_id: &str) -> bool {
        self.halted.contains(order_id)
    }

    /// Why this order is held back (stale, from the future or halted), if
    /// it is.
    pub fn held_back_reason(&self, order_id: &str) -> Option<&str> {
        self.held_back.get(order_id).map(String::as_str)
    }

    /// A result for every entry that names an order, in entry order:
    /// from its row as it now stands, or from the rejection itself when the
    /// rejection has no row to speak for it.
    /// The result each entry that names an order is answered with, and
    /// how: a redelivered entry only announces a change nobody announced
    /// yet; a fresh one is answered with the stored result again (a
    /// replay) when it was.
    pub fn results<'a>(
        &self,
        current: impl Fn(&str) -> Option<&'a orders::Model>,
        mode: TradingMode,
        now: DateTime<Utc>,
    ) -> Vec<Announcement> {
        self.dispositions
            .iter()
            .enumerate()
            .filter_map(|(position, disposition)| {
                let result = match disposition {
                    Disposition::Order(order) if self.conflicts.contains_key(&position) => {
                        order_conflict(order, &self.conflicts[&position], mode, now)
                    }
                    Disposition::Rejected { rejection }
                        if self.conflicts.contains_key(&position) =>
                    {
                        let mut result = rejection_result(rejection, mode, now);
                        result.error_message = Some(conflict_reason(&self.conflicts[&position]));
                        result
                    }
                    Disposition::Order(order) => current(&order.order_id)
                        .map(|row| store::result_from_row(row, order.traceparent.clone()))?,
                    Disposition::Rejected { rejection } => current(&rejection.order_id)
                        .filter(|row| row.is_terminal())
                        .map(|row| store::result_from_row(row, rejection.traceparent.clone()))
                        .unwrap_or_else(|| rejection_result(rejection, mode, now)),
                    Disposition::DeadLetter | Disposition::Ignored => return None,
                };
                let kind = match self.redelivered[position] {
                    true => Announce::Change,
                    false => Announce::Answer,
                };
                Some(Announcement { result, kind })
            })
            .collect()
    }
}
