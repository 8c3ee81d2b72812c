//! Paper trading: every order fills in full at its own price (or the
//! symbol's reference price for a MARKET order without one), with a fee of
//! `notional × fee_rate`, unless a derived amount would not fit its column.
//! Deterministic by construction.

use async_trait::async_trait;
use rust_decimal::Decimal;

use super::{Executor, Outcome, PriceBook, full_fill};
use crate::domain::{Order, TradingMode};

#[derive(Debug, Clone)]
pub struct PaperExecutor {
    fee_rate: Decimal,
    prices: PriceBook,
}

impl PaperExecutor {
    pub fn new(fee_rate: Decimal, prices: PriceBook) -> Self {
        PaperExecutor { fee_rate, prices }
    }

    pub fn fill(&self, order: &Order) -> Outcome {
        match self.prices.price_for(order) {
            Ok(price) => full_fill(order, price, self.fee_rate),
            Err(reason) => Outcome::Rejected(reason),
        }
    }
}

#[async_trait]
impl Executor for PaperExecutor {
    fn mode(&self) -> TradingMode {
        TradingMode::Paper
    }

    async fn execute(&self, order: &Order) -> Outcome {
        self.fill(order)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::Side;
    use std::str::FromStr;

    pub(crate) fn order(id: &str, quantity: &str, price: Option<&str>) -> Order {
        let mut order = crate::domain::order::tests::order("BTC/USDT", Side::Buy, quantity);
        order.order_id = id.into();
        order.price = price.map(|p| Decimal::from_str(p).unwrap());
        order
    }

    #[test]
    fn fills_in_full_at_the_order_price_with_an_exact_fee() {
        let paper = PaperExecutor::new(Decimal::new(1, 3), PriceBook::default());
        let Outcome::Filled(fill) = paper.fill(&order("p", "0.001", Some("50000"))) else {
            panic!("not filled")
        };
        assert_eq!(fill.quantity.to_string(), "0.001");
        assert_eq!(fill.price, Decimal::from(50_000));
        assert_eq!(fill.fee, Decimal::from_str("0.05").unwrap());
    }

    #[test]
    fn market_orders_use_the_reference_price_or_are_rejected() {
        let mut prices = PriceBook::default();
        prices
            .reference_prices
            .insert("BTCUSDT".into(), Decimal::from(60_000));
        let paper = PaperExecutor::new(Decimal::ZERO, prices);
        let Outcome::Filled(fill) = paper.fill(&order("m", "1", None)) else {
            panic!("not filled")
        };
        assert_eq!(fill.price, Decimal::from(60_000));

        let bare = PaperExecutor::new(Decimal::ZERO, PriceBook::default());
        let Outcome::Rejected(reason) = bare.fill(&order("m", "1", None)) else {
            panic!("not rejected")
        };
        assert!(reason.contains("PAPER_REFERENCE_PRICES"), "{reason}");
    }

    #[test]
    fn fills_the_columns_cannot_hold_are_rejected() {
        let mut prices = PriceBook::default();
        prices
            .reference_prices
            .insert("BTCUSDT".into(), Decimal::from(12_000_000));
        let paper = PaperExecutor::new(Decimal::new(1, 3), prices);
        let Outcome::Rejected(reason) = paper.fill(&order("big", "1000000", None)) else {
            panic!("a notional of 1.2e13 was filled")
        };
        assert!(
            reason.starts_with("notional 12000000000000 does not fit"),
            "{reason}"
        );

        let costly = PaperExecutor::new(Decimal::from(1_000_000), PriceBook::default());
        let Outcome::Rejected(reason) = costly.fill(&order("fee", "1000", Some("1000"))) else {
            panic!("a fee of 1e12 was filled")
        };
        assert!(reason.starts_with("fee "), "{reason}");
    }
}
