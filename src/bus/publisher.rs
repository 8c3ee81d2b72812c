//! Announces results on `RESULTS_CHANNEL` and `RESULTS_STREAM`, and parks
//! dead letters on `DLQ_STREAM`, all of one batch in one round trip.

use super::Pool;

use super::announce::announce;
use super::entry::{RawFields, Truncated};
use super::{BusError, Entry, FailureNote, Topology};
use crate::domain::ExecutionResult;

/// A message that cannot be processed, with everything needed to look at
/// it or requeue it later.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The stream entry's id; empty for a message refused by the shim.
    pub original_id: String,
    pub order_id: Option<String>,
    pub reason: String,
    pub deliveries: u64,
    /// The entry's fields exactly as they arrived (names and values as
    /// bytes), or their first bytes when the message was too large.
    pub fields: RawFields,
    /// Errors recorded on earlier deliveries, if any.
    pub failures: FailureNote,
    /// Set when `fields` holds only the first bytes of the message.
    pub truncated: Option<Truncation>,
    /// Where it came from, when not the orders stream: the channel of a
    /// message refused by the shim, or another stream.
    pub source: Option<Source>,
}

/// Where a dead letter came from, when not the orders stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Channel(String),
    Stream(String),
}

/// The size and SHA-256 of a message kept only in part.
#[derive(Debug, Clone, PartialEq)]
pub struct Truncation {
    pub size: usize,
    pub sha256: String,
}

impl DeadLetter {
    /// An entry, whole.
    pub fn of_entry(
        entry: &Entry,
        order_id: Option<String>,
        reason: String,
        failures: FailureNote,
    ) -> Self {
        DeadLetter {
            original_id: entry.id.clone(),
            order_id,
            reason,
            deliveries: entry.deliveries,
            fields: entry.fields.clone(),
            failures,
            truncated: None,
            source: None,
        }
    }

    /// An entry of another stream than the orders stream, whole.
    pub fn of_stream_entry(stream: &str, entry: &Entry, reason: String) -> Self {
        DeadLetter {
            source: Some(Source::Stream(stream.to_owned())),
            ..DeadLetter::of_entry(entry, None, reason, FailureNote::default())
        }
    }

    /// An entry larger than `limit` bytes: only its first `limit` bytes
    /// are kept, with its size and hash; it is not parsed.
    pub fn oversized_entry(entry: &Entry, limit: usize) -> Self {
        let cut = Truncated::of_entry(&entry.fields, limit);
        DeadLetter {
            original_id: entry.id.clone(),
            order_id: None,
            reason: too_large(cut.size, limit),
            deliveries: entry.deliveries,
            fields: cut.fields,
            failures: FailureNote::default(),
            truncated: Some(Truncation {
                size: cut.size,
                sha256: cut.sha256,
            }),
            source: None,
        }
    }

    /// A pub/sub message larger than `limit` bytes, refused by the shim
    /// before it became an entry.
    pub fn oversized_message(message: &[u8], limit: usize, channel: &str) -> Self {
        let cut = Truncated::of_message(message, limit);
        DeadLetter {
            original_id: String::new(),
            order_id: None,
            reason: too_large(cut.size, limit),
            deliveries: 0,
            fields: cut.fields,
            failures: FailureNote::default(),
            truncated: Some(Truncation {
                size: cut.size,
                sha256: cut.sha256,
            }),
            source: Some(Source::Channel(channel.to_owned())),
        }
    }

    /// The fields of its dead-letter stream entry: the `dlq_` ones, then the
    /// message's own.
    pub fn to_fields(&self, topology: &Topology, failed_at: i64) -> RawFields {
        let mut fields: Vec<(&str, String)> = vec![
            ("dlq_original_id", self.original_id.clone()),
            ("dlq_order_id", self.order_id.clone().unwrap_or_default()),
            ("dlq_reason", self.reason.clone()),
            ("dlq_deliveries", self.deliveries.to_string()),
        ];
        match &self.source {
            Some(Source::Channel(channel)) => fields.push(("dlq_source_channel", channel.clone())),
            Some(Source::Stream(stream)) => fields.push(("dlq_source_stream", stream.clone())),
            None => fields.push(("dlq_source_stream", topology.orders_stream.clone())),
        }
        fields.push(("dlq_failed_at", failed_at.to_string()));
        if let Some(first) = &self.failures.first_error {
            fields.push(("dlq_first_error", first.clone()));
        }
        if let Some(last) = &self.failures.last_error {
            fields.push(("dlq_last_error", last.clone()));
        }
        if let Some(truncation) = &self.truncated {
            fields.push(("dlq_truncated", "true".to_owned()));
            fields.push(("dlq_message_bytes", truncation.size.to_string()));
            fields.push(("dlq_message_sha256", truncation.sha256.clone()));
        }
        fields
            .into_iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value.into_bytes()))
            .chain(self.fields.iter().cloned())
            .collect()
    }
}

fn too_large(size: usize, limit: usize) -> String {
    format!("message of {size} bytes is larger than MAX_MESSAGE_BYTES={limit}")
}

/// How a result is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    /// A change of its order's state: announced once (channel, results
    /// stream, fills stream); a copy whose state was announced already is
    /// dropped (a redelivered entry, the reconciler after a crash).
    Change,
    /// The answer to a fresh message: the change when nobody announced it
    /// yet, else the stored result again on the results channel only,
    /// marked as a replay (a producer's re-sent message).
    Answer,
    /// The answer to a fresh message whose row this batch inserted: its
    /// change, with no replay rendered in advance. Should a duplicate in a
    /// concurrent batch have announced the change first, this message is
    /// answered on the channel with the change marked as a replay.
    FirstAnswer,
}

/// A result and how to announce it. A result without a state sequence
/// number (a conflict, a rejection without a row) is always announced.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub result: ExecutionResult,
    pub kind: Announce,
}

impl Announcement {
    pub fn change(result: ExecutionResult) -> Self {
        Announcement {
            result,
            kind: Announce::Change,
        }
    }
}

#[derive(Clone)]
pub struct Publisher {
    pool: Pool,
    topology: Topology,
}

impl Publisher {
    pub fn new(pool: Pool, topology: Topology) -> Self {
        Publisher { pool, topology }
    }

    /// Announces results and dead letters.
    pub async fn publish(
        &self,
        results: &[Announcement],
        dead: &[DeadLetter],
    ) -> Result<(), BusError> {
        self.publish_and_ack(results, dead, &[]).await
    }

    /// Announces results and dead letters, then acknowledges the entries
    /// `ack` names, in one round trip (see [`announce`]).
    #[tracing::instrument(name = "redis.publish_results", skip_all, fields(results = results.len(), dead_letters = dead.len(), acks = ack.len()), err)]
    pub async fn publish_and_ack(
        &self,
        results: &[Announcement],
        dead: &[DeadLetter],
        ack: &[String],
    ) -> Result<(), BusError> {
        announce(&self.pool, &self.topology, results, dead, ack).await
    }
}
