//! What an exchange answer means for a stored live order: pure functions
//! from MEXC's order state and fills to the update to record.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::domain::lifecycle::Observation;
use crate::domain::{Fill, OrderStatus};
use crate::execution::mexc::{ExchangeStatus, OrderState, Trade};
use crate::store::entity::orders;
use crate::store::{LiveUpdate, NewTrade, TradeParty};

/// The service's status for MEXC's; `None` for a status MEXC may add
/// later (the order keeps its own and is polled again).
pub fn status_for(exchange: &ExchangeStatus) -> Option<OrderStatus> {
    match exchange {
        ExchangeStatus::New => Some(OrderStatus::Submitted),
        ExchangeStatus::PartiallyFilled => Some(OrderStatus::PartiallyFilled),
        ExchangeStatus::Filled => Some(OrderStatus::Filled),
        ExchangeStatus::Canceled | ExchangeStatus::PartiallyCanceled => Some(OrderStatus::Canceled),
        ExchangeStatus::Other(_) => None,
    }
}

/// The update for an order MEXC describes as `state`, with its fills
/// `trades` (all of them, from `myTrades`); `Err` when the fills do not add
/// up to what MEXC says was executed yet (its trade list lags): look again.
pub fn update_for(
    row: &orders::Model,
    state: &OrderState,
    trades: &[Trade],
    poll_in: Duration,
) -> Result<(LiveUpdate, Vec<NewTrade>), String> {
    let own: Vec<&Trade> = trades
        .iter()
        .filter(|trade| trade.order_id == state.order_id)
        .collect();
    let traded: Decimal = own.iter().map(|trade| trade.qty).sum();
    if traded != state.executed_qty {
        return Err(format!(
            "MEXC reports {} executed but its trades add up to {traded}",
            state.executed_qty
        ));
    }
    let status = status_for(&state.status);
    let open = !status.is_some_and(OrderStatus::is_terminal);
    let mut fees: BTreeMap<String, Decimal> = BTreeMap::new();
    for trade in &own {
        let asset = trade.commission_asset.clone().unwrap_or_default();
        *fees.entry(asset).or_default() += trade.commission;
    }
    let exchange_order_id = state.order_id.0.clone();
    let party = TradeParty::of_row(row);
    let fills = own
        .iter()
        .map(|trade| {
            let fill = Fill {
                quantity: trade.qty,
                price: trade.price,
                fee: trade.commission,
                exchange_order_id: Some(exchange_order_id.clone()),
            };
            let executed_at = trade
                .time
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map_or(row.updated_at, |at| at.fixed_offset());
            party.at(executed_at).trade_with_id(
                format!("mexc-{}", trade.id),
                &fill,
                trade.commission_asset.clone(),
            )
        })
        .collect();
    let update = LiveUpdate {
        observation: status.map(Observation::Reported),
        exchange_status: Some(exchange_status_text(&state.status)),
        exchange_order_id: Some(exchange_order_id),
        filled_quantity: Some(state.executed_qty),
        fill_price: state.average_price(),
        fees: Some(fees),
        resolved: true,
        keep_lease: open,
        poll_in: open.then_some(poll_in),
        ..LiveUpdate::default()
    };
    Ok((update, fills))
}

/// MEXC's status as it spells it.
pub fn exchange_status_text(status: &ExchangeStatus) -> String {
    match status {
        ExchangeStatus::New => "NEW".into(),
        ExchangeStatus::PartiallyFilled => "PARTIALLY_FILLED".into(),
        ExchangeStatus::Filled => "FILLED".into(),
        ExchangeStatus::Canceled => "CANCELED".into(),
        ExchangeStatus::PartiallyCanceled => "PARTIALLY_CANCELED".into(),
        ExchangeStatus::Other(text) => text.clone(),
    }
}

/// Whether a state change is one a strategy hears of: a new announced
/// status, or more of the order filled.
pub fn is_news(before: &orders::Model, after: &orders::Model) -> bool {
    let announced = after.status.is_announced();
    announced && (before.status != after.status || before.filled_quantity != after.filled_quantity)
}

/// The longest pause between two lookups of an order in flight.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest pause between two lookups.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long until an order is looked up again: soon after it was sent,
/// less often as it ages (a resting LIMIT order), never more than
/// `ceiling` apart ([`MAX_POLL_INTERVAL`] for an order in flight).
pub fn poll_delay(since_sent: Duration, ceiling: Duration) -> Duration {
    (since_sent / 4).clamp(MIN_POLL_INTERVAL, ceiling.max(MIN_POLL_INTERVAL))
}

#[cfg(test)]
mod tests;
