//! The connections batches are written on.
//!
//! A batch's statement must never outlive the batch on the server: when
//! the worker gives up on it, its backend is terminated by process id. So
//! each writing connection is kept with its backend's id, learned once when
//! it leaves the pool, and stays out of the pool between batches: taking
//! it again costs no round trip (no liveness ping, no id query), which is
//! most of what a one-statement batch would otherwise pay.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sea_orm::sqlx::{self, Error as SqlxError, PgPool, Postgres, Row, pool::PoolConnection};
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

/// A connection taken from the pool for writing, with its backend's id.
pub(super) struct Writer {
    pub conn: PoolConnection<Postgres>,
    pub backend: i32,
}

/// The writers between batches, and the pool new ones come from. Idle
/// writers count toward the pool's `max_connections`.
#[derive(Debug, Clone)]
pub(super) struct Writers {
    pool: PgPool,
    idle: Arc<Mutex<Vec<Writer>>>,
    /// Connections the pool keeps for everything else.
    spare: u32,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Writers {
    pub fn new(pool: PgPool) -> Self {
        Writers {
            pool,
            idle: Arc::default(),
            spare: 1,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// An idle writer, or a new one from the pool.
    pub async fn take(&self) -> Result<Writer, DbErr> {
        if let Some(writer) = self.lock().pop() {
            return Ok(writer);
        }
        let mut conn = self.pool.acquire().await.map_err(|err| match err {
            SqlxError::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            other => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(other))),
        })?;
        let backend = sqlx::query("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .and_then(|row| row.try_get::<i32, _>(0))
            .map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))))?;
        Ok(Writer { conn, backend })
    }

    /// Keeps a writer whose session is clean (no transaction open, nothing
    /// in flight) for the next batch; one the pool needs back goes back.
    pub fn put_back(&self, writer: Writer) {
        let keep = self
            .pool
            .options()
            .get_max_connections()
            .saturating_sub(self.spare) as usize;
        let mut idle = self.lock();
        if idle.len() < keep {
            idle.push(writer);
        }
    }

    /// Closes every idle writer: one failed on its connection, so the
    /// others (from before a restart of Postgres, say) are likely dead too.
    pub fn discard_idle(&self) {
        let idle = std::mem::take(&mut *self.lock());
        for writer in idle {
            drop(writer.conn.detach());
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
pub(super) async fn terminate_backend(pool: PgPool, backend: i32) {
    let ending = async {
        let (wait_type, wait_event, blockers, ended): (
            Option<String>,
            Option<String>,
            Option<Vec<i32>>,
            bool,
        ) = sqlx::query_as(
            "SELECT a.wait_event_type, a.wait_event, pg_blocking_pids(a.pid), pg_terminate_backend(a.pid)
             FROM pg_stat_activity a WHERE a.pid = $1",
        )
        .bind(backend)
        .fetch_optional(&pool)
        .await?
        .unwrap_or_default();
        Ok::<_, SqlxError>((wait_type, wait_event, blockers, ended))
    };
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
