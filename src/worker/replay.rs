//! After the Redis primary moved: the results of orders that changed
//! shortly before are announced again, marked as replays.
//!
//! Replication to a Redis replica is asynchronous, so the primary that
//! failed may have acknowledged announcements its replica never received.
//! Each result goes through the announcing script as a change: where the
//! new primary remembers having announced that state, the copy is dropped;
//! where it does not, the result goes out on the results channel and
//! streams with `"replay":true` and its usual `result_id`, by which a
//! consumer that saw the first copy drops this one.

use std::time::Duration;

use chrono::Utc;
use prometheus::IntCounter;
use tokio_util::sync::CancellationToken;

use crate::bus::{Announcement, Publisher, RedisTarget};
use crate::retry::Backoff;
use crate::store::{self, Store};

/// Rows read and announced at a time.
const PAGE: u64 = 500;

/// What the replayer needs.
pub struct Replayer {
    pub store: Store,
    pub publisher: Publisher,
    pub target: RedisTarget,
    /// How long before a move a result may have been lost.
    pub window: Duration,
    pub replayed: IntCounter,
}

impl Replayer {
    /// Waits for moves of the primary and replays after each, until
    /// cancelled.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let mut moves = self.target.moves();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                changed = moves.changed() => if changed.is_err() { return Ok(()) },
            }
            let Some(moved) = self.target.last_move() else {
                continue;
            };
            let since =
                moved - chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
            let started = Utc::now();
            match self.replay_since(since, &cancel).await {
                Some(offered) => tracing::info!(
                    offered,
                    since = %since,
                    duration_ms = (Utc::now() - started).num_milliseconds(),
                    "announced again the results of orders changed before the Redis primary moved"
                ),
                None => return Ok(()),
            }
        }
    }

    /// Announces every order changed since `since` again; how many, or
    /// none when cancelled first.
    async fn replay_since(
        &self,
        since: chrono::DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Option<u64> {
        let mut backoff = Backoff::default();
        let mut after = 0;
        let mut offered = 0;
        loop {
            let rows = match self.store.changed_since(since, after, PAGE).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the orders to announce again; retrying");
                    backoff.wait(cancel).await.then_some(())?;
                    continue;
                }
            };
            let Some(last) = rows.last() else {
                return Some(offered);
            };
            after = last.id;
            let announcements: Vec<Announcement> = rows
                .iter()
                .map(|row| {
                    let mut result = store::result_from_row(row, None);
                    result.replay = Some(true);
                    Announcement::change(result)
                })
                .collect();
            while let Err(err) = self.publisher.publish(&announcements, &[]).await {
                tracing::warn!(error = %err, "cannot announce results again; retrying");
                backoff.wait(cancel).await.then_some(())?;
            }
            backoff.reset();
            offered += announcements.len() as u64;
            self.replayed.inc_by(announcements.len() as u64);
        }
    }
}
