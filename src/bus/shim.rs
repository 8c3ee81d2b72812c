//! The pub/sub shim: mirrors every message of `ORDERS_CHANNEL` into
//! `ORDERS_STREAM` once across all replicas.
//!
//! Each replica subscribes; for each message one Lua script appends the
//! message unless a dedup key on its bytes (their SHA-256: the copies of
//! one publish are identical) exists, and then sets that key for
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

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use super::Pool;
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};
use prometheus::{IntCounter, IntGauge};
use redis::{RedisError, Script, Value};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{BusError, DeadLetter, Topology};
use crate::domain::message_summary;
use crate::propagation;
use crate::retry::Backoff;

/// Most messages mirrored in one pipeline.
const MIRROR_CHUNK: usize = 512;

/// The first and the longest wait between attempts to mirror a chunk.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_CAP: Duration = Duration::from_millis(500);

/// KEYS: dedup key, target stream. ARGV: dedup window (ms), the target's
/// cap ('' for none), whether a copy already mirrored is touched ('1'),
/// then field and value pairs. Returns the new entry's id, or false for a
/// copy already mirrored. The key is set only once the entry exists, so a
/// failed append is retried, never taken as done. Touching (with `WAIT`
/// after the call) makes the call a write even for a copy: `WAIT` counts
/// the replicas that have the connection's last write, and the touch comes
/// after the entry in the replication stream, so their count covers the
/// entry too, whichever connection or replica mirrored it.
static MIRROR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[3] == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
  return false
end
local args = {}
if ARGV[2] ~= '' then args = {'MAXLEN', '~', ARGV[2]} end
table.insert(args, '*')
for i = 4, #ARGV do table.insert(args, ARGV[i]) end
local id = redis.call('XADD', KEYS[2], unpack(args))
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return id
",
    )
});

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

/// What became of one chunk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mirrored {
    /// New entries in the orders stream.
    pub added: usize,
    /// Messages too large, dead-lettered.
    pub refused: usize,
    /// Copies another shim (or an earlier attempt) had mirrored already.
    pub duplicates: usize,
    /// Replicas that confirmed the chunk (`WAIT`), when asked to.
    pub confirmed_by: Option<u32>,
    /// The generation of the primary the chunk was written to.
    pub generation: u64,
}

/// The subscriptions a shim reads: one, and after the primary moved also
/// the one on the old primary until that closes (what it received is this
/// shim's to mirror: its publisher counted it as delivered).
type Subscriptions = SelectAll<BoxStream<'static, redis::Msg>>;

/// Messages mirrored into a primary whose replicas (fewer than `WAIT`
/// asks for) have not confirmed them yet. They are in its orders stream
/// and are executed from there; kept only to be mirrored again should the
/// primary move before a later `WAIT` on it succeeds (its replication
/// stream is ordered, so a later confirmation covers them). While any are
/// kept, chunks go out without `WAIT` and a probe asks every 500 ms.
#[derive(Default)]
struct Unconfirmed {
    messages: Vec<redis::Msg>,
    /// Their payloads' size in all.
    bytes: usize,
    /// The generation of the primary they were last written to.
    generation: u64,
    since: Option<Instant>,
    /// When they were last asked about.
    checked: Option<Instant>,
}

impl Unconfirmed {
    /// Whether it is time to ask again (a probe write and a `WAIT`).
    fn due(&self) -> bool {
        !self.messages.is_empty() && self.checked.is_none_or(|at| at.elapsed() >= RETRY_CAP)
    }

    /// Whether they were written to a primary that is not the current one.
    fn stranded(&self, generation: u64) -> bool {
        !self.messages.is_empty() && self.generation != generation
    }

    /// Keeps `messages`, written to `generation`'s primary.
    fn keep(&mut self, messages: &[redis::Msg], generation: u64) {
        if self.messages.is_empty() {
            self.generation = generation;
            self.since = Some(Instant::now());
            tracing::warn!(
                "fewer replicas than REDIS_WAIT_REPLICAS confirmed mirrored messages; they are kept, to be mirrored again should the primary move"
            );
        } else {
            // The older: a move since either write re-sends all.
            self.generation = self.generation.min(generation);
        }
        self.bytes += messages
            .iter()
            .map(|m| m.get_payload_bytes().len())
            .sum::<usize>();
        self.messages.extend(messages.iter().cloned());
        let mut excess = 0;
        while self.messages.len() - excess > MAX_UNCONFIRMED
            || (self.bytes > MAX_UNCONFIRMED_BYTES && excess < self.messages.len())
        {
            self.bytes -= self.messages[excess].get_payload_bytes().len();
            excess += 1;
        }
        if excess > 0 {
            self.messages.drain(..excess);
            tracing::error!(
                let_go = excess,
                "too many mirrored messages wait for a replica's confirmation; the oldest are let go of (a failover now could lose them)"
            );
        }
    }

    fn clear(&mut self) {
        if let Some(since) = self.since.take()
            && !self.messages.is_empty()
        {
            tracing::info!(
                messages = self.messages.len(),
                after_ms = since.elapsed().as_millis() as u64,
                "replicas confirmed the messages mirrored meanwhile"
            );
        }
        self.messages.clear();
        self.bytes = 0;
    }
}

/// Most unconfirmed messages kept, by count and by size; the oldest beyond
/// are let go of (they are in the primary's stream, most of them executed
/// long since).
const MAX_UNCONFIRMED: usize = 100_000;
const MAX_UNCONFIRMED_BYTES: usize = 64 * 1024 * 1024;

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

/// A write of its own and `WAIT`: how many replicas have everything the
/// primary took so far, and that primary's generation.
async fn probe(pool: &Pool, topology: &Topology, wait: WaitFor) -> Result<(u32, u64), BusError> {
    let mut conn = pool.get().await?;
    let (by,): (u32,) = redis::pipe()
        .cmd("SET")
        .arg(probe_key(topology))
        .arg(chrono::Utc::now().timestamp_millis())
        .arg("PX")
        .arg(60_000)
        .ignore()
        .cmd("WAIT")
        .arg(wait.replicas)
        .arg(wait.timeout_ms)
        .query_async(&mut conn)
        .await?;
    Ok((by, conn.generation()))
}

/// The key the probe writes.
pub(super) fn probe_key(topology: &Topology) -> String {
    format!("{}:wait-probe", topology.orders_stream)
}

/// Mirrors raw messages into the orders stream (or, when too large, into
/// the dead-letter stream). Returns what became of them (with `wait`, how
/// many replicas confirmed), and the messages (by index) Redis refused,
/// with why.
///
/// Each message gets a `shim.mirror` span continuing the trace its
/// `traceparent` names; the entry carries that span's context on, so the
/// worker continues the same trace on whichever replica reads it.
#[tracing::instrument(name = "shim.mirror_batch", skip_all, fields(messages = payloads.len()), err)]
pub async fn mirror_messages(
    pool: &Pool,
    topology: &Topology,
    payloads: &[&[u8]],
    wait: WaitFor,
) -> Result<(Mirrored, Vec<(usize, String)>), BusError> {
    let touch = if wait.replicas > 0 { "1" } else { "" };
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut spans = Vec::with_capacity(payloads.len());
    let mut oversized = Vec::with_capacity(payloads.len());
    let failed_at = chrono::Utc::now().timestamp();
    for payload in payloads {
        let mut invocation = MIRROR.prepare_invoke();
        if payload.len() > topology.max_message_bytes {
            // Not parsed: the copies of one message merge on its hash.
            let letter = DeadLetter::oversized_message(
                payload,
                topology.max_message_bytes,
                &topology.orders_channel,
            );
            invocation
                .key(dedup_key(topology, &hex::encode(Sha256::digest(payload))))
                .key(&topology.dlq_stream)
                .arg(topology.dedup_window_ms)
                .arg(topology.stream_maxlen)
                .arg(touch);
            for (name, value) in letter.to_fields(topology, failed_at) {
                invocation.arg(name).arg(value);
            }
            oversized.push(true);
        } else {
            let (identity, traceparent) = message_summary(payload);
            let span = tracing::info_span!("shim.mirror", order_id = %identity, channel = %topology.orders_channel);
            propagation::continue_trace(&span, traceparent.as_deref());
            let forwarded = propagation::traceparent(&span).or(traceparent);
            invocation
                .key(dedup_key(topology, &hex::encode(Sha256::digest(payload))))
                .key(&topology.orders_stream)
                .arg(topology.dedup_window_ms)
                .arg("")
                .arg(touch)
                .arg("payload")
                .arg(*payload);
            if let Some(traceparent) = forwarded {
                invocation.arg("traceparent").arg(traceparent);
            }
            spans.push(span);
            oversized.push(false);
        }
        pipe.invoke_script(&invocation);
    }
    if wait.replicas > 0 {
        pipe.cmd("WAIT").arg(wait.replicas).arg(wait.timeout_ms);
    }
    let mut conn = pool.get().await?;
    let mut replies: Vec<Result<Value, RedisError>> = pipe.query_async(&mut conn).await?;
    if replies.iter().any(is_noscript) {
        // A restarted (or flushed) Redis forgot the script: load it, run again.
        MIRROR.prepare_invoke().load_async(&mut conn).await?;
        replies = pipe.query_async(&mut conn).await?;
    }
    drop(spans);
    let mut mirrored = Mirrored {
        generation: conn.generation(),
        ..Mirrored::default()
    };
    let mut failed = Vec::new();
    if wait.replicas > 0 {
        let confirmed_by = match replies.pop() {
            Some(Ok(Value::Int(n))) => u32::try_from(n).unwrap_or(0),
            Some(Err(err)) => {
                tracing::warn!(error = %err, "WAIT failed");
                0
            }
            _ => 0,
        };
        mirrored.confirmed_by = Some(confirmed_by);
    }
    for (index, (reply, oversized)) in replies.into_iter().zip(oversized).enumerate() {
        match reply {
            Ok(Value::Nil) => mirrored.duplicates += 1,
            Ok(_) if oversized => mirrored.refused += 1,
            Ok(_) => mirrored.added += 1,
            Err(err) => failed.push((index, err.to_string())),
        }
    }
    Ok((mirrored, failed))
}

/// Where the shim remembers an identity: a hash, so its size is fixed
/// whatever the message names.
pub(super) fn dedup_key(topology: &Topology, hash: &str) -> String {
    format!("{}:dedup:{hash}", topology.orders_stream)
}

fn is_noscript(reply: &Result<Value, RedisError>) -> bool {
    matches!(reply, Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
}
