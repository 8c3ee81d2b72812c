//! `orders`: one row per `order_id`, from first sight to terminal state.

use sea_orm::entity::prelude::*;

use crate::domain::{OrderStatus, TradingMode};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub order_id: String,
    /// Absent only on a REJECTED row whose message lacked it or carried a
    /// value the column cannot hold (then `raw_message` has it).
    pub symbol: Option<String>,
    /// `side` and `order_type` stay text, unlike `status` and `mode`: a
    /// REJECTED row keeps what its message said (`HOLD`, `STOP`) so that
    /// the rejection can be read back; an executed row holds the domain's
    /// names (`Side::as_str`, `OrderType::as_str`).
    pub side: Option<String>,
    pub order_type: Option<String>,
    #[sea_orm(column_type = "Decimal(Some((20, 8)))", nullable)]
    pub quantity: Option<Decimal>,
    #[sea_orm(column_type = "Decimal(Some((20, 8)))", nullable)]
    pub price: Option<Decimal>,
    pub status: OrderStatus,
    #[sea_orm(column_type = "Decimal(Some((20, 8)))", nullable)]
    pub filled_quantity: Option<Decimal>,
    #[sea_orm(column_type = "Decimal(Some((20, 8)))", nullable)]
    pub fill_price: Option<Decimal>,
    #[sea_orm(column_type = "Decimal(Some((20, 8)))", nullable)]
    pub fee: Option<Decimal>,
    pub client_id: Option<String>,
    pub strategy_id: Option<String>,
    pub bot_id: Option<String>,
    pub mode: TradingMode,
    pub reject_reason: Option<String>,
    pub exchange_order_id: Option<String>,
    pub attempts: i32,
    pub order_timestamp: Option<DateTimeWithTimeZone>,
    pub created_at: DateTimeWithTimeZone,
    pub updated_at: DateTimeWithTimeZone,
    pub filled_at: Option<DateTimeWithTimeZone>,
    /// A rejected message's fields as JSON, when a value did not fit.
    pub raw_message: Option<String>,
    /// Live: the `newClientOrderId` the exchange knows the order by.
    pub client_order_id: Option<String>,
    /// Live: the replica that owns the order until `lease_until`.
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeWithTimeZone>,
    /// Live: when it was last sent.
    pub sent_at: Option<DateTimeWithTimeZone>,
    pub send_attempts: i32,
    pub lookups: i32,
    /// Live: the exchange's own status (`NEW`, `PARTIALLY_FILLED`, …).
    pub exchange_status: Option<String>,
    pub fee_asset: Option<String>,
    /// The state sequence number: every change of status or filled
    /// quantity takes the next one (results carry it).
    pub state_seq: i32,
    /// Live: the fees per asset (`{"USDT": "0.05", "MX": "0.001"}`).
    pub fees: Option<Json>,
    /// Live: when the exchange last answered for it.
    pub resolved_at: Option<DateTimeWithTimeZone>,
    /// Live: an order reported not placed is looked up until then.
    pub watch_until: Option<DateTimeWithTimeZone>,
    /// Live: the state a late appearance corrected (its sequence number).
    pub corrects_seq: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::trades::Entity")]
    Trades,
}

impl Related<super::trades::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Trades.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// FILLED, REJECTED or ERROR: never executed again, only re-emitted.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}
