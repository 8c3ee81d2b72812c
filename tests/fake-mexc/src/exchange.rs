//! The fake's exchange: signed-request checks exactly as MEXC documents
//! them, symbols and prices, and orders kept by client order id that fill
//! over time as scripted.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::auth::{authenticate, params};
use super::http::{Reply, Request};
use super::user_stream::{ListenKeys, Pushed, deal_frame, order_frame};
use super::{FakeOrder, FakeTrade, Fault, Script};

/// An order POST or DELETE: when it arrived, and for which client id.
#[derive(Debug, Clone)]
pub struct OrderWrite {
    pub at: Instant,
    pub method: String,
    pub client_order_id: String,
}

/// What one request was, for the test to count.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Whether it carried an `X-MEXC-APIKEY` header.
    pub keyed: bool,
}

pub(super) struct State {
    pub clock_offset_ms: i64,
    pub symbols: BTreeMap<String, Value>,
    pub prices: HashMap<String, Decimal>,
    pub orders: Vec<FakeOrder>,
    pub reject_duplicates: bool,
    pub numeric_order_ids: bool,
    pub lookup_lag: usize,
    /// How long after acceptance an order is denied by every read.
    pub deny_for: Duration,
    /// Every other fill's commission is paid in this asset instead.
    pub second_fee_asset: Option<String>,
    pub fill_plan: Vec<(Duration, Decimal)>,
    pub fee_rate: Decimal,
    pub scripts: Vec<(Script, usize)>,
    pub seen: Vec<Seen>,
    /// Every order POST and DELETE, as it arrived.
    pub order_writes: Vec<OrderWrite>,
    /// The user data stream's frames go out here, as changes happen.
    pub pushes: tokio::sync::broadcast::Sender<Pushed>,
    pub listen_keys: std::sync::Arc<std::sync::Mutex<ListenKeys>>,
    /// Woken when an order is accepted, so that its fills are pushed on time.
    pub accepted: std::sync::Arc<tokio::sync::Notify>,
    next_id: u64,
}

impl State {
    pub fn new() -> Self {
        let mut state = State {
            clock_offset_ms: 0,
            symbols: BTreeMap::new(),
            prices: HashMap::new(),
            orders: Vec::new(),
            reject_duplicates: false,
            numeric_order_ids: false,
            lookup_lag: 0,
            deny_for: Duration::ZERO,
            second_fee_asset: None,
            fill_plan: vec![(Duration::ZERO, Decimal::ONE)],
            fee_rate: Decimal::new(1, 3),
            scripts: Vec::new(),
            seen: Vec::new(),
            order_writes: Vec::new(),
            pushes: tokio::sync::broadcast::channel(4096).0,
            listen_keys: Default::default(),
            accepted: Default::default(),
            next_id: 1,
        };
        state
            .symbols
            .insert("BTCUSDT".into(), symbol_info("BTCUSDT", "BTC", "USDT"));
        state
            .symbols
            .insert("ETHUSDT".into(), symbol_info("ETHUSDT", "ETH", "USDT"));
        state.prices.insert("BTCUSDT".into(), Decimal::from(50_000));
        state.prices.insert("ETHUSDT".into(), Decimal::from(3_000));
        state
    }

    pub fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.clock_offset_ms
    }

    /// Answers one request, applying any scripted fault.
    pub fn handle(&mut self, request: Request) -> Reply {
        let now = Instant::now();
        self.seen.push(Seen {
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            keyed: request.headers.contains_key("x-mexc-apikey"),
        });
        if request.path == "/api/v3/order" && matches!(request.method.as_str(), "POST" | "DELETE") {
            let params = params(&request);
            let client_id = params
                .get("newClientOrderId")
                .or_else(|| params.get("origClientOrderId"))
                .cloned()
                .unwrap_or_default();
            self.order_writes.push(OrderWrite {
                at: now,
                method: request.method.clone(),
                client_order_id: client_id,
            });
        }
        let fault = self.fault_for(&request);
        match fault {
            Some((fault, false)) => fault.reply(),
            Some((fault, true)) => {
                let _applied = self.route(&request);
                fault.reply()
            }
            None => self.route(&request),
        }
    }

    /// The scripted fault this request triggers, and whether the request
    /// is applied first.
    fn fault_for(&mut self, request: &Request) -> Option<(Fault, bool)> {
        let mut fired = None;
        for (script, seen) in &mut self.scripts {
            if !script.matches(&request.method, &request.path) {
                continue;
            }
            *seen += 1;
            if fired.is_none() && script.fires_at(*seen) {
                fired = Some((script.fault.clone(), script.after_applying));
            }
        }
        fired
    }

    fn route(&mut self, request: &Request) -> Reply {
        let params = params(request);
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/api/v3/ping") => Reply::ok("{}"),
            ("GET", "/api/v3/time") => Reply::ok(json!({"serverTime": self.now_ms()}).to_string()),
            ("GET", "/api/v3/exchangeInfo") => self.exchange_info(&params),
            ("GET", "/api/v3/ticker/price") => self.ticker(&params),
            (method, path) => {
                let signed = matches!(
                    (method, path),
                    ("POST", "/api/v3/order")
                        | ("POST", "/api/v3/order/test")
                        | ("GET", "/api/v3/order")
                        | ("DELETE", "/api/v3/order")
                        | ("GET", "/api/v3/myTrades")
                        | ("GET", "/api/v3/allOrders")
                        | ("GET", "/api/v3/openOrders")
                        | (_, "/api/v3/userDataStream")
                );
                if !signed {
                    return Reply::error(404, -1, "not found");
                }
                if let Err(reply) = authenticate(request, &params, self.now_ms()) {
                    return reply;
                }
                match (method, path) {
                    ("POST", "/api/v3/order") => self.new_order(&params, false),
                    ("POST", "/api/v3/order/test") => self.new_order(&params, true),
                    ("GET", "/api/v3/order") => self.query_order(&params),
                    ("DELETE", "/api/v3/order") => self.cancel_order(&params),
                    ("GET", "/api/v3/allOrders") => self.all_orders(&params),
                    ("GET", "/api/v3/openOrders") => self.open_orders(&params),
                    (method, "/api/v3/userDataStream") => self.listen_key(method, &params),
                    _ => self.my_trades(&params),
                }
            }
        }
    }

    fn exchange_info(&self, params: &HashMap<String, String>) -> Reply {
        let wanted: Option<Vec<String>> = params
            .get("symbol")
            .or_else(|| params.get("symbols"))
            .map(|s| s.split(',').map(str::to_owned).collect());
        let mut symbols = Vec::new();
        match wanted {
            None => symbols.extend(self.symbols.values().cloned()),
            Some(names) => {
                for name in names {
                    match self.symbols.get(&name) {
                        Some(info) => symbols.push(info.clone()),
                        None => return Reply::error(400, -1121, "Invalid symbol."),
                    }
                }
            }
        }
        Reply::ok(
            json!({"timezone": "CST", "serverTime": self.now_ms(), "rateLimits": [],
                   "exchangeFilters": [], "symbols": symbols})
            .to_string(),
        )
    }

    fn ticker(&self, params: &HashMap<String, String>) -> Reply {
        let Some(symbol) = params.get("symbol") else {
            let all: Vec<Value> = self
                .prices
                .iter()
                .map(|(s, p)| json!({"symbol": s, "price": p.to_string()}))
                .collect();
            return Reply::ok(Value::Array(all).to_string());
        };
        match self.prices.get(symbol) {
            Some(price) => {
                Reply::ok(json!({"symbol": symbol, "price": price.to_string()}).to_string())
            }
            None => Reply::error(400, -1121, "Invalid symbol."),
        }
    }

    fn new_order(&mut self, params: &HashMap<String, String>, test_only: bool) -> Reply {
        let symbol = params.get("symbol").cloned().unwrap_or_default();
        if !self.symbols.contains_key(&symbol) {
            return Reply::error(400, 10007, "bad symbol");
        }
        let side = params.get("side").cloned().unwrap_or_default();
        let order_type = params.get("type").cloned().unwrap_or_default();
        let quantity = params
            .get("quantity")
            .and_then(|q| Decimal::from_str(q).ok());
        let price = params.get("price").and_then(|p| Decimal::from_str(p).ok());
        let valid = matches!(side.as_str(), "BUY" | "SELL")
            && quantity.is_some_and(|q| q > Decimal::ZERO)
            && match order_type.as_str() {
                "LIMIT" => price.is_some_and(|p| p > Decimal::ZERO),
                "MARKET" => true,
                _ => false,
            };
        if !valid {
            return Reply::error(400, 33333, "param is error");
        }
        if test_only {
            return Reply::ok("{}");
        }
        let client_order_id = params.get("newClientOrderId").cloned().unwrap_or_default();
        if self.reject_duplicates
            && !client_order_id.is_empty()
            && self
                .orders
                .iter()
                .any(|o| o.client_order_id == client_order_id)
        {
            return Reply::error(400, -2010, "Duplicate order sent.");
        }
        let id = self.next_id;
        self.next_id += 1;
        let order = FakeOrder {
            order_id: if self.numeric_order_ids {
                (1_196_315_350_023_612_000 + id).to_string()
            } else {
                format!(
                    "{:032x}",
                    0x06a4_80e6_9e60_4477_bfb4_8ddd_d5f0_0000u128 + u128::from(id)
                )
            },
            client_order_id,
            symbol,
            side,
            order_type,
            orig_qty: quantity.unwrap_or_default(),
            price,
            status: "NEW".into(),
            executed_qty: Decimal::ZERO,
            cummulative_quote_qty: Decimal::ZERO,
            trades: Vec::new(),
            lookups: 0,
            accepted_at: Instant::now(),
            denied_for: self.deny_for,
            time_ms: self.now_ms(),
            plan: self.fill_plan.clone(),
        };
        let answer = json!({
            "symbol": order.symbol, "orderId": self.order_id_json(&order), "orderListId": -1,
            "price": price.map(|p| p.to_string()).unwrap_or_else(|| "0".into()),
            "origQty": order.orig_qty.to_string(), "type": order.order_type, "side": order.side,
            "transactTime": order.time_ms,
        });
        self.push(order_frame(&order, self.now_ms()));
        self.orders.push(order);
        self.accepted.notify_one();
        Reply::ok(answer.to_string())
    }

    /// `/api/v3/userDataStream`: create (`POST`), list (`GET`), extend
    /// (`PUT`) or close (`DELETE`) a listen key.
    fn listen_key(&mut self, method: &str, params: &HashMap<String, String>) -> Reply {
        let mut keys = self
            .listen_keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = params.get("listenKey").cloned().unwrap_or_default();
        let known = match method {
            "POST" => return Reply::ok(json!({"listenKey": keys.create()}).to_string()),
            "GET" => return Reply::ok(json!({"listenKey": keys.valid()}).to_string()),
            "PUT" => keys.extend(&key),
            "DELETE" => keys.close(&key),
            _ => return Reply::error(404, -1, "not found"),
        };
        if known {
            Reply::ok(json!({"listenKey": key}).to_string())
        } else {
            Reply::error(400, 730_002, "listenKey does not exist")
        }
    }

    /// Sends a frame to every subscribed connection (none may listen).
    pub fn push(&self, pushed: Pushed) {
        let _ = self.pushes.send(pushed);
    }

    /// Pushes an order as it now stands.
    pub fn push_order(&self, index: usize) {
        self.push(order_frame(&self.orders[index], self.now_ms()));
    }

    /// Applies every order's due fills (pushing them); how long until the
    /// next fill is due, if one is planned.
    pub fn advance_all(&mut self) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        for index in 0..self.orders.len() {
            self.advance(index);
            let order = &self.orders[index];
            if !matches!(order.status.as_str(), "NEW" | "PARTIALLY_FILLED") {
                continue;
            }
            let elapsed = order.accepted_at.elapsed();
            let due = order
                .plan
                .iter()
                .filter(|(_, fraction)| {
                    order.orig_qty * fraction.min(&Decimal::ONE) > order.executed_qty
                })
                .map(|(after, _)| after.saturating_sub(elapsed))
                .min();
            next = match (next, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }

    /// A numeric id as a JSON number, any other as a string.
    fn order_id_json(&self, order: &FakeOrder) -> Value {
        match order.order_id.parse::<u64>() {
            Ok(number) => json!(number),
            Err(_) => json!(order.order_id),
        }
    }

    fn find(&mut self, params: &HashMap<String, String>) -> Option<usize> {
        if let Some(client) = params.get("origClientOrderId") {
            return self
                .orders
                .iter()
                .position(|o| &o.client_order_id == client);
        }
        let id = params.get("orderId")?;
        self.orders.iter().position(|o| &o.order_id == id)
    }

    /// Whether an order is still in the window after its acceptance in
    /// which every read denies it (as MEXC's are seen to).
    fn denied(&self, order: &FakeOrder) -> bool {
        order.accepted_at.elapsed() < order.denied_for
    }

    fn query_order(&mut self, params: &HashMap<String, String>) -> Reply {
        let Some(index) = self.find(params).filter(|i| !self.denied(&self.orders[*i])) else {
            return Reply::error(400, -2013, "Order does not exist.");
        };
        let lag = self.lookup_lag;
        self.orders[index].lookups += 1;
        if self.orders[index].lookups <= lag {
            return Reply::error(400, -2013, "Order does not exist.");
        }
        self.advance(index);
        Reply::ok(self.order_json(index, false).to_string())
    }

    fn cancel_order(&mut self, params: &HashMap<String, String>) -> Reply {
        let Some(index) = self.find(params).filter(|i| !self.denied(&self.orders[*i])) else {
            return Reply::error(400, -2011, "Unknown order sent.");
        };
        self.advance(index);
        let order = &mut self.orders[index];
        match order.status.as_str() {
            "NEW" => order.status = "CANCELED".into(),
            "PARTIALLY_FILLED" => order.status = "PARTIALLY_CANCELED".into(),
            _ => return Reply::error(400, -2011, "Unknown order sent."),
        }
        self.push_order(index);
        Reply::ok(self.order_json(index, true).to_string())
    }

    fn my_trades(&mut self, params: &HashMap<String, String>) -> Reply {
        let symbol = params.get("symbol").cloned().unwrap_or_default();
        for index in 0..self.orders.len() {
            self.advance(index);
        }
        let wanted = params.get("orderId");
        let Some((start, end, limit)) = window(params, 100) else {
            return Reply::error(400, 33333, "param is error");
        };
        let mut trades: Vec<(&FakeOrder, &FakeTrade)> = self
            .orders
            .iter()
            .filter(|o| o.symbol == symbol && !self.denied(o))
            .filter(|o| wanted.is_none_or(|id| &o.order_id == id))
            .flat_map(|o| o.trades.iter().map(move |t| (o, t)))
            .filter(|(_, t)| {
                start.is_none_or(|s| t.time_ms >= s) && end.is_none_or(|e| t.time_ms <= e)
            })
            .collect();
        trades.sort_by_key(|(_, t)| t.time_ms);
        trades.truncate(limit);
        let trades: Vec<Value> = trades
            .into_iter()
            .map(|(o, t)| {
                json!({"symbol": o.symbol, "id": t.id, "orderId": self.order_id_json(o), "orderListId": -1,
                       "price": t.price.to_string(), "qty": t.qty.to_string(),
                       "quoteQty": (t.qty * t.price).to_string(), "commission": t.commission.to_string(),
                       "commissionAsset": t.commission_asset, "time": t.time_ms, "isBuyer": o.side == "BUY",
                       "isMaker": false, "isBestMatch": true, "isSelfTrade": false,
                       "clientOrderId": o.client_order_id})
            })
            .collect();
        Reply::ok(Value::Array(trades).to_string())
    }

    /// `allOrders`: the symbol's orders created in the window, oldest
    /// first, at most `limit` (500 by default, 1000 at most).
    /// `openOrders` of one symbol (MEXC requires it), oldest first.
    fn open_orders(&mut self, params: &HashMap<String, String>) -> Reply {
        let Some(symbol) = params.get("symbol").cloned() else {
            return Reply::error(400, 33333, "param is error");
        };
        self.advance_all();
        let listed: Vec<Value> = (0..self.orders.len())
            .filter(|i| {
                let o = &self.orders[*i];
                o.symbol == symbol
                    && !self.denied(o)
                    && matches!(o.status.as_str(), "NEW" | "PARTIALLY_FILLED")
            })
            .map(|i| self.order_json(i, false))
            .collect();
        Reply::ok(Value::Array(listed).to_string())
    }

    fn all_orders(&mut self, params: &HashMap<String, String>) -> Reply {
        let symbol = params.get("symbol").cloned().unwrap_or_default();
        let Some((start, end, limit)) = window(params, 1000) else {
            return Reply::error(400, 33333, "param is error");
        };
        let limit = if params.contains_key("limit") {
            limit
        } else {
            500
        };
        for index in 0..self.orders.len() {
            self.advance(index);
        }
        let mut found: Vec<usize> = (0..self.orders.len())
            .filter(|i| {
                let o = &self.orders[*i];
                o.symbol == symbol
                    && !self.denied(o)
                    && start.is_none_or(|s| o.time_ms >= s)
                    && end.is_none_or(|e| o.time_ms <= e)
            })
            .collect();
        found.sort_by_key(|i| self.orders[*i].time_ms);
        found.truncate(limit);
        let listed: Vec<Value> = found
            .into_iter()
            .map(|i| self.order_json(i, false))
            .collect();
        Reply::ok(Value::Array(listed).to_string())
    }

    fn order_json(&self, index: usize, cancelled: bool) -> Value {
        let o = &self.orders[index];
        let mut value = json!({
            "symbol": o.symbol, "orderId": self.order_id_json(o), "orderListId": -1,
            "clientOrderId": o.client_order_id,
            "price": o.price.map(|p| p.to_string()).unwrap_or_else(|| "0".into()),
            "origQty": o.orig_qty.to_string(), "executedQty": o.executed_qty.to_string(),
            "cummulativeQuoteQty": o.cummulative_quote_qty.to_string(), "status": o.status,
            "timeInForce": "GTC", "type": o.order_type, "side": o.side, "stopPrice": "0",
            "time": o.time_ms, "updateTime": self.now_ms(), "isWorking": true,
            "origQuoteOrderQty": "0",
        });
        if cancelled {
            value["origClientOrderId"] = json!(o.client_order_id);
        }
        value
    }

    /// Applies the fill steps that are due, one trade per step, each
    /// stamped with the time its step was due (so many fills spread over
    /// distinct milliseconds, as at a real exchange).
    pub fn advance(&mut self, index: usize) {
        let market_price = self.prices.get(&self.orders[index].symbol).copied();
        let fee_rate = self.fee_rate;
        let second_asset = self.second_fee_asset.clone();
        let now_ms = self.now_ms();
        let mut frames = Vec::new();
        let order = &mut self.orders[index];
        if !matches!(order.status.as_str(), "NEW" | "PARTIALLY_FILLED") {
            return;
        }
        let elapsed = order.accepted_at.elapsed();
        let price = match order.order_type.as_str() {
            "LIMIT" => order.price.unwrap_or_default(),
            _ => market_price.unwrap_or(Decimal::ONE),
        };
        for (after, fraction) in order.plan.clone() {
            let target = order.orig_qty * fraction.min(Decimal::ONE);
            if after > elapsed || target <= order.executed_qty {
                continue;
            }
            let qty = target - order.executed_qty;
            self.next_id += 1;
            // Every other fill pays its fee in the second asset, at a
            // tenth of the quote amount.
            let (commission, commission_asset) = match &second_asset {
                Some(asset) if order.trades.len() % 2 == 1 => {
                    (qty * price * fee_rate / Decimal::TEN, asset.clone())
                }
                _ => (qty * price * fee_rate, "USDT".to_owned()),
            };
            order.trades.push(FakeTrade {
                id: format!("t{:031x}", self.next_id),
                qty,
                price,
                commission,
                commission_asset,
                time_ms: order.time_ms + after.as_millis() as i64,
            });
            order.executed_qty = target;
            order.cummulative_quote_qty += qty * price;
            order.status = if target == order.orig_qty {
                "FILLED"
            } else {
                "PARTIALLY_FILLED"
            }
            .into();
            // As MEXC's own example shows, the order's push may come
            // before its deal's.
            frames.push(order_frame(order, now_ms));
            let trade = order.trades.last().expect("the fill just added");
            frames.push(deal_frame(order, trade, now_ms));
        }
        for frame in frames {
            self.push(frame);
        }
    }
}

/// `startTime`, `endTime` and `limit` (at most `max`, the default when
/// absent); `None` when one is not a number or the limit is out of range.
fn window(
    params: &HashMap<String, String>,
    max: usize,
) -> Option<(Option<i64>, Option<i64>, usize)> {
    let number = |name: &str| -> Option<Option<i64>> {
        match params.get(name) {
            None => Some(None),
            Some(text) => text.parse().ok().map(Some),
        }
    };
    let limit = match number("limit")? {
        None => max,
        Some(n) if (1..=max as i64).contains(&n) => n as usize,
        Some(_) => return None,
    };
    Some((number("startTime")?, number("endTime")?, limit))
}

impl Fault {
    fn reply(&self) -> Reply {
        match self {
            Fault::ServerError => Reply::error(500, 500, "Internal error"),
            Fault::Hang => Reply::Hang,
            Fault::Reset => Reply::Reset,
            Fault::RateLimited {
                retry_after_secs,
                banned,
            } => Reply::Json {
                status: if *banned { 418 } else { 429 },
                body: json!({"code": 429, "msg": "Too Many Requests"}).to_string(),
                retry_after: Some(*retry_after_secs),
            },
            Fault::Error { status, code, msg } => Reply::error(*status, *code, msg),
        }
    }
}

/// A symbol as `exchangeInfo` describes it: online, LIMIT and MARKET, six
/// quantity and two price decimals, at least 0.0001 and between 1 and
/// 2 000 000 in quote.
pub fn symbol_info(symbol: &str, base: &str, quote: &str) -> Value {
    json!({
        "symbol": symbol, "status": "1", "baseAsset": base, "baseAssetPrecision": 6,
        "quoteAsset": quote, "quotePrecision": 2, "quoteAssetPrecision": 2,
        "baseCommissionPrecision": 6, "quoteCommissionPrecision": 2,
        "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"], "isSpotTradingAllowed": true,
        "isMarginTradingAllowed": false, "quoteAmountPrecision": "1.000000000000000000",
        "baseSizePrecision": "0.0001", "permissions": ["SPOT"], "filters": [],
        "maxQuoteAmount": "2000000.000000000000000000", "makerCommission": "0",
        "takerCommission": "0.0005", "quoteAmountPrecisionMarket": "1.000000000000000000",
        "maxQuoteAmountMarket": "100000.000000000000000000", "tradeSideType": "1"
    })
}
