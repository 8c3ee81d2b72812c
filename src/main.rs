#![forbid(unsafe_code)]
//! `execution-service`: parse the command line, load settings, start
//! logging, run.

use std::process::ExitCode;

use clap::Parser;
use execution_service::cli::{self, Cli};
use execution_service::config::Settings;
use execution_service::telemetry;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    execution_service::allocator::tune();
    run()
}

#[tokio::main]
async fn run() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("execution-service: {err}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::init(&settings.telemetry, &settings.streams.topology.consumer)
    {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("execution-service: cannot start telemetry: {err:#}");
            return ExitCode::from(2);
        }
    };
    // Errors from client libraries may quote a URL, password and all.
    let redactor = settings.redactor();
    let code = match cli::run(cli, settings).await {
        Ok(code) => code,
        Err(err) => {
            let error = redactor.redact(&format!("{err:#}"));
            tracing::error!(error, "execution-service failed");
            ExitCode::FAILURE
        }
    };
    // Blocking: the exporter flushes over HTTP from its own thread.
    tokio::task::block_in_place(|| telemetry.shutdown());
    code
}
