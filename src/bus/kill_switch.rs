//! The kill-switch stream (`SHUTDOWN_STREAM`): every replica reads all of
//! it (no consumer group), and halts set through the API or the CLI are
//! appended to it, so every replica hears of them.
//!
//! Entries are read as bytes: an entry whose field names or values are not
//! text is handed on as such, to be refused, never a reason for reading to
//! fail.

use std::time::Duration;

use deadpool_redis::Pool;
use redis::Value;
use redis::aio::ConnectionManager;

use super::{BusError, Topology};
use crate::domain::HaltCommand;

/// One entry of the kill-switch stream, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub id: String,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

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
    ) -> Result<Vec<RawEntry>, BusError> {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(after)
            .query_async(&mut self.conn)
            .await?;
        Ok(stream_entries(reply))
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
    pool: &Pool,
    topology: &Topology,
    source_stream: &str,
    entry: &RawEntry,
    reason: &str,
) -> Result<(), BusError> {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&topology.dlq_stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(topology.stream_maxlen)
        .arg("*")
        .arg("dlq_original_id")
        .arg(&entry.id)
        .arg("dlq_order_id")
        .arg("")
        .arg("dlq_reason")
        .arg(reason)
        .arg("dlq_deliveries")
        .arg(1)
        .arg("dlq_source_stream")
        .arg(source_stream)
        .arg("dlq_failed_at")
        .arg(chrono::Utc::now().timestamp());
    for (name, value) in &entry.fields {
        cmd.arg(name.as_slice()).arg(value.as_slice());
    }
    let mut conn = pool.get().await?;
    let _: String = cmd.query_async(&mut conn).await?;
    Ok(())
}

/// The entries of an `XREAD` reply, in RESP2 (arrays) or RESP3 (maps)
/// shape, keeping names and values as bytes.
fn stream_entries(reply: Value) -> Vec<RawEntry> {
    let streams: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    streams
        .into_iter()
        .flat_map(|entries| match entries {
            Value::Array(entries) => entries,
            _ => Vec::new(),
        })
        .filter_map(|entry| {
            let Value::Array(mut parts) = entry else {
                return None;
            };
            let fields = parts.pop()?;
            let id = bytes(parts.pop()?)?;
            Some(RawEntry {
                id: String::from_utf8(id).ok()?,
                fields: field_pairs(fields),
            })
        })
        .collect()
}

fn field_pairs(fields: Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    match fields {
        Value::Array(flat) => flat
            .chunks(2)
            .filter_map(|pair| match pair {
                [name, value] => Some((bytes(name.clone())?, bytes(value.clone())?)),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(name, value)| Some((bytes(name)?, bytes(value)?)))
            .collect(),
        _ => Vec::new(),
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &[u8]) -> Value {
        Value::BulkString(text.to_vec())
    }

    #[test]
    fn entries_keep_bytes_that_are_not_text() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"stream.bot_shutdown"),
            Value::Array(vec![Value::Array(vec![
                bulk(b"1-0"),
                Value::Array(vec![
                    bulk(b"action"),
                    bulk(b"halt"),
                    bulk(b"\xff"),
                    bulk(b"\xfe"),
                ]),
            ])]),
        ])]);
        assert_eq!(
            stream_entries(reply),
            [RawEntry {
                id: "1-0".into(),
                fields: vec![
                    (b"action".to_vec(), b"halt".to_vec()),
                    (b"\xff".to_vec(), b"\xfe".to_vec())
                ],
            }]
        );
        assert_eq!(stream_entries(Value::Nil), []);
    }
}
