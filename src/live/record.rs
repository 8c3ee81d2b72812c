//! Recording what was learnt of an order: every change through the state
//! machine, under the lease, and letting go of finished orders once their
//! results went out.

use std::time::Duration;

use super::{Handled, LiveDesk, LiveError};
use crate::domain::OrderStatus;
use crate::domain::lifecycle::{self, Observation};
use crate::execution::mexc::OrderId;
use crate::store::entity::orders;
use crate::store::{Lease, LiveUpdate};

impl LiveDesk {
    /// Lets go of `rows`, whose results just went out (a batch's, a
    /// reconciler round's, the user data stream's): until then a finished
    /// order's lease lets the reconciler announce it, should nobody else;
    /// an order in flight is parked until its next look
    /// ([`Store::release_announced`]).
    pub async fn release_announced<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a orders::Model>,
    ) -> Result<u64, LiveError> {
        let rows: Vec<&orders::Model> = rows.into_iter().collect();
        let announced: Vec<(String, String)> = rows
            .iter()
            .filter_map(|row| Some((row.order_id.clone(), row.lease_owner.clone()?)))
            .collect();
        // Parked while the stream is down: looked at on the REST schedule.
        let within = (!self.stream_healthy()).then_some(super::state::MAX_POLL_INTERVAL);
        let released = self.store.release_announced(&announced, within).await?;
        // Open and covered by a halt (one that came while it was held, and
        // the halt's sweep passed it by): looked at, and cancelled, on the
        // REST schedule rather than the stream's slow poll.
        let halted: Vec<String> = rows
            .iter()
            .filter(|row| self.options.cancel_on_halt && !row.is_terminal())
            .filter(|row| self.halt_covering(row).is_some())
            .map(|row| row.order_id.clone())
            .collect();
        if !halted.is_empty() {
            self.store
                .look_within(&halted, super::state::MAX_POLL_INTERVAL)
                .await?;
        }
        Ok(released)
    }

    /// Ends an order whose stored columns cannot make a request.
    pub(super) async fn unsendable(
        &self,
        row: &orders::Model,
        lease: &Lease,
    ) -> Result<Handled, LiveError> {
        let reason = "the stored order cannot be sent (its columns are incomplete)";
        self.finish(row, lease, Observation::Failed, reason).await
    }

    /// Records a terminal outcome decided here (nothing at the exchange,
    /// as far as the service can tell): `observation` is a refusal, a
    /// failure or a report of not placed.
    pub(super) async fn finish(
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
    pub(super) async fn record(
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

    pub(super) async fn record_found(
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

    /// Records an order as still in flight, looked up again after
    /// `poll_in` (by any replica: the lease ends then).
    pub(super) async fn poll_later(
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
}
