//! A fake MEXC spot v3 server for tests: a real HTTP server on a local port
//! that checks the API key, the signature, the timestamp and `recvWindow`
//! exactly as MEXC documents them, serves `time`, `exchangeInfo`,
//! `ticker/price`, `order` (POST, GET, DELETE), `order/test`, `allOrders`
//! and `myTrades` (windows and limits as MEXC documents them), keeps orders by client order id and fills them over time as
//! scripted. It counts what it receives (every request, order POSTs per
//! client id, order writes per second) and can be scripted to fail the
//! N-th matching request: a 500, a hang, a reset, a rate limit, any error
//! code, before or after applying it.
//!
//! ```ignore
//! let fake = FakeMexc::start().await;
//! fake.script(Script::nth(1, Fault::Reset).on("POST", "/api/v3/order").after_applying());
//! // ... point a client at fake.url(), then fake.orders(), fake.posts_for(id),
//! // fake.count("GET", "/api/v3/order")
//! ```
//!
//! The `fake-mexc` binary serves one on a port, for benchmarks of the live
//! path (`execution-service bench --mode live`).

mod auth;
mod exchange;
mod http;
mod user_stream;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::signature_of;
pub use exchange::{OrderWrite, Seen, symbol_info};
pub use user_stream::{DEALS_CHANNEL, ORDERS_CHANNEL, Writer as ProtobufWriter};

/// The key and secret the fake accepts.
pub const API_KEY: &str = "mx0vglFakeKey0000001";
pub const API_SECRET: &str = "0fa4e1c4fake5ecret0000000000f00d";

/// A scripted failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 with MEXC's error body.
    ServerError,
    /// No answer: the connection stays open until the client gives up.
    Hang,
    /// The connection is reset (TCP RST) instead of answered.
    Reset,
    /// HTTP 429, or 418 when banned, with `Retry-After`.
    RateLimited { retry_after_secs: u64, banned: bool },
    /// Any status with a MEXC error code.
    Error { status: u16, code: i64, msg: String },
}

/// Which requests fail, and how.
#[derive(Debug, Clone)]
pub struct Script {
    method: Option<String>,
    path: Option<String>,
    /// The first matching request that fails (1-based), and how many after it.
    from: usize,
    times: usize,
    fault: Fault,
    after_applying: bool,
}

impl Script {
    /// The `n`-th request (of those matching [`on`](Self::on); of all when
    /// not narrowed) fails with `fault`.
    pub fn nth(n: usize, fault: Fault) -> Self {
        Script {
            method: None,
            path: None,
            from: n.max(1),
            times: 1,
            fault,
            after_applying: false,
        }
    }

    /// Only requests with this method and path count.
    pub fn on(mut self, method: &str, path: &str) -> Self {
        self.method = Some(method.to_owned());
        self.path = Some(path.to_owned());
        self
    }

    /// This many matching requests in a row fail, from the n-th on.
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// The request is applied (an order is placed, a cancel done) and then
    /// the answer fails: the outcome the client cannot know.
    pub fn after_applying(mut self) -> Self {
        self.after_applying = true;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.path.as_deref().is_none_or(|p| p == path)
    }

    fn fires_at(&self, seen: usize) -> bool {
        seen >= self.from && seen < self.from + self.times
    }
}

/// An order as the fake holds it.
#[derive(Debug, Clone)]
pub struct FakeOrder {
    pub order_id: String,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub orig_qty: Decimal,
    pub price: Option<Decimal>,
    pub status: String,
    pub executed_qty: Decimal,
    pub cummulative_quote_qty: Decimal,
    pub trades: Vec<FakeTrade>,
    /// Lookups by `GET /api/v3/order` so far.
    pub lookups: usize,
    pub accepted_at: Instant,
    /// How long after acceptance every read denies it.
    pub denied_for: Duration,
    pub time_ms: i64,
    plan: Vec<(Duration, Decimal)>,
}

#[derive(Debug, Clone)]
pub struct FakeTrade {
    pub id: String,
    pub qty: Decimal,
    pub price: Decimal,
    pub commission: Decimal,
    pub commission_asset: String,
    pub time_ms: i64,
}

pub struct FakeMexc {
    addr: SocketAddr,
    ws_addr: SocketAddr,
    state: Arc<Mutex<exchange::State>>,
    hub: user_stream::Hub,
    stop: CancellationToken,
}

impl Drop for FakeMexc {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeMexc {
    /// Starts the fake on a free local port, with BTCUSDT at 50 000 and
    /// ETHUSDT at 3 000, every order filled in full at once.
    pub async fn start() -> FakeMexc {
        Self::start_on("127.0.0.1:0")
            .await
            .expect("bind the fake MEXC")
    }

    /// Starts the fake on `address` (`host:port`), and its user data
    /// stream's websocket on a free port of the same host.
    pub async fn start_on(address: &str) -> std::io::Result<FakeMexc> {
        let listener = TcpListener::bind(address).await?;
        let addr = listener.local_addr()?;
        let ws_listener = TcpListener::bind((addr.ip(), 0)).await?;
        let ws_addr = ws_listener.local_addr()?;
        let state = Arc::new(Mutex::new(exchange::State::new()));
        let stop = CancellationToken::new();
        let (serving, stopping) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stopping.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                let state = serving.clone();
                tokio::spawn(http::serve(stream, stopping.clone(), move |request| {
                    lock(&state).handle(request)
                }));
            }
        });
        let hub = {
            let state = lock(&state);
            user_stream::Hub {
                pushes: state.pushes.clone(),
                keys: state.listen_keys.clone(),
                faults: Default::default(),
                drops: tokio::sync::watch::channel(0).0,
                stop: stop.clone(),
            }
        };
        tokio::spawn(user_stream::serve(ws_listener, hub.clone()));
        tokio::spawn(fill_on_time(state.clone(), stop.clone()));
        Ok(FakeMexc {
            addr,
            ws_addr,
            state,
            hub,
            stop,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The user data stream's websocket (`…/ws`; add `?listenKey=`).
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.ws_addr)
    }

    /// Closes every open user data stream connection.
    pub fn drop_stream_connections(&self) {
        self.hub.drops.send_modify(|n| *n += 1);
    }

    /// While stalled, connections stay open and nothing arrives on them:
    /// no frame (those due are lost), no answer to a `PING`.
    pub fn stall_stream(&self, stalled: bool) {
        self.hub.faults.stalled.store(stalled, Ordering::SeqCst);
    }

    /// New connections are refused (HTTP 401) while set.
    pub fn refuse_stream(&self, refuse: bool) {
        self.hub.faults.refuse.store(refuse, Ordering::SeqCst);
    }

    /// The next `frames` pushes each come after a frame that does not
    /// decode.
    pub fn send_undecodable_frames(&self, frames: usize) {
        self.hub.faults.garbage.store(frames, Ordering::SeqCst);
    }

    /// Every push arrives twice while set.
    pub fn duplicate_pushes(&self, duplicate: bool) {
        self.hub.faults.duplicate.store(duplicate, Ordering::SeqCst);
    }

    /// Each push is held back and sent after the next one while set.
    pub fn reorder_pushes(&self, reorder: bool) {
        self.hub.faults.reorder.store(reorder, Ordering::SeqCst);
    }

    /// Forgets every listen key: `PUT` answers an error, connections on
    /// them close, new ones are refused.
    pub fn forget_listen_keys(&self) {
        lock_keys(&self.hub.keys).forget();
    }

    /// Listen keys created so far.
    pub fn listen_keys_created(&self) -> usize {
        lock_keys(&self.hub.keys).created()
    }

    /// User data stream connections open now, and accepted so far.
    pub fn stream_connections(&self) -> (usize, usize) {
        let faults = &self.hub.faults;
        (
            faults.open.load(Ordering::SeqCst),
            faults.accepted.load(Ordering::SeqCst),
        )
    }

    fn state(&self) -> MutexGuard<'_, exchange::State> {
        lock(&self.state)
    }

    /// Adds a failure script.
    pub fn script(&self, script: Script) {
        self.state().scripts.push((script, 0));
    }

    /// Moves the fake's clock: positive is ahead of this machine's.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.state().clock_offset_ms = offset_ms;
    }

    pub fn set_price(&self, symbol: &str, price: &str) {
        let price = price.parse().expect("a decimal price");
        self.state().prices.insert(symbol.to_owned(), price);
    }

    /// Adds or replaces a symbol of `exchangeInfo` (see [`symbol_info`]).
    pub fn set_symbol(&self, info: serde_json::Value) {
        let symbol = info["symbol"].as_str().expect("a symbol").to_owned();
        self.state().symbols.insert(symbol, info);
    }

    /// Whether a second order with a client order id already used is
    /// refused (MEXC does not document that it is; off by default).
    pub fn reject_duplicate_client_ids(&self, reject: bool) {
        self.state().reject_duplicates = reject;
    }

    /// Order ids as JSON numbers instead of strings, from now on.
    pub fn numeric_order_ids(&self, numeric: bool) {
        self.state().numeric_order_ids = numeric;
    }

    /// Every order's first `lookups` lookups answer `-2013`, as MEXC may
    /// for a few seconds after accepting an order.
    pub fn unknown_for_first_lookups(&self, lookups: usize) {
        self.state().lookup_lag = lookups;
    }

    /// Orders accepted from now on are denied by every read (`GET order`
    /// answers `-2013`, `DELETE` `-2011`, `allOrders` and `myTrades` leave
    /// them out) for `window` after acceptance: MEXC has been seen to deny
    /// accepted orders for tens of seconds.
    pub fn deny_orders_for(&self, window: Duration) {
        self.state().deny_for = window;
    }

    /// From now on every other fill pays its fee in `asset` (say `MX`).
    pub fn fees_also_in(&self, asset: &str) {
        self.state().second_fee_asset = Some(asset.to_owned());
    }

    /// Cancels an open order as its owner would on MEXC's website.
    pub fn cancel_by_user(&self, client_order_id: &str) -> bool {
        let mut state = self.state();
        let Some(index) = state
            .orders
            .iter()
            .position(|o| o.client_order_id == client_order_id)
        else {
            return false;
        };
        state.advance(index);
        let order = &mut state.orders[index];
        order.status = match order.status.as_str() {
            "NEW" => "CANCELED",
            "PARTIALLY_FILLED" => "PARTIALLY_CANCELED",
            _ => return false,
        }
        .into();
        state.push_order(index);
        true
    }

    /// How orders accepted from now on fill: `(after, fraction)` steps of
    /// the ordered quantity, cumulative. `vec![]`: they stay open.
    pub fn fill_plan(&self, steps: Vec<(Duration, &str)>) {
        self.state().fill_plan = steps
            .into_iter()
            .map(|(after, fraction)| (after, fraction.parse().expect("a fraction")))
            .collect();
    }

    /// Every order, oldest first, with its due fills applied.
    pub fn orders(&self) -> Vec<FakeOrder> {
        let mut state = self.state();
        for index in 0..state.orders.len() {
            state.advance(index);
        }
        state.orders.clone()
    }

    /// The orders placed under a client order id.
    pub fn orders_for(&self, client_order_id: &str) -> Vec<FakeOrder> {
        self.orders()
            .into_iter()
            .filter(|o| o.client_order_id == client_order_id)
            .collect()
    }

    /// Order POSTs that arrived with this client order id (whatever their
    /// answer).
    pub fn posts_for(&self, client_order_id: &str) -> usize {
        self.state()
            .order_writes
            .iter()
            .filter(|w| w.method == "POST" && w.client_order_id == client_order_id)
            .count()
    }

    /// Order POSTs and DELETEs, as they arrived.
    pub fn order_writes(&self) -> Vec<OrderWrite> {
        self.state().order_writes.clone()
    }

    /// The most order POSTs and DELETEs that arrived within any `window`.
    pub fn max_order_writes_within(&self, window: Duration) -> usize {
        let times: Vec<Instant> = self.state().order_writes.iter().map(|w| w.at).collect();
        times
            .iter()
            .enumerate()
            .map(|(i, start)| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - *start < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<Seen> {
        self.state().seen.clone()
    }

    pub fn request_count(&self) -> usize {
        self.state().seen.len()
    }

    /// Requests received with this method and path.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.state()
            .seen
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }
}

/// Applies fills when they are due, whether or not anyone asks, so that
/// the user data stream pushes them as they happen.
async fn fill_on_time(state: Arc<Mutex<exchange::State>>, stop: CancellationToken) {
    let accepted = lock(&state).accepted.clone();
    loop {
        let next = lock(&state).advance_all();
        let pause = next
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(1));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = accepted.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

fn lock_keys(keys: &Mutex<user_stream::ListenKeys>) -> MutexGuard<'_, user_stream::ListenKeys> {
    keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock(state: &Mutex<exchange::State>) -> MutexGuard<'_, exchange::State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
