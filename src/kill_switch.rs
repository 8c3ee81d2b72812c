//! The kill switch: halts set on `SHUTDOWN_STREAM` (by the Risk Manager, an
//! operator's script, the admin API or the CLI) and kept in Postgres, and
//! the board of active halts every batch checks its orders against.
//!
//! Every replica reads the whole stream (no consumer group) from where the
//! fleet last applied it; applying an entry is idempotent (the store records
//! each entry once), and after every entry, and every second besides, the
//! board is reloaded from Postgres. So a halt reaches every running replica
//! within a second of its entry, survives restarts, and a replica that
//! starts while halted loads the halt before its first batch. An entry that
//! cannot be understood halts nothing: the replica that records it first
//! dead-letters it.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use deadpool_redis::Pool;
use sea_orm::DbErr;
use tokio_util::sync::CancellationToken;

use crate::bus::{self, Entry, KillSwitchReader, Publisher, Topology};
use crate::domain::{Halt, HaltCommand};
use crate::retry::Backoff;
use crate::stats::Stats;
use crate::store::{EntryOutcome, Store};

/// How long one read of the stream blocks; also bounds shutdown.
const READ_BLOCK: Duration = Duration::from_millis(500);
/// How often the board is reloaded whatever the stream says.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The active halts, as of the last reload.
#[derive(Debug, Clone, Default)]
pub struct HaltBoard(Arc<RwLock<Arc<Vec<Halt>>>>);

impl HaltBoard {
    pub fn snapshot(&self) -> Arc<Vec<Halt>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, halts: Vec<Halt>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(halts);
    }
}

/// What submitting a halt or resume did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The kill-switch entry, or `direct-…` when the stream was out of reach
    /// and the change went to Postgres alone (replicas still pick it up
    /// within a second from there).
    pub entry_id: String,
    /// The halts set or lifted.
    pub halts: Vec<i64>,
}

#[derive(Clone)]
pub struct KillSwitch {
    store: Store,
    pool: Pool,
    client: redis::Client,
    topology: Topology,
    stream: String,
    board: HaltBoard,
    stats: Arc<Stats>,
}

impl KillSwitch {
    pub fn new(
        store: Store,
        pool: Pool,
        client: redis::Client,
        topology: Topology,
        stream: String,
        stats: Arc<Stats>,
    ) -> Self {
        KillSwitch {
            store,
            pool,
            client,
            topology,
            stream,
            board: HaltBoard::default(),
            stats,
        }
    }

    pub fn board(&self) -> HaltBoard {
        self.board.clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Loads the active halts from Postgres onto the board.
    pub async fn reload(&self) -> Result<(), DbErr> {
        let halts = self.store.active_halts().await?;
        self.stats.halts_active.set(halts.len() as i64);
        self.board.replace(halts);
        Ok(())
    }

    /// Appends a halt or resume to the stream and applies it here at once,
    /// so it is in force on this replica when this returns and on the
    /// others within a second. With the stream out of reach it is applied
    /// to Postgres alone.
    pub async fn submit(&self, command: &HaltCommand) -> Result<Submitted, DbErr> {
        let entry_id = match bus::append_halt_command(&self.pool, &self.stream, command).await {
            Ok(id) => id,
            Err(err) => {
                tracing::warn!(error = %err, "cannot append to the kill-switch stream; applying through Postgres alone");
                format!("direct-{}", uuid::Uuid::new_v4().simple())
            }
        };
        let halts = match self.store.apply_halt_entry(&entry_id, Ok(command)).await? {
            EntryOutcome::Applied(halts) => {
                log_change(&entry_id, command, &halts);
                halts
            }
            // A replica following the stream applied it first.
            EntryOutcome::AlreadyApplied | EntryOutcome::Refused => {
                self.store.halts_changed_by(&entry_id).await?
            }
        };
        self.reload().await?;
        Ok(Submitted { entry_id, halts })
    }

    /// Applies one entry read from the stream (once across the fleet).
    async fn handle(&self, entry: &Entry) -> Result<(), DbErr> {
        let command = HaltCommand::from_entry(&entry.fields);
        let outcome = self
            .store
            .apply_halt_entry(&entry.id, command.as_ref().map_err(String::as_str))
            .await?;
        match (&command, outcome) {
            (Ok(command), EntryOutcome::Applied(halts)) => log_change(&entry.id, command, &halts),
            (Err(reason), EntryOutcome::Refused) => {
                tracing::warn!(entry = %entry.id, reason = %reason, "a kill-switch entry cannot be understood; it changes nothing and is dead-lettered");
                let reason = format!("kill-switch entry not understood: {reason}");
                let publisher = Publisher::new(self.pool.clone(), self.topology.clone());
                let letter = bus::dead_letter_entry(&publisher, &self.stream, entry, reason);
                if let Err(err) = letter.await {
                    tracing::error!(entry = %entry.id, error = %err, "cannot dead-letter a kill-switch entry");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Follows the stream until `cancel` fires. The board must have been
    /// loaded once before (see [`reload`](Self::reload)).
    pub async fn run_until_stopped(self, cancel: CancellationToken) {
        let mut backoff = Backoff::default();
        let mut position = loop {
            match self.store.last_halt_entry().await {
                Ok(position) => break position.unwrap_or_else(|| "0-0".to_owned()),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read where the kill switch stands; retrying");
                    if !backoff.wait(&cancel).await {
                        return;
                    }
                }
            }
        };
        let mut reader = loop {
            match KillSwitchReader::connect(&self.client, &self.stream, READ_BLOCK).await {
                Ok(reader) => break reader,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot connect to read the kill-switch stream; retrying");
                    if !backoff.wait(&cancel).await {
                        return;
                    }
                }
            }
        };
        backoff = Backoff::default();
        let mut reload = tokio::time::interval(RELOAD_EVERY);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let read = tokio::select! {
                () = cancel.cancelled() => return,
                _ = reload.tick() => {
                    if let Err(err) = self.reload().await {
                        tracing::warn!(error = %err, "cannot reload the active halts");
                    }
                    continue;
                }
                read = reader.read_after(&position, 100, READ_BLOCK) => read,
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(err) => {
                    tracing::warn!(error = %err, "reading the kill-switch stream failed; retrying");
                    if !backoff.wait(&cancel).await {
                        return;
                    }
                    continue;
                }
            };
            for entry in &entries {
                // An entry is passed only once it is applied: Postgres being
                // away holds the stream here, it never skips a halt.
                while let Err(err) = self.handle(entry).await {
                    tracing::warn!(entry = %entry.id, error = %err, "cannot apply a kill-switch entry; retrying");
                    if !backoff.wait(&cancel).await {
                        return;
                    }
                }
                position = entry.id.clone();
            }
            if !entries.is_empty() {
                backoff = Backoff::default();
                if let Err(err) = self.reload().await {
                    tracing::warn!(error = %err, "cannot reload the active halts");
                }
            }
        }
    }
}

fn log_change(entry_id: &str, command: &HaltCommand, halts: &[i64]) {
    tracing::warn!(
        entry = %entry_id,
        action = command.action.as_str(),
        scope = %command.scope,
        reason = %command.reason,
        source = %command.source,
        halts = ?halts,
        "kill switch applied"
    );
}
