//! What a message says about its order, spelling aside: the values that
//! decide whether two messages carrying one `order_id` are the same order.
//!
//! The invariant: one `order_id`, one order. A second message whose content
//! differs from the stored order's is a conflict, answered as such, never
//! merged into the first or executed on its own.

use rust_decimal::Decimal;

use super::order::{Order, OrderType};

/// An order's content as compared between messages: symbol without
/// separators, upper-case side and type (MARKET when absent), amounts by
/// value, ids as given. The timestamp and the trace context are not part
/// of it: a producer re-sending an order may stamp it anew.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Content {
    pub symbol: Option<String>,
    pub side: Option<String>,
    pub order_type: Option<String>,
    pub quantity: Option<Decimal>,
    pub price: Option<Decimal>,
    pub client_id: Option<String>,
    pub strategy_id: Option<String>,
    pub bot_id: Option<String>,
}

impl Content {
    /// Canonicalises what a message or a row holds.
    pub fn new(
        symbol: Option<&str>,
        side: Option<&str>,
        order_type: Option<&str>,
        quantity: Option<Decimal>,
        price: Option<Decimal>,
        ids: [Option<&str>; 3],
    ) -> Self {
        let upper = |text: Option<&str>| text.map(|t| t.trim().to_ascii_uppercase());
        let [client_id, strategy_id, bot_id] = ids.map(|id| id.map(str::to_owned));
        Content {
            symbol: symbol.map(canonical_symbol),
            side: upper(side),
            order_type: upper(order_type).or_else(|| Some(OrderType::Market.as_str().to_owned())),
            quantity: quantity.map(|q| q.normalize()),
            price: price.map(|p| p.normalize()),
            client_id,
            strategy_id,
            bot_id,
        }
    }

    /// The names of the fields in which `other` differs from this.
    pub fn differences(&self, other: &Content) -> Vec<&'static str> {
        let mut differing = Vec::new();
        let mut check = |name, same: bool| {
            if !same {
                differing.push(name);
            }
        };
        check("symbol", self.symbol == other.symbol);
        check("side", self.side == other.side);
        check("order_type", self.order_type == other.order_type);
        check("quantity", self.quantity == other.quantity);
        check("price", self.price == other.price);
        check("client_id", self.client_id == other.client_id);
        check("strategy_id", self.strategy_id == other.strategy_id);
        check("bot_id", self.bot_id == other.bot_id);
        differing
    }
}

impl Order {
    pub fn content(&self) -> Content {
        Content::new(
            Some(&self.symbol),
            Some(self.side.as_str()),
            Some(self.order_type.as_str()),
            Some(self.quantity),
            self.price,
            [
                self.client_id.as_deref(),
                self.strategy_id.as_deref(),
                self.bot_id.as_deref(),
            ],
        )
    }
}

/// `BTC/USDT`, `btc-usdt` and `BTCUSDT` are one market; other text is kept
/// as it is (upper case), so that two invalid symbols still compare.
fn canonical_symbol(symbol: &str) -> String {
    let upper = symbol.trim().to_ascii_uppercase();
    if upper
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-_".contains(c))
    {
        upper.chars().filter(char::is_ascii_alphanumeric).collect()
    } else {
        upper
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Side;
    use crate::domain::order::tests::order;

    #[test]
    fn spelling_does_not_make_another_order() {
        let a = order("BTC/USDT", Side::Buy, "0.001");
        let mut b = order("btcusdt", Side::Buy, "0.00100000");
        b.timestamp = Some(chrono::Utc::now());
        b.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        assert_eq!(a.content().differences(&b.content()), Vec::<&str>::new());
    }

    #[test]
    fn every_differing_field_is_named() {
        let a = order("BTCUSDT", Side::Buy, "43");
        let mut b = order("ETHUSDT", Side::Sell, "44");
        b.price = Some(Decimal::ONE);
        b.bot_id = Some("bot-2".into());
        assert_eq!(
            a.content().differences(&b.content()),
            ["symbol", "side", "quantity", "price", "bot_id"]
        );
    }

    #[test]
    fn a_missing_type_is_market() {
        let stated = Content::new(
            Some("BTCUSDT"),
            Some("buy"),
            Some(" market "),
            None,
            None,
            [None; 3],
        );
        let implied = Content::new(Some("BTCUSDT"), Some("BUY"), None, None, None, [None; 3]);
        assert_eq!(stated, implied);
    }
}
