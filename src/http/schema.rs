//! The documented shapes of every response body. Amounts are strings that
//! hold exact decimals with 8 places, never JSON numbers. An `Option` field
//! is always sent, as `null` when empty, and is declared `nullable` so the
//! document says what the JSON holds.

use poem_openapi::{Enum, Object};

pub use super::halt_schema::ActiveHalt;

use crate::domain::{OrderStatus, format_amount};
use crate::store::entity::{order_events, orders, trades};

/// Liveness: the process is up.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Health {
    /// Always `ok` while the process runs.
    #[oai(validator(pattern = "^ok$"))]
    pub status: String,
    /// Always `execution`.
    pub service: String,
    /// The service's version, e.g. `0.1.0`.
    pub version: String,
}

/// Readiness: whether this instance can do its work.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: String,
    /// Redis answers a PING.
    pub redis: bool,
    /// Postgres answers a query.
    pub postgres: bool,
    /// The worker has read the orders stream recently.
    pub consumer: bool,
    /// Live trading only: sending is not stopped by the circuit breaker
    /// (MEXC refused the key or signature); `null` in other modes.
    #[oai(nullable)]
    pub exchange: Option<bool>,
    /// The kill-switch stream was read within the last 3 s (the halts in
    /// force are known).
    pub kill_switch: bool,
    /// The parts that failed (`redis`, `postgres`, `consumer`, `exchange`,
    /// `kill_switch`); empty when ready.
    pub failing: Vec<String>,
}

impl Readiness {
    /// Each check by the name `failing` gives it, and whether it passes
    /// (`exchange` passes outside live trading).
    pub fn checks(&self) -> impl Iterator<Item = (&'static str, bool)> {
        [
            ("redis", self.redis),
            ("postgres", self.postgres),
            ("consumer", self.consumer),
            ("exchange", self.exchange.unwrap_or(true)),
            ("kill_switch", self.kill_switch),
        ]
        .into_iter()
    }
}

/// Counters of this instance since it started.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Statistics {
    /// Stream entries received.
    pub orders_received: u64,
    /// Results published with status FILLED.
    pub orders_filled: u64,
    /// Results published with status REJECTED.
    pub orders_rejected: u64,
}

/// Orders stored in Postgres, over all instances.
#[derive(Debug, Object)]
#[oai(example)]
pub struct DatabaseStats {
    pub total_orders: i64,
    pub filled_orders: i64,
    pub rejected_orders: i64,
}

/// This instance's place in the consumer group.
#[derive(Debug, Object)]
#[oai(example)]
pub struct ConsumerInfo {
    /// The consumer group (`CONSUMER_GROUP`).
    pub group: String,
    /// This instance's consumer name (`CONSUMER_NAME`).
    pub name: String,
}

/// The orders stream as Redis reports it.
#[derive(Debug, Object)]
#[oai(example)]
pub struct StreamInfo {
    /// Entries in the orders stream.
    pub length: u64,
    /// Entries read by the group and not yet acknowledged.
    pub pending: u64,
    /// Entries not yet read by the group.
    pub lag: u64,
    /// Entries the group has not acknowledged yet (`lag` + `pending`): the
    /// orders still to be worked off. None of them is ever trimmed.
    pub backlog: u64,
    /// Entries in the dead-letter stream.
    pub dlq_length: u64,
}

/// The service's state. Live checks time out quickly: a dead dependency
/// shows as `false` (and its section as `null`), never as a hung request.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Status {
    /// Always `execution`.
    pub service: String,
    pub version: String,
    /// `paper`, `mock` or `live`.
    pub mode: String,
    pub dry_run: bool,
    pub uptime_seconds: i64,
    /// When this instance started (RFC 3339).
    pub start_time: String,
    pub redis_connected: bool,
    pub database_connected: bool,
    pub statistics: Statistics,
    /// `null` when Postgres does not answer.
    #[oai(nullable)]
    pub database_stats: Option<DatabaseStats>,
    pub consumer: ConsumerInfo,
    /// `null` when Redis does not answer.
    #[oai(nullable)]
    pub stream: Option<StreamInfo>,
    /// The trading halts in force on this replica, oldest first.
    pub halts: Vec<ActiveHalt>,
    /// Real orders (`TRADING_MODE=live`, `DRY_RUN=false`); `null` otherwise.
    #[oai(nullable)]
    pub live: Option<super::live_status::LiveStatus>,
}

/// An order's state, as the filter of `GET /orders` takes it.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatusFilter {
    Pending,
    Submitted,
    PartiallyFilled,
    Filled,
    Canceled,
    Rejected,
    Error,
    Unknown,
}

impl From<StatusFilter> for OrderStatus {
    fn from(status: StatusFilter) -> Self {
        match status {
            StatusFilter::Pending => OrderStatus::Pending,
            StatusFilter::Submitted => OrderStatus::Submitted,
            StatusFilter::PartiallyFilled => OrderStatus::PartiallyFilled,
            StatusFilter::Filled => OrderStatus::Filled,
            StatusFilter::Canceled => OrderStatus::Canceled,
            StatusFilter::Rejected => OrderStatus::Rejected,
            StatusFilter::Error => OrderStatus::Error,
            StatusFilter::Unknown => OrderStatus::Unknown,
        }
    }
}

/// One stored order.
#[derive(Debug, Object)]
#[oai(example)]
pub struct OrderView {
    /// Pass as `before` to list the orders older than this one.
    #[oai(validator(minimum(value = "1")))]
    pub cursor: i64,
    pub order_id: String,
    /// `null` only on a REJECTED order whose message had none, or one the
    /// column cannot hold (likewise `side`, `order_type` and `quantity`).
    #[oai(nullable)]
    pub symbol: Option<String>,
    /// `BUY` or `SELL` (or the rejected value as sent).
    #[oai(nullable)]
    pub side: Option<String>,
    /// `MARKET` or `LIMIT`.
    #[oai(nullable)]
    pub order_type: Option<String>,
    /// Exact decimal as a string, e.g. `"0.00100000"`.
    #[oai(nullable)]
    pub quantity: Option<String>,
    /// The requested price: exact decimal as a string; `null` when the
    /// order named none.
    #[oai(nullable)]
    pub price: Option<String>,
    /// `PENDING`, `SUBMITTED`, `FILLED`, `REJECTED` or `ERROR`.
    pub status: String,
    /// Exact decimal as a string.
    #[oai(nullable)]
    pub filled_quantity: Option<String>,
    /// The fill price: exact decimal as a string; `null` until filled.
    #[oai(nullable)]
    pub fill_price: Option<String>,
    /// Exact decimal as a string.
    #[oai(nullable)]
    pub fee: Option<String>,
    #[oai(nullable)]
    pub client_id: Option<String>,
    #[oai(nullable)]
    pub strategy_id: Option<String>,
    #[oai(nullable)]
    pub bot_id: Option<String>,
    pub mode: String,
    #[oai(nullable)]
    pub reject_reason: Option<String>,
    #[oai(nullable)]
    pub exchange_order_id: Option<String>,
    /// How often the order was delivered for processing.
    pub attempts: i32,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339; `null` until filled.
    #[oai(nullable)]
    pub filled_at: Option<String>,
}

impl From<&orders::Model> for OrderView {
    fn from(row: &orders::Model) -> Self {
        OrderView {
            cursor: row.id,
            order_id: row.order_id.clone(),
            symbol: row.symbol.clone(),
            side: row.side.clone(),
            order_type: row.order_type.clone(),
            quantity: row.quantity.map(format_amount),
            price: row.price.map(format_amount),
            status: row.status.to_string(),
            filled_quantity: row.filled_quantity.map(format_amount),
            fill_price: row.fill_price.map(format_amount),
            fee: row.fee.map(format_amount),
            client_id: row.client_id.clone(),
            strategy_id: row.strategy_id.clone(),
            bot_id: row.bot_id.clone(),
            mode: row.mode.as_str().into(),
            reject_reason: row.reject_reason.clone(),
            exchange_order_id: row.exchange_order_id.clone(),
            attempts: row.attempts,
            created_at: row.created_at.to_rfc3339(),
            updated_at: row.updated_at.to_rfc3339(),
            filled_at: row.filled_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// A page of orders, newest first.
#[derive(Debug, Object)]
#[oai(example)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// The `before` value for the next (older) page; `null` on the last page.
    #[oai(nullable)]
    pub next_before: Option<i64>,
}

/// One fill of an order.
#[derive(Debug, Object)]
#[oai(example)]
pub struct TradeView {
    pub trade_id: String,
    /// Exact decimal as a string.
    pub price: String,
    /// Exact decimal as a string.
    pub quantity: String,
    /// Exact decimal as a string.
    pub fee: String,
    pub mode: String,
    #[oai(nullable)]
    pub exchange_order_id: Option<String>,
    /// RFC 3339.
    pub executed_at: String,
}

impl From<&trades::Model> for TradeView {
    fn from(row: &trades::Model) -> Self {
        TradeView {
            trade_id: row.trade_id.clone(),
            price: format_amount(row.price),
            quantity: format_amount(row.quantity),
            fee: format_amount(row.fee),
            mode: row.mode.as_str().into(),
            exchange_order_id: row.exchange_order_id.clone(),
            executed_at: row.executed_at.to_rfc3339(),
        }
    }
}

/// One order with its fills.
#[derive(Debug, Object)]
#[oai(example)]
pub struct OrderDetail {
    pub order: OrderView,
    pub trades: Vec<TradeView>,
}

/// One change of a live order's state, as recorded.
#[derive(Debug, Object)]
#[oai(example)]
pub struct OrderEventView {
    /// The order's state sequence number after this change (results
    /// announce it as `seq`).
    pub seq: i32,
    /// The status before; `null` on the order's first event.
    #[oai(nullable)]
    pub from_status: Option<String>,
    pub to_status: String,
    /// What caused it: `received`, `claimed`, `not_sent`, `refused`,
    /// `failed`, `reported`, `overdue`, `not_placed` or `late_appearance`.
    pub observation: String,
    /// Its evidence: MEXC's status and `executedQty`, the fees, the trade
    /// ids, the reason or the error MEXC gave.
    pub evidence: std::collections::BTreeMap<String, serde_json::Value>,
    /// The replica (and claim) that recorded it.
    #[oai(nullable)]
    pub replica: Option<String>,
    /// RFC 3339.
    pub at: String,
}

impl From<&order_events::Model> for OrderEventView {
    fn from(row: &order_events::Model) -> Self {
        OrderEventView {
            seq: row.seq,
            from_status: row.from_status.map(|s| s.to_string()),
            to_status: row.to_status.to_string(),
            observation: row.observation.clone(),
            evidence: match &row.evidence {
                Some(serde_json::Value::Object(map)) => map.clone().into_iter().collect(),
                _ => Default::default(),
            },
            replica: row.replica.clone(),
            at: row.at.to_rfc3339(),
        }
    }
}

/// An order's history: where it stands and every change that led there
/// (live orders; a simulated order ends in the change that stored it and
/// has no events).
#[derive(Debug, Object)]
#[oai(example)]
pub struct OrderHistory {
    pub order_id: String,
    /// The stored status: always the last event's.
    pub status: String,
    /// The stored state sequence number: always the last event's.
    pub seq: i32,
    pub events: Vec<OrderEventView>,
}

/// An error: a stable code and a human-readable message.
#[derive(Debug, Object)]
#[oai(example)]
pub struct ApiError {
    /// `bad_request`, `not_found`, `method_not_allowed` or `unavailable`.
    pub error: String,
    pub message: String,
}

impl ApiError {
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        ApiError {
            error: error.to_owned(),
            message: message.into(),
        }
    }
}
