//! Reading an entry: its fields as text, its age and what the shim put
//! beside it, within the limits planning applies.

use chrono::{DateTime, Utc};

use crate::bus::{DeadLetter, Entry, FailureNote};
use crate::domain::{issued_in_future, stale_reason, valid_traceparent};

/// An entry's fields with their names as text, or the dead letter it
/// becomes unparsed: larger than `MAX_MESSAGE_BYTES` (only its first bytes
/// are kept), a field name that is not UTF-8, or nothing left of it.
pub(super) fn readable(
    entry: &Entry,
    limits: &Limits,
) -> Result<Vec<(String, Vec<u8>)>, Box<DeadLetter>> {
    let letter = |reason: String| {
        Box::new(DeadLetter::of_entry(
            entry,
            None,
            reason,
            FailureNote::default(),
        ))
    };
    if entry.size() > limits.max_message_bytes {
        return Err(Box::new(DeadLetter::oversized_entry(
            entry,
            limits.max_message_bytes,
        )));
    }
    if entry.fields.is_empty() {
        return Err(letter(
            "the entry was deleted from the stream before it was acknowledged".to_owned(),
        ));
    }
    entry.named_fields().map_err(letter)
}

/// The limits planning applies to entries.
#[derive(Debug, Clone, Copy)]
pub(in crate::worker) struct Limits {
    pub max_deliveries: u64,
    /// Larger entries are dead-lettered unparsed.
    pub max_message_bytes: usize,
    /// Orders issued longer ago than this are rejected unexecuted.
    pub max_order_age: Option<chrono::Duration>,
    /// Orders stamped further in the future than this are rejected too.
    pub max_order_future: chrono::Duration,
}

impl Limits {
    /// Why an order must not be executed now: its `timestamp` lies too far
    /// in the future (a clock the stale check cannot trust), or it was issued
    /// (by its `timestamp`, else by its stream entry's time) too long ago.
    pub(super) fn staleness(
        &self,
        timestamp: Option<DateTime<Utc>>,
        entry_id: &str,
        now: DateTime<Utc>,
    ) -> Option<String> {
        if let Some(reason) =
            timestamp.and_then(|at| issued_in_future(at, now, self.max_order_future))
        {
            return Some(format!("{reason} (ORDER_MAX_FUTURE_SECS)"));
        }
        let issued_at = timestamp.or_else(|| stream_time(entry_id)).unwrap_or(now);
        stale_reason(issued_at, now, self.max_order_age?)
    }
}

/// The trace context the shim put beside an entry's payload: the shim's own
/// span, which continues the trace the message named.
pub(super) fn forwarded_traceparent(entry: &Entry) -> Option<String> {
    let (_, value) = entry
        .fields
        .iter()
        .find(|(name, _)| name == b"traceparent")?;
    valid_traceparent(std::str::from_utf8(value).ok()?).map(str::to_owned)
}

/// When an entry was added, from its id (`<unix ms>-<seq>`).
fn stream_time(id: &str) -> Option<DateTime<Utc>> {
    let millis = id.split('-').next()?.parse::<i64>().ok()?;
    DateTime::from_timestamp_millis(millis)
}
