//! Orders at the exchange that carry this service's client order ids and
//! have no row here (`exchange_orphans`), and what the exchange check
//! needs to compare MEXC's orders with ours.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use super::Store;
use crate::domain::lifecycle;

/// An exchange order with no row, as MEXC listed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Orphan {
    pub exchange_order_id: String,
    pub client_order_id: String,
    pub symbol: String,
    pub side: Option<String>,
    pub order_type: Option<String>,
    pub quantity: Option<Decimal>,
    pub price: Option<Decimal>,
    pub filled_quantity: Decimal,
    pub exchange_status: String,
    pub created_at_exchange: Option<DateTime<Utc>>,
}

/// The orphans as stored: how many, and how many still open and not
/// cancelled by the service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrphanCounts {
    pub total: i64,
    pub open: i64,
}

impl Store {
    /// The client order ids among `ids` that a row here carries.
    pub async fn known_client_ids(&self, ids: &[String]) -> Result<HashSet<String>, DbErr> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = self
            .connection()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT client_order_id FROM orders WHERE client_order_id = ANY($1)",
                [ids.to_vec().into()],
            ))
            .await?;
        rows.iter()
            .map(|row| row.try_get::<String>("", "client_order_id"))
            .collect()
    }

    /// Records orphans (seen again: their status and time); returns the
    /// exchange order ids seen for the first time.
    pub async fn record_orphans(&self, orphans: &[Orphan]) -> Result<Vec<String>, DbErr> {
        let mut new = Vec::new();
        for orphan in orphans {
            let row = self
                .connection()
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO exchange_orphans (exchange_order_id, client_order_id, symbol, side, \
                       order_type, quantity, price, filled_quantity, exchange_status, created_at_exchange) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (exchange_order_id) DO UPDATE SET last_seen = now(), \
                       exchange_status = EXCLUDED.exchange_status, \
                       filled_quantity = EXCLUDED.filled_quantity \
                     RETURNING (xmax = 0) AS inserted",
                    [
                        orphan.exchange_order_id.clone().into(),
                        orphan.client_order_id.clone().into(),
                        orphan.symbol.clone().into(),
                        orphan.side.clone().into(),
                        orphan.order_type.clone().into(),
                        orphan.quantity.into(),
                        orphan.price.into(),
                        orphan.filled_quantity.into(),
                        orphan.exchange_status.clone().into(),
                        orphan.created_at_exchange.into(),
                    ],
                ))
                .await?;
            if row.map(|r| r.try_get::<bool>("", "inserted")).transpose()? == Some(true) {
                new.push(orphan.exchange_order_id.clone());
            }
        }
        Ok(new)
    }

    /// The orphans on `symbol` (MEXC's spelling) last seen open.
    pub async fn open_orphans(&self, symbol: &str) -> Result<Vec<String>, DbErr> {
        let rows = self
            .connection()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT exchange_order_id FROM exchange_orphans \
                 WHERE symbol = $1 AND exchange_status IN ('NEW', 'PARTIALLY_FILLED')",
                [symbol.into()],
            ))
            .await?;
        rows.iter()
            .map(|row| row.try_get("", "exchange_order_id"))
            .collect()
    }

    /// Claims the service's one cancel of an orphan: `false` when it was
    /// claimed before (by this check or another replica's).
    pub async fn claim_orphan_cancel(&self, exchange_order_id: &str) -> Result<bool, DbErr> {
        let done = self
            .connection()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE exchange_orphans SET cancelled_at = now(), cancel_error = NULL \
                 WHERE exchange_order_id = $1 AND cancelled_at IS NULL",
                [exchange_order_id.into()],
            ))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The claimed cancel failed: why, and the orphan may be cancelled by
    /// a later check.
    pub async fn orphan_cancel_failed(
        &self,
        exchange_order_id: &str,
        error: &str,
    ) -> Result<(), DbErr> {
        self.connection()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE exchange_orphans SET cancelled_at = NULL, cancel_error = $2 \
                 WHERE exchange_order_id = $1",
                [exchange_order_id.into(), error.into()],
            ))
            .await?;
        Ok(())
    }

    pub async fn count_orphans(&self) -> Result<OrphanCounts, DbErr> {
        let row = self
            .connection()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS total, \
                   count(*) FILTER (WHERE cancelled_at IS NULL \
                     AND exchange_status IN ('NEW', 'PARTIALLY_FILLED')) AS open \
                 FROM exchange_orphans",
            ))
            .await?;
        Ok(match row {
            Some(row) => OrphanCounts {
                total: row.try_get("", "total")?,
                open: row.try_get("", "open")?,
            },
            None => OrphanCounts::default(),
        })
    }

    /// The symbols of live orders in flight or changed within `window_secs`.
    pub async fn live_symbols(&self, window_secs: i64) -> Result<Vec<String>, DbErr> {
        let rows = self
            .connection()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT DISTINCT symbol FROM orders \
                 WHERE mode = 'live' AND symbol IS NOT NULL AND client_order_id IS NOT NULL \
                   AND (status = ANY($1) OR updated_at > now() - $2 * interval '1 second')",
                [
                    lifecycle::names(&lifecycle::IN_FLIGHT).into(),
                    window_secs.into(),
                ],
            ))
            .await?;
        rows.iter().map(|row| row.try_get("", "symbol")).collect()
    }

    /// Orders in flight that MEXC last described as open on one of
    /// `symbols` (as stored) and whose client order id its open orders do
    /// not list: each is to be looked up.
    pub async fn open_rows_not_listed(
        &self,
        symbols: &[String],
        listed: &[String],
    ) -> Result<Vec<String>, DbErr> {
        let rows = self
            .connection()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT order_id FROM orders \
                 WHERE status = ANY($1) AND symbol = ANY($2) \
                   AND exchange_status IN ('NEW', 'PARTIALLY_FILLED') \
                   AND client_order_id <> ALL($3)",
                [
                    lifecycle::names(&lifecycle::IN_FLIGHT).into(),
                    symbols.to_vec().into(),
                    listed.to_vec().into(),
                ],
            ))
            .await?;
        rows.iter().map(|row| row.try_get("", "order_id")).collect()
    }
}
