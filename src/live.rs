//! Real orders on MEXC, on a path of their own: a network call never
//! happens inside a database transaction, and no redelivery, timeout, crash
//! or restart sends an order twice.
//!
//! Per order ([`LiveDesk::handle`]): pre-trade checks (cached rules, no
//! request per order) → the intent committed (SUBMITTED, with this
//! replica's lease) → a grant from the fleet-wide request budget → the send
//! time committed → `POST /api/v3/order` → the answer sorted → the order
//! looked up (the answer to a new order carries no status) → recorded with
//! a compare-and-set on the lease. An order whose outcome is still unknown
//! is recorded as such; the [`reconcile`] task of every replica owns it
//! from then on: it looks it up until it is finished, cancels it after
//! `LIVE_ORDER_TTL_SECS`, sends it again only when verified absent, and
//! raises `UNKNOWN` after `LIVE_RESOLVE_DEADLINE_SECS`.

mod breaker;
pub mod reconcile;
mod state;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, RateLimiter};
use crate::domain::{Order, OrderStatus, OrderType, Side};
use crate::execution::mexc::{
    Limits, MexcClient, MexcError, NewOrder, OrderId, RuleCache, TickerPrices, check_order,
    client_order_id, mexc_symbol,
};
use crate::stats::Stats;
use crate::store::entity::orders;
use crate::store::{Lease, LiveClaim, LiveUpdate, NewOrder as NewRow, Store};

pub use breaker::{Breaker, BreakerState};
pub use state::{is_news, poll_delay, status_for, update_for};

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
    /// Beyond `timestamp + recvWindow`, how long "no such order" must keep
    /// being the answer before the order counts as absent (MEXC may say so
    /// for a few seconds after accepting one).
    pub absence_grace: Duration,
    /// "No such order" answers (spaced apart) that make an order absent.
    pub lookups_for_absence: i32,
    /// Sends of one order at most (the first included).
    pub max_send_attempts: i32,
    /// The longest pause between two lookups of an open order.
    pub max_poll_interval: Duration,
    /// `LIVE_CLIENT_ID_NAMESPACE`.
    pub namespace: String,
    /// `SYMBOL_ALLOWLIST`, `MAX_ORDER_NOTIONAL`.
    pub limits: Limits,
}

/// What became of one order on the live path.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The order's row as it now stands (its result, when announced).
    pub row: Option<orders::Model>,
    /// Leave the entry unacknowledged: another replica holds the order, or
    /// nothing could be sent and a later delivery must try again.
    pub hold: bool,
}

impl Handled {
    fn done(row: orders::Model) -> Self {
        Handled {
            row: Some(row),
            hold: false,
        }
    }

    fn hold() -> Self {
        Handled {
            row: None,
            hold: true,
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

/// What a lookup found.
enum Lookup {
    Found(Box<(LiveUpdate, Vec<crate::store::NewTrade>)>),
    Absent,
    Failed(MexcError),
}

pub struct LiveDesk {
    client: MexcClient,
    store: Store,
    limiter: RateLimiter,
    rules: RuleCache,
    prices: TickerPrices,
    lease: Lease,
    options: LiveOptions,
    breaker: Breaker,
    stats: Arc<Stats>,
    stop: CancellationToken,
}

impl LiveDesk {
    pub fn new(
        client: MexcClient,
        store: Store,
        limiter: RateLimiter,
        owner: String,
        options: LiveOptions,
        stats: Arc<Stats>,
        stop: CancellationToken,
    ) -> Self {
        LiveDesk {
            rules: RuleCache::new(client.clone()),
            prices: TickerPrices::new(client.clone()),
            lease: Lease {
                owner,
                length: options.lease,
            },
            breaker: Breaker::new(BREAKER_COOLDOWN, stats.live.breaker_open.clone()),
            client,
            store,
            limiter,
            options,
            stats,
            stop,
        }
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Takes one order (its row already stored, not terminal) to the
    /// exchange, or to its stored outcome.
    #[tracing::instrument(name = "live.order", skip_all, fields(order_id = %order.order_id), err(level = "debug"))]
    pub async fn handle(
        &self,
        order: &Order,
        row: &NewRow,
        stored: &orders::Model,
    ) -> Result<Handled, LiveError> {
        if self.breaker.blocks() {
            return Ok(Handled::hold());
        }
        if stored.status == OrderStatus::Pending.as_str() {
            match self.pre_trade(order).await {
                Ok(None) => {}
                Ok(Some(reason)) => {
                    tracing::info!(order_id = %order.order_id, reason = %reason, "live order refused before sending");
                    return Ok(
                        match self.store.reject_pending(&order.order_id, &reason).await? {
                            Some(row) => Handled::done(row),
                            None => Handled::hold(),
                        },
                    );
                }
                Err(err) => {
                    tracing::warn!(order_id = %order.order_id, error = %err, "MEXC's rules cannot be read; the order waits");
                    return Ok(Handled::hold());
                }
            }
        }
        let client_id = client_order_id(&self.options.namespace, &order.order_id);
        match self.store.claim_live(row, &client_id, &self.lease).await? {
            LiveClaim::Done(row) => Ok(Handled::done(row)),
            LiveClaim::Held(_) => Ok(Handled::hold()),
            LiveClaim::Send(row) => self.send(row).await,
            LiveClaim::LookUp(row) => self.take_over(row).await,
        }
    }

    /// The reason an order must not be sent, from MEXC's rules and the
    /// service's limits; `Err` when the rules cannot be read.
    async fn pre_trade(&self, order: &Order) -> Result<Option<String>, MexcError> {
        let rules = self.rules.rules_for(&order.symbol).await?;
        let reference = match (order.order_type, order.price) {
            (OrderType::Market, None) => self.prices.price(&order.symbol).await.ok(),
            _ => None,
        };
        Ok(
            check_order(order, rules.as_ref(), &self.options.limits, reference)
                .err()
                .map(|failure| failure.to_string()),
        )
    }

    /// A SUBMITTED order this replica just took over from an expired
    /// lease: sent by no one yet (its send time was never committed), or
    /// looked up first.
    async fn take_over(&self, row: orders::Model) -> Result<Handled, LiveError> {
        if row.sent_at.is_none() && row.status == OrderStatus::Submitted.as_str() {
            return self.send(row).await;
        }
        let (row, _) = self.reconcile(row).await?;
        Ok(Handled::done(row))
    }

    /// Sends an order this replica holds (a first send, or a re-send after
    /// it was verified absent) and learns what became of it.
    async fn send(&self, row: orders::Model) -> Result<Handled, LiveError> {
        let Some(order) = exchange_order(&row) else {
            let reason = "the stored order cannot be sent (its columns are incomplete)";
            return self.finish(&row, OrderStatus::Error, reason).await;
        };
        for attempt in 0..2 {
            if !self.wait_for_budget(&row.order_id).await? {
                return Ok(Handled::hold());
            }
            let stamped = match self.client.stamp().await {
                Ok(stamped) => stamped,
                Err(err) => return self.unsent(&row, &err).await,
            };
            let Some(sending) = self
                .store
                .mark_sending(&row.order_id, &self.lease, stamped)
                .await?
            else {
                tracing::warn!(order_id = %row.order_id, "lease lost before sending; nothing sent");
                return Ok(Handled::hold());
            };
            self.stats.live.sent.inc();
            let answer = self.client.new_order_stamped(&order, stamped).await;
            match answer {
                Ok(ack) => {
                    self.stats.live.accepted.inc();
                    self.breaker.close();
                    return self.learn(sending, Some(ack.order_id)).await;
                }
                Err(MexcError::TimeOutsideWindow { .. }) if attempt == 0 => {
                    tracing::warn!(order_id = %row.order_id, "timestamp outside recvWindow; clock measured again, retrying once");
                }
                Err(err @ MexcError::TimeOutsideWindow { .. }) => {
                    let reason = format!("not placed: {err} (after a clock resync and a retry)");
                    return self.finish(&sending, OrderStatus::Error, &reason).await;
                }
                Err(err @ MexcError::Rejected { .. }) => {
                    let code = err.code().unwrap_or_default().to_string();
                    self.stats.live.rejected.with_label_values(&[&code]).inc();
                    self.breaker.close();
                    self.rules.forget(&order.symbol).await;
                    let reason = err.to_string();
                    return self.finish(&sending, OrderStatus::Rejected, &reason).await;
                }
                Err(err) if err.is_credentials_problem() => {
                    self.breaker.trip(err.to_string());
                    return self.unsent(&sending, &err).await;
                }
                Err(MexcError::ClockUnavailable { reason }) => {
                    let err = MexcError::ClockUnavailable { reason };
                    return self.unsent(&sending, &err).await;
                }
                Err(MexcError::RateLimited { retry_after, .. }) => {
                    // Not applied, but only a lookup may say what to do next.
                    self.limiter.pause(retry_after).await?;
                    self.stats.live.rate_limit_waits.inc();
                    return self.learn(sending, None).await;
                }
                Err(err) => {
                    tracing::warn!(order_id = %row.order_id, error = %err, "outcome of the order request unknown; looking it up");
                    self.stats.live.unknown_outcomes.inc();
                    return self.learn(sending, None).await;
                }
            }
        }
        unreachable!("the second attempt always returns")
    }

    /// Waits for a grant of the fleet-wide budget, keeping the lease on
    /// `order_id` fresh meanwhile; false when stopping.
    async fn wait_for_budget(&self, order_id: &str) -> Result<bool, LiveError> {
        let ids = [order_id.to_owned()];
        let mut waited = false;
        loop {
            let Some(wait) = self.limiter.try_take().await? else {
                return Ok(true);
            };
            if !waited {
                self.stats.live.rate_limit_waits.inc();
                waited = true;
            }
            self.store.renew_leases(&self.lease, &ids).await?;
            tokio::select! {
                () = self.stop.cancelled() => return Ok(false),
                () = tokio::time::sleep(wait.min(self.options.lease / 3)) => {}
            }
        }
    }

    /// MEXC certainly did not apply the request: the order goes back to
    /// PENDING and its entry waits for a later delivery.
    async fn unsent(&self, row: &orders::Model, err: &MexcError) -> Result<Handled, LiveError> {
        tracing::warn!(order_id = %row.order_id, error = %err, "order not sent; it waits for a later delivery");
        self.store
            .release_unsent(&row.order_id, &self.lease, &format!("not sent yet: {err}"))
            .await?;
        Ok(Handled::hold())
    }

    /// Records a terminal outcome decided here (nothing at the exchange).
    async fn finish(
        &self,
        row: &orders::Model,
        status: OrderStatus,
        reason: &str,
    ) -> Result<Handled, LiveError> {
        let update = LiveUpdate {
            status: Some(status),
            reject_reason: Some(reason.to_owned()),
            ..LiveUpdate::default()
        };
        let recorded = self
            .store
            .record_live(&row.order_id, &self.lease, &update, &[])
            .await?;
        Ok(match recorded {
            Some(row) => Handled::done(row),
            None => Handled::hold(),
        })
    }

    /// Looks a just-sent order up a few times; what is still not known is
    /// recorded as in flight, for the reconciler.
    async fn learn(
        &self,
        row: orders::Model,
        exchange_order_id: Option<OrderId>,
    ) -> Result<Handled, LiveError> {
        let mut lookups = 0;
        for pause in INLINE_LOOKUPS {
            if !pause.is_zero() {
                tokio::select! {
                    () = self.stop.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            match self.look_up(&row).await {
                Lookup::Found(found) => {
                    let (update, fills) = *found;
                    self.stats.live.reconciled.inc();
                    let recorded = self
                        .store
                        .record_live(&row.order_id, &self.lease, &update, &fills)
                        .await?;
                    return Ok(match recorded {
                        Some(row) => Handled::done(row),
                        None => Handled::hold(),
                    });
                }
                Lookup::Absent => lookups += 1,
                Lookup::Failed(err) if err.is_credentials_problem() => {
                    self.breaker.trip(err.to_string());
                    break;
                }
                Lookup::Failed(_) => {}
            }
        }
        let update = LiveUpdate {
            exchange_order_id: exchange_order_id.map(|id| id.0),
            not_found: lookups,
            keep_lease: true,
            poll_in: Some(self.poll_in(&row)),
            ..LiveUpdate::default()
        };
        let recorded = self
            .store
            .record_live(&row.order_id, &self.lease, &update, &[])
            .await?;
        Ok(match recorded {
            Some(row) => Handled::done(row),
            None => Handled::hold(),
        })
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

    /// The update (and fills) for an order MEXC describes as `state`.
    async fn describe(
        &self,
        row: &orders::Model,
        state: &crate::execution::mexc::OrderState,
    ) -> Lookup {
        let trades = if state.executed_qty.is_zero() {
            Vec::new()
        } else {
            match self.client.my_trades(&state.symbol, &state.order_id).await {
                Ok(trades) => trades,
                Err(err) => return Lookup::Failed(err),
            }
        };
        match update_for(row, state, &trades, self.poll_in(row)) {
            Ok(found) => Lookup::Found(Box::new(found)),
            Err(reason) => Lookup::Failed(MexcError::Unknown { reason }),
        }
    }

    fn poll_in(&self, row: &orders::Model) -> Duration {
        let since_sent = row
            .sent_at
            .map(|at| (Utc::now() - at.to_utc()).to_std().unwrap_or_default())
            .unwrap_or_default();
        poll_delay(since_sent, self.options.max_poll_interval)
    }

    /// One look at an order in flight whose lease this replica holds:
    /// records what MEXC says, cancels it past its TTL, re-sends it only
    /// when verified absent, marks it UNKNOWN past the resolve deadline.
    /// Returns the row as it now stands and whether a strategy hears of it.
    pub async fn reconcile(&self, row: orders::Model) -> Result<(orders::Model, bool), LiveError> {
        let before = row.clone();
        let lookup = self.look_up(&row).await;
        let after = match lookup {
            Lookup::Found(found) => {
                let (update, fills) = *found;
                self.stats.live.reconciled.inc();
                self.breaker.close();
                let open = update.keep_lease;
                let recorded = self
                    .store
                    .record_live(&row.order_id, &self.lease, &update, &fills)
                    .await?;
                match recorded {
                    Some(now) if open && self.past_ttl(&now) => self.cancel(now).await?,
                    other => other,
                }
            }
            Lookup::Absent => self.absent(row).await?,
            Lookup::Failed(err) => {
                if err.is_credentials_problem() {
                    self.breaker.trip(err.to_string());
                }
                if let MexcError::RateLimited { retry_after, .. } = &err {
                    self.limiter.pause(*retry_after).await?;
                }
                self.unresolved(row, &err).await?
            }
        };
        let after = after.unwrap_or(before.clone());
        let news = is_news(&before, &after);
        Ok((after, news))
    }

    fn past_ttl(&self, row: &orders::Model) -> bool {
        (Utc::now() - row.created_at.to_utc())
            .to_std()
            .is_ok_and(|age| age > self.options.order_ttl)
    }

    /// Cancels an open order past `LIVE_ORDER_TTL_SECS` and records what it
    /// ended as.
    async fn cancel(&self, row: orders::Model) -> Result<Option<orders::Model>, LiveError> {
        let (Some(symbol), Some(client_id)) = (row.symbol.clone(), row.client_order_id.clone())
        else {
            return Ok(Some(row));
        };
        if !self.wait_for_budget(&row.order_id).await? {
            return Ok(Some(row));
        }
        tracing::info!(order_id = %row.order_id, ttl_secs = self.options.order_ttl.as_secs(), "cancelling an open order past its TTL");
        self.stats.live.cancels.inc();
        let state = match self.client.cancel_order(&symbol, &client_id).await {
            Ok(state) => state,
            // Filled or cancelled meanwhile, or not cancellable now: look again.
            Err(err) => {
                tracing::warn!(order_id = %row.order_id, error = %err, "cancel refused; the order is looked up again");
                match self.client.query_order(&symbol, &client_id).await {
                    Ok(state) => state,
                    Err(_) => return Ok(Some(row)),
                }
            }
        };
        let Lookup::Found(found) = self.describe(&row, &state).await else {
            return Ok(Some(row));
        };
        let (update, fills) = *found;
        Ok(self
            .store
            .record_live(&row.order_id, &self.lease, &update, &fills)
            .await?)
    }

    /// MEXC said it knows no such order. Absent only when that is still the
    /// answer well past the last moment it could have accepted the request,
    /// several times over; then it is sent again (bounded, and never an
    /// UNKNOWN or too old order) or REJECTED as not placed.
    async fn absent(&self, row: orders::Model) -> Result<Option<orders::Model>, LiveError> {
        let not_found = row.lookups + 1;
        let acceptable_until = row.sent_at.map(|at| {
            at.timestamp_millis()
                + self.client.recv_window_ms() as i64
                + self.options.absence_grace.as_millis() as i64
        });
        let past_window = acceptable_until.is_none_or(|until| self.client.clock().now_ms() > until);
        let filled = row.filled_quantity.is_some_and(|q| !q.is_zero());
        if !past_window || not_found < self.options.lookups_for_absence || filled {
            return self.poll_again(&row, 1, None).await;
        }
        let young = self.options.max_order_age.is_none_or(|max| {
            (Utc::now() - row.created_at.to_utc())
                .to_std()
                .is_ok_and(|age| age < max)
        });
        let resend = row.status == OrderStatus::Submitted.as_str()
            && row.send_attempts < self.options.max_send_attempts
            && young
            && !self.breaker.blocks();
        if resend {
            tracing::warn!(order_id = %row.order_id, lookups = not_found, attempts = row.send_attempts, "order verified absent at MEXC; sending it again");
            self.stats.live.resends.inc();
            return Ok(self.send(row).await?.row);
        }
        let reason = format!(
            "not placed (verified absent): MEXC knew no such order after {not_found} lookups past its recvWindow; {} sends",
            row.send_attempts
        );
        tracing::warn!(order_id = %row.order_id, reason = %reason, "live order rejected");
        Ok(self.finish(&row, OrderStatus::Rejected, &reason).await?.row)
    }

    /// Nothing learnt this time; past the resolve deadline the order
    /// becomes UNKNOWN (once), an operator alert.
    async fn unresolved(
        &self,
        row: orders::Model,
        err: &MexcError,
    ) -> Result<Option<orders::Model>, LiveError> {
        let since = row.sent_at.unwrap_or(row.created_at);
        let overdue = (Utc::now() - since.to_utc())
            .to_std()
            .is_ok_and(|age| age > self.options.resolve_deadline);
        let unknown = overdue
            && row.status != OrderStatus::Unknown.as_str()
            && row.status != OrderStatus::PartiallyFilled.as_str();
        if unknown {
            self.stats.live.unknown.inc();
            tracing::error!(
                order_id = %row.order_id,
                client_order_id = ?row.client_order_id,
                error = %err,
                deadline_secs = self.options.resolve_deadline.as_secs(),
                "live order UNKNOWN: its outcome could not be learnt in time; it is still polled and never re-sent"
            );
            return self
                .poll_again(&row, 0, Some((OrderStatus::Unknown, err.to_string())))
                .await;
        }
        tracing::debug!(order_id = %row.order_id, error = %err, "live order not resolved yet");
        self.poll_again(&row, 0, None).await
    }

    async fn poll_again(
        &self,
        row: &orders::Model,
        not_found: i32,
        status: Option<(OrderStatus, String)>,
    ) -> Result<Option<orders::Model>, LiveError> {
        let (status, reason) = status.unzip();
        let update = LiveUpdate {
            status,
            reject_reason: reason,
            not_found,
            keep_lease: true,
            poll_in: Some(self.poll_in(row)),
            ..LiveUpdate::default()
        };
        Ok(self
            .store
            .record_live(&row.order_id, &self.lease, &update, &[])
            .await?)
    }
}

/// The exchange order a stored row stands for.
fn exchange_order(row: &orders::Model) -> Option<NewOrder> {
    Some(NewOrder {
        symbol: mexc_symbol(row.symbol.as_deref()?),
        side: Side::parse(row.side.as_deref()?)?,
        order_type: OrderType::parse(row.order_type.as_deref().unwrap_or("MARKET"))?,
        quantity: row.quantity?,
        price: row.price,
        client_order_id: row.client_order_id.clone()?,
    })
}
