//! Logging: a `tracing` subscriber filtered by `LOG_LEVEL` (or `RUST_LOG`),
//! as text or as one JSON object per line.

use tracing_subscriber::EnvFilter;

use crate::config::TelemetrySettings;

pub fn init(settings: &TelemetrySettings) {
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if settings.json_logs {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
    // A second initialisation (tests) keeps the first subscriber.
    drop(installed);
}
