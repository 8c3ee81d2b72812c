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

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{LiveDesk, LiveError};
use crate::bus::{Publisher, RedisLease};
use crate::execution::mexc::push::{DEALS_CHANNEL, ORDERS_CHANNEL};
use crate::execution::mexc::{Arrived, PushSocket, SocketError};
use crate::retry::Backoff;

mod apply;

use apply::Waiting;

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
        pool: crate::bus::Pool,
        options: StreamOptions,
    ) -> Self {
        UserStream {
            lease: RedisLease::new(pool, options.lease_key, desk.replica.clone(), LEASE_LENGTH),
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
