//! The store side of live orders, where a network call may not happen
//! inside a transaction: the intent is committed before anything is sent,
//! and a lease says which replica owns an order in flight.
//!
//! The invariants: an order is sent only by the replica that committed its
//! move to SUBMITTED (or that took over an expired lease and looked the
//! order up first); only the lease owner moves a live row (compare-and-set
//! on `lease_owner`); a fill is recorded once whoever records it (its
//! `trade_id` comes from the exchange's trade id).

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, Statement, TransactionTrait};

use super::Store;
use super::batch::{insert_trades_statement, upsert_statement};
use super::entity::orders;
use super::rows::{NewOrder, NewTrade};
use crate::domain::OrderStatus;
use crate::domain::lifecycle::{self, Observation};

mod leases;
mod update;

use update::Event;
pub use update::{LiveUpdate, fees_json};

/// Who holds live orders, and for how long a claim lasts unrenewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub length: Duration,
}

/// What claiming a live order for sending found.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveClaim {
    /// Moved to SUBMITTED with this replica's lease and committed: send it.
    Send(orders::Model),
    /// An order in flight whose lease had expired, now this replica's:
    /// look it up at the exchange before anything is sent.
    LookUp(orders::Model),
    /// Another replica holds its lease: send nothing, leave the entry.
    Held(orders::Model),
    /// Terminal: its stored result is re-emitted.
    Done(orders::Model),
}

impl Store {
    /// Records the order (or counts one more attempt on it) and decides,
    /// under its row lock, whether this replica may send it: a new order
    /// moves to SUBMITTED under `client_order_id` with this replica's
    /// lease, committed before this returns.
    #[tracing::instrument(skip_all, fields(order_id = %row.order_id), err(level = "debug"))]
    pub async fn claim_live(
        &self,
        row: &NewOrder,
        client_order_id: &str,
        lease: &Lease,
    ) -> Result<LiveClaim, DbErr> {
        let txn = self.connection().begin().await?;
        let stored = orders::Entity::find()
            .from_raw_sql(upsert_statement(std::slice::from_ref(row))?)
            .one(&txn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(row.order_id.clone()))?;
        let status = stored.status;
        let lease_ms = lease.length.as_millis() as i64;
        let claim = if let Ok(submitted) = lifecycle::next(status, Observation::Claimed) {
            let row = take(
                &txn,
                "UPDATE orders SET status = $5, client_order_id = $2, lease_owner = $3, \
                 reject_reason = NULL, state_seq = state_seq + 1, \
                 lease_until = now() + $4 * interval '1 millisecond', updated_at = now() \
                 WHERE order_id = $1 AND status = $6 RETURNING *",
                &stored.order_id,
                [
                    client_order_id.into(),
                    lease.owner.clone().into(),
                    lease_ms.into(),
                    submitted.into(),
                    status.into(),
                ],
            )
            .await?;
            // Its first event, should no earlier claim have written it.
            let received = Event {
                order_id: &row.order_id,
                seq: stored.state_seq,
                from: None,
                to: OrderStatus::Pending,
                observation: "received",
                evidence: serde_json::json!({}),
                replica: &lease.owner,
            };
            received.append(&txn).await?;
            let claimed = Event {
                order_id: &row.order_id,
                seq: row.state_seq,
                from: Some(status),
                to: submitted,
                observation: Observation::Claimed.name(),
                evidence: serde_json::json!({"client_order_id": client_order_id}),
                replica: &lease.owner,
            };
            claimed.append(&txn).await?;
            LiveClaim::Send(row)
        } else if lifecycle::in_flight(status) {
            // Postgres' clock set the lease; Postgres' clock judges it.
            let unexpired = txn
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT lease_until > now() AS held FROM orders WHERE order_id = $1",
                    [stored.order_id.clone().into()],
                ))
                .await?
                .and_then(|row| row.try_get::<Option<bool>>("", "held").ok().flatten())
                .unwrap_or(false);
            let held_by_other =
                stored.lease_owner.as_deref() != Some(lease.owner.as_str()) && unexpired;
            if held_by_other {
                LiveClaim::Held(stored)
            } else {
                let row = take(
                    &txn,
                    "UPDATE orders SET lease_owner = $2, \
                     lease_until = now() + $3 * interval '1 millisecond' \
                     WHERE order_id = $1 RETURNING *",
                    &stored.order_id,
                    [lease.owner.clone().into(), lease_ms.into()],
                )
                .await?;
                LiveClaim::LookUp(row)
            }
        } else {
            LiveClaim::Done(stored)
        };
        txn.commit().await?;
        Ok(claim)
    }

    /// Records what was learnt, and new fills, only while this replica
    /// holds the lease; `None` when the lease was lost meanwhile (nothing
    /// is written then). The state machine decides the new status
    /// ([`lifecycle::next`]); a change it refuses (or a filled quantity
    /// that shrinks) is logged and nothing is written. Each change of
    /// status or filled quantity takes the next state sequence number and
    /// appends its event, in the same transaction.
    #[tracing::instrument(skip_all, fields(order_id = %order_id), err(level = "debug"))]
    pub async fn record_live(
        &self,
        order_id: &str,
        lease: &Lease,
        update: &LiveUpdate,
        fills: &[NewTrade],
    ) -> Result<Option<orders::Model>, DbErr> {
        let txn = self.connection().begin().await?;
        let Some(stored) = orders::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT * FROM orders WHERE order_id = $1 AND lease_owner = $2 FOR UPDATE",
                [order_id.into(), lease.owner.clone().into()],
            ))
            .one(&txn)
            .await?
        else {
            txn.rollback().await?;
            return Ok(None);
        };
        let from = stored.status;
        let to = match update.observation.map(|o| lifecycle::next(from, o)) {
            None => from,
            Some(Ok(to)) => to,
            Some(Err(illegal)) => {
                tracing::error!(order_id, error = %illegal, note = ?update.note, "a live order change the state machine refuses; nothing recorded");
                txn.rollback().await?;
                return Ok(Some(stored));
            }
        };
        let filled_before = stored.filled_quantity.unwrap_or_default();
        if update.filled_quantity.is_some_and(|q| q < filled_before) {
            tracing::error!(order_id, before = %filled_before, reported = ?update.filled_quantity, "the exchange reports less filled than recorded; nothing recorded");
            txn.rollback().await?;
            return Ok(Some(stored));
        }
        let changed = to != from || update.filled_quantity.is_some_and(|q| q != filled_before);
        // A fill after a reason was given (UNKNOWN, reported not placed)
        // makes the reason stale.
        let reason_stale = to != from
            && matches!(
                to,
                OrderStatus::Submitted
                    | OrderStatus::PartiallyFilled
                    | OrderStatus::Filled
                    | OrderStatus::Canceled
            );
        let filled_now = to == OrderStatus::Filled && from != OrderStatus::Filled;
        let late = changed && from == OrderStatus::Rejected;
        let (fee, fee_asset, fees) = match &update.fees {
            None => (None, None, None),
            Some(fees) => {
                let single = (fees.len() == 1).then(|| fees.iter().next()).flatten();
                (
                    Some(single.map(|(_, amount)| *amount)),
                    Some(single.map(|(asset, _)| asset.clone())),
                    Some(fees_json(fees)),
                )
            }
        };
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE orders SET \
               status = $3, \
               exchange_status = COALESCE($4, exchange_status), \
               exchange_order_id = COALESCE($5, exchange_order_id), \
               filled_quantity = COALESCE($6, filled_quantity), \
               fill_price = COALESCE($7, fill_price), \
               fee = CASE WHEN $8 THEN $9 ELSE fee END, \
               fee_asset = CASE WHEN $8 THEN $10 ELSE fee_asset END, \
               fees = CASE WHEN $8 THEN $11 ELSE fees END, \
               reject_reason = CASE WHEN $12::text IS NOT NULL THEN $12 \
                 WHEN $21 THEN NULL ELSE reject_reason END, \
               lookups = lookups + $13, \
               lease_until = CASE WHEN NOT $14 THEN NULL \
                 WHEN $15::bigint IS NULL THEN lease_until \
                 ELSE now() + $15::bigint * interval '1 millisecond' END, \
               lease_owner = CASE WHEN $14 THEN lease_owner ELSE NULL END, \
               filled_at = CASE WHEN $22 THEN now() ELSE filled_at END, \
               state_seq = state_seq + $16, \
               resolved_at = CASE WHEN $17 THEN now() ELSE resolved_at END, \
               watch_until = CASE WHEN $18::bigint IS NOT NULL THEN now() + $18::bigint * interval '1 millisecond' \
                 WHEN $19 THEN NULL ELSE watch_until END, \
               corrects_seq = CASE WHEN $19 THEN state_seq ELSE corrects_seq END, \
               updated_at = now() \
             WHERE order_id = $1 AND lease_owner = $2 AND status = $20 RETURNING *",
            [
                order_id.into(),
                lease.owner.clone().into(),
                to.into(),
                update.exchange_status.clone().into(),
                update.exchange_order_id.clone().into(),
                update.filled_quantity.into(),
                update.fill_price.into(),
                fees.is_some().into(),
                fee.flatten().into(),
                fee_asset.flatten().into(),
                fees.into(),
                update.reject_reason.clone().into(),
                update.not_found.into(),
                update.keep_lease.into(),
                update.poll_in.map(|poll| poll.as_millis() as i64).into(),
                i32::from(changed).into(),
                update.resolved.into(),
                update
                    .watch_for
                    .map(|watch| watch.as_millis() as i64)
                    .into(),
                late.into(),
                from.into(),
                reason_stale.into(),
                filled_now.into(),
            ],
        );
        let Some(row) = orders::Entity::find()
            .from_raw_sql(statement)
            .one(&txn)
            .await?
        else {
            txn.rollback().await?;
            return Ok(None);
        };
        if changed {
            let observation = match update.observation {
                Some(_) if late => "late_appearance",
                Some(observation) => observation.name(),
                None => "reported",
            };
            Event {
                order_id,
                seq: row.state_seq,
                from: Some(from),
                to,
                observation,
                evidence: update.evidence(fills),
                replica: &lease.owner,
            }
            .append(&txn)
            .await?;
        }
        if !fills.is_empty() {
            txn.execute_raw(insert_trades_statement(fills)?).await?;
        }
        txn.commit().await?;
        Ok(Some(row))
    }

    /// Commits the `timestamp` (exchange time, ms) the next request for an
    /// order this replica holds is signed with, before it leaves, and
    /// renews the lease; `new_attempt` counts one more send. Whoever looks
    /// the order up later knows the last moment MEXC could accept it
    /// (`sent_at + recvWindow`). `None` when the lease was lost (then
    /// nothing may be sent).
    pub async fn mark_sending(
        &self,
        order_id: &str,
        lease: &Lease,
        stamped_ms: i64,
        new_attempt: bool,
    ) -> Result<Option<orders::Model>, DbErr> {
        orders::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE orders SET send_attempts = send_attempts + $4, lookups = 0, \
                   sent_at = to_timestamp($3::bigint / 1000.0), \
                   lease_until = now() + $5 * interval '1 millisecond', updated_at = now() \
                 WHERE order_id = $1 AND lease_owner = $2 \
                   AND status = ANY($6) RETURNING *",
                [
                    order_id.into(),
                    lease.owner.clone().into(),
                    stamped_ms.into(),
                    i32::from(new_attempt).into(),
                    (lease.length.as_millis() as i64).into(),
                    lifecycle::names(&lifecycle::IN_FLIGHT).into(),
                ],
            ))
            .one(self.connection())
            .await
    }

    /// Moves an order this replica holds back to PENDING, lease released,
    /// after MEXC certainly did not apply its request (a refused key, a
    /// clock that cannot be measured): a later delivery claims it afresh.
    pub async fn release_unsent(
        &self,
        order_id: &str,
        lease: &Lease,
        why: &str,
    ) -> Result<Option<orders::Model>, DbErr> {
        let txn = self.connection().begin().await?;
        let row = orders::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE orders SET status = $4, lease_owner = NULL, lease_until = NULL, \
                   exchange_status = NULL, reject_reason = $3, state_seq = state_seq + 1, \
                   updated_at = now() \
                 WHERE order_id = $1 AND lease_owner = $2 AND status = ANY($5) RETURNING *",
                [
                    order_id.into(),
                    lease.owner.clone().into(),
                    why.into(),
                    OrderStatus::Pending.into(),
                    lifecycle::names(&lifecycle::starts_of(Observation::NotSent)).into(),
                ],
            ))
            .one(&txn)
            .await?;
        if let Some(row) = &row {
            Event {
                order_id,
                seq: row.state_seq,
                from: Some(OrderStatus::Submitted),
                to: OrderStatus::Pending,
                observation: Observation::NotSent.name(),
                evidence: serde_json::json!({ "reason": why }),
                replica: &lease.owner,
            }
            .append(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(row)
    }
}

/// Runs an UPDATE … RETURNING * on one order inside `txn`.
async fn take<const N: usize>(
    txn: &impl ConnectionTrait,
    sql: &str,
    order_id: &str,
    values: [sea_orm::Value; N],
) -> Result<orders::Model, DbErr> {
    let mut all = vec![order_id.into()];
    all.extend(values);
    orders::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            all,
        ))
        .one(txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(order_id.to_owned()))
}
