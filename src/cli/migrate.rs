//! `migrate up|down|status|fresh`.
//!
//! `up` and `fresh` create the database when it does not exist yet.

use std::process::ExitCode;

use migration::{Migrator, MigratorTrait};

use crate::app::{StoreStartup, connect_store};
use crate::config::Settings;

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
    let db = store.connection();
    match action {
        Action::Up => store.migrate().await?,
        Action::Down => Migrator::down(db, Some(1)).await?,
        Action::Status => Migrator::status(db).await?,
        Action::Fresh => Migrator::fresh(db).await?,
    }
    tracing::info!(?action, "migrations done");
    Ok(ExitCode::SUCCESS)
}
