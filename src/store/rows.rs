//! Conversions between the domain and the rows: what a new order, a
//! rejection, an outcome and a fill look like in the tables, and how a
//! stored row becomes the result that is (re-)published.

use chrono::{DateTime, FixedOffset, Utc};
use rust_decimal::Decimal;
use sea_orm::ActiveValue::{NotSet, Set};
use sha2::{Digest, Sha256};

use super::entity::{orders, trades};
use crate::domain::{ExecutionResult, Fill, Order, OrderStatus, Rejection, TradingMode};

/// A first sight of a valid order: PENDING, one attempt.
pub fn pending_row(order: &Order, mode: TradingMode, now: DateTime<Utc>) -> orders::ActiveModel {
    let now = now.fixed_offset();
    orders::ActiveModel {
        id: NotSet,
        order_id: Set(order.order_id.clone()),
        symbol: Set(order.symbol.clone()),
        side: Set(order.side.as_str().to_owned()),
        order_type: Set(order.order_type.as_str().to_owned()),
        quantity: Set(order.quantity),
        price: Set(order.price),
        status: Set(OrderStatus::Pending.as_str().to_owned()),
        filled_quantity: Set(None),
        fill_price: Set(None),
        fee: Set(None),
        client_id: Set(order.client_id.clone()),
        strategy_id: Set(order.strategy_id.clone()),
        bot_id: Set(order.bot_id.clone()),
        mode: Set(mode.as_str().to_owned()),
        reject_reason: Set(None),
        exchange_order_id: Set(None),
        attempts: Set(1),
        order_timestamp: Set(order.timestamp.map(|t| t.fixed_offset())),
        created_at: Set(now),
        updated_at: Set(now),
        filled_at: Set(None),
    }
}

/// A rejected order whose fields fit the columns: REJECTED from the start.
pub fn rejected_row(
    rejection: &Rejection,
    mode: TradingMode,
    now: DateTime<Utc>,
) -> orders::ActiveModel {
    let now = now.fixed_offset();
    orders::ActiveModel {
        id: NotSet,
        order_id: Set(rejection.order_id.clone()),
        symbol: Set(rejection.symbol.clone().unwrap_or_default()),
        side: Set(rejection.side.clone().unwrap_or_default()),
        order_type: Set(rejection.order_type.clone().unwrap_or_default()),
        quantity: Set(rejection.quantity.unwrap_or_default()),
        price: Set(rejection.price),
        status: Set(OrderStatus::Rejected.as_str().to_owned()),
        filled_quantity: Set(Some(Decimal::ZERO)),
        fill_price: Set(None),
        fee: Set(Some(Decimal::ZERO)),
        client_id: Set(rejection.client_id.clone()),
        strategy_id: Set(rejection.strategy_id.clone()),
        bot_id: Set(rejection.bot_id.clone()),
        mode: Set(mode.as_str().to_owned()),
        reject_reason: Set(Some(rejection.reason.clone())),
        exchange_order_id: Set(None),
        attempts: Set(1),
        order_timestamp: Set(rejection.timestamp.map(|t| t.fixed_offset())),
        created_at: Set(now),
        updated_at: Set(now),
        filled_at: Set(None),
    }
}

/// The row after execution: its terminal status, fill and reason.
pub fn completed_row(
    row: &orders::Model,
    status: OrderStatus,
    fill: Option<&Fill>,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> orders::Model {
    let now = now.fixed_offset();
    orders::Model {
        status: status.as_str().to_owned(),
        filled_quantity: Some(fill.map_or(Decimal::ZERO, |f| f.quantity)),
        fill_price: fill.map(|f| f.price),
        fee: Some(fill.map_or(Decimal::ZERO, |f| f.fee)),
        reject_reason: reason,
        exchange_order_id: fill.and_then(|f| f.exchange_order_id.clone()),
        updated_at: now,
        filled_at: fill.map(|_| now),
        ..row.clone()
    }
}

/// The trade row of a fill. Its id is derived from the order, so recording
/// the same fill again is a no-op.
pub fn trade_for(row: &orders::Model, fill: &Fill, sequence: u32) -> trades::ActiveModel {
    let digest = Sha256::new()
        .chain_update(row.order_id.as_bytes())
        .chain_update(sequence.to_le_bytes())
        .finalize();
    trades::ActiveModel {
        id: NotSet,
        trade_id: Set(format!("trd-{}", &hex::encode(digest)[..32])),
        order_id: Set(row.order_id.clone()),
        symbol: Set(row.symbol.clone()),
        side: Set(row.side.clone()),
        price: Set(fill.price),
        quantity: Set(fill.quantity),
        fee: Set(fill.fee),
        mode: Set(row.mode.clone()),
        exchange_order_id: Set(fill.exchange_order_id.clone()),
        executed_at: Set(row.filled_at.unwrap_or(row.updated_at)),
    }
}

/// The published result of a stored order (fresh or re-emitted alike).
pub fn result_from_row(row: &orders::Model, traceparent: Option<String>) -> ExecutionResult {
    let status = OrderStatus::parse(&row.status).unwrap_or(OrderStatus::Error);
    let mode = TradingMode::parse(&row.mode).unwrap_or(TradingMode::Paper);
    let timestamp = row.filled_at.unwrap_or(row.updated_at);
    let mut result =
        ExecutionResult::new(row.order_id.clone(), status, mode, unix_seconds(timestamp));
    result.symbol = Some(row.symbol.clone());
    result.side = Some(row.side.clone());
    result.quantity = Some(row.quantity);
    result.filled_quantity = row.filled_quantity.unwrap_or_default();
    result.price = row.fill_price;
    result.fee = row.fee.unwrap_or_default();
    result.client_id = row.client_id.clone();
    result.strategy_id = row.strategy_id.clone();
    result.bot_id = row.bot_id.clone();
    result.error_message = row.reject_reason.clone();
    result.exchange_order_id = row.exchange_order_id.clone();
    result.traceparent = traceparent;
    result
}

fn unix_seconds(at: DateTime<FixedOffset>) -> i64 {
    at.timestamp()
}
