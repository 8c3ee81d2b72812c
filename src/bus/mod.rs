//! Redis: the pub/sub shim, the consumer group, the result publisher and
//! the dead-letter stream.
//!
//! Everything here speaks in stream entries and results; what an entry
//! means is the worker's business. Commands go through one connection pool;
//! pub/sub subscriptions use dedicated connections.

mod announce;
mod consumer;
mod dlq;
mod entry;
mod keys;
mod kill_switch;
mod lease;
mod pool;
mod probe;
mod publisher;
mod rate_limit;
mod shim;
mod slots;
mod target;
mod trim;

use std::time::Duration;

use redis::AsyncConnectionConfig;

pub use consumer::{CLAIM_START, Consumer, RECOVER_START};
pub use dlq::{DeadLetters, Letter, RequeueError};
pub use entry::{Entry, RawFields, Truncated, fields_size};
pub use keys::{ExpectedKey, WrongKind, check_redis, expected_keys, used_keys, wrong_kinds};
pub use kill_switch::{KillSwitchReader, append_halt_command, dead_letter_entry};
pub use lease::RedisLease;
pub use pool::{Connection, Pool, PoolError};
pub use probe::{Probe, StreamStats};
pub use publisher::{Announce, Announcement, DeadLetter, Publisher, Source, Truncation};
pub use rate_limit::{RateLimiter, WINDOW as RATE_WINDOW};
pub use shim::{Shim, WaitFor, mirror_messages};
pub use slots::{NamedKey, key_slot, one_slot};
pub use target::RedisTarget;
pub use trim::{Trimmer, trim_acknowledged};

/// The names the service reads and writes, and how long streams may grow.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub orders_channel: String,
    pub results_channel: String,
    pub orders_stream: String,
    pub results_stream: String,
    /// Where every result is appended a second time, with the original
    /// service's field names beside these (`FILLS_STREAM`); none when empty.
    pub fills_stream: Option<String>,
    pub dlq_stream: String,
    pub group: String,
    pub consumer: String,
    /// Approximate cap (`MAXLEN ~`) of the results and dead-letter
    /// streams. The orders stream is never capped: past this length, the
    /// entries every group has acknowledged are trimmed.
    pub stream_maxlen: u64,
    /// How long the shim remembers a mirrored message's identity: long
    /// enough to merge the copies every replica's shim receives of one
    /// publish, short enough that a re-send gets through.
    pub dedup_window_ms: u64,
    /// Larger messages and entries are dead-lettered, never parsed.
    pub max_message_bytes: usize,
    /// How long the last announced state of an order is remembered
    /// (`RESULT_DEDUP_SECS`): within it, no state is announced twice.
    pub announced_ttl_secs: u64,
}

/// The longest any single command may take; above the worker's read block.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl Topology {
    /// The hash that records message-level failures of pending entries.
    pub fn failures_key(&self) -> String {
        format!("{}:failures", self.orders_stream)
    }

    /// The key holding the last state sequence number announced for an
    /// order.
    pub fn announced_key(&self, order_id: &str) -> String {
        format!("{}:announced:{order_id}", self.results_stream)
    }
}

/// The errors an entry met on its failed deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureNote {
    pub first_error: Option<String>,
    pub last_error: Option<String>,
}

impl FailureNote {
    /// The fields of the failures hash that hold an entry's errors (the
    /// acknowledging script in `consumer` names them the same way).
    pub fn fields(entry_id: &str) -> (String, String) {
        (format!("{entry_id}:first"), format!("{entry_id}:last"))
    }
}

/// A command connection pool to the Redis at `url`.
pub fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    pool_for(RedisTarget::direct(url)?, size)
}

/// The command connection pool. Every wait is bounded, so a dead Redis
/// surfaces as an error instead of a hang.
pub fn pool_for(target: RedisTarget, size: usize) -> anyhow::Result<Pool> {
    let connection = AsyncConnectionConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT));
    Ok(Pool::new(
        target,
        size,
        connection,
        RESPONSE_TIMEOUT,
        CONNECT_TIMEOUT,
    )?)
}

/// Errors from the pool or from Redis itself.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("no Redis connection: {0}")]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// Keys that hold another kind of value than the command needs.
    #[error("WRONGTYPE {0}")]
    WrongKind(String),
}
