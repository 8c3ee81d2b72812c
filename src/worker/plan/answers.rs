//! The answers planning gives without a row to speak for them: conflicts
//! and rejections.

use chrono::{DateTime, Utc};

use crate::domain::{ExecutionResult, Order, OrderStatus, Rejection, TradingMode};

pub(super) fn conflict_reason(differing: &[&str]) -> String {
    format!(
        "order_id reused with different content: {}",
        differing.join(", ")
    )
}

/// The answer to a valid message whose `order_id` belongs to another order:
/// REJECTED, repeating what the message asked for.
pub(super) fn order_conflict(
    order: &Order,
    differing: &[&str],
    mode: TradingMode,
    now: DateTime<Utc>,
) -> ExecutionResult {
    let answer = Rejection {
        order_id: order.order_id.clone(),
        reason: conflict_reason(differing),
        symbol: Some(order.symbol.clone()),
        side: Some(order.side.as_str().to_owned()),
        quantity: Some(order.quantity),
        client_id: order.client_id.clone(),
        strategy_id: order.strategy_id.clone(),
        bot_id: order.bot_id.clone(),
        traceparent: order.traceparent.clone(),
        ..Rejection::default()
    };
    rejection_result(&answer, mode, now)
}

/// The result of a rejected order that has no row to speak for it.
pub(super) fn rejection_result(
    rejection: &Rejection,
    mode: TradingMode,
    now: DateTime<Utc>,
) -> ExecutionResult {
    let mut result = ExecutionResult::new(
        rejection.order_id.clone(),
        OrderStatus::Rejected,
        mode,
        now.timestamp(),
    );
    result.symbol = rejection.symbol.clone();
    result.side = rejection.side.clone();
    result.quantity = rejection.quantity;
    result.client_id = rejection.client_id.clone();
    result.strategy_id = rejection.strategy_id.clone();
    result.bot_id = rejection.bot_id.clone();
    result.error_message = Some(rejection.reason.clone());
    result.traceparent = rejection.traceparent.clone();
    result
}
