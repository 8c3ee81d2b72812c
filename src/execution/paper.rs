//! Paper trading: every order fills in full at its own price (or, for a
//! MARKET order without one, the market's last price when a market price
//! source is set, else the symbol's reference price), with a fee of
//! `notional × fee_rate`, unless a derived amount would not fit its column.
//! Deterministic by construction when no market price source is set (the
//! default, which makes no network call at all).

use std::sync::Arc;

use async_trait::async_trait;
use rust_decimal::Decimal;

use super::{Executor, MarketPrices, Outcome, PriceBook, full_fill};
use crate::domain::{Order, TradingMode};

#[derive(Debug, Clone)]
pub struct PaperExecutor {
    fee_rate: Decimal,
    prices: PriceBook,
    /// Last prices for MARKET orders without a price; reference prices stay
    /// the fallback.
    market: Option<Arc<dyn MarketPrices>>,
}

impl PaperExecutor {
    pub fn new(fee_rate: Decimal, prices: PriceBook) -> Self {
        PaperExecutor {
            fee_rate,
            prices,
            market: None,
        }
    }

    /// Fills MARKET orders without a price at the market's last price.
    pub fn with_market_prices(mut self, market: Arc<dyn MarketPrices>) -> Self {
        self.market = Some(market);
        self
    }

    /// The fill of an order, asking the market price source when the
    /// order has no price of its own.
    pub async fn fill_at_market(&self, order: &Order) -> Outcome {
        let Some(market) = self.market.as_ref().filter(|_| order.price.is_none()) else {
            return self.fill(order);
        };
        match market.last_price(&order.market()).await {
            Ok(price) => full_fill(order, price, self.fee_rate),
            Err(reason) => match self.prices.price_for(order) {
                Ok(price) => full_fill(order, price, self.fee_rate),
                Err(_) => Outcome::Rejected(format!(
                    "no price: no market price for {} ({reason}), and PAPER_REFERENCE_PRICES does not name it",
                    order.market()
                )),
            },
        }
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

    fn decides_alone(&self) -> bool {
        self.market.is_none()
    }

    async fn execute(&self, order: &Order) -> Outcome {
        self.fill_at_market(order).await
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

    /// A market whose prices are set by the test; counts the questions.
    #[derive(Debug, Default)]
    struct Market {
        price: Option<Decimal>,
        asked: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl MarketPrices for Market {
        async fn last_price(&self, symbol: &str) -> Result<Decimal, String> {
            self.asked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(symbol, "BTCUSDT");
            self.price.ok_or_else(|| "unreachable".to_owned())
        }
    }

    #[tokio::test]
    async fn market_orders_fill_at_the_market_price_when_there_is_one() {
        let market = Arc::new(Market {
            price: Some(Decimal::from(61_000)),
            ..Market::default()
        });
        let mut prices = PriceBook::default();
        prices
            .reference_prices
            .insert("BTCUSDT".into(), Decimal::from(60_000));
        let paper =
            PaperExecutor::new(Decimal::ZERO, prices.clone()).with_market_prices(market.clone());
        let Outcome::Filled(fill) = paper.execute(&order("m", "1", None)).await else {
            panic!("not filled")
        };
        assert_eq!(fill.price, Decimal::from(61_000));
        // An order with its own price never asks the market.
        let Outcome::Filled(fill) = paper.execute(&order("l", "1", Some("50000"))).await else {
            panic!("not filled")
        };
        assert_eq!(fill.price, Decimal::from(50_000));
        assert_eq!(market.asked.load(std::sync::atomic::Ordering::Relaxed), 1);

        // No market price: the reference price, else a rejection naming both.
        let down = Arc::new(Market::default());
        let paper = PaperExecutor::new(Decimal::ZERO, prices).with_market_prices(down.clone());
        let Outcome::Filled(fill) = paper.execute(&order("m", "1", None)).await else {
            panic!("not filled")
        };
        assert_eq!(fill.price, Decimal::from(60_000));
        let bare = PaperExecutor::new(Decimal::ZERO, PriceBook::default()).with_market_prices(down);
        let Outcome::Rejected(reason) = bare.execute(&order("m", "1", None)).await else {
            panic!("not rejected")
        };
        assert!(
            reason.contains("unreachable") && reason.contains("PAPER_REFERENCE_PRICES"),
            "{reason}"
        );
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
