//! Columns that hold a domain name: an order's status (`FILLED`) and the
//! trading mode of an order or trade (`paper`). Each is stored as its name
//! and read back as its type, so no code compares those strings; a name
//! the domain does not know fails the read instead of becoming something
//! else.

use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, StringLen, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, DbErr, QueryResult, TryGetError, TryGetable, Value};

use crate::domain::{OrderStatus, TradingMode};

/// Why a stored name could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{name:?} is not a known {what}")]
pub struct UnknownName {
    what: &'static str,
    name: String,
}

/// The column traits of a type with `as_str` and `parse`.
macro_rules! named_column {
    ($type:ident, $what:literal, $len:literal) => {
        impl From<$type> for Value {
            fn from(value: $type) -> Self {
                value.as_str().into()
            }
        }

        impl TryGetable for $type {
            fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
                let name = String::try_get_by(res, idx)?;
                $type::parse(&name).ok_or_else(|| {
                    TryGetError::DbErr(DbErr::TryIntoErr {
                        from: "String",
                        into: stringify!($type),
                        source: std::sync::Arc::new(UnknownName { what: $what, name }),
                    })
                })
            }
        }

        impl ValueType for $type {
            fn try_from(value: Value) -> Result<Self, ValueTypeErr> {
                let name = <String as ValueType>::try_from(value)?;
                $type::parse(&name).ok_or(ValueTypeErr)
            }

            fn type_name() -> String {
                stringify!($type).to_owned()
            }

            fn array_type() -> ArrayType {
                ArrayType::String
            }

            fn column_type() -> ColumnType {
                ColumnType::String(StringLen::N($len))
            }
        }

        impl Nullable for $type {
            fn null() -> Value {
                Value::String(None)
            }
        }

        impl sea_orm::sea_query::postgres_array::NotU8 for $type {}
    };
}

named_column!(OrderStatus, "order status", 32);
named_column!(TradingMode, "trading mode", 16);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::ALL;

    #[test]
    fn every_status_reads_back_as_itself_and_strangers_are_refused() {
        for status in ALL {
            let value: Value = status.into();
            assert_eq!(<OrderStatus as ValueType>::try_from(value).unwrap(), status);
        }
        assert!(<OrderStatus as ValueType>::try_from(Value::from("HALF_DONE")).is_err());
    }

    #[test]
    fn every_mode_reads_back_as_itself_and_strangers_are_refused() {
        for mode in [
            TradingMode::Paper,
            TradingMode::Mock,
            TradingMode::Live,
            TradingMode::DryRun,
        ] {
            let value: Value = mode.into();
            assert_eq!(<TradingMode as ValueType>::try_from(value).unwrap(), mode);
        }
        assert!(<TradingMode as ValueType>::try_from(Value::from("yolo")).is_err());
    }
}
