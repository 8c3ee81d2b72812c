//! `halts`: every trading halt, active (`lifted_at` NULL) or lifted.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "halts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `all`, `strategy`, `bot` or `symbol`.
    pub scope: String,
    /// The strategy, bot or (normalised) symbol; NULL for `all`.
    pub target: Option<String>,
    pub reason: String,
    pub source: String,
    pub set_at: DateTimeWithTimeZone,
    /// The kill-switch entry that set it (absent when set while the stream
    /// was out of reach).
    pub set_entry: Option<String>,
    pub lifted_at: Option<DateTimeWithTimeZone>,
    pub lifted_by: Option<String>,
    pub lift_reason: Option<String>,
    pub lifted_entry: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
