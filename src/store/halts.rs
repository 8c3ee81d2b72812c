//! Halts in Postgres: applying a kill-switch entry once for the whole
//! fleet, and reading the active and recent halts.
//!
//! An entry is applied in one transaction that first records its id in
//! `halt_entries`: the replica whose insert wins applies it, every other
//! finds it recorded and changes nothing, so an entry is applied once
//! however many replicas read it at the same moment.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait,
};

use super::Store;
use super::entity::halts;
use crate::domain::{Halt, HaltAction, HaltCommand, HaltScope};

/// What applying an entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    /// This replica applied it: the halts it set or lifted.
    Applied(Vec<i64>),
    /// This replica recorded it as not understood (and should dead-letter it).
    Refused,
    /// Another replica (or an earlier read) got there first.
    AlreadyApplied,
}

impl Store {
    /// Applies one kill-switch entry, once across the fleet: an entry is
    /// known by its id and `digest` (of its fields), so an entry of a
    /// recreated stream that reuses an applied entry's id is applied too.
    /// `command` is `Err(reason)` for an entry that cannot be understood:
    /// it is recorded as refused and changes no halt.
    #[tracing::instrument(skip_all, fields(entry = entry_id), err)]
    pub async fn apply_halt_entry(
        &self,
        entry_id: &str,
        digest: &str,
        command: Result<&HaltCommand, &str>,
    ) -> Result<EntryOutcome, DbErr> {
        let txn = self.connection().begin().await?;
        // Recorded before entries were known by content too: its id is
        // all that is known of it.
        let recorded_by_id_only = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT 1 FROM halt_entries WHERE entry_id = $1 AND digest = ''",
                [entry_id.into()],
            ))
            .await?
            .is_some();
        if recorded_by_id_only {
            txn.rollback().await?;
            return Ok(EntryOutcome::AlreadyApplied);
        }
        let (ms, seq) = stream_position(entry_id);
        let (outcome, detail) = match command {
            Ok(command) => (command.action.as_str(), None),
            // Postgres text holds no NUL; the reason may quote raw bytes.
            Err(reason) => ("refused", Some(reason.replace('\0', "\\0"))),
        };
        let recorded = txn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO halt_entries (entry_id, entry_ms, entry_seq, outcome, detail, digest) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (entry_id, digest) DO NOTHING",
                [
                    entry_id.into(),
                    ms.into(),
                    seq.into(),
                    outcome.into(),
                    detail.into(),
                    digest.into(),
                ],
            ))
            .await?
            .rows_affected();
        if recorded == 0 {
            txn.rollback().await?;
            return Ok(EntryOutcome::AlreadyApplied);
        }
        let outcome = match command {
            Err(_) => EntryOutcome::Refused,
            Ok(command) => EntryOutcome::Applied(apply(&txn, entry_id, command).await?),
        };
        txn.commit().await?;
        Ok(outcome)
    }

    /// Every halt in force, oldest first (see [`halts_in_force`]).
    pub async fn active_halts(&self) -> Result<Vec<Halt>, DbErr> {
        Ok(halts_in_force(&self.active_halt_rows().await?))
    }

    /// The rows of the halts in force, oldest first.
    pub async fn active_halt_rows(&self) -> Result<Vec<halts::Model>, DbErr> {
        halts::Entity::find()
            .filter(halts::Column::LiftedAt.is_null())
            .order_by_asc(halts::Column::Id)
            .all(self.connection())
            .await
    }

    /// Active halts and the most recently set or lifted ones, newest first.
    pub async fn recent_halts(&self, limit: u64) -> Result<Vec<halts::Model>, DbErr> {
        halts::Entity::find()
            .order_by_desc(halts::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await
    }

    pub async fn halt(&self, id: i64) -> Result<Option<halts::Model>, DbErr> {
        halts::Entity::find_by_id(id).one(self.connection()).await
    }

    /// The halts an applied entry set or lifted.
    pub async fn halts_changed_by(&self, entry_id: &str) -> Result<Vec<i64>, DbErr> {
        let rows = self
            .connection()
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT id FROM halts WHERE set_entry = $1 OR lifted_entry = $1 ORDER BY id",
                [entry_id.into()],
            ))
            .await?;
        rows.iter()
            .map(|row| row.try_get_by_index::<i64>(0))
            .collect()
    }

    /// What became of a kill-switch entry (`halt`, `resume` or `refused`),
    /// once a replica has recorded it.
    pub async fn halt_entry_outcome(&self, entry_id: &str) -> Result<Option<String>, DbErr> {
        let row = self
            .connection()
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT outcome FROM halt_entries WHERE entry_id = $1",
                [entry_id.into()],
            ))
            .await?;
        row.map(|row| row.try_get_by_index::<String>(0)).transpose()
    }

    /// The newest stream entry the fleet has applied: where a replica
    /// starts reading the kill-switch stream.
    pub async fn last_halt_entry(&self) -> Result<Option<(String, String)>, DbErr> {
        let row = self
            .connection()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT entry_ms, entry_seq, digest FROM halt_entries WHERE entry_ms IS NOT NULL \
                 ORDER BY entry_ms DESC, entry_seq DESC, applied_at DESC LIMIT 1",
            ))
            .await?;
        row.map(|row| {
            let ms: i64 = row.try_get_by_index(0)?;
            let seq: i64 = row.try_get_by_index(1)?;
            let digest: String = row.try_get_by_index(2)?;
            Ok((format!("{ms}-{seq}"), digest))
        })
        .transpose()
    }
}

/// Sets or lifts, inside the entry's transaction.
async fn apply(
    txn: &impl ConnectionTrait,
    entry_id: &str,
    command: &HaltCommand,
) -> Result<Vec<i64>, DbErr> {
    let target = command.scope.target().map(str::to_owned);
    let statement = match command.action {
        HaltAction::Halt => Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO halts (scope, target, reason, source, set_entry) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            [
                command.scope.kind().into(),
                target.into(),
                command.reason.clone().into(),
                command.source.clone().into(),
                entry_id.into(),
            ],
        ),
        HaltAction::Resume => Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE halts SET lifted_at = now(), lifted_by = $3, lift_reason = $4, lifted_entry = $5 \
             WHERE lifted_at IS NULL AND scope = $1 AND target IS NOT DISTINCT FROM $2 \
               AND ($6::bigint IS NULL OR id = $6) RETURNING id",
            [
                command.scope.kind().into(),
                target.into(),
                command.source.clone().into(),
                command.reason.clone().into(),
                entry_id.into(),
                command.halt_id.into(),
            ],
        ),
    };
    let rows = txn.query_all_raw(statement).await?;
    rows.iter()
        .map(|row| row.try_get_by_index::<i64>(0))
        .collect()
}

/// The halt a stored row describes.
pub fn halt_of(row: &halts::Model) -> Option<Halt> {
    let scope = match (row.scope.as_str(), row.target.as_deref()) {
        // Stored normalised (`AB/CD` as `ABCD`, shorter than a bare
        // symbol may be as sent): read back as the market it names.
        ("symbol", Some(market))
            if !market.is_empty() && market.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            HaltScope::Symbol(market.to_owned())
        }
        (kind, target) => HaltScope::new(kind, target).ok()?,
    };
    Some(Halt {
        id: row.id,
        scope,
        reason: row.reason.clone(),
    })
}

/// `1764124800000-3` as (1764124800000, 3); neither for an id that is not
/// a stream id (a change made while the stream was out of reach).
fn stream_position(entry_id: &str) -> (Option<i64>, Option<i64>) {
    match entry_id
        .split_once('-')
        .map(|(ms, seq)| (ms.parse::<i64>(), seq.parse::<i64>()))
    {
        Some((Ok(ms), Ok(seq))) => (Some(ms), Some(seq)),
        _ => (None, None),
    }
}

/// The halts of rows in force. A row whose scope this version cannot read
/// (set by hand, or by a newer version) halts everything: a halt is never
/// ignored for being misunderstood.
pub fn halts_in_force(rows: &[halts::Model]) -> Vec<Halt> {
    rows.iter()
        .map(|row| {
            halt_of(row).unwrap_or_else(|| {
                tracing::error!(halt = row.id, scope = %row.scope, target = ?row.target,
                    "a halt in force has a scope this version cannot read; it halts everything");
                Halt {
                    id: row.id,
                    scope: HaltScope::All,
                    reason: format!("{} (unreadable scope {:?})", row.reason, row.scope),
                }
            })
        })
        .collect()
}
