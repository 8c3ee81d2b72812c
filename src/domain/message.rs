//! Incoming messages, as they arrive on the channel or the stream, turned
//! into exactly one [`Parsed`] outcome.
//!
//! The invariant: every message has a documented fate. A valid order is
//! executed; a message that names its order but is invalid becomes a
//! [`Rejection`] (a REJECTED result); a message that names no order and is not
//! valid is unidentified (dead-lettered), and so is one whose identity is
//! ambiguous (a repeated key, ids beside a payload that contradict it);
//! another `type` is ignored. Nothing here panics, whatever the bytes.
//!
//! Validation covers what execution will derive: an order whose price is
//! known and whose notional would not fit `DECIMAL(20,8)` is rejected here,
//! by the same rule the executors apply.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

mod incoming;
mod reader;

use super::amount::fill_amounts;
use super::content::Content;
use super::order::{Order, OrderType, Side};
use super::{MAX_ID_LEN, SYMBOL_COLUMN_LEN};
pub use incoming::Incoming;
use reader::{Reader, is_traceparent};

/// A message's fields by name, whichever way it arrived.
pub type Fields = Map<String, Value>;

/// The longest symbol accepted as valid (the column holds a little more, so
/// that a rejected order with a slightly long symbol still gets its row).
pub(super) const MAX_SYMBOL_LEN: usize = 32;

/// What a message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Order(Order),
    Rejected(Rejection),
    /// Names no order and is not a valid one: the reason.
    Unidentified(String),
    /// A message of another `type`: acknowledged, not executed.
    Ignored(String),
}

/// An order that names itself but failed validation, with what could be read
/// of it so the result and the row can repeat it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rejection {
    pub order_id: String,
    pub reason: String,
    pub symbol: Option<String>,
    pub side: Option<String>,
    pub quantity: Option<Decimal>,
    pub price: Option<Decimal>,
    pub order_type: Option<String>,
    pub client_id: Option<String>,
    pub strategy_id: Option<String>,
    pub bot_id: Option<String>,
    pub timestamp: Option<DateTime<Utc>>,
    pub traceparent: Option<String>,
    /// Whether every value fits its `orders` column unchanged; when not, the
    /// raw message is dead-lettered as well.
    pub fits_columns: bool,
    /// The message's fields as JSON, when some value does not fit its
    /// column: the row keeps them, so the id keeps its whole content.
    pub raw: Option<String>,
}

impl Rejection {
    pub fn content(&self) -> Content {
        Content::new(
            self.symbol.as_deref(),
            self.side.as_deref(),
            self.order_type.as_deref(),
            self.quantity,
            self.price,
            [
                self.client_id.as_deref(),
                self.strategy_id.as_deref(),
                self.bot_id.as_deref(),
            ],
        )
    }
}

/// Whether `text` fits a text column of `len` characters unchanged
/// (Postgres text cannot hold NUL).
pub fn fits_column(text: &str, len: usize) -> bool {
    text.chars().count() <= len && !text.contains('\0')
}

impl Parsed {
    pub fn from_incoming(incoming: Incoming<'_>) -> Parsed {
        let fields = match incoming.fields() {
            Ok(fields) => fields,
            Err(reason) => return Parsed::Unidentified(reason),
        };
        let disagreements = incoming.disagreements(&fields);
        let problems: Vec<String> = disagreements
            .iter()
            .map(|name| format!("stream entry field {name} disagrees with its payload"))
            .collect();
        // Two ids for one message: neither can be trusted to name it.
        if disagreements
            .iter()
            .any(|name| ["order_id", "client_id"].contains(name))
        {
            return Parsed::Unidentified(problems.join("; "));
        }
        Parsed::read(&fields, problems)
    }

    /// Validates a field map against the order contract.
    pub fn from_fields(fields: &Fields) -> Parsed {
        Parsed::read(fields, Vec::new())
    }

    /// The identity and trace context [`Parsed::read`] gives `fields` when
    /// their `order_id` names the order (whatever else they say, it is
    /// then the order's or the rejection's id); none when naming it needs
    /// more of the message (no usable `order_id`, or a `type` that is not
    /// an order's).
    fn summary(fields: &Fields) -> Option<(String, Option<String>)> {
        let mut reader = Reader {
            fields,
            problems: Vec::new(),
        };
        if reader
            .text("type")
            .is_some_and(|kind| !kind.trim().eq_ignore_ascii_case("order"))
        {
            return None;
        }
        let order_id = reader.identifier("order_id").filter(|id| !id.is_empty())?;
        let traceparent = reader.text("traceparent").filter(|tp| is_traceparent(tp));
        Some((order_id, traceparent))
    }

    /// Validates `fields`, adding what is wrong with them to `problems`.
    fn read(fields: &Fields, problems: Vec<String>) -> Parsed {
        let mut reader = Reader { fields, problems };
        if let Some(kind) = reader.text("type")
            && !kind.trim().eq_ignore_ascii_case("order")
        {
            return Parsed::Ignored(kind);
        }
        let order_id = reader.identifier("order_id");
        let client_id = reader.identifier("client_id");
        let strategy_id = reader.identifier("strategy_id");
        let bot_id = reader.identifier("bot_id");
        let symbol = reader.symbol();
        let side_text = reader
            .required_text("side")
            .map(|side| side.trim().to_ascii_uppercase());
        let side = side_text.as_deref().and_then(|text| {
            let side = Side::parse(text);
            if side.is_none() {
                reader.problem(format!("side {text:?} is not BUY or SELL"));
            }
            side
        });
        let quantity = reader.amount("quantity", true);
        let price = reader.amount("price", false);
        if let (Some(quantity), Some(price)) = (quantity, price)
            && quantity > Decimal::ZERO
            && price > Decimal::ZERO
            && let Err(reason) = fill_amounts(quantity, price, Decimal::ZERO)
        {
            reader.problem(reason);
        }
        let type_text = reader
            .text("order_type")
            .map(|text| text.trim().to_ascii_uppercase());
        let order_type = match type_text.as_deref() {
            None => Some(OrderType::Market),
            Some(text) => OrderType::parse(text).or_else(|| {
                reader.problem(format!("order_type {text:?} is not MARKET or LIMIT"));
                None
            }),
        };
        if order_type == Some(OrderType::Limit) && price.is_none() {
            reader.problem("a LIMIT order needs a price".to_owned());
        }
        let stop_loss_pct = reader.amount("stop_loss_pct", false);
        if stop_loss_pct.is_some_and(|pct| pct >= Decimal::ONE_HUNDRED) {
            reader.problem("stop_loss_pct must be below 100".to_owned());
        }
        let timestamp = reader.timestamp();
        let traceparent = reader.text("traceparent").filter(|tp| is_traceparent(tp));

        let named = order_id.clone().or_else(|| client_id.clone());
        if let (true, Some(symbol), Some(side), Some(quantity), Some(order_type)) = (
            reader.problems.is_empty(),
            &symbol,
            side,
            quantity,
            order_type,
        ) {
            let mut order = Order {
                order_id: named.unwrap_or_default(),
                symbol: symbol.clone(),
                side,
                quantity,
                price,
                order_type,
                client_id,
                strategy_id,
                bot_id,
                stop_loss_pct,
                timestamp,
                traceparent,
            };
            if order.order_id.is_empty() {
                order.order_id = order.content_id();
            }
            return Parsed::Order(order);
        }
        let reason = reader.problems.join("; ");
        let Some(order_id) = named else {
            return Parsed::Unidentified(reason);
        };
        let storable = fits_column;
        let fits =
            |text: &Option<String>, len: usize| text.as_deref().is_none_or(|t| storable(t, len));
        // A value fits when it is absent (its column takes NULL) or could be
        // read and stored unchanged.
        let read = |name: &str, value_read: bool| value_read || reader.raw(name).is_none();
        let fits_columns = storable(&order_id, MAX_ID_LEN)
            && read("symbol", symbol.is_some())
            && fits(&symbol, SYMBOL_COLUMN_LEN)
            && read("side", side_text.is_some())
            && fits(&side_text, 10)
            && read("quantity", quantity.is_some())
            && read("price", price.is_some())
            && fits(&type_text, 10)
            && [&client_id, &strategy_id, &bot_id]
                .into_iter()
                .all(|id| fits(id, MAX_ID_LEN));
        Parsed::Rejected(Rejection {
            order_id,
            reason,
            symbol,
            side: side_text,
            quantity,
            price,
            order_type: type_text.or(Some(OrderType::Market.as_str().to_owned())),
            client_id,
            strategy_id,
            bot_id,
            timestamp,
            traceparent,
            fits_columns,
            raw: (!fits_columns).then(|| serde_json::to_string(fields).unwrap_or_default()),
        })
    }
}

/// The identity the shim de-duplicates a raw message on: the order's id when
/// it has one (or derives one), else a hash of the bytes.
pub fn message_identity(bytes: &[u8]) -> String {
    message_summary(bytes).0
}

/// The message's identity (as [`message_identity`]) and the trace context
/// it carries, from one parse: what [`Parsed::from_incoming`] would name
/// it, without validating the rest of an order that names itself.
pub fn message_summary(bytes: &[u8]) -> (String, Option<String>) {
    let raw = || (format!("raw-{}", hex::encode(Sha256::digest(bytes))), None);
    let Ok(fields) = Incoming::Json(bytes).fields() else {
        return raw();
    };
    if let Some(summary) = Parsed::summary(&fields) {
        return summary;
    }
    match Parsed::from_fields(&fields) {
        Parsed::Order(order) => (order.order_id, order.traceparent),
        Parsed::Rejected(rejection) => (rejection.order_id, rejection.traceparent),
        Parsed::Unidentified(_) | Parsed::Ignored(_) => raw(),
    }
}

/// A W3C `traceparent` value when `text` is one.
pub fn valid_traceparent(text: &str) -> Option<&str> {
    is_traceparent(text).then_some(text)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
