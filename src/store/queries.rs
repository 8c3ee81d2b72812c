//! The reads the HTTP API needs: recent orders, one order with its trades,
//! and counts by status.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
};

use super::Store;
use super::entity::{order_events, orders, trades};
use crate::domain::OrderStatus;

/// Which orders to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    pub limit: u64,
    pub status: Option<OrderStatus>,
    pub symbol: Option<String>,
    /// Only orders older than this cursor (a row id from a previous page).
    pub before: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromQueryResult)]
pub struct OrderCounts {
    pub total: i64,
    pub filled: i64,
    pub rejected: i64,
}

impl Store {
    #[tracing::instrument(skip_all, err)]
    pub async fn recent_orders(&self, query: &OrderQuery) -> Result<Vec<orders::Model>, DbErr> {
        let mut select = orders::Entity::find();
        if let Some(status) = query.status {
            select = select.filter(orders::Column::Status.eq(status.as_str()));
        }
        if let Some(symbol) = &query.symbol {
            select = select.filter(orders::Column::Symbol.eq(symbol.as_str()));
        }
        if let Some(before) = query.before {
            select = select.filter(orders::Column::Id.lt(before));
        }
        select
            .order_by_desc(orders::Column::Id)
            .limit(query.limit)
            .all(self.connection())
            .await
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id), err)]
    pub async fn order_with_trades(
        &self,
        order_id: &str,
    ) -> Result<Option<(orders::Model, Vec<trades::Model>)>, DbErr> {
        let Some(order) = self.order(order_id).await? else {
            return Ok(None);
        };
        Ok(Some((order, self.trades_of(order_id).await?)))
    }

    /// An order's trades, oldest first.
    pub async fn trades_of(&self, order_id: &str) -> Result<Vec<trades::Model>, DbErr> {
        trades::Entity::find()
            .filter(trades::Column::OrderId.eq(order_id))
            .order_by_asc(trades::Column::Id)
            .all(self.connection())
            .await
    }

    /// Orders whose row changed at or after `since`, by id after
    /// `after_id`, at most `limit`: a page of what a Redis failover may
    /// have taken back.
    pub async fn changed_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<orders::Model>, DbErr> {
        orders::Entity::find()
            .filter(orders::Column::UpdatedAt.gte(since))
            .filter(orders::Column::Id.gt(after_id))
            .order_by_asc(orders::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await
    }

    async fn order(&self, order_id: &str) -> Result<Option<orders::Model>, DbErr> {
        orders::Entity::find()
            .filter(orders::Column::OrderId.eq(order_id))
            .one(self.connection())
            .await
    }

    /// An order and every recorded change of its state, oldest first.
    #[tracing::instrument(skip_all, err)]
    pub async fn order_history(
        &self,
        order_id: &str,
    ) -> Result<Option<(orders::Model, Vec<order_events::Model>)>, DbErr> {
        let Some(order) = self.order(order_id).await? else {
            return Ok(None);
        };
        let events = order_events::Entity::find()
            .filter(order_events::Column::OrderId.eq(order_id))
            .order_by_asc(order_events::Column::Seq)
            .all(self.connection())
            .await?;
        Ok(Some((order, events)))
    }

    #[tracing::instrument(skip_all, err)]
    pub async fn order_counts(&self) -> Result<OrderCounts, DbErr> {
        let counts = orders::Entity::find()
            .select_only()
            .column_as(Expr::cust("count(*)"), "total")
            .column_as(count_of(OrderStatus::Filled), "filled")
            .column_as(count_of(OrderStatus::Rejected), "rejected")
            .into_model::<OrderCounts>()
            .one(self.connection())
            .await?;
        Ok(counts.unwrap_or_default())
    }
}

/// `count(*)` of the rows in `status`, the status bound as a value.
fn count_of(status: OrderStatus) -> Expr {
    Expr::cust_with_values("count(*) FILTER (WHERE status = $1)", [status.as_str()])
}
