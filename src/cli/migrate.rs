//! `migrate up|down|status|fresh`.
//!
//! Every change of the schema takes the same advisory lock as a replica
//! migrating at start-up, so none of them interleave. `up` and `fresh`
//! create the database when it does not exist yet.

use std::process::ExitCode;

use migration::{Migrator, MigratorTrait};

use crate::app::{StoreStartup, connect_store};
use crate::config::Settings;
use crate::store::Migration;

#[derive(Debug, Clone, Copy, Default, clap::Subcommand)]
pub enum Action {
    /// Apply every pending migration (the default).
    #[default]
    Up,
    /// Roll back the last migration.
    Down,
    /// List migrations and whether each is applied.
    Status,
    /// Drop every table and apply all migrations again.
    Fresh,
}

pub async fn run(action: Action, settings: &Settings) -> anyhow::Result<ExitCode> {
    let startup = StoreStartup {
        create_database: matches!(action, Action::Up | Action::Fresh),
        migrate: false,
    };
    let store = connect_store(settings, 2, startup).await?;
    match action {
        Action::Up => store.change_schema(Migration::Up).await?,
        Action::Down => store.change_schema(Migration::Down).await?,
        Action::Status => Migrator::status(store.connection()).await?,
        Action::Fresh => store.change_schema(Migration::Fresh).await?,
    }
    tracing::info!(?action, "migrations done");
    Ok(ExitCode::SUCCESS)
}
