//! The command connection pool: connections made through a
//! [`RedisTarget`], each knowing the generation of the primary it was made
//! to. Before each use a connection is dropped when the primary moved or a
//! command on it failed the connection; one idle for a while is asked
//! first (`PING` for one Redis; `ROLE` when the primary can move). A
//! connection in steady use costs no round trip of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::RedisTarget;
use super::target::DISCOVERY_TIMEOUT;

/// Makes and checks the pool's connections.
pub struct Manager {
    target: RedisTarget,
    config: AsyncConnectionConfig,
    pings: AtomicU64,
}

/// A pooled connection and the generation of the primary it was made to.
pub struct Link {
    conn: MultiplexedConnection,
    generation: u64,
    /// A command failed the connection: it is not used again.
    broken: bool,
    /// A command met a node that is no longer the primary (`READONLY`):
    /// the connection is not used again, and the primary is looked up anew.
    demoted: bool,
}

/// A connection taken again within this long of its last use is not asked
/// first: a failure of its own since then marked it.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Whether `err` leaves the connection it came on unfit for more commands.
fn breaks_the_connection(err: &RedisError) -> bool {
    err.is_io_error() || err.is_connection_dropped() || err.is_unrecoverable_error()
}

/// Whether a reply is Redis' `READONLY`: the node is a replica now.
fn is_readonly(value: &Value) -> bool {
    matches!(value, Value::ServerError(err) if err.kind() == Some(redis::ServerErrorKind::ReadOnly))
}

impl managed::Manager for Manager {
    type Type = Link;
    type Error = RedisError;

    async fn create(&self) -> Result<Link, RedisError> {
        let (client, generation) = self.target.located().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .inspect_err(|_| self.target.forget())?;
        Ok(Link {
            conn,
            generation,
            broken: false,
            demoted: false,
        })
    }

    async fn recycle(&self, link: &mut Link, metrics: &Metrics) -> RecycleResult<RedisError> {
        if link.demoted {
            self.target.forget();
            return Err(RecycleError::message(
                "the Redis node is no longer the primary",
            ));
        }
        if link.broken {
            return Err(RecycleError::message("a command failed the connection"));
        }
        if link.generation != self.target.generation() {
            return Err(RecycleError::message("the Redis primary moved"));
        }
        if metrics.last_used() < CHECK_AFTER_IDLE {
            return Ok(());
        }
        if self.target.follows_a_primary() {
            // A primary turned replica answers writes with READONLY.
            let (role,): (redis::Role,) = redis::pipe()
                .cmd("UNWATCH")
                .ignore()
                .cmd("ROLE")
                .query_async(&mut link.conn)
                .await?;
            return match role {
                redis::Role::Primary { .. } => Ok(()),
                _ => {
                    self.target.forget();
                    Err(RecycleError::message(
                        "the Redis node is no longer the primary",
                    ))
                }
            };
        }
        let ping = self.pings.fetch_add(1, Ordering::Relaxed).to_string();
        let (pong,): (String,) = redis::pipe()
            .cmd("UNWATCH")
            .ignore()
            .cmd("PING")
            .arg(&ping)
            .query_async(&mut link.conn)
            .await?;
        if pong == ping {
            Ok(())
        } else {
            Err(RecycleError::message("an unexpected PING reply"))
        }
    }
}

/// The command connection pool.
#[derive(Clone)]
pub struct Pool {
    inner: managed::Pool<Manager>,
    target: RedisTarget,
}

/// A connection taken from the [`Pool`]; it goes back when dropped.
pub struct Connection(managed::Object<Manager>);

/// Errors taking a connection from the pool.
pub type PoolError = managed::PoolError<RedisError>;

impl Pool {
    /// A pool of at most `size` connections to `target`; every wait is
    /// bounded by `timeout` or `connect_timeout`.
    pub fn new(
        target: RedisTarget,
        size: usize,
        config: AsyncConnectionConfig,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, managed::BuildError> {
        let manager = Manager {
            target: target.clone(),
            config,
            pings: AtomicU64::new(0),
        };
        // Making a connection may first ask where the primary is.
        let lookup = if target.follows_a_primary() {
            DISCOVERY_TIMEOUT
        } else {
            Duration::ZERO
        };
        let inner = managed::Pool::builder(manager)
            .max_size(size)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(connect_timeout + lookup))
            .recycle_timeout(Some(connect_timeout))
            .build()?;
        Ok(Pool { inner, target })
    }

    pub async fn get(&self) -> Result<Connection, PoolError> {
        self.inner.get().await.map(Connection)
    }

    /// Where the pool's connections go.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }
}

impl Link {
    /// Marks the connection broken when `reply` says it is.
    fn note<T>(&mut self, reply: Result<T, RedisError>) -> Result<T, RedisError> {
        if reply.as_ref().is_err_and(breaks_the_connection) {
            self.broken = true;
        }
        reply
    }
}

impl Connection {
    /// Marks the connection as leading to a node that is no longer the
    /// primary (a script saw `READONLY` and said so in its own reply).
    pub fn demoted(&mut self) {
        self.0.demoted = true;
    }

    /// The generation of the primary this connection was made to.
    pub fn generation(&self) -> u64 {
        self.0.generation
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let link = &mut *self.0;
        Box::pin(async move {
            let reply = link.conn.req_packed_command(cmd).await;
            if reply.as_ref().is_ok_and(is_readonly) {
                link.demoted = true;
            }
            link.note(reply)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let link = &mut *self.0;
        Box::pin(async move {
            let replies = link.conn.req_packed_commands(pipeline, offset, count).await;
            if replies
                .as_ref()
                .is_ok_and(|replies| replies.iter().any(is_readonly))
            {
                link.demoted = true;
            }
            link.note(replies)
        })
    }

    fn get_db(&self) -> i64 {
        self.0.conn.get_db()
    }
}
