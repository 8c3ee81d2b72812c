//! Leases of live orders in flight: renewed, let go of once announced,
//! taken over when expired; and the count of orders in flight.

use std::time::Duration;

use sea_orm::prelude::DateTimeWithTimeZone;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    Statement,
};

use super::Lease;
use crate::domain::lifecycle;
use crate::store::Store;
use crate::store::entity::orders;

impl Store {
    /// Live orders not finished, by status (for `/status`).
    pub async fn live_in_flight(&self) -> Result<Vec<(String, i64)>, DbErr> {
        let rows = self
            .connection()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT status, count(*) AS n FROM orders \
                 WHERE status = ANY($1) GROUP BY status",
                [lifecycle::names(&lifecycle::IN_FLIGHT).into()],
            ))
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("", "status")?, row.try_get("", "n")?)))
            .collect()
    }

    /// Lets go of orders whose results are announced (`ids` with the lease
    /// owner each was recorded under). A finished order is let go of
    /// entirely (one reported not placed and still watched keeps the time
    /// of its next look); one in flight is parked: no replica owns it, and
    /// it keeps the time of its next look, when any replica's reconciler
    /// takes it, or earlier, when the user data stream brings news of it.
    ///
    /// `next_look_within`: an order in flight is looked at no later than
    /// this from now (the stream went down while it was held: its slow
    /// poll no longer holds).
    pub async fn release_announced(
        &self,
        ids: &[(String, String)],
        next_look_within: Option<Duration>,
    ) -> Result<u64, DbErr> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (order_ids, owners): (Vec<String>, Vec<String>) = ids.iter().cloned().unzip();
        let done = self
            .connection()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE orders o SET lease_owner = NULL, \
                   lease_until = CASE \
                     WHEN o.status <> ALL($3) AND $4::bigint IS NOT NULL \
                       THEN LEAST(o.lease_until, now() + $4::bigint * interval '1 millisecond') \
                     WHEN o.status <> ALL($3) OR o.watch_until > now() THEN o.lease_until END \
                 FROM unnest($1::text[], $2::text[]) AS a(order_id, owner) \
                 WHERE o.order_id = a.order_id AND o.lease_owner = a.owner",
                [
                    order_ids.into(),
                    owners.into(),
                    finished().into(),
                    next_look_within
                        .map(|within| within.as_millis() as i64)
                        .into(),
                ],
            ))
            .await?;
        Ok(done.rows_affected())
    }

    /// Takes the lease of a parked order in flight (or of one whose lease
    /// expired) by its client order id, to record what the user data
    /// stream says of it; with the time of its next look, to be kept when
    /// it is parked again ([`Store::park`]). `None` when the order is not
    /// ours, is finished, or a replica holds it now.
    pub async fn take_parked(
        &self,
        client_order_id: &str,
        lease: &Lease,
    ) -> Result<Option<(orders::Model, Option<DateTimeWithTimeZone>)>, DbErr> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE orders o SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond' \
             FROM (SELECT id, lease_until FROM orders \
                   WHERE client_order_id = $3 AND status = ANY($4) \
                     AND (lease_owner IS NULL OR lease_until < now()) FOR UPDATE) AS before \
             WHERE o.id = before.id \
             RETURNING o.*, before.lease_until AS next_look",
            [
                lease.owner.clone().into(),
                (lease.length.as_millis() as i64).into(),
                client_order_id.into(),
                lifecycle::names(&lifecycle::IN_FLIGHT).into(),
            ],
        );
        let Some(row) = self.connection().query_one_raw(statement).await? else {
            return Ok(None);
        };
        let next_look: Option<DateTimeWithTimeZone> = row.try_get("", "next_look")?;
        let order = orders::Model::from_query_result(&row, "")?;
        Ok(Some((order, next_look)))
    }

    /// Parks an order this lease took and did not change, with the time of
    /// its next look as it was.
    pub async fn park(
        &self,
        order_id: &str,
        lease: &Lease,
        next_look: Option<DateTimeWithTimeZone>,
    ) -> Result<(), DbErr> {
        self.connection()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE orders SET lease_owner = NULL, lease_until = $3 \
                 WHERE order_id = $1 AND lease_owner = $2",
                [
                    order_id.into(),
                    lease.owner.clone().into(),
                    next_look.into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Orders recorded as not placed (`REJECTED`) that MEXC shows after all
    /// (a push, an open or filled order in its list): watched again and
    /// due for a look now, so that the late appearance is recorded.
    /// Returns their order ids.
    pub async fn rewatch_not_placed(
        &self,
        client_order_ids: &[String],
        watch: Duration,
    ) -> Result<Vec<String>, DbErr> {
        if client_order_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .connection()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE orders SET \
                   watch_until = GREATEST(watch_until, now() + $2 * interval '1 millisecond'), \
                   lease_until = CASE WHEN lease_owner IS NULL THEN now() ELSE lease_until END \
                 WHERE client_order_id = ANY($1) AND status = 'REJECTED' \
                 RETURNING order_id",
                [
                    client_order_ids.to_vec().into(),
                    (watch.as_millis() as i64).into(),
                ],
            ))
            .await?;
        rows.iter().map(|row| row.try_get("", "order_id")).collect()
    }

    /// The live order with this client order id, whatever its state.
    pub async fn live_order_by_client_id(
        &self,
        client_order_id: &str,
    ) -> Result<Option<orders::Model>, DbErr> {
        orders::Entity::find()
            .filter(orders::Column::ClientOrderId.eq(client_order_id))
            .one(self.connection())
            .await
    }

    /// Parked orders in flight among `order_ids` are looked at within
    /// `within` from now, at the latest.
    pub async fn look_within(&self, order_ids: &[String], within: Duration) -> Result<u64, DbErr> {
        let done = self
            .connection()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE orders SET lease_until = LEAST(lease_until, now() + $3 * interval '1 millisecond') \
                 WHERE order_id = ANY($1) AND status = ANY($2) AND lease_owner IS NULL",
                [
                    order_ids.to_vec().into(),
                    lifecycle::names(&lifecycle::IN_FLIGHT).into(),
                    (within.as_millis() as i64).into(),
                ],
            ))
            .await?;
        Ok(done.rows_affected())
    }

    /// Makes parked orders in flight due for a lookup now: every one
    /// (`None`: after a gap in the user data stream, whatever it missed is
    /// looked up at once) or those of `order_ids`. Orders a replica holds
    /// are left to it. Returns how many.
    pub async fn make_due(&self, order_ids: Option<&[String]>) -> Result<u64, DbErr> {
        let done = self
            .connection()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE orders SET lease_until = now() \
                 WHERE status = ANY($1) AND lease_owner IS NULL AND lease_until > now() \
                   AND ($2::text[] IS NULL OR order_id = ANY($2))",
                [
                    lifecycle::names(&lifecycle::IN_FLIGHT).into(),
                    order_ids.map(<[String]>::to_vec).into(),
                ],
            ))
            .await?;
        Ok(done.rows_affected())
    }

    /// Renews this replica's leases on `order_ids` (a replica waiting on the
    /// exchange or the rate limit keeps its orders); returns how many it
    /// still held.
    pub async fn renew_leases(&self, lease: &Lease, order_ids: &[String]) -> Result<u64, DbErr> {
        if order_ids.is_empty() {
            return Ok(0);
        }
        let done = self
            .connection()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE orders SET lease_until = now() + $2 * interval '1 millisecond' \
                 WHERE lease_owner = $1 AND order_id = ANY($3)",
                [
                    lease.owner.clone().into(),
                    (lease.length.as_millis() as i64).into(),
                    order_ids.to_vec().into(),
                ],
            ))
            .await?;
        Ok(done.rows_affected())
    }

    /// Takes over up to `limit` orders whose lease has expired, skipping
    /// rows another replica is taking at the same moment: orders in flight
    /// (a dead replica's, or ones due for a lookup), each to be looked up
    /// before anything is sent for it, and finished orders whose result was
    /// recorded but maybe never announced (the lease is released only once
    /// it was).
    pub async fn take_expired_leases(
        &self,
        lease: &Lease,
        limit: u64,
    ) -> Result<Vec<orders::Model>, DbErr> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE orders SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond' \
             WHERE id IN ( \
               SELECT id FROM orders \
               WHERE lease_until IS NOT NULL AND lease_until < now() \
               ORDER BY lease_until LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING *",
            [
                lease.owner.clone().into(),
                (lease.length.as_millis() as i64).into(),
                (limit as i64).into(),
            ],
        );
        orders::Entity::find()
            .from_raw_sql(statement)
            .all(self.connection())
            .await
    }
}

/// The names of the statuses an order ends in.
fn finished() -> Vec<String> {
    lifecycle::ALL
        .into_iter()
        .filter(|status| status.is_terminal())
        .map(|status| status.as_str().to_owned())
        .collect()
}
