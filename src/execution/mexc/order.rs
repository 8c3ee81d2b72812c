//! The order MEXC's `POST /api/v3/order` and `POST /api/v3/order/test`
//! take, and how its amounts are written.

use rust_decimal::Decimal;

use super::mexc_symbol;
use super::sign::Params;
use crate::domain::{Order, OrderType, Side};

/// An order as MEXC's `POST /api/v3/order` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    /// MEXC's spelling: `BTCUSDT`.
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub quantity: Decimal,
    /// Sent for LIMIT orders only.
    pub price: Option<Decimal>,
    pub client_order_id: String,
}

impl NewOrder {
    /// The exchange order for a validated order.
    pub fn for_order(order: &Order, client_order_id: String) -> Self {
        NewOrder {
            symbol: mexc_symbol(&order.symbol),
            side: order.side,
            order_type: order.order_type,
            quantity: order.quantity,
            price: order.price,
            client_order_id,
        }
    }

    pub(super) fn params(&self) -> Params {
        let price = match self.order_type {
            OrderType::Limit => self.price.map(plain),
            OrderType::Market => None,
        };
        Params::new()
            .add("symbol", &self.symbol)
            .add("side", self.side.as_str())
            .add("type", self.order_type.as_str())
            .add("quantity", plain(self.quantity))
            .add_opt("price", price)
            .add("newClientOrderId", &self.client_order_id)
    }
}

/// A decimal as MEXC reads it: no exponent, no trailing zeros (which MEXC
/// would count as decimal places).
fn plain(amount: Decimal) -> String {
    amount.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    impl NewOrder {
        fn params_text(&self) -> String {
            self.params().as_str().to_owned()
        }
    }

    #[test]
    fn new_orders_send_plain_decimals_and_a_price_only_when_limited() {
        let mut order = crate::domain::order::tests::order("BTC/USDT", Side::Buy, "0.00100000");
        order.price = Some("50000.10".parse().unwrap());
        let market = NewOrder::for_order(&order, "es0123".into());
        assert_eq!(market.symbol, "BTCUSDT");
        assert_eq!(
            market.params_text(),
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&newClientOrderId=es0123"
        );
        order.order_type = OrderType::Limit;
        let limit = NewOrder::for_order(&order, "es0123".into());
        assert_eq!(
            limit.params_text(),
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.001&price=50000.1&newClientOrderId=es0123"
        );
    }
}
