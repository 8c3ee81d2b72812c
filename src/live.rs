//! Real orders on MEXC, on a path of their own: a network call never
//! happens inside a database transaction, and no redelivery, timeout, crash
//! or restart sends an order twice.
//!
//! Per order ([`LiveDesk::handle`]): the intent committed (SUBMITTED, with
//! a lease of this one claim) → the first-send checks (halts, age, MEXC's
//! cached rules and the service's limits; no request per order) → the
//! request stamped and the stamp committed → a grant from the fleet-wide
//! request budget → `POST /api/v3/order` → the answer sorted → MEXC's
//! acknowledgement recorded → the order looked up (the answer to a new
//! order carries no status) → recorded with a compare-and-set on the lease. An order whose outcome is still unknown
//! is recorded as such; the [`reconcile`] task of every replica owns it
//! from then on: it looks it up until it is finished, cancels it after
//! `LIVE_ORDER_TTL_SECS`, sends it again only when verified absent, and
//! raises `UNKNOWN` after `LIVE_RESOLVE_DEADLINE_SECS` ([`resolve`] holds
//! those decisions, [`send`] the request itself).

mod breaker;
pub mod reconcile;
mod resolve;
mod send;
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, RateLimiter};
use crate::domain::lifecycle::{self, Observation};
use crate::domain::{
    Order, OrderStatus, OrderType, Side, halted_reason_for, normalise_symbol, stale_reason,
};
use crate::execution::mexc::{
    Limits, MexcClient, MexcError, NewOrder, OrderId, OrderState, RuleCache, TickerPrices, Window,
    check_order, client_order_id,
};
use crate::kill_switch::HaltBoard;
use crate::stats::Stats;
use crate::store::entity::orders;
use crate::store::{Lease, LiveClaim, LiveUpdate, NewOrder as NewRow, Store};

pub use breaker::{Breaker, BreakerState};
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
    /// The longest pause between two lookups of an open order.
    pub max_poll_interval: Duration,
    /// `LIVE_CLIENT_ID_NAMESPACE`.
    pub namespace: String,
    /// `SYMBOL_ALLOWLIST`, `MAX_ORDER_NOTIONAL`.
    pub limits: Limits,
    /// `CANCEL_OPEN_ORDERS_ON_HALT`.
    pub cancel_on_halt: bool,
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
    Found(Box<(LiveUpdate, Vec<crate::store::NewTrade>)>),
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
    /// so two tasks of one replica never hold the same order at once.
    replica: String,
    claims: AtomicU64,
    options: LiveOptions,
    breaker: Breaker,
    /// The halts in force: open orders they cover are cancelled.
    halts: HaltBoard,
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
            breaker: Breaker::new(BREAKER_COOLDOWN, stats.live.breaker_open.clone()),
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
            stats,
            stop,
        }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    pub fn options(&self) -> &LiveOptions {
        &self.options
    }

    /// Lets go of the finished orders among `rows`, whose results just went
    /// out (a batch's, a reconciler round's); until then their leases let
    /// the reconciler announce them, should nobody else. Orders in flight
    /// keep their leases.
    pub async fn release_announced<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a orders::Model>,
    ) -> Result<u64, LiveError> {
        let announced: Vec<(String, String)> = rows
            .into_iter()
            .filter(|row| row.is_terminal())
            .filter_map(|row| Some((row.order_id.clone(), row.lease_owner.clone()?)))
            .collect();
        Ok(self.store.release_announced(&announced).await?)
    }

    /// A lease owned by this one claim of this replica.
    pub fn new_lease(&self) -> Lease {
        let claim = self.claims.fetch_add(1, Ordering::Relaxed);
        Lease {
            owner: format!("{}#{claim}", self.replica),
            length: self.options.lease,
        }
    }

    /// Takes one order (its row `row` already stored, not terminal) to the
    /// exchange, or to its stored outcome.
    #[tracing::instrument(name = "live.order", skip_all, fields(order_id = %order.order_id), err(level = "debug"))]
    pub async fn handle(&self, order: &Order, row: &NewRow) -> Result<Handled, LiveError> {
        if self.breaker.blocks() {
            return Ok(Handled::hold());
        }
        let client_id = client_order_id(&self.options.namespace, &order.order_id);
        let lease = self.new_lease();
        match self.store.claim_live(row, &client_id, &lease).await? {
            LiveClaim::Done(row) => Ok(Handled::done(row)),
            LiveClaim::Held(_) => Ok(Handled::hold()),
            LiveClaim::Send(row) => self.first_send(row, &lease, Origin::Entry).await,
            // Taken over from an expired lease: sent by no one yet (its send
            // time was never committed), or looked up first.
            LiveClaim::LookUp(row) if never_sent(&row) => {
                self.first_send(row, &lease, Origin::Entry).await
            }
            LiveClaim::LookUp(row) => {
                let (row, _) = self.reconcile(row, &lease).await?;
                Ok(Handled::done(row))
            }
        }
    }

    /// Sends an order nothing was ever sent for, unless a halt now covers
    /// it, it grew too old, or it breaks MEXC's rules or the service's
    /// limits (then it is REJECTED and nothing is sent).
    async fn first_send(
        &self,
        row: orders::Model,
        lease: &Lease,
        origin: Origin,
    ) -> Result<Handled, LiveError> {
        if let Some(reason) = self.blocked_reason(&row) {
            return self
                .finish(&row, lease, Observation::Refused, &reason)
                .await;
        }
        let Some(order) = order_from_row(&row) else {
            let reason = "the stored order cannot be sent (its columns are incomplete)";
            return self.finish(&row, lease, Observation::Failed, reason).await;
        };
        match self.pre_trade(&order).await {
            Ok(None) => self.send(row, lease, origin).await,
            Ok(Some(reason)) => {
                tracing::info!(order_id = %row.order_id, reason = %reason, "live order refused before sending");
                self.finish(&row, lease, Observation::Refused, &reason)
                    .await
            }
            Err(err) => {
                tracing::warn!(order_id = %row.order_id, error = %err, "MEXC's rules cannot be read; the order waits");
                self.unsent(&row, lease, origin, &err).await
            }
        }
    }

    /// Why an order must not be sent (again) now: a halt covers it, or it
    /// is older than `ORDER_MAX_AGE_SECS` (the rules new orders meet too).
    fn blocked_reason(&self, row: &orders::Model) -> Option<String> {
        if let Some(reason) = self.halt_covering(row) {
            return Some(reason);
        }
        let max_age = chrono::Duration::from_std(self.options.max_order_age?).ok()?;
        let issued = row.order_timestamp.unwrap_or(row.created_at).to_utc();
        stale_reason(issued, Utc::now(), max_age)
    }

    /// The reason of the oldest halt in force covering the order.
    fn halt_covering(&self, row: &orders::Model) -> Option<String> {
        let market = normalise_symbol(row.symbol.as_deref().unwrap_or_default());
        halted_reason_for(
            &self.halts.snapshot(),
            row.strategy_id.as_deref(),
            row.bot_id.as_deref(),
            &market,
        )
    }

    /// The reason an order must not be sent, from MEXC's rules and the
    /// service's limits; `Err` when the rules cannot be read. An order the
    /// cached rules refuse is checked again against rules read at most a
    /// second ago before it is refused (a symbol paused and resumed at MEXC
    /// trades again at once).
    async fn pre_trade(&self, order: &Order) -> Result<Option<String>, MexcError> {
        let reference = match (order.order_type, order.price) {
            (OrderType::Market, None) => self.prices.price(&order.symbol).await.ok(),
            _ => None,
        };
        let check = |rules: Option<crate::execution::mexc::SymbolRules>| {
            check_order(order, rules.as_ref(), &self.options.limits, reference)
                .err()
                .map(|failure| failure.to_string())
        };
        let Some(_) = check(self.rules.rules_for(&order.symbol).await?) else {
            return Ok(None);
        };
        Ok(check(
            self.rules
                .rules_within(&order.symbol, RULES_RECHECK)
                .await?,
        ))
    }

    /// Records a terminal outcome decided here (nothing at the exchange,
    /// as far as the service can tell): `observation` is a refusal, a
    /// failure or a report of not placed.
    async fn finish(
        &self,
        row: &orders::Model,
        lease: &Lease,
        observation: Observation,
        reason: &str,
    ) -> Result<Handled, LiveError> {
        let mut update = LiveUpdate::on(observation);
        update.reject_reason = Some(reason.to_owned());
        if observation == Observation::NotPlaced {
            update.watch_for = Some(self.options.watch_not_placed);
        }
        self.record(row, lease, update, &[])
            .await
            .map(Handled::recorded)
    }

    /// Records an update under the lease. A finished order keeps its lease
    /// until its result is announced (then [`Store::release_announced`]):
    /// should the announcement never happen, the lease expires and the
    /// reconciler announces it. An order reported not placed is looked at
    /// again soon (it is watched).
    async fn record(
        &self,
        row: &orders::Model,
        lease: &Lease,
        mut update: LiveUpdate,
        fills: &[crate::store::NewTrade],
    ) -> Result<Option<orders::Model>, LiveError> {
        let current = row.status;
        let ends = update
            .observation
            .and_then(|observation| lifecycle::next(current, observation).ok())
            .is_some_and(OrderStatus::is_terminal);
        if ends {
            update.keep_lease = true;
            update.poll_in = Some(match update.watch_for {
                Some(_) => self.poll_in(row).min(self.options.lease),
                None => self.options.lease,
            });
        }
        Ok(self
            .store
            .record_live(&row.order_id, lease, &update, fills)
            .await?)
    }

    async fn record_found(
        &self,
        row: &orders::Model,
        lease: &Lease,
        (update, fills): (LiveUpdate, Vec<crate::store::NewTrade>),
    ) -> Result<Handled, LiveError> {
        self.stats.live.reconciled.inc();
        self.record(row, lease, update, &fills)
            .await
            .map(Handled::recorded)
    }

    /// Looks a just-sent order up a few times (the lease renewed before
    /// each); what is still not known is recorded as in flight, for the
    /// reconciler.
    async fn learn(
        &self,
        row: orders::Model,
        lease: &Lease,
        exchange_order_id: Option<OrderId>,
    ) -> Result<Handled, LiveError> {
        let mut not_found = 0;
        let ids = [row.order_id.clone()];
        for pause in INLINE_LOOKUPS {
            if !pause.is_zero() {
                tokio::select! {
                    () = self.stop.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
                if self.store.renew_leases(lease, &ids).await? == 0 {
                    return Ok(Handled::hold());
                }
            }
            if self.limiter.paused_for().await?.is_some() {
                break;
            }
            match self.look_up(&row).await {
                Lookup::Found(found) => return self.record_found(&row, lease, *found).await,
                // Counted toward absence only once MEXC could no longer
                // accept the request.
                Lookup::Absent => not_found += i32::from(self.past_window(&row)),
                Lookup::Failed(err) if err.is_credentials_problem() => {
                    self.breaker.trip(err.to_string());
                    break;
                }
                Lookup::Failed(MexcError::RateLimited { retry_after, .. }) => {
                    self.limiter.pause(retry_after).await?;
                    break;
                }
                Lookup::Failed(_) => {}
            }
        }
        let poll_in = self.poll_in(&row);
        self.poll_later(&row, lease, poll_in, exchange_order_id, not_found)
            .await
            .map(Handled::recorded)
    }

    /// Records an order as still in flight, looked up again after
    /// `poll_in` (by any replica: the lease ends then).
    async fn poll_later(
        &self,
        row: &orders::Model,
        lease: &Lease,
        poll_in: Duration,
        exchange_order_id: Option<OrderId>,
        not_found: i32,
    ) -> Result<Option<orders::Model>, LiveError> {
        let update = LiveUpdate {
            exchange_order_id: exchange_order_id.map(|id| id.0),
            not_found,
            keep_lease: true,
            poll_in: Some(poll_in),
            ..LiveUpdate::default()
        };
        self.record(row, lease, update, &[]).await
    }

    /// Asks MEXC for an order and, when it has fills, for its trades.
    async fn look_up(&self, row: &orders::Model) -> Lookup {
        let (Some(symbol), Some(client_id)) = (&row.symbol, &row.client_order_id) else {
            return Lookup::Failed(MexcError::Unknown {
                reason: "the stored order has no symbol or client order id".into(),
            });
        };
        let state = match self.client.query_order(symbol, client_id).await {
            Ok(state) => state,
            Err(MexcError::UnknownOrder { .. }) => return Lookup::Absent,
            Err(err) => return Lookup::Failed(err),
        };
        self.describe(row, &state).await
    }

    /// The update (and fills) for an order MEXC describes as `state`: its
    /// trades read in full, however many pages they take.
    async fn describe(&self, row: &orders::Model, state: &OrderState) -> Lookup {
        let trades = if state.executed_qty.is_zero() {
            Vec::new()
        } else {
            match self
                .client
                .trades_of_order(
                    &state.symbol,
                    &state.order_id,
                    self.trade_window(row, state),
                )
                .await
            {
                Ok(trades) => trades,
                Err(err) => return Lookup::Failed(err),
            }
        };
        match update_for(row, state, &trades, self.poll_in(row)) {
            Ok(found) => Lookup::Found(Box::new(found)),
            Err(reason) => Lookup::Failed(MexcError::Unknown { reason }),
        }
    }

    /// Where an order's trades can be, in exchange time: from a minute
    /// before it was created (or sent) to a minute from now.
    fn trade_window(&self, row: &orders::Model, state: &OrderState) -> Window {
        const SLACK_MS: i64 = 60_000;
        let created = state
            .time
            .or(row.sent_at.map(|at| at.timestamp_millis()))
            .unwrap_or(row.created_at.timestamp_millis());
        Window::new(created - SLACK_MS, self.client.clock().now_ms() + SLACK_MS)
    }

    /// Exchange time since the order's request was stamped (zero before).
    fn since_sent(&self, row: &orders::Model) -> Duration {
        let now = self.client.clock().now_ms();
        row.sent_at
            .map(|at| Duration::from_millis((now - at.timestamp_millis()).max(0) as u64))
            .unwrap_or_default()
    }

    fn poll_in(&self, row: &orders::Model) -> Duration {
        poll_delay(self.since_sent(row), self.options.max_poll_interval)
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

/// The order a stored row stands for, for the pre-trade checks.
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

/// The exchange order a stored row stands for.
fn exchange_order(row: &orders::Model) -> Option<NewOrder> {
    Some(NewOrder::for_order(
        &order_from_row(row)?,
        row.client_order_id.clone()?,
    ))
}
