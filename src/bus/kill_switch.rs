//! The kill-switch stream (`SHUTDOWN_STREAM`): every replica reads all of
//! it (no consumer group), and halts set through the API or the CLI are
//! appended to it, so every replica hears of them.
//!
//! Entries are read as bytes, like the orders stream's: an entry whose
//! field names or values are not text is handed on as such, to be refused,
//! never a reason for reading to fail.

use std::time::Duration;

use super::Pool;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use super::entry::{RangeReply, ReadReply};
use super::{BusError, DeadLetter, Entry, Publisher, RedisTarget};
use crate::domain::HaltCommand;

/// Reads the kill-switch stream with blocking reads on a connection of its
/// own (a blocked read must not hold a pooled connection). The connection
/// is made again after an error, or once the primary moved.
pub struct KillSwitchReader {
    target: RedisTarget,
    config: AsyncConnectionConfig,
    conn: Option<(MultiplexedConnection, u64)>,
    stream: String,
}

impl KillSwitchReader {
    /// A reader whose commands may block for up to `block`.
    pub async fn connect(
        target: &RedisTarget,
        stream: &str,
        block: Duration,
    ) -> Result<Self, BusError> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(block + Duration::from_secs(2)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let mut reader = KillSwitchReader {
            target: target.clone(),
            config,
            conn: None,
            stream: stream.to_owned(),
        };
        reader.connection().await?;
        Ok(reader)
    }

    /// The reader's connection, made again when there is none or the
    /// primary moved since it was made.
    async fn connection(&mut self) -> Result<&mut MultiplexedConnection, BusError> {
        if self
            .conn
            .as_ref()
            .is_none_or(|(_, made)| *made != self.target.generation())
        {
            self.conn = None;
            let (client, generation) = self.target.located().await?;
            let conn = client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await?;
            self.conn = Some((conn, generation));
        }
        Ok(&mut self.conn.as_mut().expect("connected above").0)
    }

    /// Runs a command; any failure but a reply drops the connection.
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, BusError> {
        let reply = cmd.query_async(self.connection().await?).await;
        if let Err(err) = &reply
            && (err.is_io_error()
                || err.is_connection_dropped()
                || err.is_unrecoverable_error()
                || err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
        {
            self.conn = None;
        }
        Ok(reply?)
    }

    /// Entries after `after`, waiting up to `block` for the first.
    pub async fn read_after(
        &mut self,
        after: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Entry>, BusError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(after);
        let reply: ReadReply = self.query(&cmd).await?;
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
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&self.stream).arg(id).arg(id);
        let reply: RangeReply = self.query(&cmd).await?;
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
