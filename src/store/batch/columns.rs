//! A batch's rows as one array per column, bound as typed parameters
//! (binary, in the extended protocol) and expanded by `unnest`: Postgres
//! reads each value in its own type, with nothing to parse, and the
//! statement is prepared once per connection whatever the batch size.

use chrono::{DateTime, FixedOffset, Utc};
use rust_decimal::Decimal;
use sea_orm::sqlx::{Postgres, postgres::PgArguments, query::Query};

use crate::store::rows::{NewOrder, NewTrade};

/// The orders' arrays, `$1` to `$20`, and their names in `r`.
macro_rules! order_arrays {
    () => {
        "unnest($1::text[], $2::text[], $3::text[], $4::text[], \
            $5::numeric[], $6::numeric[], $7::text[], $8::numeric[], $9::numeric[], $10::numeric[], \
            $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], \
            $17::timestamptz[], $18::timestamptz[], $19::timestamptz[], $20::text[]) \
            AS r(order_id, symbol, side, order_type, quantity, price, status, filled_quantity, \
            fill_price, fee, client_id, strategy_id, bot_id, mode, reject_reason, exchange_order_id, \
            order_timestamp, created_at, filled_at, raw_message)"
    };
}

/// The trades' arrays, `$21` to `$31` (after the orders'), and their names
/// in `t`.
macro_rules! trade_arrays_after_orders {
    () => {
        "unnest($21::text[], $22::text[], $23::text[], \
            $24::text[], $25::numeric[], $26::numeric[], $27::numeric[], $28::text[], $29::text[], \
            $30::timestamptz[], $31::text[]) \
            AS t(trade_id, order_id, symbol, side, price, quantity, fee, mode, exchange_order_id, \
            executed_at, fee_asset)"
    };
}

type Statement<'q> = Query<'q, Postgres, PgArguments>;

/// Binds the orders' twenty arrays, in the order of `order_arrays!`.
pub(super) fn bind_orders<'q>(query: Statement<'q>, rows: &[NewOrder]) -> Statement<'q> {
    let text = |get: fn(&NewOrder) -> Option<&str>| rows.iter().map(get).collect::<Vec<_>>();
    let amount = |get: fn(&NewOrder) -> Option<Decimal>| rows.iter().map(get).collect::<Vec<_>>();
    let time =
        |get: fn(&NewOrder) -> Option<DateTime<Utc>>| rows.iter().map(get).collect::<Vec<_>>();
    query
        .bind(text(|r| Some(&r.order_id)))
        .bind(text(|r| r.symbol.as_deref()))
        .bind(text(|r| r.side.as_deref()))
        .bind(text(|r| r.order_type.as_deref()))
        .bind(amount(|r| r.quantity))
        .bind(amount(|r| r.price))
        .bind(text(|r| Some(r.status.as_str())))
        .bind(amount(|r| r.filled_quantity))
        .bind(amount(|r| r.fill_price))
        .bind(amount(|r| r.fee))
        .bind(text(|r| r.client_id.as_deref()))
        .bind(text(|r| r.strategy_id.as_deref()))
        .bind(text(|r| r.bot_id.as_deref()))
        .bind(text(|r| Some(r.mode.as_str())))
        .bind(text(|r| r.reject_reason.as_deref()))
        .bind(text(|r| r.exchange_order_id.as_deref()))
        .bind(time(|r| r.order_timestamp))
        .bind(time(|r| Some(r.created_at)))
        .bind(time(|r| r.filled_at))
        .bind(text(|r| r.raw_message.as_deref()))
}

/// Binds the trades' eleven arrays, in the order of `trade_arrays_after_orders!`.
pub(super) fn bind_trades<'q>(query: Statement<'q>, fills: &[NewTrade]) -> Statement<'q> {
    let text = |get: fn(&NewTrade) -> Option<&str>| fills.iter().map(get).collect::<Vec<_>>();
    let amount = |get: fn(&NewTrade) -> Decimal| fills.iter().map(get).collect::<Vec<_>>();
    let time =
        |get: fn(&NewTrade) -> DateTime<FixedOffset>| fills.iter().map(get).collect::<Vec<_>>();
    query
        .bind(text(|t| Some(&t.trade_id)))
        .bind(text(|t| Some(&t.order_id)))
        .bind(text(|t| Some(&t.symbol)))
        .bind(text(|t| Some(&t.side)))
        .bind(amount(|t| t.price))
        .bind(amount(|t| t.quantity))
        .bind(amount(|t| t.fee))
        .bind(text(|t| Some(&t.mode)))
        .bind(text(|t| t.exchange_order_id.as_deref()))
        .bind(time(|t| t.executed_at))
        .bind(text(|t| t.fee_asset.as_deref()))
}
