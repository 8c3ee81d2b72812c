//! Read-only questions about Redis for health checks and status: is it
//! there, and how long are the streams.

use deadpool_redis::Pool;
use redis::streams::StreamInfoGroupsReply;

use super::{BusError, Topology};

/// The state of the orders stream and its consumer group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub length: u64,
    /// Entries read by the group and not yet acknowledged.
    pub pending: u64,
    /// Entries not yet read by the group (Redis 7 `lag`; when Redis cannot
    /// tell, the entries not pending, an upper bound).
    pub lag: u64,
    /// Entries the group has not acknowledged yet: `lag + pending`.
    pub backlog: u64,
    pub dlq_length: u64,
}

#[derive(Clone)]
pub struct Probe {
    pool: Pool,
    topology: Topology,
}

impl Probe {
    pub fn new(pool: Pool, topology: Topology) -> Self {
        Probe { pool, topology }
    }

    pub async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.pool.get().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Stream lengths and the group's pending count and lag, in one round trip.
    pub async fn stream_stats(&self) -> Result<StreamStats, BusError> {
        let topology = &self.topology;
        let mut conn = self.pool.get().await?;
        let (length, dlq_length, groups): (u64, u64, StreamInfoGroupsReply) = redis::pipe()
            .cmd("XLEN")
            .arg(&topology.orders_stream)
            .cmd("XLEN")
            .arg(&topology.dlq_stream)
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(&topology.orders_stream)
            .query_async(&mut conn)
            .await
            .or_else(|err| match err.code() {
                // No stream yet: nothing is pending or lagging.
                Some("ERR") => Ok((0, 0, StreamInfoGroupsReply::default())),
                _ => Err(err),
            })?;
        let group = groups.groups.iter().find(|g| g.name == topology.group);
        let pending = group.map_or(0, |g| g.pending as u64);
        let lag = group
            .and_then(|g| g.lag)
            .map_or(length.saturating_sub(pending), |lag| lag as u64);
        Ok(StreamStats {
            length,
            pending,
            lag,
            backlog: lag + pending,
            dlq_length,
        })
    }
}
