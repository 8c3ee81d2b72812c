//! The dead-letter stream as operators see it: list, show, requeue, purge.
//!
//! A requeued letter goes back into the orders stream with its original
//! fields (its `order_id` included, so idempotency still holds), and leaves
//! the dead-letter stream once Redis took it back. A letter that holds
//! only the first bytes of a message too large to keep cannot be requeued.

use super::Pool;

use super::entry::{RangeReply, RawEntry, RawFields};
use super::{BusError, Topology};

/// Fields the service adds to a dead letter; everything else is original.
const META_PREFIX: &[u8] = b"dlq_";
/// Letters per read when reading them all.
const PAGE: usize = 500;

/// One entry of the dead-letter stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    pub id: String,
    /// Names and values as bytes: a letter keeps whatever the message held.
    pub fields: RawFields,
}

impl Letter {
    /// A field as text (lossy for bytes that are not UTF-8).
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The fields of the message as it originally arrived.
    pub fn original_fields(&self) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>)> {
        self.fields
            .iter()
            .filter(|(name, _)| !name.starts_with(META_PREFIX))
    }

    /// Whether it holds only the first bytes of its message.
    pub fn is_truncated(&self) -> bool {
        self.field("dlq_truncated").as_deref() == Some("true")
    }
}

/// Why letters cannot go back into the orders stream.
#[derive(Debug, thiserror::Error)]
pub enum RequeueError {
    #[error(
        "dead letter {0} holds only the first bytes of a message larger than MAX_MESSAGE_BYTES; \
         it cannot be requeued"
    )]
    Truncated(String),
    #[error(transparent)]
    Bus(#[from] BusError),
}

#[derive(Clone)]
pub struct DeadLetters {
    pool: Pool,
    topology: Topology,
}

impl DeadLetters {
    pub fn new(pool: Pool, topology: Topology) -> Self {
        DeadLetters { pool, topology }
    }

    /// Letters oldest first, at most `count`.
    pub async fn list(&self, count: usize) -> Result<Vec<Letter>, BusError> {
        self.range("-", "+", Some(count)).await
    }

    /// Every letter, oldest first, read a page at a time (Redis takes no
    /// `COUNT` above `i64::MAX`, and one huge reply would be one huge
    /// allocation).
    pub async fn all(&self) -> Result<Vec<Letter>, BusError> {
        let mut letters: Vec<Letter> = Vec::new();
        loop {
            let start = match letters.last() {
                Some(last) => format!("({}", last.id),
                None => "-".to_owned(),
            };
            let page = self.range(&start, "+", Some(PAGE)).await?;
            let full = page.len() == PAGE;
            letters.extend(page);
            if !full {
                return Ok(letters);
            }
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Letter>, BusError> {
        Ok(self.range(id, id, Some(1)).await?.into_iter().next())
    }

    /// Moves letters back into the orders stream; returns the new entry
    /// ids. Refuses all of them when one is truncated.
    pub async fn requeue(&self, letters: &[Letter]) -> Result<Vec<String>, RequeueError> {
        if let Some(letter) = letters.iter().find(|letter| letter.is_truncated()) {
            return Err(RequeueError::Truncated(letter.id.clone()));
        }
        if letters.is_empty() {
            return Ok(Vec::new());
        }
        // Back into the orders stream first, in one transaction: the entries
        // all go to one key, so they all go in or, when Redis refuses them
        // (`WRONGTYPE`), none does. Only then do the letters leave. A
        // failure in between leaves a letter in both places (requeued
        // again, it would be answered from its stored row). Never lost.
        let mut add = redis::pipe();
        add.atomic();
        for letter in letters {
            let xadd = add.cmd("XADD").arg(&self.topology.orders_stream).arg("*");
            for (name, value) in letter.original_fields() {
                xadd.arg(name.as_slice()).arg(value.as_slice());
            }
        }
        let mut conn = self.pool.get().await.map_err(BusError::from)?;
        let ids: Vec<String> = add.query_async(&mut conn).await.map_err(BusError::from)?;
        // Requeued whatever happens next: reporting a failure now would
        // invite a second requeue.
        let ids_of_letters: Vec<&str> = letters.iter().map(|letter| letter.id.as_str()).collect();
        let deleted: Result<u64, _> = redis::cmd("XDEL")
            .arg(&self.topology.dlq_stream)
            .arg(&ids_of_letters)
            .query_async(&mut conn)
            .await;
        if let Err(err) = deleted {
            tracing::warn!(error = %err, letters = ?ids_of_letters,
                "requeued, but the letters could not be deleted: delete them by hand (XDEL) rather than requeue them again");
        }
        Ok(ids)
    }

    /// Deletes the whole dead-letter stream; returns how many letters it held.
    pub async fn purge(&self) -> Result<u64, BusError> {
        let mut conn = self.pool.get().await?;
        let (length, _): (u64, u64) = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(&self.topology.dlq_stream)
            .cmd("DEL")
            .arg(&self.topology.dlq_stream)
            .query_async(&mut conn)
            .await?;
        Ok(length)
    }

    async fn range(
        &self,
        start: &str,
        end: &str,
        count: Option<usize>,
    ) -> Result<Vec<Letter>, BusError> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&self.topology.dlq_stream).arg(start).arg(end);
        if let Some(count) = count {
            // Redis refuses a COUNT beyond a signed 64-bit integer.
            cmd.arg("COUNT").arg(count.min(i64::MAX as usize));
        }
        let mut conn = self.pool.get().await?;
        let reply: RangeReply = cmd.query_async(&mut conn).await?;
        Ok(reply.into_iter().map(letter_of).collect())
    }
}

fn letter_of((id, fields): RawEntry) -> Letter {
    let mut fields = fields.unwrap_or_default();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Letter { id, fields }
}
