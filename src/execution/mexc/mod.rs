//! MEXC spot v3: the exchange client, its signing and clock, the answers it
//! reads, the pre-trade rules built from `exchangeInfo`, and the ticker
//! prices paper trading may fill at.
//!
//! Like every executor part it knows the domain and nothing else: it turns
//! requests into typed answers or into a [`MexcError`] the caller branches
//! on, and decides nothing about persistence. The invariant it keeps: an
//! error that is not [`MexcError::Unknown`] means MEXC did not apply the
//! request; anything that leaves that in doubt is `Unknown`.

mod client;
mod clock;
mod error;
mod history;
mod listen_key;
mod model;
mod order;
pub mod push;
mod rule_cache;
mod rules;
mod sign;
mod socket;
mod ticker;
mod transport;

use std::time::Duration;

pub use client::{BuildError, Credentials, MexcClient};
pub use clock::{CLOCK_MAX_AGE, Clock};
pub use error::{DEFAULT_RETRY_AFTER, MexcError, RejectKind, classify, classify_code};
pub use history::{ORDERS_PER_PAGE, TRADES_PER_PAGE, Window, read_all};
pub use model::{
    ExchangeInfo, ExchangeStatus, OrderAck, OrderId, OrderState, SymbolInfo, TickerPrice, Trade,
};
pub use order::NewOrder;
pub use rule_cache::{RULES_TTL, RuleCache};
pub use rules::{Limits, RuleBook, RuleFailure, SymbolRules, check_order};
pub use sign::{CLIENT_ORDER_ID_LEN, Params, Signer, client_order_id, is_service_client_id};
pub use socket::{Arrived, PushSocket, SocketError};
pub use ticker::{PRICE_TTL, TickerPrices};

/// Where and how the client talks to MEXC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MexcConfig {
    /// `https://api.mexc.com`, or a local fake in tests.
    pub base_url: String,
    /// Bounds connecting and each whole request.
    pub timeout: Duration,
    /// How long after its timestamp MEXC may still accept a signed request
    /// (below 60 000).
    pub recv_window_ms: u64,
}

impl Default for MexcConfig {
    fn default() -> Self {
        MexcConfig {
            base_url: "https://api.mexc.com".to_owned(),
            timeout: Duration::from_millis(5_000),
            recv_window_ms: 5_000,
        }
    }
}

/// MEXC's spelling of a symbol: `BTC/USDT` is `BTCUSDT`.
pub fn mexc_symbol(symbol: &str) -> String {
    crate::domain::normalise_symbol(symbol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_spelt_as_mexc_spells_them() {
        assert_eq!(mexc_symbol("BTC/USDT"), "BTCUSDT");
        assert_eq!(mexc_symbol("eth-usdt"), "ETHUSDT");
        assert_eq!(mexc_symbol("MXUSDT"), "MXUSDT");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let credentials = Credentials::new(
            "key-123456".to_owned().into(),
            "s3cr3t-value".to_owned().into(),
        );
        let client = MexcClient::new(&MexcConfig::default(), Some(credentials.clone())).unwrap();
        for shown in [format!("{credentials:?}"), format!("{client:?}")] {
            assert!(!shown.contains("key-123456"), "{shown}");
            assert!(!shown.contains("s3cr3t-value"), "{shown}");
        }
        assert!(client.has_credentials());
        assert_eq!(client.base_url(), "https://api.mexc.com");
    }

    #[tokio::test]
    async fn signed_requests_need_credentials_and_send_nothing_without() {
        let config = MexcConfig {
            // Nothing listens here; a request would fail as unknown.
            base_url: "http://127.0.0.1:9".to_owned(),
            ..MexcConfig::default()
        };
        let client = MexcClient::new(&config, None).unwrap();
        assert_eq!(
            client.query_order("BTCUSDT", "es1").await,
            Err(MexcError::NoCredentials)
        );
        let public = client.ticker_price("BTCUSDT").await.unwrap_err();
        assert!(matches!(public, MexcError::Unknown { .. }), "{public:?}");
    }
}
