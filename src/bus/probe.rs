//! Read-only questions about Redis for health checks and status: is it
//! there, and how long are the streams.

use super::Pool;
use redis::streams::{StreamInfoGroupsReply, StreamPendingReply};

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
    /// How long ago (by Redis' clock) the oldest pending entry was added,
    /// in milliseconds; 0 when nothing is pending.
    pub oldest_pending_ms: u64,
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
        let oldest_pending_ms = if pending > 0 {
            self.oldest_pending_ms(&mut conn).await?
        } else {
            0
        };
        Ok(StreamStats {
            length,
            pending,
            lag,
            backlog: lag + pending,
            dlq_length,
            oldest_pending_ms,
        })
    }

    /// The age of the group's oldest pending entry, from its id (the
    /// milliseconds Redis stamped it with) and Redis' own clock.
    async fn oldest_pending_ms(&self, conn: &mut super::Connection) -> Result<u64, BusError> {
        let topology = &self.topology;
        let (summary, (seconds, micros)): (StreamPendingReply, (u64, u64)) = match redis::pipe()
            .cmd("XPENDING")
            .arg(&topology.orders_stream)
            .arg(&topology.group)
            .cmd("TIME")
            .query_async(conn)
            .await
        {
            Ok(reply) => reply,
            // The group went away between the two questions.
            Err(err) if err.code() == Some("NOGROUP") => return Ok(0),
            Err(err) => return Err(err.into()),
        };
        let StreamPendingReply::Data(data) = summary else {
            return Ok(0);
        };
        let Some(added_ms) = data
            .start_id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse::<u64>().ok())
        else {
            return Ok(0);
        };
        let now_ms = seconds * 1000 + micros / 1000;
        Ok(now_ms.saturating_sub(added_ms))
    }
}
