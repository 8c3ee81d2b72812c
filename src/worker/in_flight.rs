//! Entries this instance is working on, kept fresh so that no consumer
//! (this one included) claims them while they are in flight.
//!
//! `XCLAIM … JUSTID` resets an entry's idle time without counting a
//! delivery, so a batch held up by an outage keeps its entries and spends
//! none of their `MAX_DELIVERIES`. Only entries still owned are refreshed:
//! one that another replica claimed (after this one stalled) stays theirs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::bus::{Consumer, Entry};

#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Mutex<HashSet<String>>>);

/// Releases its entries when dropped.
pub struct Held {
    in_flight: InFlight,
    ids: Vec<String>,
}

impl InFlight {
    pub fn hold(&self, entries: &[Entry]) -> Held {
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        self.lock().extend(ids.iter().cloned());
        Held {
            in_flight: self.clone(),
            ids,
        }
    }

    pub fn holds(&self, id: &str) -> bool {
        self.lock().contains(id)
    }

    /// The entries held right now.
    pub fn snapshot(&self) -> HashSet<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refreshes every held entry every `every` until cancelled.
    pub async fn keep_fresh(self, consumer: Consumer, every: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let ids: Vec<String> = self.snapshot().into_iter().collect();
            if let Err(err) = consumer.touch(&ids).await {
                tracing::warn!(error = %err, entries = ids.len(), "cannot refresh in-flight entries");
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.in_flight.lock();
        for id in &self.ids {
            held.remove(id);
        }
    }
}
