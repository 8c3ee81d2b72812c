//! The connections batches are written on.
//!
//! A batch's statement must never outlive the batch on the server: when
//! the worker gives up on it, its backend is terminated by process id. So
//! each writing connection is kept with its backend's id, learned once when
//! it leaves the pool, and stays out of the pool between batches: taking
//! it again costs no round trip (no liveness ping, no id query), which is
//! most of what a one-statement batch would otherwise pay.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::sqlx::{
    self, Connection, Error as SqlxError, PgPool, Postgres, Row, pool::PoolConnection,
};
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

/// A connection taken from the pool for writing, with its backend: its
/// process id, and when it started (a pid alone may name another session
/// after Postgres restarts).
pub(super) struct Writer {
    pub conn: PoolConnection<Postgres>,
    pub backend: Backend,
    taken_at: Instant,
    idle_since: Instant,
}

/// A server process, told apart from later ones that reuse its pid.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backend {
    pub pid: i32,
    pub started: chrono::DateTime<chrono::Utc>,
}

/// The writers between batches, and the pool new ones come from. Idle
/// writers count toward the pool's `max_connections`.
#[derive(Debug, Clone)]
pub(super) struct Writers {
    pool: PgPool,
    idle: Arc<Mutex<Vec<Writer>>>,
    /// Writers out of the pool, idle or writing.
    out: Arc<AtomicU32>,
}

/// A writer idle longer than this is checked (one round trip) before it
/// writes again: its connection may have died meanwhile.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(2);

/// A writer is handed back to the pool after this long, so the pool's
/// own lifetime rules apply to its connection too.
const MAX_KEPT: Duration = Duration::from_secs(600);

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("backend", &self.backend.pid)
            .finish()
    }
}

impl Writers {
    pub fn new(pool: PgPool) -> Self {
        Writers {
            pool,
            idle: Arc::default(),
            out: Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// An idle writer, or a new one from the pool.
    pub async fn take(&self) -> Result<Writer, DbErr> {
        loop {
            let Some(mut writer) = self.lock().pop() else {
                break;
            };
            if writer.idle_since.elapsed() < CHECK_AFTER_IDLE {
                return Ok(writer);
            }
            let timeout = self.pool.options().get_acquire_timeout();
            match tokio::time::timeout(timeout, writer.conn.ping()).await {
                Ok(Ok(())) => return Ok(writer),
                _ => {
                    tracing::info!(
                        backend = writer.backend.pid,
                        "an idle writer's connection is dead; closing it"
                    );
                    self.close(writer);
                }
            }
        }
        let mut conn = self.pool.acquire().await.map_err(|err| match err {
            SqlxError::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            other => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(other))),
        })?;
        let backend = sqlx::query(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| {
            Ok(Backend {
                pid: row.try_get(0)?,
                started: row.try_get(1)?,
            })
        });
        let backend = match backend {
            Ok(backend) => backend,
            Err(err) => {
                drop(conn.detach());
                return Err(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))));
            }
        };
        self.out.fetch_add(1, Ordering::Relaxed);
        Ok(Writer {
            conn,
            backend,
            taken_at: Instant::now(),
            idle_since: Instant::now(),
        })
    }

    /// Keeps a writer whose session is clean (no transaction open, nothing
    /// in flight) for the next batch, unless the pool needs it back: the
    /// pool always keeps one connection for everything else.
    pub fn put_back(&self, mut writer: Writer) {
        let max = self.pool.options().get_max_connections();
        if writer.taken_at.elapsed() > MAX_KEPT || self.out.load(Ordering::Relaxed) >= max {
            return self.release(writer);
        }
        writer.idle_since = Instant::now();
        self.lock().push(writer);
    }

    /// Hands a clean writer's connection back to the pool.
    pub fn release(&self, writer: Writer) {
        self.out.fetch_sub(1, Ordering::Relaxed);
        drop(writer.conn);
    }

    /// Closes a writer's connection: its session is not clean, or dead.
    pub fn close(&self, writer: Writer) {
        self.out.fetch_sub(1, Ordering::Relaxed);
        drop(writer.conn.detach());
    }

    /// Closes every idle writer: one failed on its connection, so the
    /// others (from before a restart of Postgres, say) are likely dead too.
    pub fn discard_idle(&self) {
        let idle = std::mem::take(&mut *self.lock());
        for writer in idle {
            self.close(writer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Writer>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long ending an abandoned backend may take before the server's own
/// timeouts are left to do it.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ends the server backend of an abandoned batch, saying what it was
/// waiting for. When Postgres cannot be reached, `statement_timeout`,
/// `lock_timeout` and `idle_in_transaction_session_timeout` end it on the
/// server instead.
pub(super) async fn terminate_backend(pool: PgPool, backend: Backend) {
    let ending = async {
        let (wait_type, wait_event, blockers, ended): (
            Option<String>,
            Option<String>,
            Option<Vec<i32>>,
            bool,
        ) = sqlx::query_as(
            "SELECT a.wait_event_type, a.wait_event, pg_blocking_pids(a.pid), pg_terminate_backend(a.pid)
             FROM pg_stat_activity a WHERE a.pid = $1 AND a.backend_start = $2",
        )
        .bind(backend.pid)
        .bind(backend.started)
        .fetch_optional(&pool)
        .await?
        .unwrap_or_default();
        Ok::<_, SqlxError>((wait_type, wait_event, blockers, ended))
    };
    let backend = backend.pid;
    match tokio::time::timeout(TERMINATE_TIMEOUT, ending).await {
        Ok(Ok((Some(wait_type), wait_event, blockers, ended))) if wait_type == "Lock" => {
            tracing::warn!(backend, ended, wait_event = ?wait_event, blocked_by = ?blockers.unwrap_or_default(),
                "an abandoned batch was waiting for a lock held by another transaction; its backend was terminated");
        }
        Ok(Ok((_, wait_event, _, ended))) => {
            tracing::warn!(backend, ended, wait_event = ?wait_event, "terminated the backend of an abandoned batch");
        }
        Ok(Err(err)) => {
            tracing::warn!(backend, error = %err, "cannot terminate the backend of an abandoned batch; the server's timeouts will end it");
        }
        Err(_) => {
            tracing::warn!(
                backend,
                "Postgres did not answer in time to terminate the backend of an abandoned batch; the server's timeouts will end it"
            );
        }
    }
}
