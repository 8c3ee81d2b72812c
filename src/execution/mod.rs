//! Executors turn one validated order into one outcome.
//!
//! They know the domain and nothing else: no database, no Redis. Paper and
//! mock outcomes are pure functions of the order (and the seed), so a retry
//! after a crash reproduces the same result exactly. A simulated fill is
//! never one the columns cannot hold: price, fee and notional go through
//! [`fill_amounts`], and an order whose amounts do not fit is rejected.

mod dry_run;
pub mod mexc;
mod mock;
mod paper;

use std::collections::HashMap;

use async_trait::async_trait;
use rust_decimal::Decimal;

use crate::domain::{Fill, Order, TradingMode, fill_amounts};

pub use dry_run::DryRunExecutor;
pub use mock::MockExecutor;
pub use paper::PaperExecutor;

/// What executing an order produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Filled(Fill),
    /// The venue (or a guard) refused the order: the reason.
    Rejected(String),
    /// Execution failed for a reason that is not the order's fault.
    Failed(String),
}

#[async_trait]
pub trait Executor: Send + Sync {
    fn mode(&self) -> TradingMode;

    /// Whether outcomes are a pure function of the order, asking nobody
    /// (DESIGN rule 4): a batch of such orders is decided before Postgres
    /// is asked, and written in one statement.
    fn decides_alone(&self) -> bool {
        false
    }

    async fn execute(&self, order: &Order) -> Outcome;
}

/// The executor of real orders as the batch path sees them: their mode,
/// and a guard. Real orders never execute inside a batch transaction; the
/// worker hands them to the live path after the batch commits, so this
/// `execute` is reached only by a defect, and then sends nothing.
pub struct LiveOrders;

#[async_trait]
impl Executor for LiveOrders {
    fn mode(&self) -> TradingMode {
        TradingMode::Live
    }

    async fn execute(&self, order: &Order) -> Outcome {
        tracing::error!(order_id = %order.order_id, "a real order reached the batch path; nothing was sent");
        Outcome::Failed("a real order reached the one-transaction path; nothing was sent".into())
    }
}

/// Last traded prices of a market, for paper fills of MARKET orders
/// without a price.
#[async_trait]
pub trait MarketPrices: Send + Sync + std::fmt::Debug {
    /// The symbol's last price, or why there is none.
    async fn last_price(&self, symbol: &str) -> Result<Decimal, String>;
}

/// Where a simulated fill gets its price from.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    /// Used for MARKET orders that carry no price, by normalised symbol.
    pub reference_prices: HashMap<String, Decimal>,
}

impl PriceBook {
    /// The order's own price, else the symbol's reference price.
    fn price_for(&self, order: &Order) -> Result<Decimal, String> {
        order
            .price
            .or_else(|| self.reference_prices.get(&order.market()).copied())
            .ok_or_else(|| {
                format!(
                    "no price: a MARKET order for {} without a price needs PAPER_REFERENCE_PRICES to name the symbol",
                    order.market()
                )
            })
    }
}

/// A fill of the whole order at `price`, with `fee_rate` of the notional;
/// an order whose fill the columns could not hold is rejected instead.
fn full_fill(order: &Order, price: Decimal, fee_rate: Decimal) -> Outcome {
    match fill_amounts(order.quantity, price, fee_rate) {
        Ok(amounts) => Outcome::Filled(Fill {
            quantity: order.quantity,
            price: amounts.price,
            fee: amounts.fee,
            exchange_order_id: None,
        }),
        Err(reason) => Outcome::Rejected(reason),
    }
}
