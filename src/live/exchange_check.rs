//! The exchange check: MEXC's orders compared with ours, at start-up and
//! every `LIVE_EXCHANGE_CHECK_SECS`, by one replica of the deployment at a
//! time (a lease in Redis as long as the interval).
//!
//! For every symbol this deployment trades (its live orders in flight or
//! changed within the window, and `SYMBOL_ALLOWLIST`): the open orders
//! (`openOrders`) and the orders of the window (`allOrders`). An order
//! carrying this service's client order id form with no row here (a
//! database restored from a backup, a second deployment sharing the
//! namespace, a double send) is an alert: logged at error, counted,
//! recorded in `exchange_orphans`, shown in `/status`, and cancelled only
//! with `LIVE_CANCEL_ORPHANS=true`. An order in flight that MEXC last
//! described as open and no longer lists is looked up now.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{LiveDesk, LiveError};
use crate::bus::RedisLease;
use crate::execution::mexc::ExchangeStatus;
use crate::execution::mexc::{MexcError, OrderState, Window, is_service_client_id, mexc_symbol};
use crate::store::Orphan;

/// How far back `allOrders` is read: at least this, or two intervals.
const MIN_WINDOW: Duration = Duration::from_secs(60 * 60);

/// What the check needs beyond the desk.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// `LIVE_EXCHANGE_CHECK_SECS`.
    pub every: Duration,
    /// `LIVE_CANCEL_ORPHANS`.
    pub cancel_orphans: bool,
    /// `SYMBOL_ALLOWLIST`, normalised.
    pub symbols: Vec<String>,
    /// The Redis key of the deployment's check lease.
    pub lease_key: String,
}

pub struct ExchangeCheck {
    desk: Arc<LiveDesk>,
    lease: RedisLease,
    options: CheckOptions,
}

/// What one check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checked {
    pub symbols: usize,
    pub exchange_orders: usize,
    /// Exchange order ids with no row, seen for the first time.
    pub new_orphans: Vec<String>,
    pub cancelled: usize,
    /// Orders in flight MEXC no longer lists as open: looked up now.
    pub looked_up: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error("MEXC: {0}")]
    Exchange(#[from] MexcError),
    /// Nothing asked of MEXC now (the breaker is open, or MEXC asked to
    /// wait).
    #[error("skipped: {0}")]
    Skipped(String),
}

impl From<sea_orm::DbErr> for CheckError {
    fn from(err: sea_orm::DbErr) -> Self {
        CheckError::Live(err.into())
    }
}

impl ExchangeCheck {
    pub fn new(desk: Arc<LiveDesk>, pool: crate::bus::Pool, options: CheckOptions) -> Self {
        ExchangeCheck {
            lease: RedisLease::new(
                pool,
                options.lease_key.clone(),
                desk.replica.clone(),
                options.every,
            ),
            desk,
            options,
        }
    }

    /// Runs until `stop`: a check whenever this replica takes the lease
    /// (free once the last check's interval has passed).
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let stats = self.desk.stats.live.clone();
        while !stop.is_cancelled() {
            match self.lease.hold().await {
                Ok(true) => match self.check().await {
                    Ok(found) => {
                        stats.exchange_checks.with_label_values(&["ok"]).inc();
                        tracing::info!(
                            symbols = found.symbols,
                            exchange_orders = found.exchange_orders,
                            new_orphans = found.new_orphans.len(),
                            cancelled = found.cancelled,
                            looked_up = found.looked_up,
                            "exchange check done"
                        );
                    }
                    Err(err) => {
                        stats.exchange_checks.with_label_values(&["failed"]).inc();
                        tracing::warn!(error = %err, "exchange check failed; tried again next interval");
                    }
                },
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "cannot read the exchange check lease"),
            }
            if let Ok(counts) = self.desk.store.count_orphans().await {
                stats.orphans_open.set(counts.open);
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.options.every) => {}
            }
        }
        Ok(())
    }

    /// One comparison of MEXC's orders with ours. A symbol whose lists
    /// cannot be read is counted as failed and the others are checked.
    pub async fn check(&self) -> Result<Checked, CheckError> {
        if self.desk.breaker().blocks() {
            return Err(CheckError::Skipped("the circuit breaker is open".into()));
        }
        if let Some(pause) = self
            .desk
            .limiter
            .paused_for()
            .await
            .map_err(LiveError::from)?
        {
            return Err(CheckError::Skipped(format!("MEXC asked to wait {pause:?}")));
        }
        let window = self.options.every.saturating_mul(2).max(MIN_WINDOW);
        let mut by_exchange: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for stored in self
            .desk
            .store
            .live_symbols(window.as_secs() as i64)
            .await?
        {
            by_exchange
                .entry(mexc_symbol(&stored))
                .or_default()
                .push(stored);
        }
        for symbol in &self.options.symbols {
            by_exchange.entry(mexc_symbol(symbol)).or_default();
        }
        let now = self.desk.client.clock().now_ms();
        let span = Window::new(now - window.as_millis() as i64, now + 60_000);
        let mut checked = Checked {
            symbols: by_exchange.len(),
            ..Checked::default()
        };
        let mut failed = None;
        for (symbol, stored_names) in &by_exchange {
            if let Err(err) = self
                .check_symbol(symbol, stored_names, span, &mut checked)
                .await
            {
                tracing::warn!(symbol, error = %err, "exchange check of a symbol failed");
                if let CheckError::Exchange(MexcError::RateLimited { retry_after, .. }) = &err {
                    self.desk
                        .limiter
                        .pause(*retry_after)
                        .await
                        .map_err(LiveError::from)?;
                    return Err(err);
                }
                failed = Some(err);
            }
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(checked),
        }
    }

    async fn check_symbol(
        &self,
        symbol: &str,
        stored_names: &[String],
        span: Window,
        checked: &mut Checked,
    ) -> Result<(), CheckError> {
        let store = &self.desk.store;
        let open = self.desk.client.open_orders(symbol).await?;
        let recent = self.desk.client.orders_between(symbol, span).await?;
        let mut orders: BTreeMap<String, OrderState> = BTreeMap::new();
        for order in recent.into_iter().chain(open.iter().cloned()) {
            orders.insert(order.order_id.0.clone(), order);
        }
        checked.exchange_orders += orders.len();
        let ours: Vec<&OrderState> = orders
            .values()
            .filter(|o| client_id(o).is_some_and(is_service_client_id))
            .collect();
        let ids: Vec<String> = ours
            .iter()
            .filter_map(|o| client_id(o).map(str::to_owned))
            .collect();
        let known = store.known_client_ids(&ids).await?;
        let orphans: Vec<Orphan> = ours
            .iter()
            .filter(|o| client_id(o).is_some_and(|id| !known.contains(id)))
            .map(|o| orphan_of(o))
            .collect();
        self.raise(&orphans, checked).await?;
        self.follow_closed_orphans(symbol, &orders).await?;
        // An order recorded as not placed that MEXC shows open or filled.
        let shown: Vec<String> = ours
            .iter()
            .filter(|o| !o.executed_qty.is_zero() || is_open(o))
            .filter_map(|o| client_id(o).map(str::to_owned))
            .filter(|id| known.contains(id))
            .collect();
        for order_id in store
            .rewatch_not_placed(&shown, self.desk.options.watch_not_placed)
            .await?
        {
            tracing::error!(
                order_id,
                "MEXC shows an order recorded as REJECTED: watched again and looked up"
            );
            checked.looked_up += 1;
        }
        let listed: Vec<String> = open
            .iter()
            .filter_map(|o| client_id(o).map(str::to_owned))
            .collect();
        let mut names: BTreeSet<String> = stored_names.iter().cloned().collect();
        names.insert(symbol.to_owned());
        let names: Vec<String> = names.into_iter().collect();
        let gone = store.open_rows_not_listed(&names, &listed).await?;
        if !gone.is_empty() {
            checked.looked_up += store.make_due(Some(&gone)).await?;
        }
        Ok(())
    }

    /// Orphans recorded open that MEXC no longer lists (closed by hand,
    /// older than the window) are looked up by id, so that their stored
    /// state, and the alert on open orphans, follow MEXC's. One that cannot
    /// be looked up is left as it was (and logged).
    async fn follow_closed_orphans(
        &self,
        symbol: &str,
        listed: &BTreeMap<String, OrderState>,
    ) -> Result<(), CheckError> {
        let store = &self.desk.store;
        let mut seen = Vec::new();
        for id in store.open_orphans(symbol).await? {
            let state = match listed.get(&id) {
                Some(state) => state.clone(),
                None => {
                    let id = crate::execution::mexc::OrderId(id);
                    match self.desk.client.query_order_by_id(symbol, &id).await {
                        Ok(state) => state,
                        Err(err) => {
                            tracing::warn!(exchange_order_id = %id, error = %err, "an orphan recorded open cannot be looked up");
                            continue;
                        }
                    }
                }
            };
            seen.push(orphan_of(&state));
        }
        store.record_orphans(&seen).await?;
        Ok(())
    }

    /// Records orphans, alerts on new ones, cancels open ones when allowed.
    async fn raise(&self, orphans: &[Orphan], checked: &mut Checked) -> Result<(), CheckError> {
        if orphans.is_empty() {
            return Ok(());
        }
        let store = &self.desk.store;
        let new = store.record_orphans(orphans).await?;
        for orphan in orphans {
            if new.contains(&orphan.exchange_order_id) {
                self.desk.stats.live.orphans.inc();
                tracing::error!(
                    exchange_order_id = %orphan.exchange_order_id,
                    client_order_id = %orphan.client_order_id,
                    symbol = %orphan.symbol,
                    status = %orphan.exchange_status,
                    filled = %orphan.filled_quantity,
                    "ORPHAN ORDER: MEXC holds an order with this service's client order id and no row here (restored database? second deployment on this namespace? double send?)"
                );
            }
            let open = matches!(orphan.exchange_status.as_str(), "NEW" | "PARTIALLY_FILLED");
            // The cancel is claimed first: two checks never both send it.
            if !self.options.cancel_orphans
                || !open
                || !store.claim_orphan_cancel(&orphan.exchange_order_id).await?
            {
                continue;
            }
            self.desk.stats.live.cancels.inc();
            match self
                .desk
                .client
                .cancel_order(&orphan.symbol, &orphan.client_order_id)
                .await
            {
                Ok(_) => {
                    checked.cancelled += 1;
                    tracing::warn!(exchange_order_id = %orphan.exchange_order_id, "orphan order cancelled (LIVE_CANCEL_ORPHANS)");
                }
                Err(err) => {
                    store
                        .orphan_cancel_failed(&orphan.exchange_order_id, &err.to_string())
                        .await?;
                    tracing::error!(exchange_order_id = %orphan.exchange_order_id, error = %err, "orphan order could not be cancelled");
                }
            }
        }
        checked.new_orphans.extend(new);
        Ok(())
    }
}

fn client_id(order: &OrderState) -> Option<&str> {
    order
        .client_order_id
        .as_deref()
        .or(order.orig_client_order_id.as_deref())
}

fn is_open(order: &OrderState) -> bool {
    matches!(
        order.status,
        ExchangeStatus::New | ExchangeStatus::PartiallyFilled
    )
}

fn orphan_of(order: &OrderState) -> Orphan {
    Orphan {
        exchange_order_id: order.order_id.0.clone(),
        client_order_id: client_id(order).unwrap_or_default().to_owned(),
        symbol: order.symbol.clone(),
        side: order.side.clone(),
        order_type: order.order_type.clone(),
        quantity: order.orig_qty,
        price: order.price,
        filled_quantity: order.executed_qty,
        exchange_status: super::state::exchange_status_text(&order.status),
        created_at_exchange: order.time.and_then(chrono::DateTime::from_timestamp_millis),
    }
}
