//! What becomes of an order already sent: each look at it, and the
//! decisions a look leads to. It is recorded as MEXC describes it; an open
//! one is cancelled past its TTL or under a halt, even when its fills
//! cannot be read; one MEXC denies stays in flight until independent
//! searches (`allOrders`, `myTrades`) past the absence window agree it is
//! not there, and is then reported not placed and watched, or sent again
//! only where a deployment opted in; one whose outcome cannot be learnt by
//! the resolve deadline is UNKNOWN (an operator alert, still looked up).

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;

use super::{LiveDesk, LiveError, Lookup, Origin, is_news, never_sent, order_from_row, poll_delay};
use crate::domain::OrderStatus;
use crate::domain::lifecycle::Observation;
use crate::execution::mexc::{MexcError, OrderId, OrderState, Window};
use crate::store::entity::orders;
use crate::store::{Lease, LiveUpdate, NewTrade};

/// Orders of unexplained trades looked up one by one in a search, at most.
const MAX_UNEXPLAINED: usize = 5;
/// The longest pause between two looks at an order reported not placed.
const WATCH_POLL_CEILING: Duration = Duration::from_secs(60);

/// What the searches of an account's history found of an order.
enum Search {
    /// The order, as `allOrders` (or a lookup by its id) describes it.
    Found(Box<OrderState>),
    /// Nothing, and nothing unexplained: what was searched.
    Nothing(String),
    /// The searches could not tell.
    Inconclusive(String),
}

impl LiveDesk {
    /// One look at an order whose lease `lease` holds: announces a finished
    /// one whose result may never have gone out, looks for one reported
    /// not placed, records what MEXC says of one in flight, cancels it past
    /// its TTL or under a halt, and marks it UNKNOWN past the resolve
    /// deadline. Returns the row as it now stands and whether a strategy
    /// hears of it.
    pub async fn reconcile(
        &self,
        row: orders::Model,
        lease: &Lease,
    ) -> Result<(orders::Model, bool), LiveError> {
        if row.is_terminal() {
            if watched(&row) {
                return self.watch(row, lease).await;
            }
            return Ok((row, true));
        }
        let before = row.clone();
        if let Some(pause) = self.limiter.paused_for().await? {
            // MEXC asked for quiet: nothing is asked of it before then.
            let after = self.poll_later(&row, lease, pause, None, 0).await?;
            return Ok((after.unwrap_or(before), false));
        }
        let after = if never_sent(&row) {
            // Claimed, never sent (its holder died before stamping it).
            self.first_send(row, lease, Origin::Reconciler, None)
                .await?
                .row
        } else {
            let (recorded, answered) = match self.look_up(&row).await {
                Lookup::Found(found) => {
                    self.breaker.close();
                    (self.record_found(&row, lease, *found).await?.row, true)
                }
                Lookup::Absent => (self.absent(row, lease).await?, false),
                Lookup::Failed(err) => {
                    let refused = err.is_credentials_problem()
                        || matches!(err, MexcError::RateLimited { .. });
                    if err.is_credentials_problem() {
                        self.breaker.trip(err.to_string());
                    }
                    if let MexcError::RateLimited { retry_after, .. } = &err {
                        self.limiter.pause(*retry_after).await?;
                    }
                    let recorded = self.unresolved(&row, lease, &err.to_string(), 0).await?;
                    (recorded, !refused)
                }
            };
            // The TTL and halts apply to an open order MEXC answers for,
            // even when its fills cannot be read in full.
            match recorded {
                Some(now) if answered && !now.is_terminal() => match self.cancel_reason(&now) {
                    Some(why) => self.cancel(now, lease, &why).await?,
                    None => Some(now),
                },
                other => other,
            }
        };
        let after = after.unwrap_or(before.clone());
        let news = is_news(&before, &after);
        Ok((after, news))
    }

    /// Why an open order must be cancelled now: past its TTL, or covered
    /// by a trading halt (with `CANCEL_OPEN_ORDERS_ON_HALT`).
    fn cancel_reason(&self, row: &orders::Model) -> Option<String> {
        let age = (Utc::now() - row.created_at.to_utc())
            .to_std()
            .unwrap_or_default();
        if age > self.options.order_ttl {
            return Some(format!(
                "open longer than LIVE_ORDER_TTL_SECS={}",
                self.options.order_ttl.as_secs()
            ));
        }
        if !self.options.cancel_on_halt {
            return None;
        }
        self.halt_covering(row)
    }

    /// Cancels an open order (`why`: its TTL, a halt) and records what it
    /// ended as.
    async fn cancel(
        &self,
        row: orders::Model,
        lease: &Lease,
        why: &str,
    ) -> Result<Option<orders::Model>, LiveError> {
        let (Some(symbol), Some(client_id)) = (row.symbol.clone(), row.client_order_id.clone())
        else {
            return Ok(Some(row));
        };
        // The last record shortened the lease to the next poll: the cancel
        // and its lookup must fit in it.
        if self
            .store
            .renew_leases(lease, std::slice::from_ref(&row.order_id))
            .await?
            == 0
            || !self.wait_for_budget(&row.order_id, lease).await?
        {
            return Ok(Some(row));
        }
        tracing::info!(order_id = %row.order_id, reason = %why, "cancelling an open order");
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
        let (mut update, fills) = *found;
        if update.observation == Some(Observation::Reported(OrderStatus::Canceled)) {
            update.reject_reason = Some(format!("cancelled: {why}"));
        }
        Ok(self.record_found(&row, lease, (update, fills)).await?.row)
    }

    /// MEXC said it knows no such order. No number of such answers proves
    /// anything: MEXC denies orders it accepted for tens of seconds. Only
    /// past the absence window, for an order MEXC never acknowledged nor
    /// showed, are its order list and its trades searched; when both agree
    /// it is not there it is reported not placed (or sent again, where the
    /// deployment opted in).
    async fn absent(
        &self,
        row: orders::Model,
        lease: &Lease,
    ) -> Result<Option<orders::Model>, LiveError> {
        let seen = row.exchange_order_id.is_some()
            || row.exchange_status.is_some()
            || row.filled_quantity.is_some_and(|q| !q.is_zero());
        if seen || !self.past_window(&row) || self.breaker.blocks() {
            let why = "MEXC denies the order (it may still appear)";
            return self.unresolved(&row, lease, why, 1).await;
        }
        match self.search(&row).await {
            Search::Found(state) => match self.describe(&row, &state).await {
                Lookup::Found(found) => {
                    tracing::warn!(order_id = %row.order_id, "an order MEXC denied by its client id was found in its order list");
                    Ok(self.record_found(&row, lease, *found).await?.row)
                }
                Lookup::Failed(err) => self.unresolved(&row, lease, &err.to_string(), 1).await,
                Lookup::Absent => self.unresolved(&row, lease, "found, then not", 1).await,
            },
            Search::Inconclusive(why) => {
                let why = format!("MEXC denies the order and the searches cannot tell: {why}");
                self.unresolved(&row, lease, &why, 1).await
            }
            Search::Nothing(searched) => self.not_placed(row, lease, &searched).await,
        }
    }

    /// Searches the account's orders and trades on the order's symbol,
    /// from before it was first sent until now, for any sign of it.
    async fn search(&self, row: &orders::Model) -> Search {
        let (Some(symbol), Some(client_id)) = (&row.symbol, &row.client_order_id) else {
            return Search::Inconclusive(
                "the stored order has no symbol or client order id".into(),
            );
        };
        const SLACK_MS: i64 = 60_000;
        let recv_window = self.client.recv_window_ms() as i64;
        let since = row
            .created_at
            .timestamp_millis()
            .min(row.sent_at.map_or(i64::MAX, |at| at.timestamp_millis()));
        let window = Window::new(
            since - recv_window - SLACK_MS,
            self.client.clock().now_ms() + 1_000,
        );
        let ours = |state: &OrderState| {
            state.client_order_id.as_deref() == Some(client_id)
                || state.orig_client_order_id.as_deref() == Some(client_id)
        };
        let orders = match self.client.orders_between(symbol, window).await {
            Ok(orders) => orders,
            Err(err) => return Search::Inconclusive(format!("allOrders: {err}")),
        };
        if let Some(state) = orders.iter().find(|state| ours(state)) {
            return Search::Found(Box::new(state.clone()));
        }
        let trades = match self.client.trades_between(symbol, window).await {
            Ok(trades) => trades,
            Err(err) => return Search::Inconclusive(format!("myTrades: {err}")),
        };
        let listed: HashSet<&OrderId> = orders.iter().map(|state| &state.order_id).collect();
        let mut unexplained: Vec<&OrderId> = Vec::new();
        for trade in &trades {
            let named = trade.client_order_id.as_deref() == Some(client_id.as_str());
            if (named || !listed.contains(&trade.order_id))
                && !unexplained.contains(&&trade.order_id)
            {
                unexplained.push(&trade.order_id);
            }
        }
        if unexplained.len() > MAX_UNEXPLAINED {
            return Search::Inconclusive(format!(
                "trades of {} orders allOrders does not list",
                unexplained.len()
            ));
        }
        for order_id in unexplained {
            match self.client.query_order_by_id(symbol, order_id).await {
                Ok(state) if ours(&state) => return Search::Found(Box::new(state)),
                Ok(_) => {}
                Err(err) => {
                    return Search::Inconclusive(format!("the order {order_id} of a trade: {err}"));
                }
            }
        }
        Search::Nothing(format!(
            "{} orders and {} trades on {symbol} searched from {} to {} ms",
            orders.len(),
            trades.len(),
            window.from_ms,
            window.to_ms
        ))
    }

    /// The searches agree the order is not at MEXC: it is sent again
    /// (bounded, never an UNKNOWN, halted or too old order) where the
    /// deployment opted in, else reported not placed and watched.
    async fn not_placed(
        &self,
        row: orders::Model,
        lease: &Lease,
        searched: &str,
    ) -> Result<Option<orders::Model>, LiveError> {
        let young = self.options.max_order_age.is_none_or(|max| {
            let issued = row.order_timestamp.unwrap_or(row.created_at);
            (Utc::now() - issued.to_utc())
                .to_std()
                .is_ok_and(|age| age < max)
        });
        let blocked = self.blocked_reason(&row);
        let resend = self.options.resend_not_placed
            && row.status == OrderStatus::Submitted
            && row.send_attempts < self.options.max_send_attempts
            && young
            && blocked.is_none();
        if resend {
            tracing::warn!(order_id = %row.order_id, attempts = row.send_attempts, searched, "order not found at MEXC; sending it again (LIVE_RESEND_NOT_PLACED)");
            self.stats.live.resends.inc();
            let Some(order) = order_from_row(&row) else {
                return Ok(self.unsendable(&row, lease).await?.row);
            };
            return Ok(self.send(row, lease, Origin::Reconciler, &order).await?.row);
        }
        let mut reason = format!(
            "not placed: MEXC denied the order past its recvWindow and LIVE_ABSENCE_WINDOW_SECS={}, and its order list and trades do not show it ({searched}); {} sends; watched for {} s",
            self.options.absence_window.as_secs(),
            row.send_attempts,
            self.options.watch_not_placed.as_secs()
        );
        if let Some(blocked) = blocked {
            reason.push_str(&format!("; not sent again: {blocked}"));
        }
        tracing::warn!(order_id = %row.order_id, reason = %reason, "live order reported not placed");
        self.stats.live.not_placed.inc();
        Ok(self
            .finish(&row, lease, Observation::NotPlaced, &reason)
            .await?
            .row)
    }

    /// One look for an order reported not placed. Should it be there after
    /// all, its real state and fills are recorded (a late appearance: an
    /// alert, and a result that corrects the earlier one).
    async fn watch(
        &self,
        row: orders::Model,
        lease: &Lease,
    ) -> Result<(orders::Model, bool), LiveError> {
        let next_look = poll_delay(self.since_sent(&row), WATCH_POLL_CEILING);
        let quiet = self.breaker.blocks() || self.limiter.paused_for().await?.is_some();
        let found = match quiet {
            true => None,
            false => self.look_for(&row).await?,
        };
        if let Some(found) = found {
            let (mut update, fills) = found;
            update.note = Some("found at MEXC after it was reported not placed".into());
            self.stats.live.late_appearances.inc();
            tracing::error!(
                order_id = %row.order_id,
                client_order_id = ?row.client_order_id,
                exchange_status = ?update.exchange_status,
                filled = ?update.filled_quantity,
                "LATE APPEARANCE: an order reported not placed is at MEXC; its fills are recorded and a correcting result announced"
            );
            let after = self.record_found(&row, lease, (update, fills)).await?.row;
            return Ok((after.unwrap_or(row), true));
        }
        let after = self.poll_later(&row, lease, next_look, None, 0).await?;
        Ok((after.unwrap_or(row), true))
    }

    /// An order reported not placed, looked for as it was found absent: by
    /// its client order id, and when MEXC denies it, in the account's
    /// orders and trades (a denial by id is what reported it not placed).
    async fn look_for(
        &self,
        row: &orders::Model,
    ) -> Result<Option<(LiveUpdate, Vec<NewTrade>)>, LiveError> {
        let state = match self.look_up(row).await {
            Lookup::Found(found) => return Ok(Some(*found)),
            Lookup::Failed(err) => {
                self.take_in_refusal(&err, row.symbol.as_deref().unwrap_or_default())
                    .await?;
                return Ok(None);
            }
            Lookup::Absent => match self.search(row).await {
                Search::Found(state) => state,
                Search::Nothing(_) | Search::Inconclusive(_) => return Ok(None),
            },
        };
        Ok(match self.describe(row, &state).await {
            Lookup::Found(found) => Some(*found),
            Lookup::Absent | Lookup::Failed(_) => None,
        })
    }

    /// Nothing learnt this time; an order in flight that MEXC has not
    /// answered for by the resolve deadline becomes UNKNOWN (once), an
    /// operator alert, and is still looked up.
    async fn unresolved(
        &self,
        row: &orders::Model,
        lease: &Lease,
        why: &str,
        not_found: i32,
    ) -> Result<Option<orders::Model>, LiveError> {
        let overdue = self.unanswered_for(row) > self.options.resolve_deadline;
        let unknown = overdue
            && matches!(
                row.status,
                OrderStatus::Submitted | OrderStatus::PartiallyFilled
            );
        let mut update = LiveUpdate {
            not_found,
            note: Some(why.to_owned()),
            keep_lease: true,
            poll_in: Some(self.poll_in(row)),
            ..LiveUpdate::default()
        };
        if unknown {
            self.stats.live.unknown.inc();
            tracing::error!(
                order_id = %row.order_id,
                client_order_id = ?row.client_order_id,
                status = %row.status,
                reason = %why,
                deadline_secs = self.options.resolve_deadline.as_secs(),
                "live order UNKNOWN: its outcome could not be learnt in time; it is still looked up and never sent again"
            );
            update.observation = Some(Observation::Overdue);
            update.reject_reason = Some(format!("outcome unknown: {why}"));
        } else {
            tracing::debug!(order_id = %row.order_id, reason = %why, "live order not resolved yet");
        }
        self.record(row, lease, update, &[]).await
    }
}

/// Whether an order reported not placed is still being looked for.
fn watched(row: &orders::Model) -> bool {
    row.status == OrderStatus::Rejected
        && row
            .watch_until
            .is_some_and(|until| until.to_utc() > Utc::now())
}
