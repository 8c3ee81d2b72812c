//! The texts of a batch's statements: the inserts of orders and trades,
//! from typed arrays (see `columns`) or from one JSON parameter (the live
//! path's SeaORM statements), and the update of outcomes.

/// The orders of a JSON array of [`NewOrder`](crate::store::NewOrder) (`$1`), as `r`.
macro_rules! order_json {
    () => {
        "json_to_recordset($1::json) AS r(order_id text, symbol text, side text, order_type text, \
            quantity numeric, price numeric, status text, filled_quantity numeric, fill_price numeric, \
            fee numeric, client_id text, strategy_id text, bot_id text, mode text, reject_reason text, \
            exchange_order_id text, order_timestamp timestamptz, created_at timestamptz, \
            filled_at timestamptz, raw_message text)"
    };
}

/// One statement inserts the orders of `r` (the source named), each in
/// `order_id` order, and counts an attempt on each order already stored
/// instead; both batch paths and the live path use it.
macro_rules! insert_orders {
    ($($source:tt)+) => {
        concat!(
            "INSERT INTO orders (order_id, symbol, side, order_type, quantity, price, status, filled_quantity, \
                fill_price, fee, client_id, strategy_id, bot_id, mode, reject_reason, exchange_order_id, attempts, \
                order_timestamp, created_at, updated_at, filled_at, raw_message) \
             SELECT order_id, symbol, side, order_type, quantity, price, status, filled_quantity, fill_price, fee, \
                client_id, strategy_id, bot_id, mode, reject_reason, exchange_order_id, 1, order_timestamp, \
                created_at, created_at, filled_at, raw_message \
             FROM ",
            $($source)+,
            " ORDER BY order_id COLLATE \"C\" \
             ON CONFLICT (order_id) DO UPDATE SET attempts = orders.attempts + 1 "
        )
    };
}

/// One statement inserts the trades of `t` (the source named, joined as
/// `$join` says), in `trade_id` order, keeping a trade already stored.
macro_rules! insert_trades {
    ($join:literal, $($source:tt)+) => {
        concat!(
            "INSERT INTO trades (trade_id, order_id, symbol, side, price, quantity, fee, mode, \
                exchange_order_id, executed_at, fee_asset) \
             SELECT t.trade_id, t.order_id, t.symbol, t.side, t.price, t.quantity, t.fee, t.mode, \
                t.exchange_order_id, t.executed_at, t.fee_asset \
             FROM ",
            $($source)+,
            " ",
            $join,
            " ORDER BY t.trade_id COLLATE \"C\" \
             ON CONFLICT (trade_id) DO NOTHING"
        )
    };
}

/// The transaction path: every order of the batch, as stored afterwards.
pub(super) const UPSERT_ORDERS: &str = concat!(insert_orders!(order_arrays!()), "RETURNING *");

/// The live path's claim of one order (SeaORM, one JSON parameter).
pub(super) const UPSERT_ORDERS_JSON: &str = concat!(insert_orders!(order_json!()), "RETURNING *");

/// The one-statement path: orders that end at once, and the trades of
/// those inserted now (a duplicate's fills are not its own). Only rows
/// stored before come back: the inserted ones are the batch's own.
pub(super) const WRITE_DECIDED: &str = concat!(
    "WITH stored AS (",
    insert_orders!(order_arrays!()),
    "RETURNING orders.*, orders.xmax = 0 AS inserted), fills AS (",
    insert_trades!(
        "JOIN stored ON stored.order_id = t.order_id AND stored.inserted",
        trade_arrays_after_orders!()
    ),
    ") SELECT * FROM stored WHERE NOT inserted"
);

pub(super) const RECORD_OUTCOMES: &str = r#"
UPDATE orders AS o
SET status = r.status, filled_quantity = r.filled_quantity, fill_price = r.fill_price, fee = r.fee,
    reject_reason = r.reject_reason, exchange_order_id = r.exchange_order_id,
    updated_at = r.updated_at, filled_at = r.filled_at
FROM json_to_recordset($1::json) AS r(order_id text, status text, filled_quantity numeric, fill_price numeric,
     fee numeric, reject_reason text, exchange_order_id text, updated_at timestamptz, filled_at timestamptz)
WHERE o.order_id = r.order_id
"#;

/// The trades of a JSON array of [`NewTrade`](crate::store::NewTrade) (`$1`).
pub(super) const INSERT_TRADES: &str = insert_trades!(
    "",
    "json_to_recordset($1::json) AS t(trade_id text, order_id text, symbol text, side text, \
        price numeric, quantity numeric, fee numeric, mode text, exchange_order_id text, \
        executed_at timestamptz, fee_asset text)"
);
