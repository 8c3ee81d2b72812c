//! `trades`: one row per fill, with a `trade_id` derived from the order.

use sea_orm::entity::prelude::*;

use crate::domain::TradingMode;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "trades")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub trade_id: String,
    pub order_id: String,
    pub symbol: String,
    pub side: String,
    #[sea_orm(column_type = "Decimal(Some((20, 8)))")]
    pub price: Decimal,
    #[sea_orm(column_type = "Decimal(Some((20, 8)))")]
    pub quantity: Decimal,
    #[sea_orm(column_type = "Decimal(Some((20, 8)))")]
    pub fee: Decimal,
    pub mode: TradingMode,
    pub exchange_order_id: Option<String>,
    pub executed_at: DateTimeWithTimeZone,
    /// The asset the fee is charged in (live fills).
    pub fee_asset: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::orders::Entity",
        from = "Column::OrderId",
        to = "super::orders::Column::OrderId"
    )]
    Order,
}

impl Related<super::orders::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Order.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
