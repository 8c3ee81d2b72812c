//! The kill-switch stream (`SHUTDOWN_STREAM`): every replica reads all of
//! it (no consumer group), and halts set through the API or the CLI are
//! appended to it, so every replica hears of them.
//!
//! Entries are read as bytes, like the orders stream's: an entry whose
//! field names or values are not text is handed on as such, to be refused,
//! never a reason for reading to fail.

use std::time::Duration;

use deadpool_redis::Pool;
use redis::aio::ConnectionManager;

use super::entry::{RangeReply, ReadReply};
use super::{BusError, DeadLetter, Entry, Publisher};
use crate::domain::HaltCommand;

/// Reads the kill-switch stream with blocking reads on a connection of its
/// own (a blocked read must not hold a pooled connection).
#[derive(Clone)]
pub struct KillSwitchReader {
    conn: ConnectionManager,
    stream: String,
}

impl KillSwitchReader {
    /// A reader whose commands may block for up to `block`.
    pub async fn connect(
        client: &redis::Client,
        stream: &str,
        block: Duration,
    ) -> Result<Self, BusError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(block + Duration::from_secs(2)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        Ok(KillSwitchReader {
            conn: client.get_connection_manager_with_config(config).await?,
            stream: stream.to_owned(),
        })
    }

    /// Entries after `after`, waiting up to `block` for the first.
    pub async fn read_after(
        &mut self,
        after: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, BusError> {
        let reply: ReadReply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(after)
            .query_async(&mut self.conn)
            .await?;
        Ok(reply
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .map(Entry::from_raw)
            .collect())
    }
}

impl KillSwitchReader {
    /// The entry with this id, if the stream still has it.
    pub async fn entry(&mut self, id: &str) -> Result<Option<Entry>, BusError> {
        let reply: RangeReply = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg(id)
            .arg(id)
            .query_async(&mut self.conn)
            .await?;
        Ok(reply.into_iter().next().map(Entry::from_raw))
    }
}

/// Appends a halt or resume to the kill-switch stream; returns its id.
pub async fn append_halt_command(
    pool: &Pool,
    stream: &str,
    command: &HaltCommand,
) -> Result<String, BusError> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (name, value) in command.to_fields() {
        cmd.arg(name).arg(value);
    }
    let mut conn = pool.get().await?;
    Ok(cmd.query_async(&mut conn).await?)
}

/// Parks a kill-switch entry that cannot be understood on the dead-letter
/// stream, with its fields exactly as they were and the reason.
pub async fn dead_letter_entry(
    publisher: &Publisher,
    stream: &str,
    entry: &Entry,
    reason: String,
) -> Result<(), BusError> {
    publisher
        .publish(&[], &[DeadLetter::of_stream_entry(stream, entry, reason)])
        .await
}
