//! Conversions between the domain and the rows: what a new order, a
//! rejection, an outcome and a fill look like in the tables, and how a
//! stored row becomes the result that is (re-)published.

use chrono::{DateTime, FixedOffset, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::entity::orders;
use crate::domain::{
    Content, ExecutionResult, Fill, Incoming, MAX_ID_LEN, Order, OrderStatus, Parsed, Rejection,
    SYMBOL_COLUMN_LEN, TradingMode, fits_column,
};

/// A row to insert: a first sight of an order, PENDING or already REJECTED.
#[derive(Debug, Clone, Serialize)]
pub struct NewOrder {
    pub order_id: String,
    pub symbol: Option<String>,
    pub side: Option<String>,
    pub order_type: Option<String>,
    pub quantity: Option<Decimal>,
    pub price: Option<Decimal>,
    pub status: OrderStatus,
    pub filled_quantity: Option<Decimal>,
    pub fee: Option<Decimal>,
    pub client_id: Option<String>,
    pub strategy_id: Option<String>,
    pub bot_id: Option<String>,
    pub mode: TradingMode,
    pub reject_reason: Option<String>,
    pub order_timestamp: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub raw_message: Option<String>,
    /// The columns of an outcome, on a row written already decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fill_price: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange_order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filled_at: Option<DateTime<Utc>>,
}

impl NewOrder {
    /// The row as inserting it stores it: the columns given, the rest at
    /// their defaults (`id` is not known and left 0: nothing downstream of
    /// a batch reads it). Timestamps are cut to whole microseconds, as the
    /// binary parameters carry them.
    pub fn into_inserted(self) -> orders::Model {
        // As sqlx encodes them: whole microseconds from 2000-01-01, cut
        // toward that date.
        let micros = |at: DateTime<Utc>| {
            let epoch = DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(946_684_800);
            (at - epoch)
                .num_microseconds()
                .map_or(at, |us| epoch + chrono::TimeDelta::microseconds(us))
                .fixed_offset()
        };
        let created_at = micros(self.created_at);
        orders::Model {
            id: 0,
            order_id: self.order_id,
            symbol: self.symbol,
            side: self.side,
            order_type: self.order_type,
            quantity: self.quantity,
            price: self.price,
            status: self.status,
            filled_quantity: self.filled_quantity,
            fill_price: self.fill_price,
            fee: self.fee,
            client_id: self.client_id,
            strategy_id: self.strategy_id,
            bot_id: self.bot_id,
            mode: self.mode,
            reject_reason: self.reject_reason,
            exchange_order_id: self.exchange_order_id,
            attempts: 1,
            order_timestamp: self.order_timestamp.map(micros),
            created_at,
            updated_at: created_at,
            filled_at: self.filled_at.map(micros),
            raw_message: self.raw_message,
            client_order_id: None,
            lease_owner: None,
            lease_until: None,
            sent_at: None,
            send_attempts: 0,
            lookups: 0,
            exchange_status: None,
            fee_asset: None,
            state_seq: 1,
            fees: None,
            resolved_at: None,
            watch_until: None,
            corrects_seq: None,
        }
    }
}

/// A valid order seen for the first time: PENDING.
pub fn pending_row(order: &Order, mode: TradingMode, now: DateTime<Utc>) -> NewOrder {
    NewOrder {
        order_id: order.order_id.clone(),
        symbol: Some(order.symbol.clone()),
        side: Some(order.side.as_str().to_owned()),
        order_type: Some(order.order_type.as_str().to_owned()),
        quantity: Some(order.quantity),
        price: order.price,
        status: OrderStatus::Pending,
        filled_quantity: None,
        fee: None,
        client_id: order.client_id.clone(),
        strategy_id: order.strategy_id.clone(),
        bot_id: order.bot_id.clone(),
        mode,
        reject_reason: None,
        order_timestamp: order.timestamp,
        created_at: now,
        raw_message: None,
        fill_price: None,
        exchange_order_id: None,
        filled_at: None,
    }
}

/// A rejected order: REJECTED from the start. A value its column cannot
/// hold is left NULL, never cut to fit; the message's fields are then kept
/// whole in `raw_message`.
pub fn rejected_row(rejection: &Rejection, mode: TradingMode, now: DateTime<Utc>) -> NewOrder {
    let fitting =
        |text: &Option<String>, len: usize| text.clone().filter(|text| fits_column(text, len));
    NewOrder {
        order_id: rejection.order_id.clone(),
        symbol: fitting(&rejection.symbol, SYMBOL_COLUMN_LEN),
        side: fitting(&rejection.side, 10),
        order_type: fitting(&rejection.order_type, 10),
        quantity: rejection.quantity,
        price: rejection.price,
        status: OrderStatus::Rejected,
        filled_quantity: Some(Decimal::ZERO),
        fee: Some(Decimal::ZERO),
        client_id: fitting(&rejection.client_id, MAX_ID_LEN),
        strategy_id: fitting(&rejection.strategy_id, MAX_ID_LEN),
        bot_id: fitting(&rejection.bot_id, MAX_ID_LEN),
        mode,
        reject_reason: Some(rejection.reason.clone()),
        order_timestamp: rejection.timestamp,
        created_at: now,
        raw_message: rejection.raw.clone(),
        fill_price: None,
        exchange_order_id: None,
        filled_at: None,
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
        status,
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

/// A new order's row as it ends, written at once: its terminal status,
/// fill and reason (the same columns [`completed_row`] sets on a stored
/// row), with the trade of its fill.
pub fn decided_row(
    pending: NewOrder,
    status: OrderStatus,
    fill: Option<&Fill>,
    reason: Option<String>,
) -> (NewOrder, Option<NewTrade>) {
    let at = pending.created_at;
    let row = NewOrder {
        status,
        filled_quantity: Some(fill.map_or(Decimal::ZERO, |f| f.quantity)),
        fill_price: fill.map(|f| f.price),
        fee: Some(fill.map_or(Decimal::ZERO, |f| f.fee)),
        reject_reason: reason,
        exchange_order_id: fill.and_then(|f| f.exchange_order_id.clone()),
        filled_at: fill.map(|_| at),
        ..pending
    };
    let trade = fill.map(|fill| {
        let party = TradeParty {
            order_id: &row.order_id,
            symbol: row.symbol.as_deref(),
            side: row.side.as_deref(),
            mode: row.mode.as_str(),
            executed_at: at.fixed_offset(),
        };
        party.trade(fill, 1)
    });
    (row, trade)
}

/// What a trade takes from its order.
#[derive(Debug, Clone, Copy)]
pub struct TradeParty<'a> {
    order_id: &'a str,
    symbol: Option<&'a str>,
    side: Option<&'a str>,
    mode: &'a str,
    executed_at: DateTime<FixedOffset>,
}

impl<'a> TradeParty<'a> {
    /// A stored order's, its trades executed when it filled (else when it
    /// last changed).
    pub fn of_row(row: &'a orders::Model) -> Self {
        TradeParty {
            order_id: &row.order_id,
            symbol: row.symbol.as_deref(),
            side: row.side.as_deref(),
            mode: row.mode.as_str(),
            executed_at: row.filled_at.unwrap_or(row.updated_at),
        }
    }

    /// The same party, for a trade executed at `at`.
    pub fn at(self, at: DateTime<FixedOffset>) -> Self {
        TradeParty {
            executed_at: at,
            ..self
        }
    }

    /// The trade row of a simulated fill. Its id is derived from the
    /// order, so recording the same fill again is a no-op.
    fn trade(&self, fill: &Fill, sequence: u32) -> NewTrade {
        let digest = Sha256::new()
            .chain_update(self.order_id.as_bytes())
            .chain_update(sequence.to_le_bytes())
            .finalize();
        self.trade_with_id(format!("trd-{}", &hex::encode(digest)[..32]), fill, None)
    }

    /// The trade row of a fill the venue names (`trade_id` its id), with
    /// the asset its fee was paid in when known.
    pub fn trade_with_id(
        &self,
        trade_id: String,
        fill: &Fill,
        fee_asset: Option<String>,
    ) -> NewTrade {
        NewTrade {
            trade_id,
            order_id: self.order_id.to_owned(),
            symbol: self.symbol.unwrap_or_default().to_owned(),
            side: self.side.unwrap_or_default().to_owned(),
            price: fill.price,
            quantity: fill.quantity,
            fee: fill.fee,
            mode: self.mode.to_owned(),
            exchange_order_id: fill.exchange_order_id.clone(),
            executed_at: self.executed_at,
            fee_asset,
        }
    }
}

/// A fill to record in `trades`.
#[derive(Debug, Clone, Serialize)]
pub struct NewTrade {
    pub trade_id: String,
    pub order_id: String,
    pub symbol: String,
    pub side: String,
    pub price: Decimal,
    pub quantity: Decimal,
    pub fee: Decimal,
    pub mode: String,
    pub exchange_order_id: Option<String>,
    pub executed_at: DateTime<FixedOffset>,
    pub fee_asset: Option<String>,
}

/// The trade row of a stored order's fill.
pub fn trade_for(row: &orders::Model, fill: &Fill, sequence: u32) -> NewTrade {
    TradeParty::of_row(row).trade(fill, sequence)
}

/// The published result of a stored order (fresh or re-emitted alike).
pub fn result_from_row(row: &orders::Model, traceparent: Option<String>) -> ExecutionResult {
    let status = row.status;
    let mode = row.mode;
    let timestamp = row.filled_at.unwrap_or(row.updated_at);
    let mut result =
        ExecutionResult::new(row.order_id.clone(), status, mode, unix_seconds(timestamp));
    result.symbol = row.symbol.clone();
    result.side = row.side.clone();
    result.quantity = row.quantity;
    result.filled_quantity = row.filled_quantity.unwrap_or_default();
    result.price = row.fill_price;
    result.fee = match (&row.fees, row.fee) {
        // Paid in several assets: no one figure is the fee.
        (Some(_), None) => None,
        (_, fee) => Some(fee.unwrap_or_default()),
    };
    result.fee_asset = row.fee_asset.clone();
    result.fees = row.fees.as_ref().and_then(fees_from_json);
    result.client_id = row.client_id.clone();
    result.strategy_id = row.strategy_id.clone();
    result.bot_id = row.bot_id.clone();
    result.error_message = row.reject_reason.clone();
    result.exchange_order_id = row.exchange_order_id.clone();
    result.client_order_id = row.client_order_id.clone();
    result.traceparent = traceparent;
    if let Some(corrected) = row.corrects_seq {
        result.corrects = Some(format!("{}:{corrected}", row.order_id));
    }
    result.with_seq(row.state_seq)
}

/// The fees column as amounts per asset.
fn fees_from_json(fees: &serde_json::Value) -> Option<std::collections::BTreeMap<String, String>> {
    let map = fees.as_object()?;
    Some(
        map.iter()
            .filter_map(|(asset, amount)| Some((asset.clone(), amount.as_str()?.to_owned())))
            .collect(),
    )
}

fn unix_seconds(at: DateTime<FixedOffset>) -> i64 {
    at.timestamp()
}

/// What a stored order says, to compare a later message with: its columns,
/// or, when a value did not fit them, the message it was rejected from.
pub fn stored_content(row: &orders::Model) -> Content {
    if let Some(raw) = &row.raw_message
        && let Parsed::Rejected(rejection) = Parsed::from_incoming(Incoming::Json(raw.as_bytes()))
    {
        return rejection.content();
    }
    Content::new(
        row.symbol.as_deref(),
        row.side.as_deref(),
        row.order_type.as_deref(),
        row.quantity,
        row.price,
        [
            row.client_id.as_deref(),
            row.strategy_id.as_deref(),
            row.bot_id.as_deref(),
        ],
    )
}
