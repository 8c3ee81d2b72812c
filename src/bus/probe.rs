//! Read-only questions about Redis for health checks and status: is it
//! there, and how long are the streams.

use deadpool_redis::Pool;
use redis::Value;

use super::{BusError, Topology};

/// The state of the orders stream and its consumer group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub length: u64,
    /// Entries read by the group and not yet acknowledged.
    pub pending: u64,
    /// Entries not yet read by the group (Redis 7 `lag`).
    pub lag: u64,
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
        let (length, dlq_length, groups): (u64, u64, Value) = redis::pipe()
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
                Some("ERR") => Ok((0, 0, Value::Nil)),
                _ => Err(err),
            })?;
        let group = group_fields(&groups, &topology.group);
        Ok(StreamStats {
            length,
            pending: group
                .iter()
                .find(|(k, _)| k == "pending")
                .map_or(0, |(_, v)| *v),
            lag: group
                .iter()
                .find(|(k, _)| k == "lag")
                .map_or(length, |(_, v)| *v),
            dlq_length,
        })
    }
}

/// The integer fields of one group in an `XINFO GROUPS` reply.
fn group_fields(reply: &Value, group: &str) -> Vec<(String, u64)> {
    let Value::Array(groups) = reply else {
        return Vec::new();
    };
    groups
        .iter()
        .map(pairs)
        .find(|fields| {
            fields
                .iter()
                .any(|(k, v)| k == "name" && text(v).as_deref() == Some(group))
        })
        .map(|fields| {
            fields
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Value::Int(n) => Some((k, n.max(0) as u64)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(value: &Value) -> Vec<(String, Value)> {
    match value {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| match pair {
                [key, value] => text(key).map(|key| (key, value.clone())),
                _ => None,
            })
            .collect(),
        Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| text(k).map(|k| (k, v.clone())))
            .collect(),
        _ => Vec::new(),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}
