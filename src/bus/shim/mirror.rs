//! The writes of the shim: each chunk of messages appended to the orders
//! stream by one script call (each message once, merged on its dedup key),
//! `WAIT` when asked, and the probe that asks the replicas again.

use std::sync::LazyLock;

use redis::{RedisError, Script, Value};
use sha2::{Digest, Sha256};

use super::WaitFor;
use crate::bus::{BusError, DeadLetter, Pool, Topology};
use crate::domain::message_summary;
use crate::propagation;

/// KEYS: the orders stream, the dead-letter stream, then each message's
/// dedup key. ARGV: dedup window (ms), the dead-letter stream's cap,
/// whether a copy already mirrored is touched ('1'), then per message: its
/// stream (1 or 2: its KEYS index), its field count, its fields. Returns
/// per message 1 (appended), 0 (a copy already mirrored) or Redis' error
/// for its append (it alone is retried). A key is set only once its
/// entry exists, so a failed append is retried, never taken as done; a
/// copy is known by its key even while Redis is out of memory. Touching
/// (with `WAIT` after the call) makes the call a write even for a copy:
/// `WAIT` counts the replicas that have the connection's last write, and
/// the touch comes after the entry in the replication stream, so their
/// count covers the entry too, whichever connection or replica mirrored it.
static MIRROR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local window, cap, touch = ARGV[1], ARGV[2], ARGV[3] == '1'
local out, at = {}, 4
for m = 3, #KEYS do
  local stream, count = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local first = at + 2
  at = first + count
  if redis.call('EXISTS', KEYS[m]) == 1 then
    if touch then redis.call('PEXPIRE', KEYS[m], window) end
    out[#out + 1] = 0
  else
    local added
    if stream == 2 then
      added = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', cap, '*', unpack(ARGV, first, at - 1))
    else
      added = redis.pcall('XADD', KEYS[1], '*', unpack(ARGV, first, at - 1))
    end
    if type(added) == 'table' and added.err then
      out[#out + 1] = added.err
    else
      redis.call('SET', KEYS[m], '1', 'PX', window)
      out[#out + 1] = 1
    end
  end
end
return out
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
    let mut call = MIRROR.prepare_invoke();
    call.key(&topology.orders_stream)
        .key(&topology.dlq_stream)
        .arg(topology.dedup_window_ms)
        .arg(topology.stream_maxlen)
        .arg(if wait.replicas > 0 { "1" } else { "" });
    let mut spans = Vec::with_capacity(payloads.len());
    let mut oversized = Vec::with_capacity(payloads.len());
    let failed_at = chrono::Utc::now().timestamp();
    for payload in payloads {
        // Not parsed when too large: the copies of a message merge on its hash.
        call.key(dedup_key(topology, &hex::encode(Sha256::digest(payload))));
        if payload.len() > topology.max_message_bytes {
            let letter = DeadLetter::oversized_message(
                payload,
                topology.max_message_bytes,
                &topology.orders_channel,
            );
            let fields = letter.to_fields(topology, failed_at);
            call.arg(2).arg(fields.len() * 2);
            for (name, value) in fields {
                call.arg(name).arg(value);
            }
            oversized.push(true);
        } else {
            let (identity, traceparent) = message_summary(payload);
            let span = tracing::info_span!("shim.mirror", order_id = %identity, channel = %topology.orders_channel);
            propagation::continue_trace(&span, traceparent.as_deref());
            let forwarded = propagation::traceparent(&span).or(traceparent);
            call.arg(1)
                .arg(if forwarded.is_some() { 4 } else { 2 })
                .arg("payload")
                .arg(*payload);
            if let Some(traceparent) = forwarded {
                call.arg("traceparent").arg(traceparent);
            }
            spans.push(span);
            oversized.push(false);
        }
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors().invoke_script(&call);
    if wait.replicas > 0 {
        pipe.cmd("WAIT").arg(wait.replicas).arg(wait.timeout_ms);
    }
    let mut conn = pool.get().await?;
    let mut replies: Vec<Result<Value, RedisError>> = pipe.query_async(&mut conn).await?;
    if replies.first().is_some_and(is_noscript) {
        // A restarted (or flushed) Redis forgot the script: load it, run again.
        call.load_async(&mut conn).await?;
        replies = pipe.query_async(&mut conn).await?;
    }
    drop(spans);
    let mut mirrored = Mirrored {
        generation: conn.generation(),
        ..Mirrored::default()
    };
    let mut replies = replies.into_iter();
    let each = match replies.next() {
        Some(Ok(Value::Array(each))) if each.len() == payloads.len() => each,
        Some(Err(err)) => {
            let error = err.to_string();
            return Ok((mirrored, failed_all(payloads.len(), &error)));
        }
        other => {
            let error = format!("an unexpected reply to the mirroring script: {other:?}");
            return Ok((mirrored, failed_all(payloads.len(), &error)));
        }
    };
    if wait.replicas > 0 {
        let confirmed_by = match replies.next() {
            Some(Ok(Value::Int(n))) => u32::try_from(n).unwrap_or(0),
            Some(Err(err)) => {
                tracing::warn!(error = %err, "WAIT failed");
                0
            }
            _ => 0,
        };
        mirrored.confirmed_by = Some(confirmed_by);
    }
    let mut failed = Vec::new();
    for (index, (reply, oversized)) in each.into_iter().zip(oversized).enumerate() {
        match reply {
            Value::Int(0) => mirrored.duplicates += 1,
            Value::Int(_) if oversized => mirrored.refused += 1,
            Value::Int(_) => mirrored.added += 1,
            Value::BulkString(error) => {
                let error = String::from_utf8_lossy(&error).into_owned();
                if error.starts_with("READONLY") {
                    conn.demoted();
                }
                failed.push((index, error));
            }
            other => failed.push((index, format!("an unexpected reply: {other:?}"))),
        }
    }
    Ok((mirrored, failed))
}

/// Every message of a chunk, failed with one error.
fn failed_all(count: usize, error: &str) -> Vec<(usize, String)> {
    (0..count).map(|index| (index, error.to_owned())).collect()
}

/// Where the shim remembers an identity: a hash, so its size is fixed
/// whatever the message names.
pub(in crate::bus) fn dedup_key(topology: &Topology, hash: &str) -> String {
    format!("{}:dedup:{hash}", topology.orders_stream)
}

fn is_noscript(reply: &Result<Value, RedisError>) -> bool {
    matches!(reply, Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
}
