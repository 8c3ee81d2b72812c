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
use std::time::Duration;

use super::Pool;
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};
use prometheus::IntCounter;
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
}

/// The subscriptions a shim reads: one, and after the primary moved also
/// the one on the old primary until that closes (what it received is this
/// shim's to mirror: its publisher counted it as delivered).
type Subscriptions = SelectAll<BoxStream<'static, redis::Msg>>;

impl Shim {
    /// Subscribes and mirrors until cancelled, re-subscribing after any
    /// loss of the connection, and on the new primary when it moves.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::default();
        // The chunk in hand survives a lost subscription.
        let mut held: Vec<redis::Msg> = Vec::new();
        let mut subscriptions = Subscriptions::new();
        while !cancel.is_cancelled() {
            match self
                .mirror_until_disconnected(&mut held, &mut subscriptions, &cancel)
                .await
            {
                Ok(()) => backoff.reset(),
                Err(err) => {
                    tracing::warn!(error = %err, channel = %self.topology.orders_channel, "order shim lost its subscription; re-subscribing");
                    if !backoff.wait(&cancel).await {
                        break;
                    }
                }
            }
        }
        if !held.is_empty() {
            tracing::warn!(
                messages = held.len(),
                "order shim stopped with messages it could not mirror; other replicas' shims mirror them too"
            );
        }
    }

    /// A subscription to the orders channel on the primary as it is now,
    /// and the generation of that primary.
    async fn subscribe(&self) -> Result<(BoxStream<'static, redis::Msg>, u64), BusError> {
        let target = self.pool.target();
        let client = target.client().await?;
        let generation = target.generation();
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&self.topology.orders_channel).await?;
        tracing::info!(channel = %self.topology.orders_channel, stream = %self.topology.orders_stream, "order shim subscribed");
        Ok((pubsub.into_on_message().boxed(), generation))
    }

    async fn mirror_until_disconnected(
        &self,
        held: &mut Vec<redis::Msg>,
        subscriptions: &mut Subscriptions,
        cancel: &CancellationToken,
    ) -> Result<(), BusError> {
        let target = self.pool.target();
        let mut moves = target.moves();
        let (subscription, mut listening) = self.subscribe().await?;
        subscriptions.push(subscription);
        loop {
            if !held.is_empty() {
                if !self.mirror_until_done(held, cancel).await {
                    return Ok(());
                }
                held.clear();
            }
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

    /// Mirrors a chunk, retrying what Redis refuses with backoff until it
    /// is done; false when cancelled first.
    async fn mirror_until_done(&self, chunk: &[redis::Msg], cancel: &CancellationToken) -> bool {
        let mut payloads: Vec<&[u8]> = chunk.iter().map(|msg| msg.get_payload_bytes()).collect();
        // Short steps: a primary back, or a replica in sync again, should
        // not find the shim asleep for seconds while orders wait.
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_CAP);
        loop {
            let failed: Vec<(usize, String)> =
                match mirror_messages(&self.pool, &self.topology, &payloads, self.wait).await {
                    Ok((mirrored, failed)) => {
                        self.dead_lettered.inc_by(mirrored.refused as u64);
                        failed
                    }
                    Err(err) => {
                        let error = err.to_string();
                        (0..payloads.len()).map(|i| (i, error.clone())).collect()
                    }
                };
            let Some((_, error)) = failed.first() else {
                return true;
            };
            self.retries.inc();
            tracing::warn!(error = %error, messages = failed.len(), "cannot mirror messages into the orders stream; retrying");
            let retry: Vec<usize> = failed.iter().map(|(i, _)| *i).collect();
            payloads = retry.into_iter().map(|i| payloads[i]).collect();
            if !backoff.wait(cancel).await {
                return false;
            }
        }
    }
}

/// Mirrors raw messages into the orders stream (or, when too large, into
/// the dead-letter stream). Returns what became of them, and the messages
/// (by index) Redis refused, with why: with `wait`, every message counts
/// as refused unless enough replicas confirmed the chunk.
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
    let mut mirrored = Mirrored::default();
    let mut failed = Vec::new();
    let unconfirmed = if wait.replicas > 0 {
        let confirmed_by = match replies.pop() {
            Some(Ok(Value::Int(n))) => u32::try_from(n).unwrap_or(0),
            _ => 0,
        };
        mirrored.confirmed_by = Some(confirmed_by);
        (confirmed_by < wait.replicas).then(|| {
            format!(
                "WAIT: {confirmed_by} of {} replicas confirmed the chunk within {} ms",
                wait.replicas, wait.timeout_ms
            )
        })
    } else {
        None
    };
    for (index, (reply, oversized)) in replies.into_iter().zip(oversized).enumerate() {
        if let Some(unconfirmed) = &unconfirmed {
            // Mirrored again: a copy that made it merges on its dedup key.
            failed.push((
                index,
                reply
                    .err()
                    .map_or_else(|| unconfirmed.clone(), |e| e.to_string()),
            ));
            continue;
        }
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
