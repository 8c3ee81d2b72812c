//! What becomes of an order already sent: each look at it, and the
//! decisions a look leads to (record, cancel, send again only when verified
//! absent, UNKNOWN past the deadline).

use chrono::Utc;

use super::{LiveDesk, LiveError, Lookup, Origin, is_news, never_sent};
use crate::domain::OrderStatus;
use crate::execution::mexc::MexcError;
use crate::store::entity::orders;
use crate::store::{Lease, LiveUpdate};

impl LiveDesk {
    /// One look at an order whose lease `lease` holds: announces a finished
    /// one whose result may never have gone out, records what MEXC says,
    /// cancels it past its TTL, re-sends it only when verified absent, and
    /// marks it UNKNOWN past the resolve deadline. Returns the row as it
    /// now stands and whether a strategy hears of it.
    pub async fn reconcile(
        &self,
        row: orders::Model,
        lease: &Lease,
    ) -> Result<(orders::Model, bool), LiveError> {
        if row.is_terminal() {
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
            self.first_send(row, lease, Origin::Reconciler).await?.row
        } else {
            match self.look_up(&row).await {
                Lookup::Found(found) => {
                    self.breaker.close();
                    let open = found.0.keep_lease;
                    let recorded = self.record_found(&row, lease, *found).await?.row;
                    match recorded {
                        Some(now) if open => match self.cancel_reason(&now) {
                            Some(why) => self.cancel(now, lease, &why).await?,
                            None => Some(now),
                        },
                        other => other,
                    }
                }
                Lookup::Absent => self.absent(row, lease).await?,
                Lookup::Failed(err) => {
                    if err.is_credentials_problem() {
                        self.breaker.trip(err.to_string());
                    }
                    if let MexcError::RateLimited { retry_after, .. } = &err {
                        self.limiter.pause(*retry_after).await?;
                    }
                    self.unresolved(&row, lease, &err.to_string(), 0).await?
                }
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
        if update.status == Some(OrderStatus::Canceled) {
            update.reject_reason = Some(format!("cancelled: {why}"));
        }
        Ok(self.record_found(&row, lease, (update, fills)).await?.row)
    }

    /// MEXC said it knows no such order. Absent only when that answer came
    /// several times after the last moment it could have accepted the
    /// request, for an order MEXC never acknowledged nor showed; then it is
    /// sent again (bounded, and never an UNKNOWN or too old order) or
    /// REJECTED as not placed.
    async fn absent(
        &self,
        row: orders::Model,
        lease: &Lease,
    ) -> Result<Option<orders::Model>, LiveError> {
        let past = self.past_window(&row);
        let not_found = row.lookups + i32::from(past);
        let seen = row.exchange_order_id.is_some()
            || row.exchange_status.is_some()
            || row.filled_quantity.is_some_and(|q| !q.is_zero());
        if seen || !past || not_found < self.options.lookups_for_absence || self.breaker.blocks() {
            let reason = "MEXC knows no such order (yet)";
            return self.unresolved(&row, lease, reason, i32::from(past)).await;
        }
        let young = self.options.max_order_age.is_none_or(|max| {
            let issued = row.order_timestamp.unwrap_or(row.created_at);
            (Utc::now() - issued.to_utc())
                .to_std()
                .is_ok_and(|age| age < max)
        });
        let blocked = self.blocked_reason(&row);
        let resend = row.status == OrderStatus::Submitted.as_str()
            && row.send_attempts < self.options.max_send_attempts
            && young
            && blocked.is_none();
        if resend {
            tracing::warn!(order_id = %row.order_id, lookups = not_found, attempts = row.send_attempts, "order verified absent at MEXC; sending it again");
            self.stats.live.resends.inc();
            return Ok(self.send(row, lease, Origin::Reconciler).await?.row);
        }
        let mut reason = format!(
            "not placed (verified absent): MEXC knew no such order after {not_found} lookups past its recvWindow; {} sends",
            row.send_attempts
        );
        if let Some(blocked) = blocked {
            reason.push_str(&format!("; not sent again: {blocked}"));
        }
        tracing::warn!(order_id = %row.order_id, reason = %reason, "live order rejected");
        Ok(self
            .finish(&row, lease, OrderStatus::Rejected, &reason)
            .await?
            .row)
    }

    /// Nothing learnt this time; past the resolve deadline the order
    /// becomes UNKNOWN (once), an operator alert.
    async fn unresolved(
        &self,
        row: &orders::Model,
        lease: &Lease,
        why: &str,
        not_found: i32,
    ) -> Result<Option<orders::Model>, LiveError> {
        let overdue = self.since_sent(row) > self.options.resolve_deadline;
        let unknown = overdue
            && row.status != OrderStatus::Unknown.as_str()
            && row.status != OrderStatus::PartiallyFilled.as_str();
        let mut update = LiveUpdate {
            not_found,
            keep_lease: true,
            poll_in: Some(self.poll_in(row)),
            ..LiveUpdate::default()
        };
        if unknown {
            self.stats.live.unknown.inc();
            tracing::error!(
                order_id = %row.order_id,
                client_order_id = ?row.client_order_id,
                reason = %why,
                deadline_secs = self.options.resolve_deadline.as_secs(),
                "live order UNKNOWN: its outcome could not be learnt in time; it is still polled and never re-sent"
            );
            update.status = Some(OrderStatus::Unknown);
            update.reject_reason = Some(format!("outcome unknown: {why}"));
        } else {
            tracing::debug!(order_id = %row.order_id, reason = %why, "live order not resolved yet");
        }
        self.record(row, lease, update, &[]).await
    }
}
