//! The writes of the shim: each message appended to the orders stream once
//! (a script per message, merged on its dedup key), `WAIT` when asked, and
//! the probe that asks the replicas again.

use std::sync::LazyLock;

use redis::{RedisError, Script, Value};
use sha2::{Digest, Sha256};

use super::WaitFor;
use crate::bus::{BusError, DeadLetter, Pool, Topology};
use crate::domain::message_summary;
use crate::propagation;

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

/// A write of its own and `WAIT`: how many replicas have everything the
/// primary took so far, and that primary's generation.
pub(super) async fn probe(
    pool: &Pool,
    topology: &Topology,
    wait: WaitFor,
) -> Result<(u32, u64), BusError> {
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
pub(in crate::bus) fn probe_key(topology: &Topology) -> String {
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
pub(in crate::bus) fn dedup_key(topology: &Topology, hash: &str) -> String {
    format!("{}:dedup:{hash}", topology.orders_stream)
}

fn is_noscript(reply: &Result<Value, RedisError>) -> bool {
    matches!(reply, Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
}
