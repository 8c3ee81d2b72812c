//! Counters the worker keeps and the status and metrics endpoints read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::OrderStatus;

#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub filled: AtomicU64,
    pub rejected: AtomicU64,
    pub errored: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub ignored: AtomicU64,
    /// Entries delivered more than once (after a crash, a claim or a retry).
    pub redeliveries: AtomicU64,
    /// Orders actually handed to the executor (re-emitted results excluded).
    pub executed: AtomicU64,
    pub batches: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn count_result(&self, status: OrderStatus) {
        let counter = match status {
            OrderStatus::Filled => &self.filled,
            OrderStatus::Rejected => &self.rejected,
            OrderStatus::Error | OrderStatus::Pending | OrderStatus::Submitted => &self.errored,
        };
        Self::add(counter, 1);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
