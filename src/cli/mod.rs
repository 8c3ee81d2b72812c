//! The command line: `serve` (the default), `migrate`, `publish`, `bench`,
//! `dlq`, `halt`, `resume`, `halts`, `order`, `healthcheck` and `openapi`.

mod bench;
mod client;
mod dlq;
mod halt;
mod healthcheck;
mod migrate;
mod order;
mod publish;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::Application;
use crate::config::Settings;
use crate::domain::HaltAction;

#[derive(Debug, Parser)]
#[command(
    name = "execution-service",
    version,
    about = "Executes approved orders exactly once"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the shim and the worker (the default).
    Serve,
    /// Apply or inspect database migrations.
    Migrate {
        #[command(subcommand)]
        action: Option<migrate::Action>,
    },
    /// Send one order and wait for its result.
    Publish(publish::Args),
    /// Push many orders through a running service and report throughput and latency.
    Bench(bench::Args),
    /// Inspect, requeue or purge the dead-letter stream.
    Dlq {
        #[command(subcommand)]
        action: dlq::Action,
    },
    /// Halt trading in a scope on every replica (through SHUTDOWN_STREAM).
    Halt(halt::ScopeArgs),
    /// Lift the halts of a scope on every replica (through SHUTDOWN_STREAM).
    Resume(halt::ScopeArgs),
    /// List the halts in force and the most recent ones (from Postgres).
    Halts {
        /// At most this many recent halts.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Show one order as stored and every recorded change of its state (from Postgres).
    Order {
        /// The order's `order_id`.
        order_id: String,
    },
    /// Exit 0 when this host's HTTP API answers /health (container health checks).
    Healthcheck,
    /// Print the OpenAPI document of the HTTP API (committed as openapi/openapi.json).
    Openapi,
}

pub async fn run(cli: Cli, mut settings: Settings) -> anyhow::Result<ExitCode> {
    let command = cli.command.unwrap_or(Command::Serve);
    if !matches!(command, Command::Openapi | Command::Healthcheck) {
        let may_start = matches!(command, Command::Serve);
        crate::local::use_private_services(&mut settings, may_start).await?;
    }
    match command {
        Command::Serve => serve(settings).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate { action } => migrate::run(action.unwrap_or_default(), &settings).await,
        Command::Publish(args) => publish::run(args, &settings).await,
        Command::Bench(args) => bench::run(args, &settings).await,
        Command::Dlq { action } => dlq::run(action, &settings).await,
        Command::Halt(args) => halt::run(HaltAction::Halt, args, &settings).await,
        Command::Resume(args) => halt::run(HaltAction::Resume, args, &settings).await,
        Command::Halts { limit } => halt::list(&settings, limit).await,
        Command::Order { order_id } => order::run(&settings, &order_id).await,
        Command::Healthcheck => healthcheck::run(&settings).await,
        Command::Openapi => {
            println!("{}", crate::http::spec().await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let app = tokio::select! {
        app = Application::build(settings) => app?,
        () = cancel.cancelled() => return Ok(()),
    };
    app.run_until_stopped(cancel).await
}

/// Fires `cancel` on SIGINT or SIGTERM.
async fn cancel_on_signal(cancel: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
    cancel.cancel();
}
