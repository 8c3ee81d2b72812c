//! Real orders on MEXC, on a path of their own: a network call never
//! happens inside a database transaction, and no redelivery, timeout, crash
//! or restart sends an order twice.
//!
//! By the steps an order takes ([`LiveDesk::handle`]):
//! - [`claim`]: the intent committed (SUBMITTED, with a lease of this one
//!   claim), then the first-send checks (halts, age, MEXC's cached rules
//!   and the service's limits; no request per order);
//! - [`send`]: the request stamped and the stamp committed, a grant from
//!   the account's request budget, the halts checked once more, `POST
//!   /api/v3/order`, the answer sorted;
//! - [`look_up`]: the order looked up by its client order id (the answer
//!   to a new order carries no status) and its fills read in full;
//! - [`record`]: every change through the state machine
//!   ([`crate::domain::lifecycle`]), under the lease, with its event;
//! - [`reconcile`]: the task of every replica that owns an order from then
//!   on, and [`resolve`], what each look decides: record, cancel at the TTL
//!   or under a halt, report not placed only when independent searches
//!   agree past the absence window (and watch it), `UNKNOWN` past the
//!   resolve deadline.

mod breaker;
mod claim;
pub mod exchange_check;
mod look_up;
pub mod reconcile;
mod record;
mod resolve;
mod send;
mod state;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, RateLimiter};
use crate::domain::{Order, OrderStatus, OrderType, Side};
use crate::execution::mexc::{Limits, MexcClient, MexcError, RuleCache, TickerPrices};
use crate::kill_switch::HaltBoard;
use crate::stats::Stats;
use crate::store::entity::orders;
use crate::store::{Lease, LiveUpdate, NewTrade, Store};

pub use breaker::{Breaker, BreakerState, BreakerView};
pub use state::{is_news, poll_delay, status_for, update_for};

/// Rules older than this are read again before an order is refused on them.
const RULES_RECHECK: Duration = Duration::from_secs(1);

/// How long a refused key stops sending before one more try.
const BREAKER_COOLDOWN: Duration = Duration::from_secs(60);

/// Lookups right after a send, and the pause before each.
const INLINE_LOOKUPS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(300),
    Duration::from_millis(900),
];

/// How the live path decides.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// How long a claim on an order lasts unrenewed.
    pub lease: Duration,
    /// `LIVE_ORDER_TTL_SECS`: an open order older than this is cancelled.
    pub order_ttl: Duration,
    /// `LIVE_RESOLVE_DEADLINE_SECS`: unresolved after this long: UNKNOWN.
    pub resolve_deadline: Duration,
    /// `ORDER_MAX_AGE_SECS`: an order older than this is never re-sent.
    pub max_order_age: Option<Duration>,
    /// `LIVE_ABSENCE_WINDOW_SECS`: beyond `timestamp + recvWindow`, how
    /// long an order MEXC denies stays in flight before independent
    /// searches (`allOrders`, `myTrades`) may report it not placed (MEXC
    /// has been seen to deny accepted orders for tens of seconds).
    pub absence_window: Duration,
    /// `LIVE_RESEND_NOT_PLACED`: send an order reported not placed again
    /// (off by default: no search proves absence beyond doubt).
    pub resend_not_placed: bool,
    /// `LIVE_WATCH_NOT_PLACED_SECS`: how long an order reported not placed
    /// is still looked for.
    pub watch_not_placed: Duration,
    /// `LIVE_MAX_SEND_ATTEMPTS`: requests for one order at most (the
    /// first, a retry after a refused timestamp, re-sends).
    pub max_send_attempts: i32,
    /// `LIVE_CLIENT_ID_NAMESPACE`.
    pub namespace: String,
    /// `SYMBOL_ALLOWLIST`, `MAX_ORDER_NOTIONAL`.
    pub limits: Limits,
    /// `CANCEL_OPEN_ORDERS_ON_HALT`.
    pub cancel_on_halt: bool,
    /// `LIVE_STREAM_POLL_SECS`: while the user data stream is healthy, the
    /// pause between two lookups of an order MEXC has described.
    pub stream_poll: Duration,
}

/// What became of one order on the live path.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The order's row as it now stands (its result, when announced).
    pub row: Option<orders::Model>,
    /// Leave the entry unacknowledged: another replica holds the order, or
    /// nothing could be sent and a later delivery must try again.
    pub hold: bool,
    /// Its first request went to the exchange now: an execution (counted
    /// when it left).
    pub executed: bool,
}

impl Handled {
    fn done(row: orders::Model) -> Self {
        Handled {
            row: Some(row),
            hold: false,
            executed: false,
        }
    }

    fn hold() -> Self {
        Handled {
            row: None,
            hold: true,
            executed: false,
        }
    }

    fn recorded(row: Option<orders::Model>) -> Self {
        match row {
            Some(row) => Handled::done(row),
            // The lease was lost meanwhile: its new holder decides.
            None => Handled::hold(),
        }
    }
}

/// An outage of Postgres or Redis on the live path: the batch is retried.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("postgres: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("redis: {0}")]
    Redis(#[from] BusError),
}

/// Whether a request may leave now.
enum Slot {
    /// Its stamp committed and a grant taken: send now, signed `i64`.
    Ready(Box<orders::Model>, i64),
    /// Certainly not sent: the exchange clock cannot be measured.
    Unsent(MexcError),
    /// Lease lost, or stopping: send nothing.
    Wait,
    /// A halt covers it now, or it grew too old: send nothing, ever.
    Blocked(Box<orders::Model>, String),
}

/// What a lookup found.
enum Lookup {
    Found(Box<(LiveUpdate, Vec<NewTrade>)>),
    Absent,
    Failed(MexcError),
}

/// Where a send comes from: an entry of the orders stream (which can wait,
/// unacknowledged, for a later try) or the reconciler re-sending an order
/// verified absent (whose entry is long acknowledged: the row must stay in
/// flight whatever happens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Entry,
    Reconciler,
}

pub struct LiveDesk {
    client: MexcClient,
    store: Store,
    limiter: RateLimiter,
    rules: RuleCache,
    prices: TickerPrices,
    /// This replica's name; each claim's lease owner is it plus a number,
    /// so two tasks of one replica never hold the same order at once. The
    /// user data stream and the exchange check hold their Redis leases
    /// under it.
    replica: String,
    claims: AtomicU64,
    options: LiveOptions,
    breaker: Arc<Breaker>,
    /// The halts in force: open orders they cover are cancelled.
    halts: HaltBoard,
    /// The newest halt the user data stream task has seen (see
    /// [`stream::UserStream`]).
    halts_seen: AtomicI64,
    /// Whether the deployment's user data stream is subscribed now.
    stream_healthy: AtomicBool,
    stats: Arc<Stats>,
    stop: CancellationToken,
}

/// The services the live path uses.
pub struct LiveParts {
    pub client: MexcClient,
    pub store: Store,
    pub limiter: RateLimiter,
    pub halts: HaltBoard,
    pub stats: Arc<Stats>,
    pub stop: CancellationToken,
}

impl LiveDesk {
    /// The live path of replica `replica`.
    pub fn new(parts: LiveParts, replica: String, options: LiveOptions) -> Self {
        let LiveParts {
            client,
            store,
            limiter,
            halts,
            stats,
            stop,
        } = parts;
        LiveDesk {
            rules: RuleCache::new(client.clone()),
            prices: TickerPrices::new(client.clone()),
            breaker: Arc::new(Breaker::new(
                BREAKER_COOLDOWN,
                stats.live.breaker_open.clone(),
            )),
            client,
            store,
            limiter,
            // A process of its own: a restarted replica never takes a lease
            // of its previous life for its own.
            replica: format!(
                "{replica}/{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            claims: AtomicU64::new(0),
            options,
            halts,
            halts_seen: AtomicI64::new(0),
            stream_healthy: AtomicBool::new(false),
            stats,
            stop,
        }
    }

    /// Whether the user data stream brings this deployment's fills now.
    pub fn stream_healthy(&self) -> bool {
        self.stream_healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn set_stream_healthy(&self, healthy: bool) {
        self.stream_healthy.store(healthy, Ordering::Relaxed);
        self.stats.live.stream.healthy.set(i64::from(healthy));
    }

    /// How long a request to MEXC may take (connecting the stream too).
    fn client_timeout(&self) -> Duration {
        self.client.timeout()
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The breaker as the HTTP API reads it.
    pub fn breaker_view(&self) -> BreakerView {
        self.breaker.view()
    }

    pub fn options(&self) -> &LiveOptions {
        &self.options
    }

    /// A lease owned by this one claim of this replica.
    pub fn new_lease(&self) -> Lease {
        let claim = self.claims.fetch_add(1, Ordering::Relaxed);
        Lease {
            owner: format!("{}#{claim}", self.replica),
            length: self.options.lease,
        }
    }

    /// Exchange time since the order's request was stamped (zero before).
    fn since_sent(&self, row: &orders::Model) -> Duration {
        let now = self.client.clock().now_ms();
        row.sent_at
            .map(|at| Duration::from_millis((now - at.timestamp_millis()).max(0) as u64))
            .unwrap_or_default()
    }

    /// When to look an order up next: soon after it was sent, less often
    /// as it ages; while the user data stream is healthy, an order MEXC
    /// has described (its pushes come as they happen) only every
    /// `LIVE_STREAM_POLL_SECS`, and never later than its TTL.
    fn poll_in(&self, row: &orders::Model) -> Duration {
        let polling = poll_delay(self.since_sent(row), state::MAX_POLL_INTERVAL);
        if !self.stream_healthy() || row.exchange_status.is_none() {
            return polling;
        }
        let age = (Utc::now() - row.created_at.to_utc())
            .to_std()
            .unwrap_or_default();
        let until_ttl = self.options.order_ttl.saturating_sub(age);
        self.options.stream_poll.min(until_ttl.max(polling))
    }

    /// Whether the order's last request is past MEXC's `timestamp +
    /// recvWindow` and the absence window after it (exchange time): only
    /// then may searches that find nothing report it not placed.
    fn past_window(&self, row: &orders::Model) -> bool {
        let window =
            Duration::from_millis(self.client.recv_window_ms()) + self.options.absence_window;
        row.sent_at.is_some() && self.since_sent(row) > window
    }

    /// How long the order has gone without an answer from the exchange:
    /// since it was sent or last described, whichever is later.
    fn unanswered_for(&self, row: &orders::Model) -> Duration {
        let since_resolved = row
            .resolved_at
            .map(|at| (Utc::now() - at.to_utc()).to_std().unwrap_or_default());
        let since_sent = self.since_sent(row);
        since_resolved.map_or(since_sent, |resolved| resolved.min(since_sent))
    }
}

/// Whether nothing was ever sent for an order: its send time was never
/// committed (a stamp is committed before every request).
fn never_sent(row: &orders::Model) -> bool {
    row.sent_at.is_none() && row.status == OrderStatus::Submitted
}

/// The order a stored row stands for, when the reconciler sends one it
/// holds only the row of.
fn order_from_row(row: &orders::Model) -> Option<Order> {
    Some(Order {
        order_id: row.order_id.clone(),
        symbol: row.symbol.clone()?,
        side: Side::parse(row.side.as_deref()?)?,
        quantity: row.quantity?,
        price: row.price,
        order_type: OrderType::parse(row.order_type.as_deref().unwrap_or("MARKET"))?,
        client_id: row.client_id.clone(),
        strategy_id: row.strategy_id.clone(),
        bot_id: row.bot_id.clone(),
        stop_loss_pct: None,
        timestamp: row.order_timestamp.map(|at| at.to_utc()),
        traceparent: None,
    })
}
