//! Pushes to records: each push kept with the others of its order until
//! the order can be taken (parked) and its fills add up, then recorded as
//! a lookup's answer would be, announced once, and the order parked again.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::{Ended, FILLS_WAIT, UserStream};
use crate::bus::Announcement;
use crate::domain::OrderStatus;
use crate::domain::lifecycle::IN_FLIGHT;
use crate::execution::mexc::push::Push;
use crate::execution::mexc::{OrderId, OrderState, Trade};
use crate::live::{LiveError, is_news, update_for};
use crate::store::entity::{orders, trades};
use crate::store::result_from_row;

/// Pushes about one order not applied yet.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    /// The newest order push.
    state: Option<OrderState>,
    /// Deal pushes, by trade id.
    deals: BTreeMap<String, Trade>,
    since: Option<Instant>,
}

impl UserStream {
    /// A push arrived: kept with the others of its order, then applied if
    /// it can be.
    pub(super) async fn take(
        &self,
        waiting: &mut HashMap<String, Waiting>,
        push: Push,
    ) -> Result<(), Ended> {
        let frames = &self.desk.stats.live.stream.frames;
        let client_order_id = match push {
            Push::Other { .. } => {
                frames.with_label_values(&["other"]).inc();
                return Ok(());
            }
            Push::Order {
                client_order_id,
                state,
            } => {
                frames.with_label_values(&["order"]).inc();
                let entry = waiting.entry(client_order_id.clone()).or_default();
                if entry
                    .state
                    .as_ref()
                    .is_none_or(|known| newer(&state, known))
                {
                    entry.state = Some(state);
                }
                client_order_id
            }
            Push::Deal {
                client_order_id,
                trade,
            } => {
                frames.with_label_values(&["deal"]).inc();
                let entry = waiting.entry(client_order_id.clone()).or_default();
                entry.deals.insert(trade.id.clone(), trade);
                client_order_id
            }
        };
        waiting
            .get_mut(&client_order_id)
            .map(|entry| entry.since.get_or_insert_with(Instant::now));
        self.try_apply(waiting, &client_order_id).await
    }

    /// Applies what is known of one order when its fills add up; hands it
    /// to a lookup when they have not after [`FILLS_WAIT`].
    pub(super) async fn try_apply(
        &self,
        waiting: &mut HashMap<String, Waiting>,
        client_order_id: &str,
    ) -> Result<(), Ended> {
        let stats = &self.desk.stats.live.stream;
        let Some(entry) = waiting.get(client_order_id) else {
            return Ok(());
        };
        let overdue = entry
            .since
            .is_some_and(|since| since.elapsed() > FILLS_WAIT);
        let store = &self.desk.store;
        let lease = self.desk.new_lease();
        let Some((row, next_look)) = store.take_parked(client_order_id, &lease).await? else {
            // Not ours, finished, or held by a replica working on it (the
            // push waits for it to be parked: its lease bounds the wait).
            match store.live_order_by_client_id(client_order_id).await? {
                None => {
                    stats.foreign.inc();
                    tracing::debug!(
                        client_order_id,
                        "a push for an order this deployment does not have"
                    );
                    waiting.remove(client_order_id);
                }
                Some(row) if row.status == OrderStatus::Rejected => {
                    let watched = store
                        .rewatch_not_placed(
                            &[client_order_id.to_owned()],
                            self.desk.options.watch_not_placed,
                        )
                        .await?;
                    tracing::error!(order_id = %row.order_id, reason = ?row.reject_reason, "MEXC pushes an order recorded as REJECTED: watched again and looked up");
                    stats.lookups_forced.inc_by(watched.len() as u64);
                    waiting.remove(client_order_id);
                }
                Some(row) if row.is_terminal() => {
                    stats.stale.inc();
                    waiting.remove(client_order_id);
                }
                Some(row) if !IN_FLIGHT.contains(&row.status) => {
                    // Never sent, as far as the row says (a claim let go
                    // of before its request): MEXC says otherwise.
                    tracing::error!(order_id = %row.order_id, status = %row.status.as_str(), "MEXC pushes an order whose row says it was never sent");
                    waiting.remove(client_order_id);
                }
                // Held by a replica working on it: tried again shortly.
                Some(_) => {}
            }
            return Ok(());
        };
        let order_id = row.order_id.clone();
        let park = || store.park(&order_id, &lease, next_look);
        let Some(state) = entry.state.clone() else {
            // Deals without their order's push yet.
            park().await?;
            if overdue {
                self.force_lookup(&row, "its order push did not come")
                    .await?;
                waiting.remove(client_order_id);
            }
            return Ok(());
        };
        let recorded = store.trades_of(&row.order_id).await?;
        let fills = fills_known(&recorded, &entry.deals, &state);
        let before = row.clone();
        let found = match update_for(&row, &state, &fills, self.desk.poll_in(&row)) {
            Ok(found) => found,
            Err(reason) if stale(&row, &state) => {
                tracing::debug!(
                    client_order_id,
                    reason,
                    "a push older than what is recorded"
                );
                stats.stale.inc();
                park().await?;
                waiting.remove(client_order_id);
                return Ok(());
            }
            Err(reason) => {
                park().await?;
                if overdue {
                    self.force_lookup(&row, &reason).await?;
                    waiting.remove(client_order_id);
                }
                return Ok(());
            }
        };
        let after = self
            .desk
            .record(&row, &lease, found.0, &found.1)
            .await?
            .unwrap_or(before.clone());
        if is_news(&before, &after) {
            stats.applied.inc();
            let result = result_from_row(&after, None);
            self.publisher
                .publish(&[Announcement::change(result.clone())], &[])
                .await
                .map_err(LiveError::from)?;
            self.desk.stats.count_result(result.status);
        } else {
            stats.stale.inc();
        }
        self.desk.release_announced([&after]).await?;
        let entry = waiting.get_mut(client_order_id).expect("still waiting");
        entry.deals.retain(|id, deal| {
            deal.order_id != state.order_id || !fills.iter().any(|f| &f.id == id)
        });
        entry.state = None;
        entry.since = None;
        if entry.deals.is_empty() {
            waiting.remove(client_order_id);
        }
        Ok(())
    }

    /// Hands an order to the reconciler's next round.
    async fn force_lookup(&self, row: &orders::Model, why: &str) -> Result<(), Ended> {
        tracing::info!(order_id = %row.order_id, why, "a pushed change is learnt by a lookup instead");
        let made = self
            .desk
            .store
            .make_due(Some(std::slice::from_ref(&row.order_id)))
            .await?;
        self.desk.stats.live.stream.lookups_forced.inc_by(made);
        Ok(())
    }
}

/// Whether `state` describes an order later than `known` does.
fn newer(state: &OrderState, known: &OrderState) -> bool {
    state.executed_qty > known.executed_qty
        || (state.executed_qty == known.executed_qty
            && state.status.is_final()
            && !known.status.is_final())
}

/// Whether a push describes less than is recorded: it came late.
fn stale(row: &orders::Model, state: &OrderState) -> bool {
    let recorded = row.filled_quantity.unwrap_or_default();
    state.executed_qty < recorded
}

/// The fills of the pushed order: those recorded (from any source) and
/// those pushed, each exchange trade once.
fn fills_known(
    recorded: &[trades::Model],
    deals: &BTreeMap<String, Trade>,
    state: &OrderState,
) -> Vec<Trade> {
    let mut fills: BTreeMap<String, Trade> = recorded
        .iter()
        .filter_map(|row| {
            let id = row.trade_id.strip_prefix("mexc-")?;
            Some((
                id.to_owned(),
                Trade {
                    symbol: state.symbol.clone(),
                    id: id.to_owned(),
                    order_id: OrderId(
                        row.exchange_order_id
                            .clone()
                            .unwrap_or_else(|| state.order_id.0.clone()),
                    ),
                    price: row.price,
                    qty: row.quantity,
                    quote_qty: row.price * row.quantity,
                    commission: row.fee,
                    commission_asset: row.fee_asset.clone(),
                    time: Some(row.executed_at.timestamp_millis()),
                    is_buyer: None,
                    is_maker: None,
                    client_order_id: None,
                },
            ))
        })
        .collect();
    for (id, deal) in deals {
        fills.entry(id.clone()).or_insert_with(|| deal.clone());
    }
    fills.into_values().collect()
}

#[cfg(test)]
mod tests;
