//! Settings: the environment (and a `.env` file) read once into typed,
//! validated values.
//!
//! Every variable is checked at start-up and all bad ones are reported
//! together, each with its name and value. Every number has a documented
//! range (`env.ranged`), and the rules that relate settings to each other
//! are checked in `checks`. Secrets (`*_PASSWORD`, URLs that may carry
//! one) are [`SecretString`]s, read from `<NAME>_FILE` when set, and never
//! appear in `Debug` output, logs or errors: see [`Redactor`].

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

mod checks;
mod env;
mod local;
mod mexc;
mod redact;
mod redis;
mod streams;
mod trading;
mod urls;
use checks::{log_filter, relations};
use env::Env;
pub use local::LocalSettings;
use local::local_settings;
pub use mexc::{MexcSettings, PaperPriceSource};
pub use redact::{Redactor, redact_urls};
pub use redis::{RedisSettings, SentinelSettings};
use streams::stream_settings;
pub use streams::{StreamSettings, TopologySettings, WorkerSettings};
use trading::trading_settings;
pub use trading::{DEFAULT_REFERENCE_PRICES, Mode, TradingSettings};
pub(crate) use urls::url_escape;

#[derive(Debug, Clone)]
pub struct Settings {
    pub redis: RedisSettings,
    pub postgres: PostgresSettings,
    pub http: HttpSettings,
    pub streams: StreamSettings,
    pub trading: TradingSettings,
    pub mexc: MexcSettings,
    pub telemetry: TelemetrySettings,
    pub local: LocalSettings,
}

#[derive(Debug, Clone)]
pub struct PostgresSettings {
    pub url: SecretString,
    /// The variables the URL came from, for messages that say what to fix.
    pub url_source: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Session timeouts: by default derived from `BATCH_TIMEOUT_SECS`.
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub idle_in_transaction_timeout: Duration,
    pub keepalive_idle: Duration,
    /// Apply pending migrations when `serve` starts.
    pub run_migrations: bool,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
    /// Bearer token for the write endpoints of `/halts`; without one they
    /// answer 403.
    pub admin_token: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub log_level: String,
    pub json_logs: bool,
    /// Where spans go, and how; none when `OTEL_EXPORTER_OTLP_ENDPOINT` is unset.
    pub otlp: Option<(String, OtlpProtocol)>,
    pub service_name: String,
}

/// Every variable that was set to something unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

impl Settings {
    /// Reads `.env` (when present) and the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds settings from any variable source (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Env::new(&lookup);
        let postgres_url = urls::postgres_url(&mut env);
        let streams = stream_settings(&mut env);
        let postgres = postgres_settings(&mut env, postgres_url, streams.worker.batch_timeout);
        let settings = Settings {
            redis: redis::redis_settings(&mut env),
            http: HttpSettings {
                host: env.text("HTTP_HOST", "0.0.0.0"),
                // 0: any free port (tests).
                port: env.ranged("HTTP_PORT", 8003, 0..=u16::MAX),
                admin_token: admin_token(&mut env),
            },
            streams,
            postgres,
            trading: trading_settings(&mut env),
            mexc: mexc::mexc_settings(&mut env),
            telemetry: TelemetrySettings {
                log_level: log_filter(&mut env),
                json_logs: env.choice("LOG_FORMAT", "text", &["text", "json"]) == "json",
                otlp: otlp_endpoint(&mut env),
                service_name: env.text("OTEL_SERVICE_NAME", "execution-service"),
            },
            local: local_settings(&mut env),
        };
        relations(&mut env, &settings);
        if env.errors.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError(env.errors))
        }
    }

    /// Masks every secret these settings hold (see [`Redactor`]).
    pub fn redactor(&self) -> Redactor {
        let mut redactor = Redactor::default()
            .with_url(self.postgres.url.expose_secret())
            .with_url(self.redis.url.expose_secret());
        for secret in [
            &self.http.admin_token,
            &self.mexc.api_key,
            &self.mexc.api_secret,
            &self
                .redis
                .sentinel
                .as_ref()
                .and_then(|sentinel| sentinel.password.clone()),
        ]
        .into_iter()
        .flatten()
        {
            redactor = redactor.with_secret(secret.expose_secret());
        }
        redactor
    }
}

/// The pool and the session timeouts. A statement may take the whole of a
/// batch's time, a lock wait a third of it; a transaction whose client went
/// quiet is ended once its batch has been given up.
fn postgres_settings(
    env: &mut Env<'_>,
    url: urls::PostgresUrl,
    batch_timeout: Duration,
) -> PostgresSettings {
    let batch_ms = batch_timeout.as_millis() as u64;
    // Floors keep a batch's own statements and pauses from tripping them.
    let mut millis = |name: &str, default: u64, min: u64| {
        Duration::from_millis(env.ranged(name, default, min..=86_400_000))
    };
    let statement_timeout = millis("POSTGRES_STATEMENT_TIMEOUT_MS", batch_ms, 1_000);
    let lock_timeout = millis("POSTGRES_LOCK_TIMEOUT_MS", (batch_ms / 3).max(100), 100);
    let idle_in_transaction_timeout =
        millis("POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS", batch_ms, 1_000);
    let acquire_timeout = millis("POSTGRES_ACQUIRE_TIMEOUT_MS", 5_000, 100);
    if lock_timeout > statement_timeout {
        env.invalid(
            "POSTGRES_LOCK_TIMEOUT_MS",
            lock_timeout.as_millis(),
            "at most POSTGRES_STATEMENT_TIMEOUT_MS (a lock wait is part of a statement)",
        );
    }
    PostgresSettings {
        url: url.url,
        url_source: url.source,
        max_connections: env.ranged("POSTGRES_MAX_CONNECTIONS", 16, 1..=1000),
        acquire_timeout,
        statement_timeout,
        lock_timeout,
        idle_in_transaction_timeout,
        keepalive_idle: Duration::from_secs(env.ranged(
            "POSTGRES_TCP_KEEPALIVE_SECS",
            15,
            1..=7200,
        )),
        run_migrations: env.flag("RUN_MIGRATIONS", true),
    }
}

/// Shortest admin token accepted: a guessable one is worse than none.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// `ADMIN_TOKEN` (or `ADMIN_TOKEN_FILE`), when set.
fn admin_token(env: &mut Env<'_>) -> Option<SecretString> {
    let (token, source) = env.secret("ADMIN_TOKEN")?;
    let length = token.expose_secret().chars().count();
    let printable = token.expose_secret().chars().all(|c| c.is_ascii_graphic());
    if length < MIN_ADMIN_TOKEN_LEN || !printable {
        env.invalid(
            &source,
            format!("<{length} characters>"),
            &format!("at least {MIN_ADMIN_TOKEN_LEN} printable ASCII characters without spaces"),
        );
        return None;
    }
    Some(token)
}

/// How spans travel to the collector (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf` or `http/json` (port 4318); the exporter reads which.
    Http,
    /// `grpc` (port 4317), on the service's Tokio runtime.
    Grpc,
}

/// The OTLP endpoint and protocol, when traces are to be exported.
fn otlp_endpoint(env: &mut Env<'_>) -> Option<(String, OtlpProtocol)> {
    // The protocol is checked even when nothing is exported: a wrong value
    // would otherwise surface only on the day an endpoint is set.
    let protocol = env.text("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    let protocol = match protocol.trim() {
        "grpc" => OtlpProtocol::Grpc,
        "http/protobuf" | "http/json" => OtlpProtocol::Http,
        other => {
            env.invalid(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                other,
                "grpc (port 4317), http/protobuf or http/json (port 4318)",
            );
            OtlpProtocol::Http
        }
    };
    let endpoint = env
        .var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .filter(|v| !v.trim().is_empty())?;
    Some((endpoint, protocol))
}

#[cfg(test)]
mod tests;
