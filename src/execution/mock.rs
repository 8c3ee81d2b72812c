//! Mock trading: a simulated venue that fills with probability
//! `success_rate` and applies adverse slippage of up to `max_slippage_bps`.
//!
//! A fill respects its order and its columns: a LIMIT BUY never fills above
//! its price nor a LIMIT SELL below it (slippage stops at the limit);
//! slippage is taken as 0..=10 000 bps whatever the setting, and a SELL never
//! slips below 0.00000001, so every price is positive; the fee is never
//! negative (a positive rate may round to a fee of 0 on a dust fill); and an
//! order whose amounts would not fit `DECIMAL(20,8)` is rejected.
//!
//! Both draws come from a generator seeded by the seed and the `order_id`
//! alone, so the same order always gets the same outcome on any replica.

use async_trait::async_trait;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::{Executor, Outcome, PriceBook, full_fill};
use crate::domain::{Order, OrderType, Side, TradingMode};

/// Slippage is applied up to 100 % of the price (of which a draw takes at
/// most 99 %), whatever the setting says.
const MAX_SLIPPAGE_BPS: i64 = 10_000;
/// The smallest price the columns hold: a SELL never slips below it.
const MIN_PRICE: Decimal = Decimal::from_parts(1, 0, 0, false, 8);

#[derive(Debug, Clone)]
pub struct MockExecutor {
    pub success_rate: f64,
    pub seed: u64,
    pub max_slippage_bps: Decimal,
    pub fee_rate: Decimal,
    pub prices: PriceBook,
}

impl MockExecutor {
    pub fn fill(&self, order: &Order) -> Outcome {
        let mut draws = Draws::new(self.seed, &order.order_id);
        if draws.next_unit() >= self.success_rate {
            return Outcome::Rejected("mock venue rejected the order (simulated)".to_owned());
        }
        let base = match self.prices.price_for(order) {
            Ok(price) => price,
            Err(reason) => return Outcome::Rejected(reason),
        };
        // Slippage in whole hundredths of a basis point, so it stays exact,
        // and below 100 % so that a SELL keeps a price.
        let steps = (draws.next_unit() * 100.0).floor() as i64;
        let max_bps = self
            .max_slippage_bps
            .clamp(Decimal::ZERO, Decimal::from(MAX_SLIPPAGE_BPS));
        let fraction = max_bps * Decimal::new(steps, 2) / Decimal::from(10_000);
        let shift = base * fraction;
        let slipped = match order.side {
            Side::Buy => base.checked_add(shift).unwrap_or(Decimal::MAX),
            Side::Sell => (base - shift).max(MIN_PRICE),
        };
        let price = match (order.order_type, order.price, order.side) {
            (OrderType::Limit, Some(limit), Side::Buy) => slipped.min(limit),
            (OrderType::Limit, Some(limit), Side::Sell) => slipped.max(limit),
            _ => slipped,
        };
        full_fill(order, price, self.fee_rate)
    }
}

#[async_trait]
impl Executor for MockExecutor {
    fn mode(&self) -> TradingMode {
        TradingMode::Mock
    }

    fn decides_alone(&self) -> bool {
        true
    }

    async fn execute(&self, order: &Order) -> Outcome {
        self.fill(order)
    }
}

/// SplitMix64 seeded from SHA-256(seed, order_id): small, stable across
/// platforms and releases, which is all a simulation needs.
struct Draws(u64);

impl Draws {
    fn new(seed: u64, order_id: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(seed.to_le_bytes())
            .chain_update(order_id.as_bytes())
            .finalize();
        let mut state = [0_u8; 8];
        state.copy_from_slice(&digest[..8]);
        Draws(u64::from_le_bytes(state))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::paper::tests::order;

    fn mock(seed: u64) -> MockExecutor {
        MockExecutor {
            success_rate: 0.95,
            seed,
            max_slippage_bps: Decimal::from(10),
            fee_rate: Decimal::new(1, 3),
            prices: PriceBook::default(),
        }
    }

    #[test]
    fn the_same_order_and_seed_give_the_same_outcome() {
        let order = order("same-id", "0.5", Some("100"));
        assert_eq!(mock(7).fill(&order), mock(7).fill(&order));
    }

    #[test]
    fn fill_rate_over_ten_thousand_orders_matches_the_setting() {
        let executor = mock(42);
        let filled = (0..10_000)
            .filter(|i| {
                matches!(
                    executor.fill(&order(&format!("o-{i}"), "1", Some("100"))),
                    Outcome::Filled(_)
                )
            })
            .count();
        let rate = filled as f64 / 10_000.0;
        assert!((0.93..=0.97).contains(&rate), "fill rate {rate}");
    }

    fn limit(id: &str, side: Side, price: &str) -> Order {
        let mut limit = order(id, "1", Some(price));
        limit.side = side;
        limit.order_type = OrderType::Limit;
        limit
    }

    #[test]
    fn limit_orders_never_fill_beyond_their_price() {
        let executor = mock(3);
        let limit_price = Decimal::from(100);
        let (mut buys, mut sells) = (0, 0);
        for i in 0..500 {
            if let Outcome::Filled(fill) =
                executor.fill(&limit(&format!("b-{i}"), Side::Buy, "100"))
            {
                assert!(
                    fill.price <= limit_price,
                    "a LIMIT BUY filled at {}",
                    fill.price
                );
                buys += 1;
            }
            if let Outcome::Filled(fill) =
                executor.fill(&limit(&format!("s-{i}"), Side::Sell, "100"))
            {
                assert!(
                    fill.price >= limit_price,
                    "a LIMIT SELL filled at {}",
                    fill.price
                );
                sells += 1;
            }
        }
        assert!(buys > 400 && sells > 400);
    }

    #[test]
    fn any_slippage_setting_keeps_prices_positive_and_fees_non_negative() {
        for max_slippage_bps in [
            Decimal::from(10_000),
            Decimal::from(1_000_000_000),
            Decimal::MAX,
            Decimal::from(-500),
        ] {
            let executor = MockExecutor {
                success_rate: 1.0,
                max_slippage_bps,
                ..mock(9)
            };
            for i in 0..300 {
                for (side, base) in [
                    (Side::Sell, "100"),
                    (Side::Sell, "0.00000001"),
                    (Side::Buy, "100"),
                ] {
                    let mut sell = order(&format!("h-{i}"), "1", Some(base));
                    sell.side = side;
                    let Outcome::Filled(fill) = executor.fill(&sell) else {
                        panic!("{max_slippage_bps} bps did not fill {side:?} at {base}");
                    };
                    let base = Decimal::from_str_exact(base).unwrap();
                    assert!(
                        fill.price > Decimal::ZERO,
                        "{} at {max_slippage_bps} bps",
                        fill.price
                    );
                    assert!(fill.price <= base * Decimal::TWO, "{}", fill.price);
                    assert!(fill.fee >= Decimal::ZERO, "fee {}", fill.fee);
                    if max_slippage_bps < Decimal::ZERO {
                        assert_eq!(fill.price, base, "a negative setting gave a better price");
                    }
                }
            }
        }
    }

    #[test]
    fn slippage_is_adverse_and_bounded() {
        let executor = mock(1);
        for i in 0..500 {
            let mut buy = order(&format!("s-{i}"), "1", Some("100"));
            if let Outcome::Filled(fill) = executor.fill(&buy) {
                assert!(
                    fill.price >= Decimal::from(100) && fill.price <= Decimal::new(1001, 1),
                    "{}",
                    fill.price
                );
            }
            buy.side = Side::Sell;
            if let Outcome::Filled(fill) = executor.fill(&buy) {
                assert!(
                    fill.price <= Decimal::from(100) && fill.price >= Decimal::new(999, 1),
                    "{}",
                    fill.price
                );
            }
        }
    }
}
