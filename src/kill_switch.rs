//! The kill switch: halts set on `SHUTDOWN_STREAM` (by the Risk Manager, an
//! operator's script, the admin API or the CLI) and kept in Postgres, and
//! the board of active halts every batch checks its orders against.
//!
//! Every replica reads the whole stream (no consumer group) and applies its
//! entries strictly in stream order; applying is idempotent (the store
//! records each entry once), so the entries applied by the fleet are always
//! a prefix of the stream, and a replica starts reading where that prefix
//! ends. The API and the CLI only append: the change takes effect when the
//! followers reach it, in order, never ahead of an earlier entry. After
//! every entry, and every second besides, the board is reloaded from
//! Postgres. A replica's worker starts only once the follower has caught
//! up with the stream, so halts set while no replica ran apply before the
//! first batch. An entry that cannot be understood halts nothing: the
//! replica that records it first dead-letters it.

use std::sync::Arc;
use std::time::Duration;

use crate::bus::Pool;
use sea_orm::DbErr;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::bus::{self, BusError, Entry, KillSwitchReader, Publisher, Topology};
use crate::domain::HaltCommand;
use crate::retry::Backoff;
use crate::stats::Stats;
use crate::store::{EntryOutcome, Store};

mod board;

pub use board::{HaltBoard, READ_FRESHNESS};

/// How long one read of the stream blocks; also bounds shutdown.
const READ_BLOCK: Duration = Duration::from_millis(500);
/// Most entries one read returns.
const READ_COUNT: usize = 100;
/// How often the board is reloaded whatever the stream says.
const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// How long one reload of the active halts may take before it is retried.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a submitted change may take to be applied here.
const SUBMIT_WAIT: Duration = Duration::from_secs(5);

/// How far this replica's follower has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    /// The newest entry applied here (or found applied), as (ms, seq).
    position: (u64, u64),
    /// Whether it has read to the end of the stream since starting.
    caught_up: bool,
}

/// What submitting a halt or resume did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The kill-switch entry that carries it.
    pub entry_id: String,
    /// The halts set or lifted.
    pub halts: Vec<i64>,
}

/// Refused entries on their way to the dead-letter stream, with why.
type Letters = mpsc::UnboundedSender<(Entry, String)>;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the kill-switch stream cannot be reached, so nothing was changed: {0}")]
    Stream(#[from] BusError),
    #[error(
        "appended as entry {0}, but not applied here within 5 s (is Postgres away?): it takes effect in stream order as soon as the followers reach it"
    )]
    NotApplied(String),
    #[error("applied, but Postgres did not answer afterwards: {0}")]
    Database(#[from] DbErr),
}

#[derive(Clone)]
pub struct KillSwitch {
    store: Store,
    pool: Pool,
    topology: Topology,
    stream: String,
    board: HaltBoard,
    stats: Arc<Stats>,
    progress: Arc<watch::Sender<Progress>>,
    /// Reloads one at a time, so an older one never overwrites a newer.
    reloading: Arc<Mutex<()>>,
}

impl KillSwitch {
    pub fn new(
        store: Store,
        pool: Pool,
        topology: Topology,
        stream: String,
        stats: Arc<Stats>,
    ) -> Self {
        KillSwitch {
            store,
            pool,
            topology,
            stream,
            board: HaltBoard::default(),
            stats,
            progress: Arc::new(watch::channel(Progress::default()).0),
            reloading: Arc::default(),
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
        let _one_at_a_time = self.reloading.lock().await;
        let rows = self.store.active_halt_rows().await?;
        let oldest = rows.iter().map(|row| row.set_at).min();
        self.stats
            .set_halts(rows.len(), oldest.map(|at| at.with_timezone(&chrono::Utc)));
        self.board.replace(crate::store::halts_in_force(&rows));
        Ok(())
    }

    /// Appends a halt or resume to the stream and waits until this
    /// replica's follower has applied it (in stream order, after every
    /// earlier entry), so it is in force here when this returns and on the
    /// others within a second.
    pub async fn submit(&self, command: &HaltCommand) -> Result<Submitted, SubmitError> {
        let entry_id = bus::append_halt_command(&self.pool, &self.stream, command).await?;
        let target = stream_position(&entry_id).unwrap_or((u64::MAX, u64::MAX));
        let mut progress = self.progress.subscribe();
        let applied = progress.wait_for(|p| p.position >= target);
        match tokio::time::timeout(SUBMIT_WAIT, applied).await {
            Ok(Ok(_)) => {}
            _ => return Err(SubmitError::NotApplied(entry_id)),
        }
        let halts = self.store.halts_changed_by(&entry_id).await?;
        Ok(Submitted { entry_id, halts })
    }

    /// Waits until the follower has read to the end of the stream once;
    /// false when cancelled first.
    pub async fn wait_until_caught_up(&self, cancel: &CancellationToken) -> bool {
        let mut progress = self.progress.subscribe();
        tokio::select! {
            () = cancel.cancelled() => false,
            caught_up = progress.wait_for(|p| p.caught_up) => caught_up.is_ok(),
        }
    }

    /// Applies one entry read from the stream (once across the fleet); a
    /// refused one is handed to `letters` to be dead-lettered by whoever
    /// recorded it, while the follower moves on. Err only while Postgres
    /// does not answer.
    async fn handle(&self, entry: &Entry, letters: &Letters) -> Result<(), DbErr> {
        let command = HaltCommand::from_entry(&entry.fields);
        let outcome = self
            .store
            .apply_halt_entry(
                &entry.id,
                &kill_switch_digest(&entry.fields),
                command.as_ref().map_err(String::as_str),
            )
            .await?;
        match (&command, outcome) {
            (Ok(command), EntryOutcome::Applied(halts)) => log_change(&entry.id, command, &halts),
            (Err(reason), EntryOutcome::Refused) => {
                tracing::warn!(entry = %entry.id, reason = %reason, "a kill-switch entry cannot be understood; it changes nothing and is dead-lettered");
                let reason = format!("kill-switch entry not understood: {reason}");
                // Closed only once the follower stops.
                let _ = letters.send((entry.clone(), reason));
            }
            _ => {}
        }
        Ok(())
    }

    /// Parks refused entries on the dead-letter stream, in order, each
    /// retried until Redis takes it: a dead-letter stream that cannot be
    /// written never holds up the halts behind it.
    async fn park(
        &self,
        mut refused: mpsc::UnboundedReceiver<(Entry, String)>,
        cancel: &CancellationToken,
    ) {
        let publisher = Publisher::new(self.pool.clone(), self.topology.clone());
        while let Some((entry, reason)) = refused.recv().await {
            let mut backoff = Backoff::default();
            while let Err(err) =
                bus::dead_letter_entry(&publisher, &self.stream, &entry, reason.clone()).await
            {
                tracing::error!(entry = %entry.id, error = %err, "cannot dead-letter a kill-switch entry; retrying");
                if !backoff.wait(cancel).await {
                    return;
                }
            }
        }
    }

    /// Follows the stream, and reloads the board every second, until
    /// `cancel` fires.
    pub async fn run_until_stopped(self, cancel: CancellationToken) {
        let reloading = async {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(err) = self.reload().await {
                    tracing::warn!(error = %err, "cannot reload the active halts");
                }
            }
        };
        let (letters, refused) = mpsc::unbounded_channel();
        tokio::select! {
            () = cancel.cancelled() => {}
            () = reloading => {}
            () = self.follow(&cancel, &letters) => {}
            () = self.park(refused, &cancel) => {}
        }
    }

    /// Whether the entry last applied (`id`, its fields' `digest`) is gone
    /// from the stream or another entry holds its id: the stream was
    /// deleted and recreated (or Redis restarted with its clock behind),
    /// and entries of the new stream may have ids at or below it, which no
    /// read after it returns. Then the stream is read again from the start
    /// (entries applied already are recognised by id and content).
    async fn recreated(&self, reader: &mut KillSwitchReader, id: &str, digest: &str) -> bool {
        let found = match reader.entry(id).await {
            Ok(found) => found,
            Err(_) => return false,
        };
        // An entry recorded before entries were known by content (an
        // empty digest) can only be missed.
        let same = found
            .is_some_and(|entry| digest.is_empty() || kill_switch_digest(&entry.fields) == digest);
        if !same {
            tracing::warn!(
                stream = %self.stream,
                last_applied = %id,
                "the kill-switch stream was recreated: the last applied entry is gone or replaced; reading the stream again from the start"
            );
        }
        !same
    }

    async fn follow(&self, cancel: &CancellationToken, letters: &Letters) {
        self.board.followed();
        let mut backoff = Backoff::default();
        // The fleet's applied entries are a prefix of the stream: go on
        // from its end.
        let mut applied = loop {
            match self.store.last_halt_entry().await {
                Ok(applied) => break applied,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read where the kill switch stands; retrying");
                    if !backoff.wait(cancel).await {
                        return;
                    }
                }
            }
        };
        let mut position = applied
            .as_ref()
            .map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone());
        let mut reader = loop {
            match KillSwitchReader::connect(self.pool.target(), &self.stream, READ_BLOCK).await {
                Ok(reader) => break reader,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot connect to read the kill-switch stream; retrying");
                    if !backoff.wait(cancel).await {
                        return;
                    }
                }
            }
        };
        backoff.reset();
        loop {
            let entries = match reader.read_after(&position, READ_COUNT, READ_BLOCK).await {
                Ok(entries) => entries,
                Err(err) => {
                    tracing::warn!(error = %err, "reading the kill-switch stream failed; retrying");
                    if !backoff.wait(cancel).await {
                        return;
                    }
                    continue;
                }
            };
            // After every read, before anything it returned is applied:
            // the entry applied last must still be in the stream as it was,
            // else the stream was recreated, and entries of the new one
            // below it (which no read after it returns) would be missed.
            if let Some((id, digest)) = &applied
                && self.recreated(&mut reader, id, digest).await
            {
                position = "0-0".to_owned();
                applied = None;
                continue;
            }
            for entry in &entries {
                // An entry is passed only once it is applied: Postgres being
                // away holds the stream here, it never skips a halt.
                while let Err(err) = self.handle(entry, letters).await {
                    tracing::warn!(entry = %entry.id, error = %err, "cannot apply a kill-switch entry; retrying");
                    if !backoff.wait(cancel).await {
                        return;
                    }
                }
                position = entry.id.clone();
                applied = Some((entry.id.clone(), kill_switch_digest(&entry.fields)));
            }
            backoff.reset();
            // The board reflects what was applied before anyone is told (and
            // holds the halts in force before the worker first starts). A
            // read that found nothing changes nothing: the board stands, and
            // the stream is known to have been read, whatever Postgres does
            // (the reloads every second keep the board from drifting).
            let must_reload = !entries.is_empty() || !self.progress.borrow().caught_up;
            if must_reload {
                loop {
                    let reloaded = tokio::time::timeout(RELOAD_TIMEOUT, self.reload()).await;
                    match reloaded {
                        Ok(Ok(())) => break,
                        Ok(Err(err)) => {
                            tracing::warn!(error = %err, "cannot reload the active halts; retrying");
                        }
                        Err(_) => tracing::warn!("reloading the active halts hangs; retrying"),
                    }
                    if !backoff.wait(cancel).await {
                        return;
                    }
                }
            }
            self.board.read_now();
            let reached = stream_position(&position).unwrap_or_default();
            self.progress.send_modify(|progress| {
                progress.position = progress.position.max(reached);
                // A read that found less than it asked for: the end of the
                // stream (as of that read).
                progress.caught_up |= entries.len() < READ_COUNT;
            });
        }
    }
}

/// The SHA-256 of an entry's fields (names and values, in order, each
/// preceded by its length), in hex: with its id, what tells two entries
/// apart.
fn kill_switch_digest(fields: &[(Vec<u8>, Vec<u8>)]) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for (name, value) in fields {
        for part in [name, value] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    hex::encode(hasher.finalize())
}

/// `1764124800000-3` as (1764124800000, 3).
fn stream_position(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
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
