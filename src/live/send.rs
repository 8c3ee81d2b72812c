//! Sending one order: the stamp committed before the request, the
//! fleet-wide budget, the request, and what MEXC's answer leads to.

use super::{Handled, LiveDesk, LiveError, Lookup, Origin, Slot, exchange_order};
use crate::domain::OrderStatus;
use crate::execution::mexc::MexcError;
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
    ) -> Result<Handled, LiveError> {
        let mut executed = false;
        let handled = self.send_and_learn(row, lease, origin, &mut executed).await;
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
        executed: &mut bool,
    ) -> Result<Handled, LiveError> {
        let first = row.sent_at.is_none();
        let Some(order) = exchange_order(&row) else {
            let reason = "the stored order cannot be sent (its columns are incomplete)";
            return self.finish(&row, lease, OrderStatus::Error, reason).await;
        };
        for attempt in 0..2 {
            let (sending, stamped) = match self.slot(&row.order_id, lease, attempt == 0).await? {
                Slot::Ready(sending, stamped) => (*sending, stamped),
                Slot::Unsent(err) => return self.unsent(&row, lease, origin, &err).await,
                Slot::Wait => return Ok(Handled::hold()),
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
                }
                Err(err @ MexcError::TimeOutsideWindow { .. }) => {
                    // Neither request could be accepted.
                    let reason = format!("not placed: {err} (after a clock resync and a retry)");
                    return self
                        .finish(&sending, lease, OrderStatus::Error, &reason)
                        .await;
                }
                Err(err @ MexcError::Rejected { .. }) => {
                    let code = err.code().unwrap_or_default().to_string();
                    self.stats.live.rejected.with_label_values(&[&code]).inc();
                    self.breaker.close();
                    self.rules.forget(&order.symbol).await;
                    if origin == Origin::Reconciler {
                        // A re-send refused (a balance the original used, a
                        // duplicate id): the original may exist after all.
                        // Only a lookup that finds nothing lets it end here.
                        match self.look_up(&sending).await {
                            Lookup::Found(found) => {
                                return self.record_found(&sending, lease, *found).await;
                            }
                            Lookup::Failed(_) => {
                                let poll_in = self.poll_in(&sending);
                                return self
                                    .poll_later(&sending, lease, poll_in, None, 0)
                                    .await
                                    .map(Handled::recorded);
                            }
                            Lookup::Absent => {}
                        }
                    }
                    let reason = err.to_string();
                    return self
                        .finish(&sending, lease, OrderStatus::Rejected, &reason)
                        .await;
                }
                Err(err) if err.is_credentials_problem() => {
                    self.breaker.trip(err.to_string());
                    return self.unsent(&sending, lease, origin, &err).await;
                }
                Err(err @ MexcError::ClockUnavailable { .. }) => {
                    return self.unsent(&sending, lease, origin, &err).await;
                }
                Err(MexcError::RateLimited { retry_after, .. }) => {
                    // Not applied; after Retry-After a lookup says what next.
                    self.limiter.pause(retry_after).await?;
                    self.stats.live.rate_limit_waits.inc();
                    return self
                        .poll_later(&sending, lease, retry_after, None, 0)
                        .await
                        .map(Handled::recorded);
                }
                Err(err) => {
                    tracing::warn!(order_id = %row.order_id, error = %err, "outcome of the order request unknown; looking it up");
                    self.stats.live.unknown_outcomes.inc();
                    return self.learn(sending, lease, None).await;
                }
            }
        }
        unreachable!("the second attempt always returns")
    }

    /// Stamps the request, commits the stamp, then takes a grant of the
    /// fleet-wide budget, so the request leaves right after its grant (the
    /// exchange sees the pace the budget keeps); while waiting the stamp is
    /// renewed (a request is never signed long before it leaves) and with
    /// it the lease.
    async fn slot(
        &self,
        order_id: &str,
        lease: &Lease,
        mut new_attempt: bool,
    ) -> Result<Slot, LiveError> {
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
            let Some(wait) = self.limiter.try_take().await? else {
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
                .poll_later(row, lease, self.options.max_poll_interval, None, 0)
                .await
                .map(Handled::recorded),
        }
    }
}
