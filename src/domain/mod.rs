//! The trading domain: orders as they arrive, their validation and identity,
//! and the results the service announces. Pure data and arithmetic: nothing
//! here does I/O, so every rule is unit-tested beside its code.

mod amount;
mod content;
mod halt;
mod identity;
pub mod lifecycle;
mod message;
pub(crate) mod order;
mod result;
mod timestamp;

pub use amount::{AmountError, FillAmounts, SCALE, fill_amounts, format_amount, parse_amount};
pub use content::Content;
pub use halt::{
    Halt, HaltAction, HaltCommand, HaltScope, halted_reason, halted_reason_for, is_visible,
};
pub use identity::{id_problem, symbol_problem};
pub use message::{Fields, Incoming, Parsed, Rejection, fits_column};
pub use message::{message_identity, message_summary, valid_traceparent};
pub use order::{Order, OrderType, Side, normalise_symbol};
pub use result::{ExecutionResult, Fill, OrderStatus, TradingMode};
pub use timestamp::{
    EARLIEST_TIMESTAMP_SECS, END_TIMESTAMP_SECS, issued_in_future, parse_timestamp, stale_reason,
};

/// Largest number of characters an `order_id` (or other identifier) may have.
pub const MAX_ID_LEN: usize = 255;
/// Longest symbol the `orders.symbol` column holds.
pub const SYMBOL_COLUMN_LEN: usize = 64;
