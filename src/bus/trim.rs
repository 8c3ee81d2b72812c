//! Trimming the orders stream by what has been acknowledged.
//!
//! The invariant: no entry that a consumer group has not acknowledged is
//! ever trimmed. The orders stream is appended to without a cap; once it
//! is longer than `STREAM_MAXLEN`, one script (atomic, so no group can
//! move meanwhile) finds the lowest id any group still needs (its oldest
//! pending entry, or when nothing is pending its last delivered id) and
//! trims below it (`XTRIM MINID ~`). Nothing is trimmed while this
//! service's own group does not exist (a restarted Redis, a first start):
//! it will start from the beginning of the stream.

use std::sync::LazyLock;
use std::time::Duration;

use super::Pool;
use redis::Script;
use tokio_util::sync::CancellationToken;

use super::{BusError, Topology};

/// KEYS: stream. ARGV: our group, the length below which nothing is
/// trimmed. Returns how many entries were trimmed.
static TRIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if #am ~= #bm then return #am < #bm end
  if am ~= bm then return am < bm end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('XLEN', KEYS[1]) <= tonumber(ARGV[2]) then return 0 end
local ours = false
local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  if info['name'] == ARGV[1] then ours = true end
  local needed = info['last-delivered-id']
  if info['pending'] > 0 then
    needed = redis.call('XPENDING', KEYS[1], info['name'])[2]
  end
  if floor == nil or before(needed, floor) then floor = needed end
end
if not ours then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', floor)
",
    )
});

/// Most trim passes in a row: each removes at most 100 stream nodes
/// (10,000 entries with Redis' defaults), so other clients get in between.
const PASSES: usize = 100;

/// Trims what every group has acknowledged, once; returns how many
/// entries went.
pub async fn trim_acknowledged(pool: &Pool, topology: &Topology) -> Result<u64, BusError> {
    let mut total = 0;
    for _ in 0..PASSES {
        let mut conn = pool.get().await?;
        let trimmed: u64 = TRIM
            .key(&topology.orders_stream)
            .arg(&topology.group)
            .arg(topology.stream_maxlen)
            .invoke_async(&mut conn)
            .await?;
        total += trimmed;
        if trimmed == 0 {
            break;
        }
    }
    Ok(total)
}

/// Trims the orders stream every `every` until cancelled.
pub struct Trimmer {
    pub pool: Pool,
    pub topology: Topology,
    pub every: Duration,
}

impl Trimmer {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.every) => {}
            }
            match trim_acknowledged(&self.pool, &self.topology).await {
                Ok(0) => {}
                Ok(trimmed) => {
                    tracing::debug!(trimmed, stream = %self.topology.orders_stream, "trimmed acknowledged entries")
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot trim the orders stream; trying again later")
                }
            }
        }
    }
}
