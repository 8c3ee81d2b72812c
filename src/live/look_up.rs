//! Looking an order up at MEXC: by its client order id, with its fills read
//! in full, right after it was sent and whenever the reconciler takes it.

use super::{Handled, INLINE_LOOKUPS, LiveDesk, LiveError, Lookup, update_for};
use crate::execution::mexc::{MexcError, OrderId, OrderState, Window};
use crate::store::Lease;
use crate::store::entity::orders;

impl LiveDesk {
    /// Looks a just-sent order up a few times (the lease renewed before
    /// each); what is still not known is recorded as in flight, for the
    /// reconciler.
    pub(super) async fn learn(
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

    /// Asks MEXC for an order and, when it has fills, for its trades.
    pub(super) async fn look_up(&self, row: &orders::Model) -> Lookup {
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
    pub(super) async fn describe(&self, row: &orders::Model, state: &OrderState) -> Lookup {
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
    pub(super) fn trade_window(&self, row: &orders::Model, state: &OrderState) -> Window {
        const SLACK_MS: i64 = 60_000;
        let created = state
            .time
            .or(row.sent_at.map(|at| at.timestamp_millis()))
            .unwrap_or(row.created_at.timestamp_millis());
        Window::new(created - SLACK_MS, self.client.clock().now_ms() + SLACK_MS)
    }
}
