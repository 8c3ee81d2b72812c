//! Stream entries as Redis holds them, and the replies that carry them.
//!
//! The invariant: reading never fails on content. Redis lets any producer
//! write any bytes as a field name or value, so entries are read as bytes
//! (the client's typed replies, with `Vec<u8>` names and values, in the
//! order Redis keeps them, a repeated field included); what the bytes mean
//! is decided later, per entry, where one undecodable entry is
//! dead-lettered instead of stopping every read of the stream.

use sha2::{Digest, Sha256};

/// An entry's fields, names and values exactly as stored.
pub type RawFields = Vec<(Vec<u8>, Vec<u8>)>;

/// One entry in a stream reply: its id, and its fields unless the entry
/// was deleted while pending (Redis then sends nil).
pub(super) type RawEntry = (String, Option<RawFields>);

/// `XREADGROUP`: per stream, its entries; nil when nothing arrived in time.
pub(super) type ReadReply = Option<Vec<(String, Vec<RawEntry>)>>;

/// `XAUTOCLAIM` (Redis 7): the cursor to continue from, the claimed
/// entries, and the ids that were deleted meanwhile (Redis drops those
/// from the pending list itself).
pub(super) type AutoClaimReply = (String, Vec<RawEntry>, Vec<String>);

/// `XRANGE`: entries in id order.
pub(super) type RangeReply = Vec<RawEntry>;

/// One stream entry as delivered to this consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    /// The fields exactly as stored; empty when the entry was deleted (or
    /// trimmed by someone else) while it was pending.
    pub fields: RawFields,
    /// How often the group has delivered it, this delivery included.
    pub deliveries: u64,
}

impl Entry {
    pub(super) fn from_raw((id, fields): RawEntry) -> Self {
        Entry {
            id,
            fields: fields.unwrap_or_default(),
            deliveries: 1,
        }
    }

    /// The bytes of every name and value together.
    pub fn size(&self) -> usize {
        fields_size(&self.fields)
    }

    /// The fields with their names as text, or why a name is not text.
    pub fn named_fields(&self) -> Result<Vec<(String, Vec<u8>)>, String> {
        self.fields
            .iter()
            .map(|(name, value)| match std::str::from_utf8(name) {
                Ok(name) => Ok((name.to_owned(), value.clone())),
                Err(_) => Err(format!(
                    "a field name is not UTF-8 ({})",
                    String::from_utf8_lossy(&name[..name.len().min(40)])
                )),
            })
            .collect()
    }
}

/// The bytes of every name and value together.
pub fn fields_size(fields: &RawFields) -> usize {
    fields
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum()
}

/// What is kept of a message too large to keep whole: its first bytes (at
/// most `limit`), its full size and the SHA-256 of all its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Truncated {
    pub fields: RawFields,
    pub size: usize,
    pub sha256: String,
}

impl Truncated {
    /// A pub/sub message: its first bytes as `payload`; size and hash are
    /// those of the message itself.
    pub fn of_message(message: &[u8], limit: usize) -> Self {
        Truncated {
            fields: vec![(
                b"payload".to_vec(),
                message[..message.len().min(limit)].to_vec(),
            )],
            size: message.len(),
            sha256: hex::encode(Sha256::digest(message)),
        }
    }

    /// A stream entry: its fields in order, cut where `limit` bytes of
    /// names and values are used up; size and hash are those of all its
    /// names and values concatenated in order.
    pub fn of_entry(fields: &RawFields, limit: usize) -> Self {
        let mut hash = Sha256::new();
        let mut budget = limit;
        let mut kept = Vec::new();
        for (name, value) in fields {
            hash.update(name);
            hash.update(value);
            if budget == 0 {
                continue;
            }
            let name = cut(name, &mut budget);
            let value = cut(value, &mut budget);
            kept.push((name, value));
        }
        Truncated {
            fields: kept,
            size: fields_size(fields),
            sha256: hex::encode(hash.finalize()),
        }
    }
}

fn cut(bytes: &[u8], budget: &mut usize) -> Vec<u8> {
    let take = bytes.len().min(*budget);
    *budget -= take;
    bytes[..take].to_vec()
}

#[cfg(test)]
mod tests {
    use redis::{FromRedisValue, Value};

    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    #[test]
    fn a_read_reply_keeps_non_utf8_names_values_order_and_repeats() {
        let fields = Value::Array(vec![
            bulk(b"\xff\xfe"),
            bulk(b"x"),
            bulk(b"payload"),
            bulk(b"\xc3\x28"),
            bulk(b"payload"),
            bulk(b"again"),
        ]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"s"),
            Value::Array(vec![
                Value::Array(vec![bulk(b"1-1"), fields]),
                Value::Array(vec![bulk(b"1-2"), Value::Nil]),
            ]),
        ])]);
        let parsed = ReadReply::from_redis_value(reply).expect("a read reply");
        let entries: Vec<Entry> = parsed
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .map(Entry::from_raw)
            .collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].fields,
            vec![
                (b"\xff\xfe".to_vec(), b"x".to_vec()),
                (b"payload".to_vec(), b"\xc3\x28".to_vec()),
                (b"payload".to_vec(), b"again".to_vec()),
            ]
        );
        assert!(entries[0].named_fields().is_err());
        assert_eq!(entries[1].fields, Vec::new(), "a deleted entry");
        assert_eq!(ReadReply::from_redis_value(Value::Nil).expect("nil"), None);
    }

    #[test]
    fn an_autoclaim_reply_has_a_cursor_entries_and_deleted_ids() {
        let reply = Value::Array(vec![
            bulk(b"5-0"),
            Value::Array(vec![Value::Array(vec![
                bulk(b"2-0"),
                Value::Array(vec![bulk(b"\x80"), bulk(b"\x81")]),
            ])]),
            Value::Array(vec![bulk(b"3-0")]),
        ]);
        let (cursor, claimed, deleted) =
            AutoClaimReply::from_redis_value(reply).expect("an autoclaim reply");
        assert_eq!(cursor, "5-0");
        assert_eq!(
            claimed[0].1,
            Some(vec![(b"\x80".to_vec(), b"\x81".to_vec())])
        );
        assert_eq!(deleted, vec!["3-0".to_owned()]);
    }

    #[test]
    fn a_truncated_message_keeps_its_first_bytes_size_and_hash() {
        let fields: RawFields = vec![
            (b"payload".to_vec(), vec![b'a'; 100]),
            (b"other".to_vec(), b"zzz".to_vec()),
        ];
        let cut = Truncated::of_entry(&fields, 20);
        assert_eq!(cut.fields, vec![(b"payload".to_vec(), vec![b'a'; 13])]);
        assert_eq!(cut.size, 115);
        let whole: Vec<u8> = [&b"payload"[..], &[b'a'; 100], b"other", b"zzz"].concat();
        assert_eq!(cut.sha256, hex::encode(Sha256::digest(&whole)));
        assert_eq!(Truncated::of_entry(&fields, 1000).fields, fields);

        let message = Truncated::of_message(b"0123456789", 4);
        assert_eq!(
            message.fields,
            vec![(b"payload".to_vec(), b"0123".to_vec())]
        );
        assert_eq!(message.size, 10);
        assert_eq!(message.sha256, hex::encode(Sha256::digest(b"0123456789")));
    }
}
