//! The reconciler: a task in every replica that owns the live orders no
//! stream entry owns any more. It takes orders in flight whose lease has
//! expired (a dead replica's, an unresolved send, an open order due for
//! its next look; `FOR UPDATE SKIP LOCKED`, so replicas never take the same
//! one), looks each up and publishes what a strategy needs to hear.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

use super::{LiveDesk, LiveError};
use crate::bus::{Announcement, Publisher};
use crate::store::result_from_row;

/// Orders taken per round.
const PER_ROUND: u64 = 16;

/// Runs until `stop`: a round whenever leases may have expired, at most
/// `tick` apart. An outage is logged and the round tried again later.
pub async fn run(
    desk: Arc<LiveDesk>,
    publisher: Publisher,
    tick: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(tick_ms = tick.as_millis() as u64, "live reconciler started");
    while !stop.is_cancelled() {
        let busy = match round(&desk, &publisher).await {
            Ok(taken) => taken as u64 == PER_ROUND,
            Err(err) => {
                tracing::warn!(error = %err, "reconciler round failed; trying again");
                false
            }
        };
        if !busy {
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    }
    Ok(())
}

/// One round: takes what is due, looks each up, publishes the news, then
/// lets go of the finished orders it announced. Returns how many it took.
pub async fn round(desk: &LiveDesk, publisher: &Publisher) -> Result<usize, RoundError> {
    if desk.breaker().blocks() {
        return Ok(0);
    }
    // Nothing is asked of MEXC while it said to wait.
    if desk
        .limiter
        .paused_for()
        .await
        .map_err(LiveError::from)?
        .is_some()
    {
        return Ok(0);
    }
    let lease = desk.new_lease();
    let due = desk
        .store
        .take_expired_leases(&lease, PER_ROUND)
        .await
        .map_err(LiveError::from)?;
    let taken = due.len();
    let looked = join_all(due.into_iter().map(|row| desk.reconcile(row, &lease))).await;
    let mut results = Vec::new();
    let mut rows = Vec::new();
    let mut failure = None;
    for outcome in looked {
        match outcome {
            Ok((row, news)) => {
                if news {
                    results.push(Announcement::change(result_from_row(&row, None)));
                }
                rows.push(row);
            }
            Err(err) => failure = Some(err),
        }
    }
    publisher
        .publish(&results, &[])
        .await
        .map_err(LiveError::from)?;
    desk.release_announced(&rows).await?;
    for result in &results {
        desk.stats.count_result(result.result.status);
    }
    match failure {
        Some(err) => Err(err.into()),
        None => Ok(taken),
    }
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RoundError(#[from] LiveError);
