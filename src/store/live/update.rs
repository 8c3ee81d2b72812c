//! What the live path records: an update of a live order, its evidence,
//! and the `order_events` row of each change.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use crate::domain::lifecycle::Observation;
use crate::domain::{OrderStatus, format_amount};
use crate::store::rows::NewTrade;

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
    pub(super) fn evidence(&self, fills: &[NewTrade]) -> serde_json::Value {
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
pub(super) struct Event<'a> {
    pub(super) order_id: &'a str,
    pub(super) seq: i32,
    pub(super) from: Option<OrderStatus>,
    pub(super) to: OrderStatus,
    pub(super) observation: &'a str,
    pub(super) evidence: serde_json::Value,
    pub(super) replica: &'a str,
}

impl Event<'_> {
    /// Appends the event; one already there (same order and sequence
    /// number) is left as it is.
    pub(super) async fn append(self, txn: &impl ConnectionTrait) -> Result<(), DbErr> {
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
