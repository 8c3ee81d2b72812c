//! The fake's user data stream: `listenKey`s (`/api/v3/userDataStream`,
//! valid 60 minutes, extended by `PUT`), a websocket at `/ws?listenKey=…`
//! that takes `SUBSCRIPTION` and `PING` requests as MEXC's does, and
//! protobuf frames of order and deal changes as orders are accepted, fill
//! and are cancelled. The frames are written here byte by byte from the
//! published field numbers, independently of the service's decoder.
//!
//! It can be told to misbehave as a real stream does: drop every
//! connection, stall (the connection stays open and nothing arrives, not
//! even a `PONG`), send a frame that does not decode, forget its keys,
//! refuse new connections, push every frame twice or swap neighbours.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_util::sync::CancellationToken;

use super::{FakeOrder, FakeTrade};

pub const ORDERS_CHANNEL: &str = "spot@private.orders.v3.api.pb";
pub const DEALS_CHANNEL: &str = "spot@private.deals.v3.api.pb";

/// How long a key lives without a `PUT`.
const KEY_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// One frame to push: its channel and its bytes.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub channel: &'static str,
    pub frame: Vec<u8>,
}

/// How the stream misbehaves, shared by the connections.
#[derive(Debug, Default)]
pub struct Faults {
    pub stalled: AtomicBool,
    pub refuse: AtomicBool,
    pub duplicate: AtomicBool,
    pub reorder: AtomicBool,
    /// Undecodable frames still to send, one before each next push.
    pub garbage: AtomicUsize,
    /// Connections open now, and every one accepted so far.
    pub open: AtomicUsize,
    pub accepted: AtomicUsize,
}

/// The keys the fake knows, with when each expires.
#[derive(Debug, Default)]
pub struct ListenKeys {
    keys: HashMap<String, Instant>,
    created: usize,
}

impl ListenKeys {
    pub fn create(&mut self) -> String {
        self.created += 1;
        let key = format!("{:064x}", 0xfa4e_u128 << 64 | self.created as u128);
        self.keys.insert(key.clone(), Instant::now() + KEY_LIFETIME);
        key
    }

    pub fn is_valid(&self, key: &str) -> bool {
        self.keys
            .get(key)
            .is_some_and(|until| *until > Instant::now())
    }

    /// `PUT`: another 60 minutes; `false` for a key it does not know.
    pub fn extend(&mut self, key: &str) -> bool {
        if !self.is_valid(key) {
            return false;
        }
        self.keys
            .insert(key.to_owned(), Instant::now() + KEY_LIFETIME);
        true
    }

    pub fn close(&mut self, key: &str) -> bool {
        self.keys.remove(key).is_some()
    }

    pub fn valid(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter(|(_, until)| **until > Instant::now())
            .map(|(key, _)| key.clone())
            .collect()
    }

    pub fn forget(&mut self) {
        self.keys.clear();
    }

    pub fn created(&self) -> usize {
        self.created
    }
}

/// Protobuf, field by field: a key (`number << 3 | wire type`) and a
/// varint, or a length and bytes. Empty strings and zeros are left out,
/// as proto3 encoders do. Written from the field numbers alone, so that
/// tests of a decoder do not check it against itself.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    pub fn int(mut self, field: u64, value: i64) -> Self {
        if value != 0 {
            self.varint(field << 3);
            self.varint(value as u64);
        }
        self
    }

    pub fn bytes(mut self, field: u64, value: &[u8]) -> Self {
        if !value.is_empty() {
            self.varint(field << 3 | 2);
            self.varint(value.len() as u64);
            self.0.extend_from_slice(value);
        }
        self
    }

    pub fn text(self, field: u64, value: &str) -> Self {
        self.bytes(field, value.as_bytes())
    }
}

fn status_code(status: &str) -> i64 {
    match status {
        "NEW" => 1,
        "FILLED" => 2,
        "PARTIALLY_FILLED" => 3,
        "CANCELED" => 4,
        "PARTIALLY_CANCELED" => 5,
        _ => 0,
    }
}

fn trade_type(side: &str) -> i64 {
    if side == "BUY" { 1 } else { 2 }
}

fn wrapper(
    channel: &'static str,
    symbol: &str,
    body_tag: u64,
    body: Writer,
    now_ms: i64,
) -> Pushed {
    let frame = Writer::default()
        .text(1, channel)
        .text(3, symbol)
        .int(5, now_ms)
        .int(6, now_ms)
        .bytes(body_tag, &body.0)
        .0;
    Pushed { channel, frame }
}

/// `PrivateOrdersV3Api` for an order as it now stands.
pub fn order_frame(order: &FakeOrder, now_ms: i64) -> Pushed {
    let average = if order.executed_qty.is_zero() {
        Decimal::ZERO
    } else {
        order.cummulative_quote_qty / order.executed_qty
    };
    let body = Writer::default()
        .text(1, &order.order_id)
        .text(2, &order.client_order_id)
        .text(3, &order.price.unwrap_or_default().to_string())
        .text(4, &order.orig_qty.to_string())
        .text(
            5,
            &(order.orig_qty * order.price.unwrap_or_default()).to_string(),
        )
        .text(6, &average.normalize().to_string())
        .int(7, if order.order_type == "LIMIT" { 1 } else { 5 })
        .int(8, trade_type(&order.side))
        .text(11, &(order.orig_qty - order.executed_qty).to_string())
        .text(
            12,
            &order
                .trades
                .last()
                .map(|t| t.qty.to_string())
                .unwrap_or_default(),
        )
        .text(13, &order.executed_qty.to_string())
        .text(14, &order.cummulative_quote_qty.to_string())
        .int(15, status_code(&order.status))
        .int(16, order.time_ms);
    wrapper(ORDERS_CHANNEL, &order.symbol, 304, body, now_ms)
}

/// `PrivateDealsV3Api` for one fill of `order`.
pub fn deal_frame(order: &FakeOrder, trade: &FakeTrade, now_ms: i64) -> Pushed {
    let body = Writer::default()
        .text(1, &trade.price.to_string())
        .text(2, &trade.qty.to_string())
        .text(3, &(trade.price * trade.qty).to_string())
        .int(4, trade_type(&order.side))
        .text(7, &trade.id)
        .text(8, &order.client_order_id)
        .text(9, &order.order_id)
        .text(10, &trade.commission.to_string())
        .text(11, &trade.commission_asset)
        .int(12, trade.time_ms);
    wrapper(DEALS_CHANNEL, &order.symbol, 306, body, now_ms)
}

/// What a connection needs of the fake.
#[derive(Clone)]
pub struct Hub {
    pub pushes: broadcast::Sender<Pushed>,
    pub keys: Arc<std::sync::Mutex<ListenKeys>>,
    pub faults: Arc<Faults>,
    /// Bumped to drop every open connection.
    pub drops: watch::Sender<u64>,
    pub stop: CancellationToken,
}

impl Hub {
    fn key_valid(&self, key: &str) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_valid(key)
    }
}

/// Accepts websocket connections until the fake stops.
pub async fn serve(listener: TcpListener, hub: Hub) {
    loop {
        let accepted = tokio::select! {
            _ = hub.stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        tokio::spawn(connection(stream, hub.clone()));
    }
}

// The handshake callback's error type is tungstenite's own HTTP response.
#[allow(clippy::result_large_err)]
async fn connection(stream: TcpStream, hub: Hub) {
    let mut key = String::new();
    let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let query = request.uri().query().unwrap_or_default();
        key = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("listenKey="))
            .unwrap_or_default()
            .to_owned();
        let refused = hub.faults.refuse.load(Ordering::SeqCst);
        if request.uri().path() != "/ws" || refused || !hub.key_valid(&key) {
            let mut error = ErrorResponse::new(Some("invalid listen key".into()));
            *error.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
            return Err(error);
        }
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    hub.faults.open.fetch_add(1, Ordering::SeqCst);
    hub.faults.accepted.fetch_add(1, Ordering::SeqCst);
    let mut pushes = hub.pushes.subscribe();
    let mut drops = hub.drops.subscribe();
    let mut subscribed: HashSet<String> = HashSet::new();
    let mut held: Option<Pushed> = None;
    let mut checks = tokio::time::interval(Duration::from_millis(50));
    loop {
        let mut out: Vec<Message> = Vec::new();
        tokio::select! {
            _ = hub.stop.cancelled() => break,
            _ = drops.changed() => break,
            _ = checks.tick() => {
                if !hub.key_valid(&key) {
                    break;
                }
            }
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if hub.faults.stalled.load(Ordering::SeqCst) {
                        continue;
                    }
                    out.push(Message::Text(answer(&text, &mut subscribed).to_string().into()));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            pushed = pushes.recv() => match pushed {
                Ok(pushed) => {
                    if !subscribed.contains(pushed.channel) || hub.faults.stalled.load(Ordering::SeqCst) {
                        continue;
                    }
                    if hub
                        .faults
                        .garbage
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        out.push(Message::Binary(vec![0x0a, 0x7f, 0x01].into()));
                    }
                    let mut frames = vec![pushed];
                    if hub.faults.reorder.load(Ordering::SeqCst) {
                        match held.take() {
                            None => {
                                held = frames.pop();
                            }
                            Some(earlier) => frames.push(earlier),
                        }
                    } else if let Some(earlier) = held.take() {
                        frames.insert(0, earlier);
                    }
                    let times = if hub.faults.duplicate.load(Ordering::SeqCst) { 2 } else { 1 };
                    for frame in frames {
                        for _ in 0..times {
                            out.push(Message::Binary(frame.frame.clone().into()));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
        for message in out {
            if socket.send(message).await.is_err() {
                hub.faults.open.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
    }
    let _ = socket.close(None).await;
    hub.faults.open.fetch_sub(1, Ordering::SeqCst);
}

/// MEXC's answer to a request on the socket: a subscription lists the
/// channels taken, a `PING` gets `PONG`.
fn answer(text: &str, subscribed: &mut HashSet<String>) -> Value {
    let request: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    match request["method"].as_str() {
        Some("SUBSCRIPTION") => {
            let params: Vec<String> = request["params"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect();
            subscribed.extend(params.iter().cloned());
            json!({"id": 0, "code": 0, "msg": params.join(",")})
        }
        Some("UNSUBSCRIPTION") => {
            for param in request["params"].as_array().into_iter().flatten() {
                subscribed.remove(param.as_str().unwrap_or_default());
            }
            json!({"id": 0, "code": 0, "msg": "unsubscribed"})
        }
        Some("PING") => json!({"id": 0, "code": 0, "msg": "PONG"}),
        _ => json!({"id": 0, "code": 1, "msg": "invalid request"}),
    }
}
