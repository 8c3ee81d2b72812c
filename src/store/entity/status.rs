//! An order's status as a column: stored as its name (`FILLED`), read back
//! as [`OrderStatus`], so no code compares status strings. A name the
//! domain does not know fails the read instead of becoming another state.

use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, StringLen, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, DbErr, QueryResult, TryGetError, TryGetable, Value};

use crate::domain::OrderStatus;

/// Why a stored status could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an order status")]
pub struct UnknownStatus(String);

fn parse(name: String) -> Result<OrderStatus, UnknownStatus> {
    OrderStatus::parse(&name).ok_or(UnknownStatus(name))
}

impl From<OrderStatus> for Value {
    fn from(status: OrderStatus) -> Self {
        status.as_str().into()
    }
}

impl TryGetable for OrderStatus {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        parse(String::try_get_by(res, idx)?).map_err(|err| {
            TryGetError::DbErr(DbErr::TryIntoErr {
                from: "String",
                into: "OrderStatus",
                source: std::sync::Arc::new(err),
            })
        })
    }
}

impl ValueType for OrderStatus {
    fn try_from(value: Value) -> Result<Self, ValueTypeErr> {
        parse(<String as ValueType>::try_from(value)?).map_err(|_| ValueTypeErr)
    }

    fn type_name() -> String {
        "OrderStatus".to_owned()
    }

    fn array_type() -> ArrayType {
        ArrayType::String
    }

    fn column_type() -> ColumnType {
        ColumnType::String(StringLen::N(32))
    }
}

impl Nullable for OrderStatus {
    fn null() -> Value {
        Value::String(None)
    }
}

impl sea_orm::sea_query::postgres_array::NotU8 for OrderStatus {}

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
}
