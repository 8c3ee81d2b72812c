//! The pub/sub shim: mirrors every message of `ORDERS_CHANNEL` into
//! `ORDERS_STREAM` once across all replicas.
//!
//! Each replica subscribes; for each message one Lua script sets a dedup key
//! (`SET NX EX`) on the message's identity and appends the message only when
//! that key was new, so N subscribers produce one stream entry.

use deadpool_redis::Pool;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{BusError, Topology};
use crate::domain::message_summary;
use crate::propagation;
use crate::retry::Backoff;

/// Most messages mirrored in one pipeline.
const MIRROR_CHUNK: usize = 512;

/// KEYS: dedup key, stream. ARGV: ttl, maxlen, payload, traceparent ('' if none).
const MIRROR_SCRIPT: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  if ARGV[4] == '' then
    return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'payload', ARGV[3])
  end
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'payload', ARGV[3], 'traceparent', ARGV[4])
end
return false
";

/// Subscribes and mirrors until cancelled, re-subscribing after any loss of
/// the connection.
pub async fn run_shim(
    client: redis::Client,
    pool: Pool,
    topology: Topology,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::default();
    while !cancel.is_cancelled() {
        match mirror_until_disconnected(&client, &pool, &topology, &cancel).await {
            Ok(()) => backoff.reset(),
            Err(err) => {
                tracing::warn!(error = %err, channel = %topology.orders_channel, "order shim lost its subscription; re-subscribing");
                if !backoff.wait(&cancel).await {
                    break;
                }
            }
        }
    }
}

async fn mirror_until_disconnected(
    client: &redis::Client,
    pool: &Pool,
    topology: &Topology,
    cancel: &CancellationToken,
) -> Result<(), BusError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&topology.orders_channel).await?;
    tracing::info!(channel = %topology.orders_channel, stream = %topology.orders_stream, "order shim subscribed");
    let mut messages = pubsub.on_message().ready_chunks(MIRROR_CHUNK);
    loop {
        let chunk = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            chunk = messages.next() => chunk,
        };
        let Some(chunk) = chunk else {
            return Err(
                redis::RedisError::from((redis::ErrorKind::Io, "subscription closed")).into(),
            );
        };
        let payloads: Vec<&[u8]> = chunk.iter().map(|msg| msg.get_payload_bytes()).collect();
        mirror_messages(pool, topology, &payloads).await?;
    }
}

/// Mirrors raw messages into the orders stream; returns how many were new.
///
/// Each message gets a `shim.mirror` span continuing the trace its
/// `traceparent` names; the entry carries that span's context on, so the
/// worker continues the same trace on whichever replica reads it.
#[tracing::instrument(name = "shim.mirror_batch", skip_all, fields(messages = payloads.len()), err)]
pub async fn mirror_messages(
    pool: &Pool,
    topology: &Topology,
    payloads: &[&[u8]],
) -> Result<usize, BusError> {
    let mut pipe = redis::pipe();
    let mut spans = Vec::with_capacity(payloads.len());
    for payload in payloads {
        let (identity, traceparent) = message_summary(payload);
        let span = tracing::info_span!("shim.mirror", order_id = %identity, channel = %topology.orders_channel);
        propagation::continue_trace(&span, traceparent.as_deref());
        let forwarded = propagation::traceparent(&span)
            .or(traceparent)
            .unwrap_or_default();
        pipe.cmd("EVAL")
            .arg(MIRROR_SCRIPT)
            .arg(2)
            .arg(format!("{}:dedup:{identity}", topology.orders_stream))
            .arg(&topology.orders_stream)
            .arg(topology.dedup_ttl_secs)
            .arg(topology.stream_maxlen)
            .arg(*payload)
            .arg(forwarded);
        spans.push(span);
    }
    let mut conn = pool.get().await?;
    let added: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
    drop(spans);
    Ok(added.iter().flatten().count())
}
