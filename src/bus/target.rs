//! Where the service's Redis is: one address, or the primary that a set of
//! Sentinels names, found again whenever it may have moved.
//!
//! Every connection (the pool's, the shim's subscription, the kill-switch
//! reader's) is made through a [`RedisTarget`]. With Sentinels, each new
//! connection asks them for the primary (the client crate's Sentinel
//! support: it also checks that the node it names answers `ROLE` as a
//! primary). When the answer differs from the last one, the target's
//! generation goes up: pooled connections of an older generation are not
//! handed out again, and subscriptions are made again. A pooled connection
//! that meets `READONLY` (left on a primary turned replica) is not handed
//! out again and the primary is looked up anew; one idle for a while is
//! checked with `ROLE` first; and a `+switch-master` notice from a Sentinel
//! triggers the look-up at once rather than at the next error.

use std::sync::Mutex;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use prometheus::IntCounter;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, ConnectionInfo, IntoConnectionInfo, RedisError, RedisResult};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{RedisSettings, url_escape};

mod cluster;

use cluster::slot_owner;

/// How long asking the Sentinels for the primary may take in all.
pub(super) const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);

/// The service's Redis: one address, the Sentinels' primary, or the cluster
/// node serving its slot.
#[derive(Clone)]
pub struct RedisTarget {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    /// Goes up each time the primary is found somewhere else.
    generation: watch::Sender<u64>,
    /// When the primary was last found to have moved.
    moved_at: Mutex<Option<DateTime<Utc>>>,
    /// Counts the moves, once the application gives it a counter.
    moves_counter: OnceLock<IntCounter>,
    /// One lookup at a time: each records what it found in turn.
    lookup: tokio::sync::Mutex<()>,
    /// The primary found last, its generation, and when: connections made
    /// meanwhile use it rather than asking again.
    found: Mutex<Option<(Client, u64, Instant)>>,
    /// The address of the primary found last (not forgotten with `found`:
    /// a move is a change of it).
    primary: Mutex<Option<String>>,
}

enum Kind {
    Direct(Client),
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        /// The Sentinels, for listening to their notices.
        sentinels: Vec<ConnectionInfo>,
        master: String,
    },
    /// The cluster node that serves `slot`, the one slot of every key.
    Cluster {
        seeds: Vec<ConnectionInfo>,
        slot: u16,
        /// Credentials and database used on the node.
        node: ConnectionInfo,
    },
}

impl RedisTarget {
    /// One Redis at `url`.
    pub fn direct(url: &str) -> RedisResult<Self> {
        Ok(Self::new(Kind::Direct(Client::open(url)?)))
    }

    /// The primary `master` of these Sentinels (`redis://` URLs, with the
    /// Sentinels' own credentials); `node` holds the credentials and
    /// database used on the primary.
    pub fn sentinel(
        sentinels: Vec<ConnectionInfo>,
        master: &str,
        node: &ConnectionInfo,
    ) -> RedisResult<Self> {
        let node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(node.redis_settings().clone());
        let client = SentinelClient::build(
            sentinels.clone(),
            master.to_owned(),
            Some(node),
            SentinelServerType::Master,
        )?;
        Ok(Self::new(Kind::Sentinel {
            client: tokio::sync::Mutex::new(client),
            sentinels,
            master: master.to_owned(),
        }))
    }

    /// The primary of the cluster nodes `seeds` that serves `slot`;
    /// `node` holds the credentials used on it.
    pub fn cluster(seeds: Vec<ConnectionInfo>, slot: u16, node: ConnectionInfo) -> Self {
        Self::new(Kind::Cluster { seeds, slot, node })
    }

    /// The target the settings describe: the Sentinels when
    /// `REDIS_SENTINELS` is set, the cluster node serving `slot_key` when
    /// `REDIS_CLUSTER_NODES` is, else `REDIS_URL`.
    pub fn from_settings(settings: &RedisSettings, slot_key: &str) -> RedisResult<Self> {
        let url = settings.url.expose_secret();
        if !settings.cluster_nodes.is_empty() {
            let node = url.into_connection_info()?;
            let seeds = settings
                .cluster_nodes
                .iter()
                .map(|(host, port)| {
                    let addr = redis::ConnectionAddr::Tcp(host.clone(), *port);
                    node.clone().set_addr(addr)
                })
                .collect();
            let slot = super::key_slot(slot_key.as_bytes());
            return Ok(Self::cluster(seeds, slot, node));
        }
        let Some(sentinel) = &settings.sentinel else {
            return Self::direct(url);
        };
        let auth = match (&sentinel.username, &sentinel.password) {
            (None, None) => String::new(),
            (user, password) => format!(
                "{}{}@",
                user.as_deref().map(url_escape).unwrap_or_default(),
                password
                    .as_ref()
                    .map(|p| format!(":{}", url_escape(p.expose_secret())))
                    .unwrap_or_default()
            ),
        };
        let sentinels = sentinel
            .addresses
            .iter()
            .map(|(host, port)| {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                format!("redis://{auth}{host}:{port}/").into_connection_info()
            })
            .collect::<RedisResult<Vec<_>>>()?;
        Self::sentinel(sentinels, &sentinel.master, &url.into_connection_info()?)
    }

    fn new(kind: Kind) -> Self {
        RedisTarget {
            inner: Arc::new(Inner {
                kind,
                generation: watch::channel(0).0,
                moved_at: Mutex::new(None),
                moves_counter: OnceLock::new(),
                lookup: tokio::sync::Mutex::new(()),
                found: Mutex::new(None),
                primary: Mutex::new(None),
            }),
        }
    }

    /// Counts each move of the primary in `counter` from now on.
    pub fn count_moves_in(&self, counter: IntCounter) {
        let _ = self.inner.moves_counter.set(counter);
    }

    /// Whether the primary may move (Sentinels, or a cluster), so that
    /// each pooled connection is checked to be on a primary still.
    pub fn follows_a_primary(&self) -> bool {
        !matches!(self.inner.kind, Kind::Direct(_))
    }

    /// A client for the primary: with Sentinels, the one they named; on a
    /// cluster, the node serving the slot. Found at most [`FOUND_FOR`]
    /// ago, else looked up now.
    pub async fn client(&self) -> RedisResult<Client> {
        Ok(self.located().await?.0)
    }

    /// [`RedisTarget::client`] with the generation it belongs to: what is
    /// written through it was written to that generation's primary.
    pub async fn located(&self) -> RedisResult<(Client, u64)> {
        if let Kind::Direct(client) = &self.inner.kind {
            return Ok((client.clone(), 0));
        }
        if let Some(found) = self.recently_found() {
            return Ok(found);
        }
        let _one_at_a_time = self.inner.lookup.lock().await;
        // Another caller may have looked it up meanwhile.
        if let Some(found) = self.recently_found() {
            return Ok(found);
        }
        self.look_up_locked().await
    }

    fn recently_found(&self) -> Option<(Client, u64)> {
        let found = self.inner.found.lock().ok()?;
        let (client, generation, at) = found.as_ref()?;
        (at.elapsed() < FOUND_FOR && *generation == self.generation())
            .then(|| (client.clone(), *generation))
    }

    /// Forgets the primary found last: a connection to it failed, or it
    /// answered as a replica.
    pub fn forget(&self) {
        if let Ok(mut found) = self.inner.found.lock() {
            *found = None;
        }
    }

    /// Asks the Sentinels (or the cluster) for the primary now, one lookup
    /// at a time; a move is counted when the answer changed.
    pub async fn look_up(&self) -> RedisResult<(Client, u64)> {
        let _one_at_a_time = self.inner.lookup.lock().await;
        self.look_up_locked().await
    }

    async fn look_up_locked(&self) -> RedisResult<(Client, u64)> {
        let (found, what) = match &self.inner.kind {
            Kind::Direct(client) => return Ok((client.clone(), 0)),
            Kind::Sentinel { client, master, .. } => {
                let found = tokio::time::timeout(DISCOVERY_TIMEOUT, async {
                    client.lock().await.async_get_client().await
                })
                .await
                .map_err(|_| {
                    RedisError::from((redis::ErrorKind::Io, "no Sentinel named a primary in time"))
                })??;
                (found, master.clone())
            }
            Kind::Cluster { seeds, slot, node } => {
                let known = self.inner.primary.lock().ok().and_then(|p| p.clone());
                let found = tokio::time::timeout(
                    DISCOVERY_TIMEOUT,
                    slot_owner(seeds, *slot, node, known.as_deref()),
                )
                .await
                .map_err(|_| {
                    RedisError::from((redis::ErrorKind::Io, "no cluster node answered in time"))
                })??;
                (found, format!("slot {slot}"))
            }
        };
        let address = found.get_connection_info().addr().to_string();
        let previous = self
            .inner
            .primary
            .lock()
            .map(|mut known| known.replace(address.clone()))
            .unwrap_or_default();
        let moved = previous
            .as_ref()
            .is_some_and(|previous| *previous != address);
        // Cached before the generation goes up: whoever wakes on the move
        // finds the new primary, not the old one under the new number.
        let generation = self.generation() + u64::from(moved);
        if let Ok(mut cached) = self.inner.found.lock() {
            *cached = Some((found.clone(), generation, Instant::now()));
        }
        match previous {
            Some(previous) if moved => {
                let at = Utc::now();
                if let Ok(mut moved) = self.inner.moved_at.lock() {
                    *moved = Some(at);
                }
                self.inner.generation.send_modify(|g| *g = generation);
                tracing::warn!(primary_of = %what, from = %previous, to = %address, "the Redis primary moved");
                if let Some(counter) = self.inner.moves_counter.get() {
                    counter.inc();
                }
            }
            None => {
                tracing::info!(primary_of = %what, primary = %address, "found the Redis primary")
            }
            Some(_) => {}
        }
        Ok((found, generation))
    }

    /// The current generation: it goes up when the primary moves.
    pub fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// Notices of moves, for what must reconnect or re-announce.
    pub fn moves(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// When the primary last moved, if it ever did.
    pub fn last_move(&self) -> Option<DateTime<Utc>> {
        *self.inner.moved_at.lock().ok()?
    }

    /// Until cancelled: looks the primary up every second (a failover or
    /// a resharding moves it; a Sentinel's notice may be missed), and with
    /// Sentinels also at each `+switch-master` notice that names ours;
    /// nothing to do for a single Redis.
    pub async fn watch_switches(self, cancel: CancellationToken) {
        let mut every = tokio::time::interval(LOOK_UP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (sentinels, master) = match &self.inner.kind {
            Kind::Direct(_) => return cancel.cancelled().await,
            Kind::Cluster { .. } => (&[][..], ""),
            Kind::Sentinel {
                sentinels, master, ..
            } => (&sentinels[..], master.as_str()),
        };
        // The Sentinel listened to, taken in turn.
        let mut next = 0;
        let mut notices: Option<BoxStream<'static, redis::Msg>> = None;
        loop {
            if notices.is_none() && !sentinels.is_empty() {
                let sentinel = &sentinels[next % sentinels.len()];
                next += 1;
                notices = match listen_for_switches(sentinel).await {
                    Ok(stream) => Some(stream),
                    Err(err) => {
                        tracing::warn!(error = %err, sentinel = %sentinel.addr(), "cannot listen to a Sentinel; trying the next");
                        None
                    }
                };
            }
            let notice = async {
                match notices.as_mut() {
                    Some(stream) => stream.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = every.tick() => {}
                notice = notice => match notice {
                    Some(notice) => {
                        let text = String::from_utf8_lossy(notice.get_payload_bytes()).into_owned();
                        if text.split(' ').next() != Some(master) {
                            continue;
                        }
                        tracing::info!(notice = %text, "a Sentinel announced a new primary");
                    }
                    None => {
                        notices = None;
                        continue;
                    }
                },
            }
            if let Err(err) = self.look_up().await {
                tracing::warn!(error = %err, "cannot look the Redis primary up");
            }
        }
    }
}

/// A subscription to a Sentinel's `+switch-master` notices.
async fn listen_for_switches(
    sentinel: &ConnectionInfo,
) -> RedisResult<BoxStream<'static, redis::Msg>> {
    tokio::time::timeout(DISCOVERY_TIMEOUT, async {
        let mut pubsub = Client::open(sentinel.clone())?.get_async_pubsub().await?;
        pubsub.subscribe("+switch-master").await?;
        Ok(pubsub.into_on_message().boxed())
    })
    .await
    .map_err(|_| RedisError::from((redis::ErrorKind::Io, "the Sentinel did not answer in time")))?
}

/// How long a primary found is used without asking again.
const FOUND_FOR: Duration = Duration::from_secs(1);

/// How often the primary is looked up while nothing else says it moved.
const LOOK_UP_EVERY: Duration = Duration::from_secs(1);
