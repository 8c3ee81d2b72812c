//! A validated order: the only shape an executor ever sees.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::amount::format_amount;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }

    /// `buy`, `Buy` and `BUY` are all a buy.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "BUY" => Some(Side::Buy),
            "SELL" => Some(Side::Sell),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderType {
    Market,
    Limit,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "MARKET",
            OrderType::Limit => "LIMIT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "MARKET" => Some(OrderType::Market),
            "LIMIT" => Some(OrderType::Limit),
            _ => None,
        }
    }
}

/// An order that passed validation. Amounts are exact and positive.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: String,
    pub symbol: String,
    pub side: Side,
    pub quantity: Decimal,
    pub price: Option<Decimal>,
    pub order_type: OrderType,
    pub client_id: Option<String>,
    pub strategy_id: Option<String>,
    pub bot_id: Option<String>,
    pub stop_loss_pct: Option<Decimal>,
    pub timestamp: Option<DateTime<Utc>>,
    pub traceparent: Option<String>,
}

impl Order {
    /// The symbol as exchanges spell it: `BTC/USDT` and `btcusdt` are `BTCUSDT`.
    pub fn market(&self) -> String {
        normalise_symbol(&self.symbol)
    }

    /// The id of an order that carries neither `order_id` nor `client_id`: a
    /// hash of its normalised content (never of its ids or trace context), so
    /// every replica derives the same id for the same message.
    pub fn content_id(&self) -> String {
        let canonical = [
            self.market(),
            self.side.as_str().to_owned(),
            format_amount(self.quantity),
            self.price.map(format_amount).unwrap_or_default(),
            self.order_type.as_str().to_owned(),
            self.strategy_id.clone().unwrap_or_default(),
            self.bot_id.clone().unwrap_or_default(),
            self.timestamp
                .map(|t| t.timestamp_millis().to_string())
                .unwrap_or_default(),
        ]
        .join("\u{1f}");
        format!(
            "ord-{}",
            &hex::encode(Sha256::digest(canonical.as_bytes()))[..32]
        )
    }
}

/// Upper case, without separators.
pub fn normalise_symbol(symbol: &str) -> String {
    symbol
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn sides_and_types_parse_case_insensitively() {
        assert_eq!(Side::parse("buy"), Some(Side::Buy));
        assert_eq!(Side::parse(" SeLL "), Some(Side::Sell));
        assert_eq!(Side::parse("HOLD"), None);
        assert_eq!(OrderType::parse("limit"), Some(OrderType::Limit));
        assert_eq!(OrderType::parse("stop"), None);
    }

    #[test]
    fn symbols_normalise_across_spellings() {
        assert_eq!(normalise_symbol("BTC/USDT"), "BTCUSDT");
        assert_eq!(normalise_symbol("btc-usdt"), "BTCUSDT");
    }

    /// A MARKET order without ids, price or trace context.
    pub(crate) fn order(symbol: &str, side: Side, quantity: &str) -> Order {
        Order {
            order_id: String::new(),
            symbol: symbol.to_owned(),
            side,
            quantity: Decimal::from_str(quantity).unwrap(),
            price: None,
            order_type: OrderType::Market,
            client_id: None,
            strategy_id: None,
            bot_id: None,
            stop_loss_pct: None,
            timestamp: None,
            traceparent: None,
        }
    }

    #[test]
    fn content_ids_depend_on_normalised_content_only() {
        let a = order("BTC/USDT", Side::Buy, "0.001").content_id();
        let mut traced = order("BTCUSDT", Side::Buy, "0.00100000");
        traced.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let c = order("BTCUSDT", Side::Sell, "0.001").content_id();
        assert_eq!(a, traced.content_id());
        assert_ne!(a, c);
        assert!(a.starts_with("ord-") && a.len() == 36);
    }
}
