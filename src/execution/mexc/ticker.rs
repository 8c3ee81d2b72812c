//! MEXC's last prices for paper fills: `GET /api/v3/ticker/price` (public,
//! no key), cached per symbol for [`PRICE_TTL`].
//!
//! Concurrent orders for one symbol wait for one request. A failed request
//! is remembered too (for [`FAILURE_TTL`], or the `Retry-After` of a rate
//! limit when longer), so an unreachable MEXC costs one timeout per symbol
//! per interval, not one per order; it is logged once per failed request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rust_decimal::Decimal;

use super::client::MexcClient;
use super::error::MexcError;
use super::mexc_symbol;
use crate::execution::MarketPrices;

/// How long a fetched price is used.
pub const PRICE_TTL: Duration = Duration::from_secs(1);
/// How long a failed fetch is remembered before the next try.
pub const FAILURE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Cached {
    until: Instant,
    price: Result<Decimal, String>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

#[derive(Debug)]
pub struct TickerPrices {
    client: MexcClient,
    slots: Mutex<HashMap<String, Slot>>,
}

impl TickerPrices {
    pub fn new(client: MexcClient) -> Self {
        TickerPrices {
            client,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, symbol: &str) -> Slot {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.entry(symbol.to_owned()).or_default().clone()
    }

    /// The symbol's last price, from the cache or from MEXC.
    pub async fn price(&self, symbol: &str) -> Result<Decimal, String> {
        let symbol = mexc_symbol(symbol);
        let slot = self.slot(&symbol);
        let mut cached = slot.lock().await;
        if let Some(hit) = cached.as_ref().filter(|c| c.until > Instant::now()) {
            return hit.price.clone();
        }
        let (price, ttl) = match self.client.ticker_price(&symbol).await {
            Ok(ticker) if ticker.price > Decimal::ZERO => (Ok(ticker.price), PRICE_TTL),
            Ok(ticker) => (
                Err(format!(
                    "MEXC's ticker price for {symbol} is {}",
                    ticker.price
                )),
                FAILURE_TTL,
            ),
            Err(err) => {
                let ttl = match &err {
                    MexcError::RateLimited { retry_after, .. } => (*retry_after).max(FAILURE_TTL),
                    _ => FAILURE_TTL,
                };
                (Err(err.to_string()), ttl)
            }
        };
        if let Err(reason) = &price {
            tracing::warn!(
                symbol = %symbol,
                error = %reason,
                retry_in_ms = ttl.as_millis() as u64,
                "no MEXC ticker price; paper fills use PAPER_REFERENCE_PRICES meanwhile"
            );
        }
        *cached = Some(Cached {
            until: Instant::now() + ttl,
            price: price.clone(),
        });
        price
    }
}

#[async_trait]
impl MarketPrices for TickerPrices {
    async fn last_price(&self, symbol: &str) -> Result<Decimal, String> {
        self.price(symbol).await
    }
}
