//! `halt`, `resume` and `halts`: the kill switch from a shell. Halts and
//! resumes go through `SHUTDOWN_STREAM`, like the Risk Manager's, so they
//! need Redis only; every running replica applies them within a second,
//! and a replica started later applies them before its first batch.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::app::pool_settings;
use crate::bus;
use crate::config::Settings;
use crate::domain::{Fields, HaltAction, HaltCommand, HaltScope};
use crate::store::{PoolSettings, Store};

/// How long to wait for a replica to confirm that it applied the entry.
const CONFIRM_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct ScopeArgs {
    /// What to halt or resume: all, strategy, bot or symbol.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    scope: Option<String>,
    /// The strategy, bot or symbol the scope names.
    #[arg(long)]
    id: Option<String>,
    /// The whole desk (`--scope all`).
    #[arg(long)]
    all: bool,
    /// Why (required to halt); repeated in every rejected order's reason.
    #[arg(long)]
    reason: Option<String>,
    /// Who asks; logged and stored.
    #[arg(long, default_value = "cli")]
    source: String,
}

pub async fn run(
    action: HaltAction,
    args: ScopeArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let kind = if args.all {
        "all"
    } else {
        args.scope.as_deref().unwrap_or_default()
    };
    let scope = HaltScope::new(kind, args.id.as_deref()).map_err(anyhow::Error::msg)?;
    let reason = match (action, args.reason) {
        (_, Some(reason)) if !reason.trim().is_empty() => reason.trim().to_owned(),
        (HaltAction::Halt, _) => anyhow::bail!("a halt needs --reason"),
        (HaltAction::Resume, _) => String::new(),
    };
    let command = HaltCommand {
        action,
        scope,
        reason,
        source: args.source,
        halt_id: None,
    };
    // Refuse here what every replica would refuse, rather than append it.
    let written: Fields = command
        .to_fields()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), serde_json::Value::String(value)))
        .collect();
    HaltCommand::parse(&written).map_err(anyhow::Error::msg)?;
    let pool = crate::app::redis_pool(settings, 1)?;
    let entry = bus::append_halt_command(&pool, &settings.streams.shutdown_stream, &command)
        .await
        .context("appending to the kill-switch stream")?;
    println!(
        "{} {} sent as entry {entry} of {}",
        action.as_str(),
        command.scope,
        settings.streams.shutdown_stream
    );
    match confirm(settings, &entry).await {
        Ok(Some(outcome)) if outcome == "refused" => {
            eprintln!("the fleet refused the entry; see the dead-letter stream");
            return Ok(ExitCode::FAILURE);
        }
        Ok(Some(_)) => println!("applied by the fleet"),
        Ok(None) => println!(
            "not applied within {}s: no replica is running? The first to start applies it before its first batch",
            CONFIRM_WAIT.as_secs()
        ),
        Err(err) => {
            println!("cannot confirm through Postgres ({err:#}); the entry stands in the stream")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a replica recorded for the entry within [`CONFIRM_WAIT`], if any.
async fn confirm(settings: &Settings, entry: &str) -> anyhow::Result<Option<String>> {
    let store = connect(settings).await?;
    let deadline = tokio::time::Instant::now() + CONFIRM_WAIT;
    while tokio::time::Instant::now() < deadline {
        if let Some(outcome) = store.halt_entry_outcome(entry).await? {
            return Ok(Some(outcome));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

/// `halts`: the halts in force and the most recent ones, from Postgres.
pub async fn list(settings: &Settings, limit: u64) -> anyhow::Result<ExitCode> {
    let store = connect(settings).await?;
    let rows = store.recent_halts(limit).await?;
    println!(
        "{:>6}  {:<8} {:<24} {:<25} {:<25} reason",
        "id", "scope", "target", "set at", "lifted at"
    );
    for row in rows {
        println!(
            "{:>6}  {:<8} {:<24} {:<25} {:<25} {} (by {})",
            row.id,
            row.scope,
            row.target.as_deref().unwrap_or("-"),
            row.set_at.format("%Y-%m-%d %H:%M:%S%:z"),
            row.lifted_at.map_or("in force".to_owned(), |t| t
                .format("%Y-%m-%d %H:%M:%S%:z")
                .to_string()),
            row.reason,
            row.source
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A store of one connection, for a command.
pub(super) async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    let pool = PoolSettings {
        max_connections: 1,
        ..pool_settings(&settings.postgres)
    };
    Store::connect_with(settings.postgres.url.expose_secret(), &pool)
        .await
        .map_err(|err| anyhow::anyhow!(settings.redactor().redact(&err.to_string())))
}
