//! The pub/sub shim: mirrors every message of `ORDERS_CHANNEL` into
//! `ORDERS_STREAM` once across all replicas.
//!
//! Each replica subscribes; one Lua script call per chunk of messages
//! appends each message unless a dedup key on its bytes (their SHA-256:
//! the copies of one publish are identical) exists, and then sets that key for
//! `DEDUP_WINDOW_MS`, so the N copies of one publish make one stream entry,
//! while a re-send seconds later, or another message under the same
//! `order_id`, gets through (the worker answers it from the stored row, or
//! as a conflict).
//!
//! A message larger than `MAX_MESSAGE_BYTES` is not parsed: its first bytes,
//! size and hash go to the dead-letter stream instead. A chunk of messages
//! that Redis refuses is kept and retried with backoff, across
//! re-subscriptions too; only what pub/sub itself drops is lost.
//!
//! Behind a primary with replicas (`REDIS_WAIT_REPLICAS`), a chunk is done
//! only once `WAIT` says enough replicas have it: else it is mirrored
//! again (on the new primary, after a failover that lost it), since the
//! pub/sub messages it came from are gone. The subscription follows the
//! primary when it moves.

use std::time::{Duration, Instant};

use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};
use prometheus::{IntCounter, IntGauge};
use redis::RedisError;
use tokio_util::sync::CancellationToken;

use super::{BusError, Pool, Topology};
use crate::retry::Backoff;

mod mirror;
mod unconfirmed;

pub use mirror::mirror_messages;
use mirror::probe;
pub(super) use mirror::{dedup_key, probe_key};
use unconfirmed::Unconfirmed;

/// Most messages mirrored in one pipeline.
const MIRROR_CHUNK: usize = 512;

/// The first and the longest wait between attempts to mirror a chunk.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_CAP: Duration = Duration::from_millis(500);

/// How many replicas must have a mirrored chunk before the shim takes it
/// as done (`REDIS_WAIT_REPLICAS`), and how long to wait for them
/// (`REDIS_WAIT_TIMEOUT_MS`). No replicas: no wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitFor {
    pub replicas: u32,
    pub timeout_ms: u64,
}

/// The shim of one replica.
pub struct Shim {
    pub pool: Pool,
    pub topology: Topology,
    pub wait: WaitFor,
    /// Attempts to mirror a chunk that Redis refused or fewer replicas
    /// than `wait` confirmed (each is retried).
    pub retries: IntCounter,
    /// Messages refused as too large, to the dead-letter stream.
    pub dead_lettered: IntCounter,
    /// Messages mirrored that fewer replicas than `wait` confirmed yet.
    pub unconfirmed: IntGauge,
}

/// The subscriptions a shim reads: one, and after the primary moved also
/// the one on the old primary until that closes (what it received is this
/// shim's to mirror: its publisher counted it as delivered).
type Subscriptions = SelectAll<BoxStream<'static, redis::Msg>>;

/// How long subscribing may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Shim {
    /// Subscribes and mirrors until cancelled, re-subscribing after any
    /// loss of the connection, and on the new primary when it moves.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::default();
        // The chunk in hand survives a lost subscription.
        let mut held: Vec<redis::Msg> = Vec::new();
        let mut unconfirmed = Unconfirmed::default();
        let mut subscriptions = Subscriptions::new();
        while !cancel.is_cancelled() {
            let ran = self
                .mirror_until_disconnected(
                    &mut held,
                    &mut unconfirmed,
                    &mut subscriptions,
                    &mut backoff,
                    &cancel,
                )
                .await;
            if let Err(err) = ran {
                tracing::warn!(error = %err, channel = %self.topology.orders_channel, "order shim lost its subscription; re-subscribing");
                if !backoff.wait(&cancel).await {
                    break;
                }
            }
        }
        if !held.is_empty() || !unconfirmed.messages.is_empty() {
            tracing::warn!(
                messages = held.len(),
                unconfirmed = unconfirmed.messages.len(),
                "order shim stopped with messages it could not mirror or have confirmed; other replicas' shims mirror them too"
            );
        }
    }

    /// A subscription to the orders channel on the primary as it is now,
    /// and the generation of that primary.
    async fn subscribe(&self) -> Result<(BoxStream<'static, redis::Msg>, u64), BusError> {
        let target = self.pool.target();
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let (client, generation) = target.located().await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.topology.orders_channel).await?;
            Ok::<_, RedisError>((pubsub.into_on_message().boxed(), generation))
        })
        .await
        .map_err(|_| RedisError::from((redis::ErrorKind::Io, "subscribing timed out")))??;
        tracing::info!(channel = %self.topology.orders_channel, stream = %self.topology.orders_stream, "order shim subscribed");
        Ok(subscribed)
    }

    async fn mirror_until_disconnected(
        &self,
        held: &mut Vec<redis::Msg>,
        unconfirmed: &mut Unconfirmed,
        subscriptions: &mut Subscriptions,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
    ) -> Result<(), BusError> {
        let target = self.pool.target();
        let mut moves = target.moves();
        let (subscription, mut listening) = self.subscribe().await?;
        subscriptions.push(subscription);
        backoff.reset();
        loop {
            if !held.is_empty() || unconfirmed.due() || unconfirmed.stranded(target.generation()) {
                if !self.mirror_until_done(held, unconfirmed, cancel).await {
                    return Ok(());
                }
                held.clear();
            }
            let waiting = !unconfirmed.messages.is_empty();
            let first = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                // Publishers now reach the new primary: listen there too.
                _ = moves.changed() => {
                    if target.generation() != listening {
                        let (subscription, generation) = self.subscribe().await?;
                        subscriptions.push(subscription);
                        listening = generation;
                    }
                    continue;
                }
                () = tokio::time::sleep(RETRY_CAP), if waiting => continue,
                first = subscriptions.next() => first,
            };
            let Some(first) = first else {
                return Err(RedisError::from((redis::ErrorKind::Io, "subscription closed")).into());
            };
            held.push(first);
            while held.len() < MIRROR_CHUNK {
                match subscriptions.next().now_or_never() {
                    Some(Some(msg)) => held.push(msg),
                    _ => break,
                }
            }
        }
    }

    /// After a move, mirrors what the old primary did not confirm to the
    /// new one; mirrors `held`; asks about unconfirmed messages when due.
    /// False when cancelled first.
    async fn mirror_until_done(
        &self,
        held: &[redis::Msg],
        unconfirmed: &mut Unconfirmed,
        cancel: &CancellationToken,
    ) -> bool {
        let target = self.pool.target();
        if unconfirmed.stranded(target.generation()) {
            let mut oldest = u64::MAX;
            for chunk in unconfirmed.messages.chunks(MIRROR_CHUNK) {
                let Some((_, generation)) = self.write(chunk, WaitFor::default(), cancel).await
                else {
                    return false;
                };
                oldest = oldest.min(generation);
            }
            tracing::info!(
                messages = unconfirmed.messages.len(),
                "mirrored again on the new primary what the old one had not confirmed"
            );
            unconfirmed.generation = oldest;
            unconfirmed.checked = None;
        }
        if !held.is_empty() {
            // While messages wait for confirmation, chunks go out without
            // WAIT: the probe below confirms them all at once.
            let wait = if unconfirmed.messages.is_empty() {
                self.wait
            } else {
                WaitFor::default()
            };
            let Some((confirmed, generation)) = self.write(held, wait, cancel).await else {
                return false;
            };
            if !(confirmed && generation == target.generation()) {
                self.retries.inc();
                unconfirmed.keep(held, generation);
            }
        }
        if unconfirmed.due() {
            unconfirmed.checked = Some(Instant::now());
            match probe(&self.pool, &self.topology, self.wait).await {
                Ok((by, generation))
                    if by >= self.wait.replicas
                        && generation == unconfirmed.generation
                        && generation == target.generation() =>
                {
                    unconfirmed.clear();
                }
                Ok(_) => self.retries.inc(),
                Err(err) => {
                    self.retries.inc();
                    tracing::warn!(error = %err, "cannot ask the replicas about unconfirmed messages");
                }
            }
        }
        self.unconfirmed.set(unconfirmed.messages.len() as i64);
        true
    }

    /// Writes `chunk`, retrying what Redis refuses with backoff until all
    /// is written. Whether `wait` confirmed it, and the oldest generation
    /// written to (a round on an older primary leaves it unconfirmed);
    /// none when cancelled first.
    async fn write(
        &self,
        chunk: &[redis::Msg],
        wait: WaitFor,
        cancel: &CancellationToken,
    ) -> Option<(bool, u64)> {
        let mut payloads: Vec<&[u8]> = chunk.iter().map(|msg| msg.get_payload_bytes()).collect();
        // Short steps: a primary back should not find the shim asleep
        // for seconds while orders wait.
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP);
        let mut oldest = u64::MAX;
        loop {
            let (failed, confirmed, generation) =
                match mirror_messages(&self.pool, &self.topology, &payloads, wait).await {
                    Ok((mirrored, failed)) => {
                        self.dead_lettered.inc_by(mirrored.refused as u64);
                        let confirmed = match mirrored.confirmed_by {
                            Some(by) => by >= self.wait.replicas,
                            None => self.wait.replicas == 0,
                        };
                        (failed, confirmed, mirrored.generation)
                    }
                    Err(err) => {
                        let error = err.to_string();
                        let failed = (0..payloads.len()).map(|i| (i, error.clone())).collect();
                        (failed, false, self.pool.target().generation())
                    }
                };
            oldest = oldest.min(generation);
            let Some((_, error)) = failed.first() else {
                return Some((confirmed && oldest == generation, oldest));
            };
            self.retries.inc();
            tracing::warn!(error = %error, messages = failed.len(), "cannot mirror messages into the orders stream; retrying");
            let retry: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
            payloads = retry.into_iter().map(|i| payloads[i]).collect();
            if !backoff.wait(cancel).await {
                return None;
            }
        }
    }
}
