//! Typed reads of a message's fields that collect every problem found on
//! the way, instead of stopping at the first.
//!
//! Each read accepts one documented shape and rejects the rest rather than
//! guessing: identifiers are strings or whole JSON numbers, never blank;
//! symbols are markets (see [`Reader::symbol`]); amounts are exact decimals;
//! timestamps lie in the window of [`crate::domain::timestamp`].

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use super::{Fields, MAX_SYMBOL_LEN};
use crate::domain::amount::parse_amount;
use crate::domain::timestamp::parse_timestamp;
use crate::domain::{MAX_ID_LEN, id_problem, symbol_problem};

/// Reads typed fields and collects every problem found on the way.
pub(super) struct Reader<'a> {
    pub(super) fields: &'a Fields,
    pub(super) problems: Vec<String>,
}

impl Reader<'_> {
    pub(super) fn problem(&mut self, text: String) {
        self.problems.push(text);
    }

    pub(super) fn raw(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).filter(|value| !value.is_null())
    }

    /// A string, or a number written as one; other JSON kinds are a problem.
    pub(super) fn text(&mut self, name: &str) -> Option<String> {
        match self.raw(name)? {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            other => {
                let kind = json_kind(other);
                self.problem(format!("{name} must be a string, not {kind}"));
                None
            }
        }
    }

    pub(super) fn required_text(&mut self, name: &str) -> Option<String> {
        if self.raw(name).is_none() {
            self.problem(format!("{name} is required"));
            return None;
        }
        let text = self.text(name)?;
        if text.trim().is_empty() {
            self.problem(format!("{name} must not be empty"));
            return None;
        }
        Some(text)
    }

    /// An optional identifier of 1..=255 printable characters, not all
    /// whitespace; a JSON number only when it is a whole number (`12345`,
    /// not `1e5` or `12.5`, whose text is not the one identity of their
    /// value). One that breaks the rule is a problem and names nothing,
    /// except an overlong or unprintable one, which still names the order.
    pub(super) fn identifier(&mut self, name: &str) -> Option<String> {
        if let Some(Value::Number(number)) = self.raw(name) {
            let text = number.to_string();
            if !text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                self.problem(format!(
                    "{name} must be a string or a whole number, not {text}"
                ));
                return None;
            }
        }
        let text = self.text(name)?;
        if text.chars().all(char::is_whitespace) {
            self.problem(format!("{name} must not be empty or blank"));
            return None;
        }
        // Refused, still naming the order: its answer and row carry the id
        // exactly as sent, never a trimmed one that is another order's.
        if let Some(problem) = id_problem(name, &text, MAX_ID_LEN) {
            self.problem(problem);
        }
        Some(text)
    }

    /// A market, upper-cased: `BASE/QUOTE`, `BASE-QUOTE` or `BASE_QUOTE` with
    /// exactly one separator and ASCII letters and digits on each side, at
    /// least one letter each; or, without a separator, 5..=32 letters and
    /// digits with at least one letter (such a symbol cannot be split, so
    /// only its shape is checked). A JSON number is not a symbol.
    pub(super) fn symbol(&mut self) -> Option<String> {
        if matches!(self.raw("symbol"), Some(Value::Number(_))) {
            self.problem("symbol must be a string, not a number".to_owned());
            return None;
        }
        let symbol = self.required_text("symbol")?;
        if let Some(problem) = symbol_problem(&symbol, MAX_SYMBOL_LEN) {
            self.problem(problem);
        }
        Some(symbol.to_ascii_uppercase())
    }

    /// A positive exact amount; `None` when absent or unreadable.
    pub(super) fn amount(&mut self, name: &str, required: bool) -> Option<Decimal> {
        let text = if required {
            self.required_text(name)?
        } else {
            self.text(name)?
        };
        match parse_amount(&text) {
            Ok(value) if value > Decimal::ZERO => Some(value),
            Ok(value) => {
                self.problem(format!("{name} must be greater than 0, got {value}"));
                // The value is exact and fits the column: the row may keep it.
                Some(value)
            }
            Err(err) => {
                let shown: String = text.chars().take(40).collect();
                self.problem(format!("{name} {shown:?} {err}"));
                None
            }
        }
    }

    /// Unix seconds, unix milliseconds, or ISO-8601, inside the window.
    pub(super) fn timestamp(&mut self) -> Option<DateTime<Utc>> {
        let text = self.text("timestamp")?;
        parse_timestamp(&text)
            .map_err(|reason| self.problem(reason))
            .ok()
    }
}

/// W3C `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
pub(super) fn is_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let hex =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
