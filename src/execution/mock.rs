//! Mock trading: a simulated venue that fills with probability
//! `success_rate` and applies adverse slippage of up to `max_slippage_bps`.
//!
//! Both draws come from a generator seeded by the seed and the `order_id`
//! alone, so the same order always gets the same outcome on any replica.

use async_trait::async_trait;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::{Executor, Outcome, PriceBook, full_fill};
use crate::domain::{Order, Side, TradingMode};

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
        // Slippage in whole hundredths of a basis point, so it stays exact.
        let steps = (draws.next_unit() * 100.0).floor() as i64;
        let bps = self.max_slippage_bps * Decimal::new(steps, 2);
        let shift = base * bps / Decimal::from(10_000);
        let price = match order.side {
            Side::Buy => base + shift,
            Side::Sell => base - shift,
        };
        full_fill(order, price, self.fee_rate)
    }
}

#[async_trait]
impl Executor for MockExecutor {
    fn mode(&self) -> TradingMode {
        TradingMode::Mock
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
