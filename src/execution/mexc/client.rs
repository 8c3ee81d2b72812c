//! `MexcClient`: one `reqwest::Client` (rustls, bounded connect and request
//! time, connections reused) and the typed endpoints of MEXC's spot v3 API.
//!
//! Signed requests carry `recvWindow`, a `timestamp` in exchange time (see
//! [`Clock`]) and the signature of their parameters, all in the query
//! string (the body stays empty, so `totalParams` is the query string), and
//! the API key in `X-MEXC-APIKEY`. The secret is used for signing only: it
//! is never in a URL, a header other than the key's, a log or an error.
//! Redirects are not followed: a request is sent to the configured host
//! once, or not at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tracing::field::Empty;

use super::clock::{Clock, local_ms};
use super::error::{MexcError, api_error, classify, classify_code};
use super::history::{ORDERS_PER_PAGE, TRADES_PER_PAGE, Window};
use super::model::{ExchangeInfo, OrderAck, OrderId, OrderState, ServerTime, TickerPrice, Trade};
use super::order::NewOrder;
use super::sign::{Params, Signer};
use super::transport::{tls_config, transport_error};
use super::{MexcConfig, mexc_symbol};

/// The API key and secret of a MEXC account.
#[derive(Clone)]
pub struct Credentials {
    api_key: SecretString,
    secret: SecretString,
}

impl Credentials {
    pub fn new(api_key: SecretString, secret: SecretString) -> Self {
        Credentials { api_key, secret }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { api_key: [redacted], secret: [redacted] }")
    }
}

/// A client that could not be built (a bad TLS set-up, an unusable key).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the MEXC client: {0}")]
pub struct BuildError(pub(super) String);

#[derive(Clone)]
pub struct MexcClient {
    http: reqwest::Client,
    base_url: String,
    /// The API key as a header value (marked sensitive) and the signer
    /// keyed with the secret.
    credentials: Option<(HeaderValue, Signer)>,
    recv_window_ms: u64,
    timeout: Duration,
    clock: Arc<Clock>,
}

impl std::fmt::Debug for MexcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MexcClient")
            .field("base_url", &self.base_url)
            .field("recv_window_ms", &self.recv_window_ms)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl MexcClient {
    /// A client for `config.base_url`; without credentials only the public
    /// endpoints work.
    pub fn new(config: &MexcConfig, credentials: Option<Credentials>) -> Result<Self, BuildError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_keepalive(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("execution-service/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| BuildError(err.without_url().to_string()))?;
        let credentials = match credentials {
            Some(credentials) => {
                let mut key = HeaderValue::from_str(credentials.api_key.expose_secret())
                    .map_err(|_| BuildError("the API key is not a valid header value".into()))?;
                key.set_sensitive(true);
                let signer = Signer::new(credentials.secret.expose_secret())
                    .map_err(|_| BuildError("the API secret cannot key HMAC-SHA256".into()))?;
                Some((key, signer))
            }
            None => None,
        };
        Ok(MexcClient {
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            credentials,
            recv_window_ms: config.recv_window_ms,
            timeout: config.timeout,
            clock: Arc::new(Clock::default()),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn recv_window_ms(&self) -> u64 {
        self.recv_window_ms
    }

    /// How long connecting and each whole request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The exchange clock the signed requests are stamped with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// `GET /api/v3/time`: MEXC's time in milliseconds.
    #[tracing::instrument(name = "mexc.server_time", skip_all, err(level = "debug"))]
    pub async fn server_time(&self) -> Result<i64, MexcError> {
        let time: ServerTime = self.public("/api/v3/time", Params::new()).await?;
        Ok(time.server_time)
    }

    /// Measures the clock offset now; returns it in milliseconds.
    pub async fn sync_clock(&self) -> Result<i64, MexcError> {
        let _measuring = self.clock.sync_lock.lock().await;
        self.measure_clock().await
    }

    #[tracing::instrument(name = "mexc.sync_clock", skip_all, fields(offset_ms = Empty), err(level = "debug"))]
    async fn measure_clock(&self) -> Result<i64, MexcError> {
        let sent = local_ms();
        let server = self.server_time().await?;
        let offset = self.clock.record(server, sent, local_ms());
        tracing::Span::current().record("offset_ms", offset);
        Ok(offset)
    }

    /// Measures the clock when it was never measured or is a minute old.
    /// When that fails, an older offset is still used (clocks drift by
    /// milliseconds a minute); without one nothing can be sent.
    async fn ensure_clock(&self) -> Result<(), MexcError> {
        if !self.clock.is_stale() {
            return Ok(());
        }
        let _measuring = self.clock.sync_lock.lock().await;
        if !self.clock.is_stale() {
            return Ok(());
        }
        match self.measure_clock().await {
            Ok(_) => Ok(()),
            Err(err @ MexcError::RateLimited { .. }) => Err(err),
            Err(err) if self.clock.synced_at().is_some() => {
                tracing::warn!(error = %err, "cannot measure MEXC's clock; using the last offset");
                Ok(())
            }
            Err(err) => Err(MexcError::ClockUnavailable {
                reason: err.to_string(),
            }),
        }
    }

    /// Measures the clock after a `700003` for a request stamped at
    /// `stamped`, unless another caller did since.
    async fn resync_after(&self, stamped: Instant) {
        let _measuring = self.clock.sync_lock.lock().await;
        if self.clock.synced_since(stamped) {
            return;
        }
        if let Err(err) = self.measure_clock().await {
            tracing::warn!(error = %err, "cannot measure MEXC's clock after a 700003");
        }
    }

    /// `GET /api/v3/exchangeInfo`, for these symbols (all when empty).
    #[tracing::instrument(name = "mexc.exchange_info", skip_all, fields(symbols = symbols.len()), err(level = "debug"))]
    pub async fn exchange_info(&self, symbols: &[String]) -> Result<ExchangeInfo, MexcError> {
        let params = match symbols {
            [] => Params::new(),
            [one] => Params::new().add("symbol", mexc_symbol(one)),
            many => Params::new().add(
                "symbols",
                many.iter()
                    .map(|s| mexc_symbol(s))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        };
        self.public("/api/v3/exchangeInfo", params).await
    }

    /// `GET /api/v3/ticker/price` for one symbol: its last price. Public.
    #[tracing::instrument(name = "mexc.ticker_price", skip_all, fields(symbol = %symbol), err(level = "debug"))]
    pub async fn ticker_price(&self, symbol: &str) -> Result<TickerPrice, MexcError> {
        let params = Params::new().add("symbol", mexc_symbol(symbol));
        self.public("/api/v3/ticker/price", params).await
    }

    /// The exchange time to stamp a request with now, measuring the clock
    /// first when it needs it (nothing is sent without a measured clock).
    pub async fn stamp(&self) -> Result<i64, MexcError> {
        self.ensure_clock().await?;
        Ok(self.clock.now_ms())
    }

    /// `POST /api/v3/order`. The answer has no status: look the order up.
    pub async fn new_order(&self, order: &NewOrder) -> Result<OrderAck, MexcError> {
        let stamped_ms = self.stamp().await?;
        self.new_order_stamped(order, stamped_ms).await
    }

    /// `POST /api/v3/order` signed with `timestamp` = `stamped_ms`, so the
    /// caller knows (and can record before sending) the last moment MEXC
    /// may accept it: `stamped_ms + recvWindow` in exchange time.
    #[tracing::instrument(name = "mexc.new_order", skip_all, fields(symbol = %order.symbol, client_order_id = %order.client_order_id, exchange_order_id = Empty), err(level = "debug"))]
    pub async fn new_order_stamped(
        &self,
        order: &NewOrder,
        stamped_ms: i64,
    ) -> Result<OrderAck, MexcError> {
        let result: Result<OrderAck, MexcError> = self
            .signed_at(
                Method::POST,
                "/api/v3/order",
                order.params(),
                Some(stamped_ms),
            )
            .await;
        match result {
            Ok(ack) => {
                tracing::Span::current().record("exchange_order_id", ack.order_id.0.as_str());
                Ok(ack)
            }
            // An order that is sent is not unknown to MEXC: whatever this
            // code meant here, only a lookup can tell what happened.
            Err(MexcError::UnknownOrder { code, msg }) => Err(MexcError::unknown(format!(
                "unexpected answer to a new order (code {code}: {msg})"
            ))),
            Err(err) => Err(err),
        }
    }

    /// `POST /api/v3/order/test`: validated by MEXC, never placed.
    #[tracing::instrument(name = "mexc.test_order", skip_all, fields(symbol = %order.symbol, client_order_id = %order.client_order_id), err(level = "debug"))]
    pub async fn test_order(&self, order: &NewOrder) -> Result<(), MexcError> {
        let _: serde_json::Value = self
            .signed(Method::POST, "/api/v3/order/test", order.params())
            .await?;
        Ok(())
    }

    /// `GET /api/v3/order` by client order id.
    #[tracing::instrument(name = "mexc.query_order", skip_all, fields(symbol = %symbol, client_order_id = %client_order_id), err(level = "debug"))]
    pub async fn query_order(
        &self,
        symbol: &str,
        client_order_id: &str,
    ) -> Result<OrderState, MexcError> {
        self.signed(
            Method::GET,
            "/api/v3/order",
            by_client_id(symbol, client_order_id),
        )
        .await
    }

    /// `DELETE /api/v3/order` by client order id: the order as cancelled.
    #[tracing::instrument(name = "mexc.cancel_order", skip_all, fields(symbol = %symbol, client_order_id = %client_order_id), err(level = "debug"))]
    pub async fn cancel_order(
        &self,
        symbol: &str,
        client_order_id: &str,
    ) -> Result<OrderState, MexcError> {
        self.signed(
            Method::DELETE,
            "/api/v3/order",
            by_client_id(symbol, client_order_id),
        )
        .await
    }

    /// `GET /api/v3/order` by MEXC's order id.
    #[tracing::instrument(name = "mexc.query_order_by_id", skip_all, fields(symbol = %symbol, exchange_order_id = %order_id), err(level = "debug"))]
    pub async fn query_order_by_id(
        &self,
        symbol: &str,
        order_id: &OrderId,
    ) -> Result<OrderState, MexcError> {
        let params = Params::new()
            .add("symbol", mexc_symbol(symbol))
            .add("orderId", &order_id.0);
        self.signed(Method::GET, "/api/v3/order", params).await
    }

    /// `GET /api/v3/myTrades` in one window (at most 100 answered; see
    /// [`MexcClient::trades_of_order`] for all of them), of one order or
    /// of the whole symbol.
    #[tracing::instrument(name = "mexc.my_trades", skip_all, fields(symbol = %symbol, from_ms = window.from_ms, to_ms = window.to_ms), err(level = "debug"))]
    pub async fn my_trades_in(
        &self,
        symbol: &str,
        order_id: Option<&OrderId>,
        window: Window,
    ) -> Result<Vec<Trade>, MexcError> {
        let params = Params::new()
            .add("symbol", mexc_symbol(symbol))
            .add_opt("orderId", order_id.map(|id| id.0.as_str()))
            .add("startTime", window.from_ms.to_string())
            .add("endTime", window.to_ms.to_string())
            .add("limit", TRADES_PER_PAGE.to_string());
        self.signed(Method::GET, "/api/v3/myTrades", params).await
    }

    /// `GET /api/v3/allOrders` in one window (at most 1 000 answered; see
    /// [`MexcClient::orders_between`]).
    #[tracing::instrument(name = "mexc.all_orders", skip_all, fields(symbol = %symbol, from_ms = window.from_ms, to_ms = window.to_ms), err(level = "debug"))]
    pub async fn all_orders_in(
        &self,
        symbol: &str,
        window: Window,
    ) -> Result<Vec<OrderState>, MexcError> {
        let params = Params::new()
            .add("symbol", mexc_symbol(symbol))
            .add("startTime", window.from_ms.to_string())
            .add("endTime", window.to_ms.to_string())
            .add("limit", ORDERS_PER_PAGE.to_string());
        self.signed(Method::GET, "/api/v3/allOrders", params).await
    }

    /// `GET /api/v3/openOrders`: the account's open orders on `symbol`.
    #[tracing::instrument(name = "mexc.open_orders", skip_all, fields(symbol = %symbol), err(level = "debug"))]
    pub async fn open_orders(&self, symbol: &str) -> Result<Vec<OrderState>, MexcError> {
        let params = Params::new().add("symbol", mexc_symbol(symbol));
        self.signed(Method::GET, "/api/v3/openOrders", params).await
    }

    async fn public<T: DeserializeOwned>(
        &self,
        path: &str,
        params: Params,
    ) -> Result<T, MexcError> {
        let url = match params.is_empty() {
            true => format!("{}{path}", self.base_url),
            false => format!("{}{path}?{}", self.base_url, params.as_str()),
        };
        self.send(self.http.get(url)).await
    }

    pub(super) async fn signed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: Params,
    ) -> Result<T, MexcError> {
        self.signed_at(method, path, params, None).await
    }

    /// A signed request stamped `stamped_ms`, or now in exchange time.
    async fn signed_at<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: Params,
        stamped_ms: Option<i64>,
    ) -> Result<T, MexcError> {
        let Some((api_key, signer)) = &self.credentials else {
            return Err(MexcError::NoCredentials);
        };
        self.ensure_clock().await?;
        let stamped = Instant::now();
        let timestamp = stamped_ms.unwrap_or_else(|| self.clock.now_ms());
        let params = params
            .add("recvWindow", self.recv_window_ms.to_string())
            .add("timestamp", timestamp.to_string());
        let signature = signer.sign(params.as_str(), "");
        let query = params.add("signature", signature);
        let url = format!("{}{path}?{}", self.base_url, query.as_str());
        let request = self
            .http
            .request(method, url)
            .header("X-MEXC-APIKEY", api_key.clone())
            .header(CONTENT_TYPE, "application/json");
        let result = self.send(request).await;
        if let Err(MexcError::TimeOutsideWindow { .. }) = &result {
            self.resync_after(stamped).await;
        }
        result
    }

    /// Sends a request and reads its answer as `T`, or sorts the failure.
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, MexcError> {
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.map_err(transport_error)?;
        if !(200..300).contains(&status) {
            return Err(classify(status, retry_after.as_deref(), &body));
        }
        serde_json::from_str(&body).map_err(|err| match api_error(&body) {
            // Some answers are errors with a 200 status.
            Some((code, msg)) if code != 0 && code != 200 => classify_code(code, &msg)
                .unwrap_or_else(|| MexcError::unknown(format!("unmapped code {code}: {msg}"))),
            _ => MexcError::unknown(format!("unreadable answer ({err})")),
        })
    }
}

/// The parameters naming one order by its client order id.
fn by_client_id(symbol: &str, client_order_id: &str) -> Params {
    Params::new()
        .add("symbol", mexc_symbol(symbol))
        .add("origClientOrderId", client_order_id)
}
