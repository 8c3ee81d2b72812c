//! A request budget in Redis that every replica draws from, so the fleet
//! together stays under the exchange's request rate however many replicas
//! run (MEXC allows 12 order placements and cancellations a second per
//! account; `MEXC_MAX_ORDERS_PER_SEC` defaults to 10).
//!
//! A sliding window rather than a refilling bucket: one Lua script keeps
//! the grants of the last [`WINDOW`] (a second and a margin, by Redis' own
//! clock, so replicas' clocks do not matter) and grants another only while
//! fewer than the limit are in it, so no second, wherever it starts, holds
//! more than the limit. A caller refused learns how long until the oldest
//! grant leaves. A `Retry-After` from the exchange pauses every replica.

use std::time::Duration;

use super::Pool;
use redis::Script;
use tokio_util::sync::CancellationToken;

use super::BusError;

/// How long a grant counts against the budget: a second, plus a margin for
/// the time between a grant and its request reaching the exchange (which
/// varies from request to request), so that no second *as the exchange
/// sees it* holds more than the limit.
pub const WINDOW: Duration = Duration::from_millis(1_100);

/// KEYS: the log of the window's grants, its sequence, and the pause the
/// exchange asked for. ARGV: how many a window, the window in µs. Returns 0
/// when a grant was made, else the milliseconds until one may be.
const TAKE: &str = r"
local limit = tonumber(ARGV[1])
local paused = redis.call('PTTL', KEYS[3])
if paused > 0 then
  return paused
end
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local window_us = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_us - window_us)
if redis.call('ZCARD', KEYS[1]) < limit then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], now_us, seq)
  redis.call('PEXPIRE', KEYS[1], 2000)
  redis.call('PEXPIRE', KEYS[2], 2000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, math.ceil((tonumber(oldest[2]) + window_us - now_us) / 1000))
";

/// The shared request budget of one exchange account.
#[derive(Clone)]
pub struct RateLimiter {
    pool: Pool,
    key: String,
    per_second: u32,
    script: Script,
}

impl RateLimiter {
    /// At most `per_second` grants in any second across every replica
    /// using `key`.
    pub fn new(pool: Pool, key: impl Into<String>, per_second: u32) -> Self {
        RateLimiter {
            pool,
            key: key.into(),
            per_second: per_second.max(1),
            script: Script::new(TAKE),
        }
    }

    /// Takes a grant if the window has room; else how long until it will.
    pub async fn try_take(&self) -> Result<Option<Duration>, BusError> {
        let mut conn = self.pool.get().await?;
        let wait_ms: u64 = self
            .script
            .key(&self.key)
            .key(format!("{}:seq", self.key))
            .key(self.pause_key())
            .arg(self.per_second)
            .arg(WINDOW.as_micros() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }

    /// Grants nothing to any replica for `length` (the exchange's
    /// `Retry-After`); a longer pause already set is kept.
    pub async fn pause(&self, length: Duration) -> Result<(), BusError> {
        let mut conn = self.pool.get().await?;
        let millis = length.as_millis().max(1) as u64;
        // Allowed while Redis is out of memory: one small key, and the
        // exchange asked for quiet whatever Redis' state.
        let _: () = redis::Script::new(
            "#!lua flags=allow-oom\n\
             if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then \
               redis.call('SET', KEYS[1], 1, 'PX', ARGV[1]) end",
        )
        .key(self.pause_key())
        .arg(millis)
        .invoke_async(&mut conn)
        .await?;
        Ok(())
    }

    /// How long the exchange's `Retry-After` still stops every request.
    pub async fn paused_for(&self) -> Result<Option<Duration>, BusError> {
        let mut conn = self.pool.get().await?;
        let left: i64 = redis::cmd("PTTL")
            .arg(self.pause_key())
            .query_async(&mut conn)
            .await?;
        Ok((left > 0).then(|| Duration::from_millis(left as u64)))
    }

    fn pause_key(&self) -> String {
        format!("{}:pause", self.key)
    }

    /// Waits for a grant, returning how long it waited; `None` when
    /// cancelled first. Redis being away is
    /// an error for the caller to handle (never a free pass).
    pub async fn take(&self, cancel: &CancellationToken) -> Result<Option<Duration>, BusError> {
        let mut waited = Duration::ZERO;
        loop {
            let Some(wait) = self.try_take().await? else {
                return Ok(Some(waited));
            };
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep(wait) => waited += wait,
            }
        }
    }
}
