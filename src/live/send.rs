//! Sending one order: the stamp committed before the request, the
//! fleet-wide budget, the request, and what MEXC's answer leads to.

use super::{Handled, LiveDesk, LiveError, Origin, Slot, state};
use crate::domain::Order;
use crate::domain::lifecycle::Observation;
use crate::execution::mexc::{MexcError, NewOrder};
use crate::store::entity::orders;
use crate::store::{Lease, LiveUpdate};

impl LiveDesk {
    /// Sends an order the lease holds (a first send, or a re-send after it
    /// was verified absent) and learns what became of it. A first send is
    /// an execution, counted the moment its request leaves.
    pub(super) async fn send(
        &self,
        row: orders::Model,
        lease: &Lease,
        origin: Origin,
        order: &Order,
    ) -> Result<Handled, LiveError> {
        let mut executed = false;
        let handled = self
            .send_and_learn(row, lease, origin, order, &mut executed)
            .await;
        handled.map(|handled| Handled {
            executed,
            ..handled
        })
    }

    async fn send_and_learn(
        &self,
        row: orders::Model,
        lease: &Lease,
        origin: Origin,
        order: &Order,
        executed: &mut bool,
    ) -> Result<Handled, LiveError> {
        let first = row.sent_at.is_none();
        let Some(client_order_id) = row.client_order_id.clone() else {
            return self.unsendable(&row, lease).await;
        };
        let order = NewOrder::for_order(order, client_order_id);
        // A second attempt only after a refused timestamp; every other
        // answer returns.
        let mut attempt = 0;
        loop {
            let (sending, stamped) = match self.slot(&row.order_id, lease).await? {
                Slot::Ready(sending, stamped) => (*sending, stamped),
                Slot::Unsent(err) => return self.unsent(&row, lease, origin, &err).await,
                Slot::Wait => return Ok(Handled::hold()),
                Slot::Blocked(sending, reason) => {
                    tracing::info!(order_id = %row.order_id, reason = %reason, "live order stopped before its request left");
                    return match origin {
                        Origin::Entry => {
                            self.finish(&sending, lease, Observation::Refused, &reason)
                                .await
                        }
                        Origin::Reconciler => {
                            let reason = format!("not placed; not sent again: {reason}");
                            self.finish(&sending, lease, Observation::NotPlaced, &reason)
                                .await
                        }
                    };
                }
            };
            self.stats.live.sent.inc();
            if first && attempt == 0 {
                self.stats.executed.inc();
                *executed = true;
            }
            let answer = self.client.new_order_stamped(&order, stamped).await;
            match answer {
                Ok(ack) => {
                    self.stats.live.accepted.inc();
                    self.breaker.close();
                    // MEXC's acknowledgement is evidence the order exists:
                    // kept before anything else may fail.
                    let acked = LiveUpdate {
                        exchange_order_id: Some(ack.order_id.0.clone()),
                        resolved: true,
                        keep_lease: true,
                        ..LiveUpdate::default()
                    };
                    let Some(sending) = self.record(&sending, lease, acked, &[]).await? else {
                        return Ok(Handled::hold());
                    };
                    return self.learn(sending, lease, Some(ack.order_id)).await;
                }
                Err(MexcError::TimeOutsideWindow { .. }) if attempt == 0 => {
                    tracing::warn!(order_id = %row.order_id, "timestamp outside recvWindow; clock measured again, retrying once");
                    attempt += 1;
                }
                Err(err) if origin == Origin::Reconciler => {
                    // A re-send refused, for whatever reason (a balance the
                    // original used, a duplicate client id): the original
                    // may exist after all. It stays in flight and is
                    // looked up; nothing ends it on a refusal alone.
                    tracing::warn!(order_id = %row.order_id, error = %err, "re-send refused or unanswered; the order stays in flight and is looked up");
                    self.take_in_refusal(&err, &order.symbol).await?;
                    let update = LiveUpdate {
                        note: Some(format!("re-send: {err}")),
                        keep_lease: true,
                        poll_in: Some(self.poll_in(&sending)),
                        ..LiveUpdate::default()
                    };
                    return self
                        .record(&sending, lease, update, &[])
                        .await
                        .map(Handled::recorded);
                }
                Err(err @ MexcError::TimeOutsideWindow { .. }) => {
                    // Neither request could be accepted.
                    let reason = format!("not placed: {err} (after a clock resync and a retry)");
                    return self
                        .finish(&sending, lease, Observation::Failed, &reason)
                        .await;
                }
                Err(err @ MexcError::Rejected { .. }) => {
                    self.take_in_refusal(&err, &order.symbol).await?;
                    let reason = err.to_string();
                    return self
                        .finish(&sending, lease, Observation::Refused, &reason)
                        .await;
                }
                // Refused instead of applied (a refused key, a rate limit:
                // every replica waits out Retry-After), or never sent (no
                // clock): it waits for a later try.
                Err(
                    err @ (MexcError::Signature { .. }
                    | MexcError::NoCredentials
                    | MexcError::RateLimited { .. }
                    | MexcError::ClockUnavailable { .. }),
                ) => {
                    self.take_in_refusal(&err, &order.symbol).await?;
                    return self.unsent(&sending, lease, origin, &err).await;
                }
                Err(err) => {
                    tracing::warn!(order_id = %row.order_id, error = %err, "outcome of the order request unknown; looking it up");
                    self.stats.live.unknown_outcomes.inc();
                    return self.learn(sending, lease, None).await;
                }
            }
        }
    }

    /// Takes in what MEXC's refusal of a request means beyond the order:
    /// a rejection is counted by its code (and the cached rules may be out
    /// of date: read again next time), a refused key stops sending on this
    /// replica, a rate limit pauses every replica.
    pub(super) async fn take_in_refusal(
        &self,
        err: &MexcError,
        symbol: &str,
    ) -> Result<(), LiveError> {
        match err {
            MexcError::Rejected { .. } => {
                let code = err.code().unwrap_or_default().to_string();
                self.stats.live.rejected.with_label_values(&[&code]).inc();
                self.breaker.close();
                self.rules.forget(symbol).await;
            }
            MexcError::RateLimited { retry_after, .. } => {
                self.limiter.pause(*retry_after).await?;
                self.stats.live.rate_limit_waits.inc();
            }
            err if err.is_credentials_problem() => self.breaker.trip(err.to_string()),
            _ => {}
        }
        Ok(())
    }

    /// Stamps the request, commits the stamp, then takes a grant of the
    /// fleet-wide budget, so the request leaves right after its grant (the
    /// exchange sees the pace the budget keeps); while waiting the stamp is
    /// renewed (a request is never signed long before it leaves) and with
    /// it the lease.
    async fn slot(&self, order_id: &str, lease: &Lease) -> Result<Slot, LiveError> {
        // Every request that may leave is counted, a retry after a refused
        // timestamp included; renewing a stamp while waiting is not.
        let mut new_attempt = true;
        let mut waited = false;
        loop {
            let stamped = match self.client.stamp().await {
                Ok(stamped) => stamped,
                Err(err) => return Ok(Slot::Unsent(err)),
            };
            let Some(sending) = self
                .store
                .mark_sending(order_id, lease, stamped, new_attempt)
                .await?
            else {
                tracing::warn!(order_id = %order_id, "lease lost before sending; nothing sent");
                return Ok(Slot::Wait);
            };
            new_attempt = false;
            // While the halts cannot be learnt, nothing leaves: a halt may
            // be in force.
            if !self.halts.is_current() {
                tokio::select! {
                    () = self.stop.cancelled() => return Ok(Slot::Wait),
                    () = tokio::time::sleep(self.options.lease / 4) => {}
                }
                continue;
            }
            let grant = self.limiter.try_take().await?;
            // A halt applied (or the order grown stale) while it waited
            // stops it here, the last moment before it leaves.
            if let Some(reason) = self.blocked_reason(&sending) {
                return Ok(Slot::Blocked(Box::new(sending), reason));
            }
            let Some(wait) = grant else {
                return Ok(Slot::Ready(Box::new(sending), stamped));
            };
            if !waited {
                self.stats.live.rate_limit_waits.inc();
                waited = true;
            }
            tokio::select! {
                () = self.stop.cancelled() => return Ok(Slot::Wait),
                () = tokio::time::sleep(wait.min(self.options.lease / 4)) => {}
            }
        }
    }

    /// Waits for a grant of the fleet-wide budget, keeping the lease on
    /// `order_id` fresh meanwhile; false when stopping.
    pub(super) async fn wait_for_budget(
        &self,
        order_id: &str,
        lease: &Lease,
    ) -> Result<bool, LiveError> {
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
            self.store.renew_leases(lease, &ids).await?;
            tokio::select! {
                () = self.stop.cancelled() => return Ok(false),
                () = tokio::time::sleep(wait.min(self.options.lease / 4)) => {}
            }
        }
    }

    /// MEXC certainly did not apply the request. An order from an entry
    /// goes back to PENDING and its entry waits for a later try; a re-send
    /// stays in flight and is tried again by the reconciler.
    pub(super) async fn unsent(
        &self,
        row: &orders::Model,
        lease: &Lease,
        origin: Origin,
        err: &MexcError,
    ) -> Result<Handled, LiveError> {
        tracing::warn!(order_id = %row.order_id, error = %err, "order not sent; it waits");
        match origin {
            Origin::Entry => {
                self.store
                    .release_unsent(&row.order_id, lease, &format!("not sent yet: {err}"))
                    .await?;
                Ok(Handled::hold())
            }
            Origin::Reconciler => self
                .poll_later(row, lease, state::MAX_POLL_INTERVAL, None, 0)
                .await
                .map(Handled::recorded),
        }
    }
}
