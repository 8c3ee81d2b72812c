//! The consumer group side of `ORDERS_STREAM`: create the group, read new
//! and pending entries, claim stale ones, acknowledge.
//!
//! Entries are read as bytes (see [`super::entry`]), so no entry's content
//! can make a read fail. Delivery counts are Redis' own; only a read whose
//! reply is lost counts a delivery no processing saw, and
//! [`Consumer::recover_own`] takes such entries back without counting
//! another.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::Pool;
use redis::Script;
use redis::streams::StreamPendingCountReply;

use super::entry::{AutoClaimReply, RangeReply, ReadReply};
use super::{BusError, Entry, FailureNote, Topology};

/// KEYS: stream. ARGV: group, consumer, entry ids. Refreshes the ids the
/// consumer owns; returns how many.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local touched = 0
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    touched = touched + 1
  end
end
return touched
",
    )
});

/// How long a failure note outlives its last write: notes of entries that
/// were resolved without being acknowledged here (a race with another
/// replica) expire instead of piling up.
const FAILURE_NOTES_TTL_SECS: u64 = 7 * 86_400;

/// Where an `XAUTOCLAIM` scan starts when it has no cursor yet.
pub const CLAIM_START: &str = "0-0";

/// Where [`Consumer::recover_own`] starts when it has no cursor yet.
pub const RECOVER_START: &str = "-";

#[derive(Clone)]
pub struct Consumer {
    pool: Pool,
    topology: Topology,
}

impl Consumer {
    pub fn new(pool: Pool, topology: Topology) -> Self {
        Consumer { pool, topology }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Creates the group (and the stream) unless it exists. A new group
    /// starts at the beginning of the stream, so no entry is skipped.
    #[tracing::instrument(skip_all, fields(stream = %self.topology.orders_stream, group = %self.topology.group), err)]
    pub async fn ensure_group(&self) -> Result<(), BusError> {
        let mut conn = self.pool.get().await?;
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.topology.orders_stream)
            .arg(&self.topology.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// Entries never delivered before, waiting up to `block_ms` for the first.
    pub async fn read_new(&self, count: usize, block_ms: u64) -> Result<Vec<Entry>, BusError> {
        self.read_group(">", count, Some(block_ms)).await
    }

    /// This consumer's own pending entries from `after` on (a restart's
    /// unfinished work), with their delivery counts. Re-reading counts a
    /// delivery: a restart may have been caused by one of them.
    pub async fn read_own_pending(
        &self,
        after: &str,
        count: usize,
    ) -> Result<Vec<Entry>, BusError> {
        let entries = self.read_group(after, count, None).await?;
        self.with_delivery_counts(entries).await
    }

    /// Takes over entries that other consumers (or this one) left pending
    /// for longer than `min_idle_ms`, scanning the pending list from
    /// `cursor`. Returns them and the cursor the next pass continues from
    /// ([`CLAIM_START`] once the scan has gone round).
    pub async fn claim_stale(
        &self,
        min_idle_ms: u64,
        cursor: &str,
        count: usize,
    ) -> Result<(Vec<Entry>, String), BusError> {
        let mut conn = self.pool.get().await?;
        let (next, claimed, deleted): AutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.topology.orders_stream)
            .arg(&self.topology.group)
            .arg(&self.topology.consumer)
            .arg(min_idle_ms)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        drop(conn);
        let claimed = claimed.into_iter().map(Entry::from_raw).collect();
        let mut entries = self.with_delivery_counts(claimed).await?;
        // Entries deleted from the stream while pending: Redis drops them
        // from the pending list here, so they are handed on without fields,
        // to be dead-lettered as such rather than vanish without a trace.
        if !deleted.is_empty() {
            tracing::warn!(entries = ?deleted, "pending entries were deleted from the orders stream before they were acknowledged");
        }
        entries.extend(deleted.into_iter().map(|id| Entry::from_raw((id, None))));
        Ok((entries, next))
    }

    /// This consumer's pending entries that nothing here is working on:
    /// delivered by a read whose reply never arrived (a dropped connection,
    /// a timeout). They are fetched with `XRANGE`, which counts no
    /// delivery, so a lost reply never brings an entry closer to
    /// `MAX_DELIVERIES`. Entries `busy` names, and entries with a noted
    /// failure (left pending on purpose, to be delivered again after
    /// `CLAIM_IDLE_MS`), are left alone.
    ///
    /// Looks at `count` pending entries after `after` (`-`: from the
    /// start) and returns the cursor the next look continues from, so a
    /// long list of entries in flight cannot hide a lost one.
    pub async fn recover_own(
        &self,
        after: &str,
        count: usize,
        busy: impl Fn(&str) -> bool,
    ) -> Result<(Vec<Entry>, String), BusError> {
        let start = match after {
            RECOVER_START => RECOVER_START.to_owned(),
            id => format!("({id}"),
        };
        let mut conn = self.pool.get().await?;
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.topology.orders_stream)
            .arg(&self.topology.group)
            .arg(start)
            .arg("+")
            .arg(count)
            .arg(&self.topology.consumer)
            .query_async(&mut conn)
            .await?;
        drop(conn);
        let next = match pending.ids.last() {
            Some(last) if pending.ids.len() >= count => last.id.clone(),
            _ => RECOVER_START.to_owned(),
        };
        let entries = self.fetch_lost(pending, busy).await?;
        Ok((entries, next))
    }

    async fn fetch_lost(
        &self,
        pending: StreamPendingCountReply,
        busy: impl Fn(&str) -> bool,
    ) -> Result<Vec<Entry>, BusError> {
        let idle: Vec<(String, u64)> = pending
            .ids
            .into_iter()
            .filter(|p| !busy(&p.id))
            .map(|p| (p.id, p.times_delivered as u64))
            .collect();
        if idle.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = idle.iter().map(|(id, _)| id.as_str()).collect();
        let notes = self.failure_notes(&ids).await?;
        let lost: Vec<(String, u64)> = idle
            .into_iter()
            .filter(|(id, _)| notes.get(id).is_none_or(|n| n.first_error.is_none()))
            .collect();
        if lost.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, _) in &lost {
            pipe.cmd("XRANGE")
                .arg(&self.topology.orders_stream)
                .arg(id)
                .arg(id);
        }
        let mut conn = self.pool.get().await?;
        let ranges: Vec<RangeReply> = pipe.query_async(&mut conn).await?;
        Ok(lost
            .into_iter()
            .zip(ranges)
            .map(|((id, deliveries), range)| {
                let fields = range.into_iter().next().and_then(|(_, fields)| fields);
                Entry {
                    deliveries,
                    ..Entry::from_raw((id, fields))
                }
            })
            .collect())
    }

    /// Records a message-level failure of an entry, to report when it is
    /// eventually dead-lettered.
    pub async fn note_failure(&self, id: &str, error: &str) -> Result<(), BusError> {
        let (first, last) = FailureNote::fields(id);
        let key = self.topology.failures_key();
        let mut conn = self.pool.get().await?;
        let () = redis::pipe()
            .cmd("HSETNX")
            .arg(&key)
            .arg(first)
            .arg(error)
            .ignore()
            .cmd("HSET")
            .arg(&key)
            .arg(last)
            .arg(error)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(FAILURE_NOTES_TTL_SECS)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The failures recorded for these entries.
    pub async fn failure_notes(
        &self,
        ids: &[&str],
    ) -> Result<HashMap<String, FailureNote>, BusError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.topology.failures_key());
        for id in ids {
            let (first, last) = FailureNote::fields(id);
            cmd.arg(first).arg(last);
        }
        let mut conn = self.pool.get().await?;
        let values: Vec<Option<String>> = cmd.query_async(&mut conn).await?;
        Ok(ids
            .iter()
            .zip(values.chunks(2))
            .map(|(id, pair)| {
                let note = FailureNote {
                    first_error: pair.first().cloned().flatten(),
                    last_error: pair.get(1).cloned().flatten(),
                };
                (id.to_string(), note)
            })
            .collect())
    }

    /// Resets the idle time of entries this consumer still owns, without
    /// counting a delivery (`XCLAIM … JUSTID`). An entry another consumer has
    /// claimed meanwhile is left to it, never taken back.
    pub async fn touch(&self, ids: &[String]) -> Result<(), BusError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get().await?;
        let _: u64 = TOUCH
            .key(&self.topology.orders_stream)
            .arg(&self.topology.group)
            .arg(&self.topology.consumer)
            .arg(ids)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn read_group(
        &self,
        from: &str,
        count: usize,
        block_ms: Option<u64>,
    ) -> Result<Vec<Entry>, BusError> {
        let mut conn = self.pool.get().await?;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.topology.group)
            .arg(&self.topology.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block_ms) = block_ms {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS")
            .arg(&self.topology.orders_stream)
            .arg(from);
        let reply: ReadReply = cmd.query_async(&mut conn).await?;
        Ok(reply
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .map(Entry::from_raw)
            .collect())
    }

    /// Looks the delivery counts of pending entries up with XPENDING, one
    /// id at a time (in one round trip), so that other pending entries
    /// between them cannot crowd any out.
    async fn with_delivery_counts(&self, mut entries: Vec<Entry>) -> Result<Vec<Entry>, BusError> {
        if entries.is_empty() {
            return Ok(entries);
        }
        let mut pipe = redis::pipe();
        for entry in &entries {
            pipe.cmd("XPENDING")
                .arg(&self.topology.orders_stream)
                .arg(&self.topology.group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let mut conn = self.pool.get().await?;
        let pending: Vec<StreamPendingCountReply> = pipe.query_async(&mut conn).await?;
        for (entry, pending) in entries.iter_mut().zip(pending) {
            entry.deliveries = pending.ids.first().map_or(1, |p| p.times_delivered as u64);
        }
        Ok(entries)
    }
}
