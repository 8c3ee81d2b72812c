//! A message as it arrives, turned into one map of fields without guessing
//! what any field says.
//!
//! The invariant: every field has exactly one value. A JSON object with a
//! repeated key (which serde_json's map would quietly resolve to the last), a
//! stream entry with a repeated field, and an entry whose flat order fields
//! disagree with its `payload` are refused, because which value was meant
//! cannot be known.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::Fields;
use super::reader::json_kind;
use crate::domain::amount::parse_amount;

/// The contract's order fields: beside a `payload` they must agree with it.
/// (`traceparent` is not one: the shim writes its own span there.)
const ORDER_FIELDS: [&str; 12] = [
    "type",
    "order_id",
    "client_id",
    "strategy_id",
    "bot_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "order_type",
    "stop_loss_pct",
    "timestamp",
];

/// One message as received.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    /// A JSON document (a pub/sub payload).
    Json(&'a [u8]),
    /// A stream entry whose fields are the order's fields, values as text.
    Flat(&'a [(String, Vec<u8>)]),
    /// A stream entry with a `payload` field: that JSON document, and all the
    /// entry's fields.
    Wrapped {
        payload: &'a [u8],
        entry: &'a [(String, Vec<u8>)],
    },
}

impl<'a> Incoming<'a> {
    /// A stream entry: its `payload` field when it has one, else its fields.
    pub fn from_entry(fields: &'a [(String, Vec<u8>)]) -> Self {
        match fields.iter().find(|(name, _)| name == "payload") {
            Some((_, payload)) => Incoming::Wrapped {
                payload,
                entry: fields,
            },
            None => Incoming::Flat(fields),
        }
    }

    /// The message as a field map, or why it is not one.
    pub fn fields(&self) -> Result<Fields, String> {
        match self {
            Incoming::Json(bytes) => read_object(bytes),
            Incoming::Flat(fields) => {
                unique_names(fields)?;
                fields
                    .iter()
                    .map(|(name, value)| match std::str::from_utf8(value) {
                        Ok(text) => Ok((name.clone(), Value::String(text.to_owned()))),
                        Err(_) => Err(format!("field {name} is not UTF-8")),
                    })
                    .collect()
            }
            Incoming::Wrapped { payload, entry } => {
                unique_names(entry)?;
                read_object(payload)
            }
        }
    }

    /// The order fields beside a `payload` that do not read as the payload's
    /// own `fields` do; none for other messages.
    pub fn disagreements(&self, fields: &Fields) -> Vec<&'a str> {
        let Incoming::Wrapped { entry, .. } = self else {
            return Vec::new();
        };
        entry
            .iter()
            .filter(|(name, _)| ORDER_FIELDS.contains(&name.as_str()))
            .filter(|(name, value)| {
                let text = std::str::from_utf8(value).ok();
                !text.is_some_and(|text| agrees(name, fields.get(name.as_str()), text))
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// Whether a flat `text` says what the payload's `value` says: the same
/// text, the same amount (`0.5` and `0.50000000`), or for the
/// case-insensitive fields the same word.
fn agrees(name: &str, value: Option<&Value>, text: &str) -> bool {
    let own = match value {
        Some(Value::String(own)) => own.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => return false,
    };
    match name {
        "quantity" | "price" | "stop_loss_pct" => {
            own == text
                || matches!((parse_amount(&own), parse_amount(text)), (Ok(a), Ok(b)) if a == b)
        }
        "type" | "symbol" | "side" | "order_type" => own.trim().eq_ignore_ascii_case(text.trim()),
        _ => own == text,
    }
}

/// A stream entry whose field names are all distinct.
fn unique_names(fields: &[(String, Vec<u8>)]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    match fields.iter().find(|(name, _)| !seen.insert(name.as_str())) {
        Some((name, _)) => Err(format!("duplicate field {}", shown(name))),
        None => Ok(()),
    }
}

/// A JSON object read key by key, so that a repeated key is refused.
fn read_object(bytes: &[u8]) -> Result<Fields, String> {
    match serde_json::from_slice::<StrictObject>(bytes) {
        Ok(StrictObject {
            duplicate: Some(key),
            ..
        }) => Err(format!("duplicate key {}", shown(&key))),
        Ok(StrictObject { fields, .. }) => Ok(fields),
        // Read again only to say what the message is instead.
        Err(_) => match serde_json::from_slice::<Value>(bytes) {
            Ok(other) => Err(format!(
                "message is JSON but not an object ({})",
                json_kind(&other)
            )),
            Err(err) => Err(format!("message is not valid JSON: {err}")),
        },
    }
}

/// A name as a reason shows it: quoted, and at most 40 characters.
fn shown(name: &str) -> String {
    let short: String = name.chars().take(40).collect();
    format!("{short:?}")
}

/// The top-level object of a JSON document and the first key it repeats.
struct StrictObject {
    fields: Fields,
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictObject;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictObject, A::Error> {
        let mut fields = Fields::new();
        let mut duplicate = None;
        while let Some(key) = map.next_key::<String>()? {
            // Values are read as `Value`, so numbers keep their exact text.
            let value: Value = map.next_value()?;
            if fields.contains_key(&key) {
                duplicate.get_or_insert(key);
            } else {
                fields.insert(key, value);
            }
        }
        Ok(StrictObject { fields, duplicate })
    }
}
