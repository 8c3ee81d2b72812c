//! The outer layers of the worker: the loop that feeds batches (own pending
//! entries first, then new ones, with periodic claims), and the retry
//! around each batch. Infrastructure failures are retried with backoff;
//! message-level ones are isolated so one bad message holds up nothing.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{BatchError, Worker};
use crate::bus::{BusError, CLAIM_START, Entry, RECOVER_START};
use crate::retry::Backoff;

/// Where a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    New,
    /// Own pending entries nothing here works on (a read reply was lost).
    Recovered,
    /// Stale entries taken over from any consumer.
    Claimed,
}

/// Where the scans of pending entries continue from: each pass looks at
/// one batch's worth, so entries far into a long list get their turn too.
struct Cursors {
    claim: String,
    recover: String,
}

impl Worker {
    /// Consumes until `cancel` fires, then finishes the batch in hand.
    pub async fn run_until_stopped(&self, cancel: CancellationToken) {
        let mut backoff = Backoff::default();
        while let Err(err) = self.consumer.ensure_group().await {
            tracing::warn!(error = %err, "cannot create the consumer group yet; retrying");
            if !backoff.wait(&cancel).await {
                return;
            }
        }
        tracing::info!(consumer = %self.consumer.topology().consumer, "worker started");
        let refresh = Duration::from_millis((self.options.claim_idle_ms / 3).max(20));
        // Refreshing outlives `cancel`: it stops once every batch has finished.
        let stop_refreshing = CancellationToken::new();
        tokio::spawn(self.in_flight.clone().keep_fresh(
            self.consumer.clone(),
            refresh,
            stop_refreshing.clone(),
        ));
        let _stop_refreshing = stop_refreshing.drop_guard();
        if !self.drain_own_pending(&cancel).await {
            return;
        }
        let mut in_flight = JoinSet::new();
        let mut next_claim = Instant::now();
        // Each claim pass first takes back lost deliveries, then claims.
        let mut recovered = false;
        let mut cursors = Cursors {
            claim: CLAIM_START.to_owned(),
            recover: RECOVER_START.to_owned(),
        };
        while !cancel.is_cancelled() {
            // Keep up to `concurrency` batches in flight, so Postgres works on
            // one while the next is read and the last is published.
            while in_flight.len() >= self.options.concurrency.max(1) {
                in_flight.join_next().await;
            }
            while in_flight.try_join_next().is_some() {}
            let due = Instant::now() >= next_claim;
            let source = match (due, recovered) {
                (false, _) => Source::New,
                (true, false) => Source::Recovered,
                (true, true) => Source::Claimed,
            };
            match self.read(source, &mut cursors).await {
                Ok(mut entries) => {
                    backoff.reset();
                    self.stats.mark_read();
                    match source {
                        Source::New => {}
                        Source::Recovered => recovered = true,
                        Source::Claimed => {
                            recovered = false;
                            // A full claim: more may be waiting.
                            next_claim = if entries.len() == self.options.batch_size {
                                Instant::now()
                            } else {
                                Instant::now()
                                    + Duration::from_millis(self.options.claim_interval_ms)
                            };
                        }
                    }
                    // A claim may return entries this instance is still working on.
                    entries.retain(|entry| !self.in_flight.holds(&entry.id));
                    if !entries.is_empty() {
                        // Held from now on, so no later pass takes them as lost.
                        let held = self.in_flight.hold(&entries);
                        let (worker, cancel) = (self.clone(), cancel.clone());
                        in_flight.spawn(async move {
                            let _held = held;
                            worker.process_until_done(&entries, &cancel).await
                        });
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "reading the orders stream failed; retrying");
                    // Entries a lost reply delivered are taken back next.
                    (recovered, next_claim) = (false, Instant::now());
                    // A restarted Redis has lost the group: make it again.
                    let _ = self.consumer.ensure_group().await;
                    if !backoff.wait(&cancel).await {
                        break;
                    }
                }
            }
        }
        // Stop reading, but finish (and acknowledge) every batch already read.
        while in_flight.join_next().await.is_some() {}
        tracing::info!("worker stopped");
    }

    async fn read(&self, source: Source, cursors: &mut Cursors) -> Result<Vec<Entry>, BusError> {
        let batch = self.options.batch_size;
        match source {
            Source::New => self.consumer.read_new(batch, self.options.block_ms).await,
            Source::Recovered => {
                let busy = self.in_flight.snapshot();
                let (entries, next) = self
                    .consumer
                    .recover_own(&cursors.recover, batch, |id| {
                        busy.contains(id) || self.in_flight.holds(id)
                    })
                    .await?;
                cursors.recover = next;
                if !entries.is_empty() {
                    tracing::info!(
                        entries = entries.len(),
                        "taking back entries delivered by a read whose reply was lost"
                    );
                }
                Ok(entries)
            }
            Source::Claimed => {
                let (entries, next) = self
                    .consumer
                    .claim_stale(self.options.claim_idle_ms, &cursors.claim, batch)
                    .await?;
                cursors.claim = next;
                Ok(entries)
            }
        }
    }

    /// Re-reads what this consumer had read but not acknowledged before.
    /// Returns false when cancelled first.
    async fn drain_own_pending(&self, cancel: &CancellationToken) -> bool {
        let mut after = "0-0".to_owned();
        let mut backoff = Backoff::default();
        while !cancel.is_cancelled() {
            match self
                .consumer
                .read_own_pending(&after, self.options.batch_size)
                .await
            {
                Ok(entries) if entries.is_empty() => return true,
                Ok(entries) => {
                    after = entries.last().map(|e| e.id.clone()).unwrap_or(after);
                    tracing::info!(entries = entries.len(), "resuming own pending entries");
                    if !self.process_until_done(&entries, cancel).await {
                        return false;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "reading own pending entries failed; retrying");
                    if !backoff.wait(cancel).await {
                        return false;
                    }
                }
            }
        }
        false
    }

    /// Processes a batch, retrying on infrastructure failure until it
    /// succeeds. A batch that Postgres refuses for its data is split up; a
    /// single message it still refuses is noted and left pending, so it is
    /// delivered again (and dead-lettered after `MAX_DELIVERIES`) while the
    /// rest go through. Returns false when cancelled before it could finish.
    async fn process_until_done(&self, entries: &[Entry], cancel: &CancellationToken) -> bool {
        let _held = self.in_flight.hold(entries);
        let mut backoff = Backoff::default();
        // Entries whose live orders wait (another replica's lease, a
        // stopped sender) are retried here rather than left for a later
        // delivery: waiting is not a failure of the message, so it must not
        // count toward MAX_DELIVERIES.
        let mut waiting: Option<Vec<Entry>> = None;
        let mut wait_backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        loop {
            let entries = waiting.as_deref().unwrap_or(entries);
            // Real orders wait for the request budget and the exchange,
            // within their leases.
            let timeout = self.options.batch_timeout
                + self
                    .live
                    .as_ref()
                    .map_or(Duration::ZERO, |desk| desk.options().lease);
            let err = match tokio::time::timeout(timeout, self.process_batch(entries)).await {
                Ok(Ok(report)) if report.held.is_empty() => return true,
                Ok(Ok(report)) => {
                    let held: Vec<Entry> = entries
                        .iter()
                        .filter(|entry| report.held.contains(&entry.id))
                        .cloned()
                        .collect();
                    tracing::debug!(
                        entries = held.len(),
                        "live orders wait; their entries are retried"
                    );
                    waiting = Some(held);
                    if !wait_backoff.wait(cancel).await {
                        return false;
                    }
                    continue;
                }
                Ok(Err(err)) => err,
                Err(_) => BatchError::TimedOut(timeout),
            };
            match entries {
                [entry] if err.is_message_level() => {
                    tracing::warn!(entry = %entry.id, deliveries = entry.deliveries, error = %err,
                        "a message failed; it stays pending and is delivered again");
                    match self
                        .consumer
                        .note_failure(&entry.id, &err.to_string())
                        .await
                    {
                        Ok(()) => return true,
                        Err(bus) => {
                            tracing::error!(error = %bus, "cannot note a failure; retrying")
                        }
                    }
                }
                _ if err.is_message_level() => {
                    tracing::warn!(error = %err, entries = entries.len(), "a message broke the batch; processing one by one");
                    for entry in entries {
                        if !Box::pin(self.process_until_done(std::slice::from_ref(entry), cancel))
                            .await
                        {
                            return false;
                        }
                    }
                    return true;
                }
                _ if err.is_lock_timeout() => {
                    self.stats.lock_timeouts.inc();
                    tracing::warn!(error = %err, entries = entries.len(),
                        "batch blocked on a row lock held by another transaction; it stays pending and is retried");
                }
                _ if matches!(err, BatchError::TimedOut(_)) => {
                    self.stats.batch_timeouts.inc();
                    tracing::error!(error = %err, entries = entries.len(),
                        "batch abandoned: its connection is closed and its backend terminated; it stays pending and is retried");
                }
                _ => {
                    self.stats.batch_failures.inc();
                    tracing::error!(error = %err, entries = entries.len(), "batch failed; it stays pending and is retried")
                }
            }
            if !backoff.wait(cancel).await {
                return false;
            }
        }
    }
}
