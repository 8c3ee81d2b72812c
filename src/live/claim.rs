//! Taking an order: its row claimed (SUBMITTED under a lease of this one
//! claim, committed), then the checks that must pass before anything is
//! sent: the halts in force, its age, MEXC's rules and the service's
//! limits.

use std::borrow::Cow;

use chrono::Utc;

use super::{Handled, LiveDesk, LiveError, Origin, RULES_RECHECK, never_sent, order_from_row};
use crate::domain::lifecycle::Observation;
use crate::domain::{Order, OrderType, halted_reason_for, normalise_symbol, stale_reason};
use crate::execution::mexc::{MexcError, SymbolRules, check_order, client_order_id};
use crate::store::entity::orders;
use crate::store::{Lease, LiveClaim, NewOrder as NewRow};

impl LiveDesk {
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
            LiveClaim::Send(row) => {
                self.first_send(row, &lease, Origin::Entry, Some(order))
                    .await
            }
            // Taken over from an expired lease: sent by no one yet (its send
            // time was never committed), or looked up first.
            LiveClaim::LookUp(row) if never_sent(&row) => {
                self.first_send(row, &lease, Origin::Entry, Some(order))
                    .await
            }
            LiveClaim::LookUp(row) => {
                let (row, _) = self.reconcile(row, &lease).await?;
                Ok(Handled::done(row))
            }
        }
    }

    /// Sends an order nothing was ever sent for, unless a halt now covers
    /// it, it grew too old, or it breaks MEXC's rules or the service's
    /// limits (then it is REJECTED and nothing is sent). `given`: the order
    /// as parsed from its message; without it (the reconciler holds only
    /// the row) it is read back from its row.
    pub(super) async fn first_send(
        &self,
        row: orders::Model,
        lease: &Lease,
        origin: Origin,
        given: Option<&Order>,
    ) -> Result<Handled, LiveError> {
        if let Some(reason) = self.blocked_reason(&row) {
            return self
                .finish(&row, lease, Observation::Refused, &reason)
                .await;
        }
        let Some(order) = given
            .map(Cow::Borrowed)
            .or_else(|| order_from_row(&row).map(Cow::Owned))
        else {
            return self.unsendable(&row, lease).await;
        };
        match self.pre_trade(&order).await {
            Ok(None) => self.send(row, lease, origin, &order).await,
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
    pub(super) fn blocked_reason(&self, row: &orders::Model) -> Option<String> {
        if let Some(reason) = self.halt_covering(row) {
            return Some(reason);
        }
        let max_age = chrono::Duration::from_std(self.options.max_order_age?).ok()?;
        let issued = row.order_timestamp.unwrap_or(row.created_at).to_utc();
        stale_reason(issued, Utc::now(), max_age)
    }

    /// The reason of the oldest halt in force covering the order.
    pub(super) fn halt_covering(&self, row: &orders::Model) -> Option<String> {
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
    pub(super) async fn pre_trade(&self, order: &Order) -> Result<Option<String>, MexcError> {
        let reference = match (order.order_type, order.price) {
            (OrderType::Market, None) => self.prices.price(&order.symbol).await.ok(),
            _ => None,
        };
        let check = |rules: Option<SymbolRules>| {
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
}
