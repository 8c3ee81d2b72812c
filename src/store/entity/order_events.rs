//! `order_events`: one row per change of a live order's state, with the
//! observation that caused it and its evidence (the audit trail).

use sea_orm::entity::prelude::*;

use crate::domain::OrderStatus;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "order_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub order_id: String,
    /// The order's state sequence number after this change.
    pub seq: i32,
    /// `None` for the order's first event.
    pub from_status: Option<OrderStatus>,
    pub to_status: OrderStatus,
    /// `received`, `claimed`, `not_sent`, `refused`, `failed`, `reported`,
    /// `overdue`, `not_placed` or `late_appearance`.
    pub observation: String,
    /// What the exchange said, the reason, the trade ids.
    pub evidence: Option<Json>,
    /// The lease owner that recorded it (replica and claim).
    pub replica: Option<String>,
    pub at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
