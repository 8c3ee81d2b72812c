//! The store side of live orders, where a network call may not happen
//! inside a transaction: the intent is committed before anything is sent,
//! and a lease says which replica owns an order in flight.
//!
//! The invariants: an order is sent only by the replica that committed its
//! move to SUBMITTED (or that took over an expired lease and looked the
//! order up first); only the lease owner moves a live row (compare-and-set
//! on `lease_owner`); a fill is recorded once whoever records it (its
//! `trade_id` comes from the exchange's trade id).

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, Statement, TransactionTrait};

use super::Store;
use super::batch::{insert_trades_statement, upsert_statement};
use super::entity::orders;
use super::rows::{NewOrder, NewTrade};
use crate::domain::lifecycle::{self, Observation};
use crate::domain::{OrderStatus, format_amount};

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

/// What was learnt about a live order, to record: the observation that
/// moves it (none when only bookkeeping changes), what the exchange said,
/// and how long the lease lasts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveUpdate {
    /// What moves the order through its state machine, if anything.
    pub observation: Option<Observation>,
    pub exchange_status: Option<String>,
    pub exchange_order_id: Option<String>,
    pub filled_quantity: Option<Decimal>,
    pub fill_price: Option<Decimal>,
    /// The fees per asset. One asset: `fee` and `fee_asset` too; several:
    /// those two are cleared (no one figure is the fee).
    pub fees: Option<BTreeMap<String, Decimal>>,
    pub reject_reason: Option<String>,
    /// What else explains the observation, for the audit trail (an error
    /// MEXC gave, the searches that found nothing).
    pub note: Option<String>,
    /// Lookups MEXC answered "no such order" (a send starts the count
    /// again).
    pub not_found: i32,
    /// The exchange answered for the order now (its resolve deadline
    /// starts again).
    pub resolved: bool,
    /// Reported not placed: keep looking for it this long.
    pub watch_for: Option<Duration>,
    /// Keep the lease (the order is still open) or let it go (terminal).
    pub keep_lease: bool,
    /// With `keep_lease`: the lease ends after this long, when any
    /// replica's reconciler looks the order up again.
    pub poll_in: Option<Duration>,
}

impl LiveUpdate {
    /// An update that moves the order on `observation`.
    pub fn on(observation: Observation) -> Self {
        LiveUpdate {
            observation: Some(observation),
            ..LiveUpdate::default()
        }
    }

    /// The evidence of the change, for `order_events`.
    fn evidence(&self, fills: &[NewTrade]) -> serde_json::Value {
        let mut evidence = serde_json::Map::new();
        let mut put = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                evidence.insert(name.to_owned(), serde_json::Value::String(value));
            }
        };
        put("exchange_status", self.exchange_status.clone());
        put("exchange_order_id", self.exchange_order_id.clone());
        put("executed_qty", self.filled_quantity.map(format_amount));
        put("reason", self.reject_reason.clone());
        put("note", self.note.clone());
        if let Some(fees) = &self.fees {
            evidence.insert("fees".into(), fees_json(fees));
        }
        if !fills.is_empty() {
            let ids = fills.iter().map(|t| t.trade_id.clone().into()).collect();
            evidence.insert("trade_ids".into(), serde_json::Value::Array(ids));
        }
        serde_json::Value::Object(evidence)
    }
}

/// Fees per asset as the `fees` column holds them: exact decimal text.
pub fn fees_json(fees: &BTreeMap<String, Decimal>) -> serde_json::Value {
    serde_json::Value::Object(
        fees.iter()
            .map(|(asset, amount)| (asset.clone(), format_amount(*amount).into()))
            .collect(),
    )
}

/// One change of an order's state, as `order_events` keeps it.
struct Event<'a> {
    order_id: &'a str,
    seq: i32,
    from: Option<OrderStatus>,
    to: OrderStatus,
    observation: &'a str,
    evidence: serde_json::Value,
    replica: &'a str,
}

impl Event<'_> {
    /// Appends the event; one already there (same order and sequence
    /// number) is left as it is.
    async fn append(self, txn: &impl ConnectionTrait) -> Result<(), DbErr> {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO order_events (order_id, seq, from_status, to_status, observation, evidence, replica) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (order_id, seq) DO NOTHING",
            [
                self.order_id.into(),
                self.seq.into(),
                self.from.map(|s| s.as_str().to_owned()).into(),
                self.to.as_str().into(),
                self.observation.into(),
                self.evidence.into(),
                self.replica.into(),
            ],
        ))
        .await?;
        Ok(())
    }
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

    /// Lets go of finished orders whose results are announced (`ids` with
    /// the lease owner each was recorded under); orders still in flight
    /// keep their leases. An order reported not placed and still watched
    /// keeps the time of its next look.
    pub async fn release_announced(&self, ids: &[(String, String)]) -> Result<u64, DbErr> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (order_ids, owners): (Vec<String>, Vec<String>) = ids.iter().cloned().unzip();
        let finished: Vec<String> = lifecycle::ALL
            .into_iter()
            .filter(|status| status.is_terminal())
            .map(|status| status.as_str().to_owned())
            .collect();
        let done = self
            .connection()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE orders o SET lease_owner = NULL, \
                   lease_until = CASE WHEN o.watch_until > now() THEN o.lease_until END \
                 FROM unnest($1::text[], $2::text[]) AS a(order_id, owner) \
                 WHERE o.order_id = a.order_id AND o.lease_owner = a.owner \
                   AND o.status = ANY($3)",
                [order_ids.into(), owners.into(), finished.into()],
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
