//! The fake MEXC exchange (the `fake-mexc` crate), and clients of the
//! service's own kind pointed at it.

use std::time::Duration;

use execution_service::execution::mexc::{Credentials, MexcClient, MexcConfig};

pub use fake_mexc::*;

/// Clients of a fake exchange.
pub trait FakeClient {
    /// A client with the fake's key, and a 1 s timeout.
    fn client(&self) -> MexcClient;
    fn client_with(&self, timeout: Duration, credentials: Option<(&str, &str)>) -> MexcClient;
}

impl FakeClient for FakeMexc {
    fn client(&self) -> MexcClient {
        self.client_with(Duration::from_secs(1), Some((API_KEY, API_SECRET)))
    }

    fn client_with(&self, timeout: Duration, credentials: Option<(&str, &str)>) -> MexcClient {
        let config = MexcConfig {
            base_url: self.url(),
            timeout,
            recv_window_ms: 5_000,
        };
        let credentials = credentials
            .map(|(key, secret)| Credentials::new(key.to_owned().into(), secret.to_owned().into()));
        MexcClient::new(&config, credentials).expect("a client for the fake")
    }
}
