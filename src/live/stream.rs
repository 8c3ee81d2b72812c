//! The user data stream: fills as they happen, with REST as the backstop.
//!
//! Every replica runs [`UserStream::run`]; the one holding the deployment's
//! lease in Redis keeps one connection: a `listenKey` (kept alive every
//! 30 minutes, replaced when MEXC no longer knows it), the websocket
//! subscribed to the private orders and deals channels, MEXC's `PING` when
//! quiet, a new connection before the 24-hour limit and after any drop
//! (with backoff). While it is subscribed it says so in Redis, and every
//! replica then polls the orders MEXC has described at the slow interval
//! (`LIVE_STREAM_POLL_SECS`); polling never stops.
//!
//! A push changes an order through the same path as a lookup: the order's
//! lease is taken once it is parked (while a replica works on it, the push
//! waits, at most as long as that replica's lease), the push is read as the
//! lookup's answer would be ([`super::update_for`], with the fills already
//! recorded and those pushed), recorded through the state machine,
//! announced once, and the order parked again. Fills that do not add up yet
//! wait for their deal pushes a moment; then the order is handed to a
//! lookup. After any gap (the stream known to be down anywhere, a new
//! connection, a frame that does not decode) every parked order in flight
//! is looked up at once, so nothing pushed meanwhile is missed.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{LiveDesk, LiveError, is_news, update_for};
use crate::bus::{Announcement, Publisher, RedisLease};
use crate::domain::OrderStatus;
use crate::domain::lifecycle::IN_FLIGHT;
use crate::execution::mexc::push::{DEALS_CHANNEL, ORDERS_CHANNEL, Push};
use crate::execution::mexc::{Arrived, OrderId, OrderState, PushSocket, SocketError, Trade};
use crate::retry::Backoff;
use crate::store::entity::{orders, trades};
use crate::store::result_from_row;

/// How long the stream lease lasts unrenewed (renewed every second).
const LEASE_LENGTH: Duration = Duration::from_secs(10);
/// How long the health flag lasts unless said again.
const HEALTH_TTL: Duration = Duration::from_secs(5);
/// The period of the holder's housekeeping (lease, health, deadlines) and
/// of a standby's look at the lease.
const TICK: Duration = Duration::from_secs(1);
/// A subscription unanswered after this long fails the connection.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(5);
/// `PUT` on the key this often (MEXC: valid 60 minutes, renew every 30).
const KEEP_KEY_EVERY: Duration = Duration::from_secs(30 * 60);
/// A connection is replaced after this long (MEXC closes it at 24 h).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(23 * 60 * 60);
/// How long an order push waits for its deal pushes (or a deal for its
/// order push) before the order is handed to a lookup.
const FILLS_WAIT: Duration = Duration::from_secs(2);
/// How often waiting pushes are tried again (their order may be held).
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Where the stream connects, and its lease.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// `MEXC_WS_URL`.
    pub ws_url: String,
    /// The Redis key of the deployment's lease on the stream.
    pub lease_key: String,
    /// This replica's name, as the lease's holder.
    pub replica: String,
    /// `LIVE_STREAM_SILENCE_SECS`: nothing at all for this long (not even
    /// the `PONG` to the `PING` sent after half of it): the connection is
    /// stalled, and replaced.
    pub silence: Duration,
}

/// What a deployment's stream task needs.
pub struct UserStream {
    desk: Arc<LiveDesk>,
    publisher: Publisher,
    lease: RedisLease,
    ws_url: String,
    silence: Duration,
}

/// Pushes about one order not applied yet.
#[derive(Debug, Default)]
struct Waiting {
    /// The newest order push.
    state: Option<OrderState>,
    /// Deal pushes, by trade id.
    deals: BTreeMap<String, Trade>,
    since: Option<Instant>,
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("MEXC: {0}")]
    Exchange(#[from] crate::execution::mexc::MexcError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error("the stream lease went to another replica")]
    LeaseLost,
    #[error("stopping")]
    Stopped,
}

impl From<crate::bus::BusError> for Ended {
    fn from(err: crate::bus::BusError) -> Self {
        Ended::Live(LiveError::from(err))
    }
}

impl From<sea_orm::DbErr> for Ended {
    fn from(err: sea_orm::DbErr) -> Self {
        Ended::Live(LiveError::from(err))
    }
}

impl UserStream {
    pub fn new(
        desk: Arc<LiveDesk>,
        publisher: Publisher,
        pool: deadpool_redis::Pool,
        options: StreamOptions,
    ) -> Self {
        let owner = format!(
            "{}/{}",
            options.replica,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        UserStream {
            lease: RedisLease::new(pool, options.lease_key, owner, LEASE_LENGTH),
            desk,
            publisher,
            ws_url: options.ws_url,
            silence: options.silence,
        }
    }

    /// Runs until `stop`: holds the stream when the lease is free, else
    /// watches whether the holder says it is healthy.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let stats = self.desk.stats.live.stream.clone();
        while !stop.is_cancelled() {
            match self.lease.hold().await {
                Ok(true) => {
                    stats.holder.set(1);
                    let ended = self.hold(&stop, &mut backoff).await;
                    stats.connected.set(0);
                    stats.connected_since.set(0);
                    let _ = self.lease.clear_healthy().await;
                    self.note_health(false, "the stream went down").await;
                    match ended {
                        Ended::Stopped => break,
                        Ended::LeaseLost => {
                            stats.holder.set(0);
                            tracing::warn!("the user data stream lease went to another replica");
                        }
                        err => {
                            stats.reconnects.inc();
                            let pause = backoff.next_delay();
                            tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "user data stream ended; connecting again");
                            tokio::select! {
                                () = stop.cancelled() => break,
                                () = tokio::time::sleep(pause) => {}
                            }
                        }
                    }
                }
                Ok(false) => {
                    stats.holder.set(0);
                    let healthy = self.lease.is_healthy().await.unwrap_or(false);
                    self.note_health(healthy, "the stream's holder stopped saying it is up")
                        .await;
                    self.watch_halts().await;
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(TICK) => {}
                    }
                }
                Err(err) => {
                    self.note_health(false, "the stream lease cannot be read")
                        .await;
                    tracing::warn!(error = %err, "cannot read the user data stream lease");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        stats.holder.set(0);
        let _ = self.lease.give_back().await;
        Ok(())
    }

    /// One connection, from a new key to its end.
    async fn hold(&self, stop: &CancellationToken, backoff: &mut Backoff) -> Ended {
        let key = match self.desk.client.create_listen_key().await {
            Ok(key) => key,
            Err(err) => return err.into(),
        };
        let ended = self.connected(&key, stop, backoff).await;
        if !matches!(ended, Ended::Exchange(_)) {
            // A key MEXC refused is gone already; others are closed, so
            // that keys do not pile up toward MEXC's limit of 60.
            let _ = self.desk.client.close_listen_key(&key).await;
        }
        ended
    }

    async fn connected(&self, key: &str, stop: &CancellationToken, backoff: &mut Backoff) -> Ended {
        let stats = &self.desk.stats.live.stream;
        let timeout = self.desk.client_timeout();
        let mut socket = match PushSocket::connect(&self.ws_url, key, timeout).await {
            Ok(socket) => socket,
            Err(err) => return err.into(),
        };
        let ended = async {
            socket.subscribe(&[ORDERS_CHANNEL, DEALS_CHANNEL]).await?;
            self.await_subscription(&mut socket).await?;
            stats.connected.set(1);
            stats.connected_since.set(chrono::Utc::now().timestamp());
            self.lease.set_healthy(HEALTH_TTL).await?;
            self.desk.set_stream_healthy(true);
            backoff.reset();
            tracing::info!("user data stream subscribed to orders and deals");
            // Whatever happened before the subscription is looked up.
            self.look_up_everything("subscribed").await?;
            self.listen(&mut socket, key, stop).await
        }
        .await;
        socket.close().await;
        match ended {
            Err(ended) => ended,
            Ok(never) => match never {},
        }
    }

    async fn await_subscription(&self, socket: &mut PushSocket) -> Result<(), Ended> {
        let deadline = tokio::time::sleep(SUBSCRIBE_WITHIN);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => {
                    return Err(SocketError(format!("no answer to the subscription within {SUBSCRIBE_WITHIN:?}")).into());
                }
                arrived = socket.next() => match arrived? {
                    Arrived::Answer(answer) => {
                        let text = answer["msg"].as_str().unwrap_or_default();
                        if text.contains(ORDERS_CHANNEL) && text.contains(DEALS_CHANNEL) {
                            return Ok(());
                        }
                        if answer["code"].as_i64().is_some_and(|code| code != 0) {
                            return Err(SocketError(format!("subscription refused: {answer}")).into());
                        }
                    }
                    // A push before the answer is applied after the sweep
                    // that follows finds it anyway.
                    Arrived::Push(_) | Arrived::Other => {}
                },
            }
        }
    }

    /// Reads the connection until it ends (which is always an `Err`).
    async fn listen(
        &self,
        socket: &mut PushSocket,
        key: &str,
        stop: &CancellationToken,
    ) -> Result<Infallible, Ended> {
        let stats = &self.desk.stats.live.stream;
        let opened = Instant::now();
        let mut last_frame = Instant::now();
        let mut last_ping = Instant::now();
        let mut key_kept = Instant::now();
        // Often enough that the `PING` after half the silence limit always
        // goes out, and is answered, before the limit.
        let mut tick = tokio::time::interval(TICK.min(self.silence / 4));
        let mut retry = tokio::time::interval(RETRY_EVERY);
        let mut waiting: HashMap<String, Waiting> = HashMap::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Err(Ended::Stopped),
                _ = tick.tick() => {
                    if !self.lease.hold().await? {
                        return Err(Ended::LeaseLost);
                    }
                    self.lease.set_healthy(HEALTH_TTL).await?;
                    self.watch_halts().await;
                    if last_frame.elapsed() > self.silence {
                        return Err(SocketError(format!("nothing arrived for {:?}: stalled", self.silence)).into());
                    }
                    let ping_after = self.silence / 2;
                    if last_frame.elapsed() > ping_after && last_ping.elapsed() > ping_after {
                        socket.ping().await?;
                        last_ping = Instant::now();
                    }
                    if key_kept.elapsed() > KEEP_KEY_EVERY {
                        self.desk.client.keep_listen_key(key).await?;
                        key_kept = Instant::now();
                    }
                    if opened.elapsed() > CONNECTION_LIFETIME {
                        return Err(SocketError("replaced before MEXC's 24-hour limit".into()).into());
                    }
                }
                _ = retry.tick(), if !waiting.is_empty() => {
                    let ids: Vec<String> = waiting.keys().cloned().collect();
                    for id in ids {
                        self.try_apply(&mut waiting, &id).await?;
                    }
                }
                arrived = socket.next() => {
                    let arrived = arrived?;
                    last_frame = Instant::now();
                    stats.last_frame.set(chrono::Utc::now().timestamp());
                    match arrived {
                        Arrived::Push(decoded) => match *decoded {
                        Ok(push) => self.take(&mut waiting, push).await?,
                        Err(err) => {
                            stats.decode_errors.inc();
                            tracing::error!(channel = %err.channel, reason = %err.reason, "a user data stream frame does not decode; every order in flight is looked up");
                            self.look_up_everything("a frame did not decode").await?;
                        }
                        },
                        Arrived::Answer(_) | Arrived::Other => {}
                    }
                }
            }
        }
    }

    /// A push arrived: kept with the others of its order, then applied if
    /// it can be.
    async fn take(&self, waiting: &mut HashMap<String, Waiting>, push: Push) -> Result<(), Ended> {
        let frames = &self.desk.stats.live.stream.frames;
        let client_order_id = match push {
            Push::Other { .. } => {
                frames.with_label_values(&["other"]).inc();
                return Ok(());
            }
            Push::Order {
                client_order_id,
                state,
            } => {
                frames.with_label_values(&["order"]).inc();
                let entry = waiting.entry(client_order_id.clone()).or_default();
                if entry
                    .state
                    .as_ref()
                    .is_none_or(|known| newer(&state, known))
                {
                    entry.state = Some(state);
                }
                client_order_id
            }
            Push::Deal {
                client_order_id,
                trade,
            } => {
                frames.with_label_values(&["deal"]).inc();
                let entry = waiting.entry(client_order_id.clone()).or_default();
                entry.deals.insert(trade.id.clone(), trade);
                client_order_id
            }
        };
        waiting
            .get_mut(&client_order_id)
            .map(|entry| entry.since.get_or_insert_with(Instant::now));
        self.try_apply(waiting, &client_order_id).await
    }

    /// Applies what is known of one order when its fills add up; hands it
    /// to a lookup when they have not after [`FILLS_WAIT`].
    async fn try_apply(
        &self,
        waiting: &mut HashMap<String, Waiting>,
        client_order_id: &str,
    ) -> Result<(), Ended> {
        let stats = &self.desk.stats.live.stream;
        let Some(entry) = waiting.get(client_order_id) else {
            return Ok(());
        };
        let overdue = entry
            .since
            .is_some_and(|since| since.elapsed() > FILLS_WAIT);
        let store = &self.desk.store;
        let lease = self.desk.new_lease();
        let Some((row, next_look)) = store.take_parked(client_order_id, &lease).await? else {
            // Not ours, finished, or held by a replica working on it (the
            // push waits for it to be parked: its lease bounds the wait).
            match store.live_order_by_client_id(client_order_id).await? {
                None => {
                    stats.foreign.inc();
                    tracing::debug!(
                        client_order_id,
                        "a push for an order this deployment does not have"
                    );
                    waiting.remove(client_order_id);
                }
                Some(row) if row.status == OrderStatus::Rejected => {
                    let watched = store
                        .rewatch_not_placed(
                            &[client_order_id.to_owned()],
                            self.desk.options.watch_not_placed,
                        )
                        .await?;
                    tracing::error!(order_id = %row.order_id, reason = ?row.reject_reason, "MEXC pushes an order recorded as REJECTED: watched again and looked up");
                    stats.lookups_forced.inc_by(watched.len() as u64);
                    waiting.remove(client_order_id);
                }
                Some(row) if row.is_terminal() => {
                    stats.stale.inc();
                    waiting.remove(client_order_id);
                }
                Some(row) if !IN_FLIGHT.contains(&row.status) => {
                    // Never sent, as far as the row says (a claim let go
                    // of before its request): MEXC says otherwise.
                    tracing::error!(order_id = %row.order_id, status = %row.status.as_str(), "MEXC pushes an order whose row says it was never sent");
                    waiting.remove(client_order_id);
                }
                // Held by a replica working on it: tried again shortly.
                Some(_) => {}
            }
            return Ok(());
        };
        let order_id = row.order_id.clone();
        let park = || store.park(&order_id, &lease, next_look);
        let Some(state) = entry.state.clone() else {
            // Deals without their order's push yet.
            park().await?;
            if overdue {
                self.force_lookup(&row, "its order push did not come")
                    .await?;
                waiting.remove(client_order_id);
            }
            return Ok(());
        };
        let recorded = store
            .order_with_trades(&row.order_id)
            .await?
            .map(|(_, trades)| trades)
            .unwrap_or_default();
        let fills = fills_known(&recorded, &entry.deals, &state);
        let before = row.clone();
        let found = match update_for(&row, &state, &fills, self.desk.poll_in(&row)) {
            Ok(found) => found,
            Err(reason) if stale(&row, &state) => {
                tracing::debug!(
                    client_order_id,
                    reason,
                    "a push older than what is recorded"
                );
                stats.stale.inc();
                park().await?;
                waiting.remove(client_order_id);
                return Ok(());
            }
            Err(reason) => {
                park().await?;
                if overdue {
                    self.force_lookup(&row, &reason).await?;
                    waiting.remove(client_order_id);
                }
                return Ok(());
            }
        };
        let after = self
            .desk
            .record(&row, &lease, found.0, &found.1)
            .await?
            .unwrap_or(before.clone());
        if is_news(&before, &after) {
            stats.applied.inc();
            let result = result_from_row(&after, None);
            self.publisher
                .publish(&[Announcement::change(result.clone())], &[])
                .await
                .map_err(LiveError::from)?;
            self.desk.stats.count_result(result.status);
        } else {
            stats.stale.inc();
        }
        self.desk.release_announced([&after]).await?;
        let entry = waiting.get_mut(client_order_id).expect("still waiting");
        entry.deals.retain(|id, deal| {
            deal.order_id != state.order_id || !fills.iter().any(|f| &f.id == id)
        });
        entry.state = None;
        entry.since = None;
        if entry.deals.is_empty() {
            waiting.remove(client_order_id);
        }
        Ok(())
    }

    /// Hands an order to the reconciler's next round.
    async fn force_lookup(&self, row: &orders::Model, why: &str) -> Result<(), Ended> {
        tracing::info!(order_id = %row.order_id, why, "a pushed change is learnt by a lookup instead");
        let made = self
            .desk
            .store
            .make_due(Some(std::slice::from_ref(&row.order_id)))
            .await?;
        self.desk.stats.live.stream.lookups_forced.inc_by(made);
        Ok(())
    }

    /// Every parked order in flight is looked up at once.
    async fn look_up_everything(&self, why: &str) -> Result<(), Ended> {
        let made = self.desk.store.make_due(None).await?;
        self.desk.stats.live.stream.lookups_forced.inc_by(made);
        if made > 0 {
            tracing::info!(orders = made, why, "orders in flight looked up at once");
        }
        Ok(())
    }

    /// Whether the deployment's stream is up, as this replica now knows
    /// it: when it stops being up, every order parked on its word (for the
    /// slow poll) is looked up at once.
    async fn note_health(&self, healthy: bool, why: &str) {
        let was = self.desk.stream_healthy();
        self.desk.set_stream_healthy(healthy);
        if was && !healthy {
            self.after_gap(why).await;
        }
    }

    /// Looks every parked order up after the stream went down, logging
    /// (not failing) when Postgres does not answer: the orders' slow polls
    /// still come.
    async fn after_gap(&self, why: &str) {
        if let Err(err) = self.look_up_everything(why).await {
            tracing::warn!(error = %err, why, "orders in flight could not be made due");
        }
    }

    /// A new halt makes every parked order due, so that those it covers
    /// are cancelled now rather than at their next look.
    async fn watch_halts(&self) {
        if !self.desk.options.cancel_on_halt {
            return;
        }
        let halts = self.desk.halts.snapshot();
        let newest = halts.iter().map(|halt| halt.id).max().unwrap_or(0);
        let seen = self.desk.halts_seen.swap(newest, Ordering::Relaxed);
        if newest > seen {
            self.after_gap("a new halt").await;
        }
    }
}

/// Whether `state` describes an order later than `known` does.
fn newer(state: &OrderState, known: &OrderState) -> bool {
    state.executed_qty > known.executed_qty
        || (state.executed_qty == known.executed_qty
            && state.status.is_final()
            && !known.status.is_final())
}

/// Whether a push describes less than is recorded: it came late.
fn stale(row: &orders::Model, state: &OrderState) -> bool {
    let recorded = row.filled_quantity.unwrap_or_default();
    state.executed_qty < recorded
}

/// The fills of the pushed order: those recorded (from any source) and
/// those pushed, each exchange trade once.
fn fills_known(
    recorded: &[trades::Model],
    deals: &BTreeMap<String, Trade>,
    state: &OrderState,
) -> Vec<Trade> {
    let mut fills: BTreeMap<String, Trade> = recorded
        .iter()
        .filter_map(|row| {
            let id = row.trade_id.strip_prefix("mexc-")?;
            Some((
                id.to_owned(),
                Trade {
                    symbol: state.symbol.clone(),
                    id: id.to_owned(),
                    order_id: OrderId(
                        row.exchange_order_id
                            .clone()
                            .unwrap_or_else(|| state.order_id.0.clone()),
                    ),
                    price: row.price,
                    qty: row.quantity,
                    quote_qty: row.price * row.quantity,
                    commission: row.fee,
                    commission_asset: row.fee_asset.clone(),
                    time: Some(row.executed_at.timestamp_millis()),
                    is_buyer: None,
                    is_maker: None,
                    client_order_id: None,
                },
            ))
        })
        .collect();
    for (id, deal) in deals {
        fills.entry(id.clone()).or_insert_with(|| deal.clone());
    }
    fills.into_values().collect()
}

#[cfg(test)]
mod tests;
