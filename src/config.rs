//! Settings: the environment (and a `.env` file) read once into typed,
//! validated values.
//!
//! Every variable is checked at start-up and all bad ones are reported
//! together, each with its name and value. Secrets (`*_PASSWORD`, URLs that
//! may carry one) are [`SecretString`]s, read from `<NAME>_FILE` when set, and
//! never appear in `Debug` output or logs.

use std::collections::HashMap;
use std::time::Duration;

use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};

use crate::bus::Topology;
use crate::domain::{TradingMode, parse_amount};
use crate::worker::WorkerOptions;

mod env;
use env::Env;

#[derive(Debug, Clone)]
pub struct Settings {
    pub redis: RedisSettings,
    pub postgres: PostgresSettings,
    pub http: HttpSettings,
    pub streams: StreamSettings,
    pub trading: TradingSettings,
    pub telemetry: TelemetrySettings,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: SecretString,
    pub pool_size: usize,
}

#[derive(Debug, Clone)]
pub struct PostgresSettings {
    pub url: SecretString,
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
}

/// Names of the channels, streams and consumer group, and how they are read.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub topology: Topology,
    pub worker: WorkerOptions,
    pub shutdown_stream: String,
    /// Whether this replica mirrors the orders channel into the stream.
    pub shim_enabled: bool,
}

#[derive(Debug, Clone)]
pub struct TradingSettings {
    pub mode: TradingMode,
    pub dry_run: bool,
    pub paper_fee_rate: Decimal,
    /// Prices a MARKET order without a price fills at in paper mode, by
    /// normalised symbol (`BTCUSDT`).
    pub reference_prices: HashMap<String, Decimal>,
    pub mock_success_rate: f64,
    pub mock_seed: u64,
    pub mock_max_slippage_bps: Decimal,
}

#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub log_level: String,
    pub json_logs: bool,
    pub otlp_endpoint: Option<String>,
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
        let mut env = Env {
            lookup: &lookup,
            errors: Vec::new(),
        };
        let streams = stream_settings(&mut env);
        let postgres = postgres_settings(&mut env, streams.worker.batch_timeout);
        let settings = Settings {
            redis: RedisSettings {
                url: redis_url(&mut env),
                pool_size: env.parse("REDIS_POOL_SIZE", 16),
            },
            http: HttpSettings {
                host: env.text("HTTP_HOST", "0.0.0.0"),
                port: env.parse("HTTP_PORT", 8003),
            },
            streams,
            postgres,
            trading: trading_settings(&mut env),
            telemetry: TelemetrySettings {
                log_level: env
                    .var("RUST_LOG")
                    .unwrap_or_else(|| env.text("LOG_LEVEL", "info")),
                json_logs: env.choice("LOG_FORMAT", "text", &["text", "json"]) == "json",
                otlp_endpoint: otlp_endpoint(&mut env),
                service_name: env.text("OTEL_SERVICE_NAME", "execution-service"),
            },
        };
        if env.errors.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError(env.errors))
        }
    }
}

fn stream_settings(env: &mut Env<'_>) -> StreamSettings {
    let default_consumer = format!(
        "{}-{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    );
    let batch_size = env.parse("BATCH_SIZE", 500_usize);
    if !(1..=2000).contains(&batch_size) {
        env.invalid("BATCH_SIZE", batch_size, "a batch size between 1 and 2000");
    }
    let max_deliveries = env.parse("MAX_DELIVERIES", 5_u64);
    if max_deliveries == 0 {
        env.invalid("MAX_DELIVERIES", max_deliveries, "at least 1");
    }
    StreamSettings {
        topology: Topology {
            orders_channel: env.text("ORDERS_CHANNEL", "orders"),
            results_channel: env.text("RESULTS_CHANNEL", "order_results"),
            orders_stream: env.text("ORDERS_STREAM", "stream.orders"),
            results_stream: env.text("RESULTS_STREAM", "stream.order_results"),
            dlq_stream: env.text("DLQ_STREAM", "stream.orders.dlq"),
            group: env.text("CONSUMER_GROUP", "execution"),
            consumer: env.text("CONSUMER_NAME", &default_consumer),
            stream_maxlen: env.parse("STREAM_MAXLEN", 1_000_000),
            dedup_ttl_secs: env.parse("DEDUP_TTL_SECS", 86_400),
        },
        worker: WorkerOptions {
            batch_size,
            block_ms: env.parse("READ_BLOCK_MS", 500),
            claim_idle_ms: env.parse("CLAIM_IDLE_MS", 30_000),
            claim_interval_ms: env.parse("CLAIM_INTERVAL_MS", 5_000),
            max_deliveries,
            concurrency: env.parse("WORKER_CONCURRENCY", 8),
            batch_timeout: std::time::Duration::from_secs(
                env.parse("BATCH_TIMEOUT_SECS", 30_u64).max(1),
            ),
            max_order_age: match env.parse("ORDER_MAX_AGE_SECS", 120_u64) {
                0 => None,
                secs => Some(std::time::Duration::from_secs(secs)),
            },
        },
        shutdown_stream: env.text("SHUTDOWN_STREAM", "stream.bot_shutdown"),
        shim_enabled: env.flag("SHIM_ENABLED", true),
    }
}

/// The pool and the session timeouts. A statement may take the whole of a
/// batch's time, a lock wait a third of it; a transaction whose client went
/// quiet is ended once its batch has been given up.
fn postgres_settings(env: &mut Env<'_>, batch_timeout: Duration) -> PostgresSettings {
    let batch_ms = batch_timeout.as_millis() as u64;
    let millis = |env: &mut Env<'_>, name: &str, default: u64| {
        let ms = env.parse(name, default);
        if !(1..=86_400_000).contains(&ms) {
            env.invalid(name, ms, "milliseconds between 1 and 86400000");
        }
        Duration::from_millis(ms)
    };
    let statement_timeout = millis(env, "POSTGRES_STATEMENT_TIMEOUT_MS", batch_ms);
    let lock_timeout = millis(env, "POSTGRES_LOCK_TIMEOUT_MS", (batch_ms / 3).max(1));
    if lock_timeout > statement_timeout {
        env.invalid(
            "POSTGRES_LOCK_TIMEOUT_MS",
            lock_timeout.as_millis(),
            "at most POSTGRES_STATEMENT_TIMEOUT_MS (a lock wait is part of a statement)",
        );
    }
    let keepalive_secs = env.parse("POSTGRES_TCP_KEEPALIVE_SECS", 15_u64);
    if !(1..=7200).contains(&keepalive_secs) {
        env.invalid(
            "POSTGRES_TCP_KEEPALIVE_SECS",
            keepalive_secs,
            "seconds between 1 and 7200",
        );
    }
    PostgresSettings {
        url: postgres_url(env),
        max_connections: env.parse("POSTGRES_MAX_CONNECTIONS", 16),
        acquire_timeout: millis(env, "POSTGRES_ACQUIRE_TIMEOUT_MS", 5_000),
        statement_timeout,
        lock_timeout,
        idle_in_transaction_timeout: millis(
            env,
            "POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS",
            batch_ms,
        ),
        keepalive_idle: Duration::from_secs(keepalive_secs),
        run_migrations: env.flag("RUN_MIGRATIONS", true),
    }
}

fn trading_settings(env: &mut Env<'_>) -> TradingSettings {
    let mode_text = env.text("TRADING_MODE", "paper");
    let mode = TradingMode::parse(&mode_text).unwrap_or_else(|| {
        env.invalid("TRADING_MODE", &mode_text, "paper, mock or live");
        TradingMode::Paper
    });
    let mock_success_rate = env.parse("MOCK_SUCCESS_RATE", 0.95_f64);
    if !(0.0..=1.0).contains(&mock_success_rate) {
        env.invalid(
            "MOCK_SUCCESS_RATE",
            mock_success_rate,
            "a rate between 0 and 1",
        );
    }
    let paper_fee_rate = env.amount("PAPER_FEE_RATE", "0.001");
    if paper_fee_rate < Decimal::ZERO || paper_fee_rate >= Decimal::ONE {
        env.invalid("PAPER_FEE_RATE", paper_fee_rate, "a rate in 0..1");
    }
    TradingSettings {
        mode,
        dry_run: env.flag("DRY_RUN", true),
        paper_fee_rate,
        reference_prices: reference_prices(env),
        mock_success_rate,
        mock_seed: env.parse("MOCK_SEED", 42),
        mock_max_slippage_bps: env.amount("MOCK_MAX_SLIPPAGE_BPS", "10"),
    }
}

/// `PAPER_REFERENCE_PRICES=BTCUSDT=50000,ETH/USDT=3000`.
fn reference_prices(env: &mut Env<'_>) -> HashMap<String, Decimal> {
    let text = env.text("PAPER_REFERENCE_PRICES", "");
    let mut prices = HashMap::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        match pair
            .split_once('=')
            .map(|(symbol, price)| (symbol, parse_amount(price)))
        {
            Some((symbol, Ok(price))) if price > Decimal::ZERO => {
                prices.insert(crate::domain::normalise_symbol(symbol), price);
            }
            _ => env.invalid(
                "PAPER_REFERENCE_PRICES",
                pair,
                "SYMBOL=PRICE pairs separated by commas",
            ),
        }
    }
    prices
}

/// The OTLP endpoint, when traces are to be exported; the protocol must be
/// one this build speaks (OTLP over HTTP).
fn otlp_endpoint(env: &mut Env<'_>) -> Option<String> {
    let endpoint = env
        .var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .filter(|v| !v.trim().is_empty())?;
    let protocol = env.text("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    if !["http/protobuf", "http/json"].contains(&protocol.as_str()) {
        env.invalid(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            &protocol,
            "http/protobuf or http/json (OTLP over HTTP, port 4318)",
        );
    }
    Some(endpoint)
}

fn redis_url(env: &mut Env<'_>) -> SecretString {
    if let Some(url) = env.secret("REDIS_URL") {
        return url;
    }
    let host = env.text("REDIS_HOST", "127.0.0.1");
    let port: u16 = env.parse("REDIS_PORT", 6379);
    let auth = match env.secret("REDIS_PASSWORD") {
        Some(password) => format!(":{}@", url_escape(password.expose_secret())),
        None => String::new(),
    };
    format!("redis://{auth}{host}:{port}/").into()
}

fn postgres_url(env: &mut Env<'_>) -> SecretString {
    if let Some(url) = env.secret("DATABASE_URL") {
        return url;
    }
    let host = env.text("POSTGRES_HOST", "127.0.0.1");
    let port: u16 = env.parse("POSTGRES_PORT", 5432);
    let database = env.text("POSTGRES_DB", "claire_de_binare");
    let user = env.text("POSTGRES_USER", "claire_user");
    let password = env
        .secret("POSTGRES_PASSWORD")
        .map(|password| format!(":{}", url_escape(password.expose_secret())))
        .unwrap_or_default();
    format!(
        "postgres://{}{password}@{host}:{port}/{}",
        url_escape(&user),
        url_escape(&database)
    )
    .into()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
