//! Redis Cluster hash slots: the service runs against a cluster only when
//! every key it uses lies in one slot, since its scripts and pipelines
//! touch several keys at once. A common hash tag (`{exec}` in each name)
//! does that.

use std::collections::BTreeMap;

/// Slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// The slot Redis Cluster stores `key` in: CRC16 (XMODEM) of the key, or
/// of its hash tag (the text between the first `{` and the next `}`, when
/// not empty), modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|b| *b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|b| *b == b'}') {
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        },
        None => key,
    };
    crc16(hashed) % SLOTS
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in bytes {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A key the service uses and the setting that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedKey {
    pub setting: String,
    pub key: String,
}

impl NamedKey {
    pub fn new(setting: impl Into<String>, key: impl Into<String>) -> Self {
        NamedKey {
            setting: setting.into(),
            key: key.into(),
        }
    }
}

/// The one slot every key lies in, or an error naming the keys of each
/// slot.
pub fn one_slot(keys: &[NamedKey]) -> Result<u16, String> {
    let mut by_slot: BTreeMap<u16, Vec<&NamedKey>> = BTreeMap::new();
    for key in keys {
        by_slot
            .entry(key_slot(key.key.as_bytes()))
            .or_default()
            .push(key);
    }
    match by_slot.len() {
        0 => Err("no keys to place".to_owned()),
        1 => Ok(*by_slot.keys().next().expect("one slot")),
        _ => Err(format!(
            "on a Redis Cluster every key the service uses must lie in one hash slot; give \
             each name below one common hash tag, such as {{exec}} (e.g. \
             ORDERS_STREAM={{exec}}:stream.orders). The keys lie in {} slots: {}",
            by_slot.len(),
            by_slot
                .iter()
                .map(|(slot, keys)| {
                    let names = keys
                        .iter()
                        .map(|k| format!("{} ({:?})", k.setting, k.key))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("slot {slot}: {names}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from the Redis Cluster specification and CLUSTER KEYSLOT.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        // An empty tag is no tag; only the first braces count.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"{"), crc16(b"{") % SLOTS);
    }

    #[test]
    fn keys_in_several_slots_are_named_with_their_settings() {
        let tagged = [
            NamedKey::new("ORDERS_STREAM", "{exec}:stream.orders"),
            NamedKey::new("RESULTS_STREAM", "{exec}:stream.order_results"),
        ];
        assert_eq!(one_slot(&tagged), Ok(key_slot(b"exec")));
        let mixed = [
            NamedKey::new("ORDERS_STREAM", "{exec}:stream.orders"),
            NamedKey::new("DLQ_STREAM", "stream.orders.dlq"),
        ];
        let err = one_slot(&mixed).unwrap_err();
        assert!(err.contains("2 slots"), "{err}");
        assert!(err.contains("DLQ_STREAM (\"stream.orders.dlq\")"), "{err}");
        assert!(err.contains("{exec}"), "{err}");
    }

    proptest! {
        #[test]
        fn a_tag_decides_the_slot_whatever_surrounds_it(
            tag in "[a-z0-9]{1,12}",
            before in "[^{]{0,12}",
            after in ".{0,12}",
        ) {
            let key = format!("{before}{{{tag}}}{after}");
            prop_assert_eq!(key_slot(key.as_bytes()), key_slot(tag.as_bytes()));
        }

        #[test]
        fn every_key_has_a_slot(key in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(key_slot(&key) < SLOTS);
        }
    }
}
