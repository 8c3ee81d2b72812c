//! Settings: the environment (and a `.env` file) read once into typed,
//! validated values.
//!
//! Every variable is checked at start-up and all bad ones are reported
//! together, each with its name and value. Every number has a documented
//! range (`env.ranged`), and the rules that relate settings to each other
//! are checked in `checks`. Secrets (`*_PASSWORD`, URLs that may carry
//! one) are [`SecretString`]s, read from `<NAME>_FILE` when set, and never
//! appear in `Debug` output, logs or errors: see [`Redactor`].

use std::collections::HashMap;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::parse_amount;

mod checks;
mod env;
mod mexc;
mod redact;
mod urls;
use checks::{log_filter, relations};
use env::Env;
pub use mexc::{MexcSettings, PaperPriceSource};
pub use redact::{Redactor, redact_urls};

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

/// Private servers for a machine where none is set up (see [`crate::local`]).
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// `LOCAL_SERVICES`: `auto` (start them when needed) or `off`.
    pub enabled: bool,
    /// `LOCAL_SERVICES_DIR`: where they keep their data.
    pub dir: std::path::PathBuf,
    /// Whether a variable names the Redis (then it is used, or nothing).
    pub redis_named: bool,
    /// Whether a variable names the Postgres.
    pub postgres_named: bool,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: SecretString,
    pub pool_size: usize,
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

/// Names of the channels, streams and consumer group, and how they are read.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub topology: TopologySettings,
    pub worker: WorkerSettings,
    pub shutdown_stream: String,
    /// Whether this replica mirrors the orders channel into the stream.
    pub shim_enabled: bool,
    /// How often the orders stream is trimmed of acknowledged entries.
    pub trim_interval: Duration,
}

/// The channels, streams and group (`ORDERS_CHANNEL`, ..., `CONSUMER_NAME`)
/// and the limits on what travels through them; the bus's `Topology`.
#[derive(Debug, Clone)]
pub struct TopologySettings {
    pub orders_channel: String,
    pub results_channel: String,
    pub orders_stream: String,
    pub results_stream: String,
    /// `FILLS_STREAM`; none when set empty.
    pub fills_stream: Option<String>,
    pub dlq_stream: String,
    pub group: String,
    pub consumer: String,
    /// `STREAM_MAXLEN`.
    pub stream_maxlen: u64,
    /// `DEDUP_WINDOW_MS`, at most `DEDUP_TTL_SECS` × 1000.
    pub dedup_window_ms: u64,
    /// `MAX_MESSAGE_BYTES`.
    pub max_message_bytes: usize,
    /// `RESULT_DEDUP_SECS`.
    pub announced_ttl_secs: u64,
}

/// How the worker reads and processes the orders stream; the worker's
/// `WorkerOptions`.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `BATCH_SIZE`.
    pub batch_size: usize,
    /// `READ_BLOCK_MS`.
    pub block_ms: u64,
    /// `CLAIM_IDLE_MS`.
    pub claim_idle_ms: u64,
    /// `CLAIM_INTERVAL_MS`.
    pub claim_interval_ms: u64,
    /// `MAX_DELIVERIES`.
    pub max_deliveries: u64,
    /// `WORKER_CONCURRENCY`.
    pub concurrency: usize,
    /// `BATCH_TIMEOUT_SECS`.
    pub batch_timeout: Duration,
    /// `ORDER_MAX_AGE_SECS`; none when 0.
    pub max_order_age: Option<Duration>,
    /// `ORDER_MAX_FUTURE_SECS`.
    pub max_order_future: Duration,
}

/// `TRADING_MODE`: how orders are executed. A dry run is `Live` with
/// `DRY_RUN=true`, not a mode of its own (results still say `dry_run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Paper,
    Mock,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Paper => "paper",
            Mode::Mock => "mock",
            Mode::Live => "live",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TradingSettings {
    pub mode: Mode,
    pub dry_run: bool,
    pub paper_fee_rate: Decimal,
    /// Prices a MARKET order without a price fills at in paper mode, by
    /// normalised symbol (`BTCUSDT`).
    pub reference_prices: HashMap<String, Decimal>,
    /// `PAPER_PRICE_SOURCE`: whether paper MARKET orders without a price
    /// fill at MEXC's ticker price (reference prices stay the fallback).
    pub paper_price_source: PaperPriceSource,
    pub mock_success_rate: f64,
    pub mock_seed: u64,
    pub mock_max_slippage_bps: Decimal,
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
            redis: RedisSettings {
                url: urls::redis_url(&mut env),
                pool_size: env.ranged("REDIS_POOL_SIZE", 16, 1..=1000),
            },
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
        ]
        .into_iter()
        .flatten()
        {
            redactor = redactor.with_secret(secret.expose_secret());
        }
        redactor
    }
}

/// `FILLS_STREAM`: `stream.fills` when unset, none when set empty.
fn fills_stream(env: &Env<'_>) -> Option<String> {
    match env.var("FILLS_STREAM") {
        None => Some("stream.fills".to_owned()),
        Some(name) if name.trim().is_empty() => None,
        Some(name) => Some(name),
    }
}

fn stream_settings(env: &mut Env<'_>) -> StreamSettings {
    let default_consumer = format!(
        "{}-{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    );
    StreamSettings {
        topology: TopologySettings {
            orders_channel: env.text("ORDERS_CHANNEL", "orders"),
            results_channel: env.text("RESULTS_CHANNEL", "order_results"),
            orders_stream: env.text("ORDERS_STREAM", "stream.orders"),
            results_stream: env.text("RESULTS_STREAM", "stream.order_results"),
            fills_stream: fills_stream(env),
            dlq_stream: env.text("DLQ_STREAM", "stream.orders.dlq"),
            group: env.text("CONSUMER_GROUP", "execution"),
            consumer: env.text("CONSUMER_NAME", &default_consumer),
            // The results and dead-letter streams are capped at this; the
            // orders stream keeps about this many acknowledged entries.
            stream_maxlen: env.ranged("STREAM_MAXLEN", 1_000_000, 1000..=100_000_000),
            dedup_window_ms: dedup_window_ms(env),
            // Below 1 KiB real orders would be refused; above 16 MiB one
            // message could take hundreds of megabytes to parse.
            max_message_bytes: env.ranged("MAX_MESSAGE_BYTES", 65_536, 1024..=16 * 1024 * 1024),
            // Two days: past the one day an order reported not placed is
            // watched, so its result is never announced twice.
            announced_ttl_secs: env.ranged("RESULT_DEDUP_SECS", 172_800, 60..=31_536_000),
        },
        worker: WorkerSettings {
            batch_size: env.ranged("BATCH_SIZE", 500, 1..=2000),
            // Redis treats 0 as "block forever"; the pool gives up on any
            // command after 5 s, so a read must return well before that.
            block_ms: env.ranged("READ_BLOCK_MS", 500, 1..=4000),
            claim_idle_ms: env.ranged("CLAIM_IDLE_MS", 30_000, 1000..=86_400_000),
            claim_interval_ms: env.ranged("CLAIM_INTERVAL_MS", 5_000, 10..=3_600_000),
            max_deliveries: env.ranged("MAX_DELIVERIES", 5, 1..=1000),
            concurrency: env.ranged("WORKER_CONCURRENCY", 8, 1..=64),
            batch_timeout: Duration::from_secs(env.ranged("BATCH_TIMEOUT_SECS", 30, 1..=3600)),
            // 0: orders never go stale.
            max_order_age: match env.ranged("ORDER_MAX_AGE_SECS", 120, 0..=86_400) {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            // The clock skew allowed between a producer and this service.
            max_order_future: Duration::from_secs(env.ranged("ORDER_MAX_FUTURE_SECS", 5, 0..=300)),
        },
        shutdown_stream: env.text("SHUTDOWN_STREAM", "stream.bot_shutdown"),
        shim_enabled: env.flag("SHIM_ENABLED", true),
        trim_interval: Duration::from_millis(env.ranged(
            "STREAM_TRIM_INTERVAL_MS",
            10_000,
            100..=3_600_000,
        )),
    }
}

/// Whether private servers may start, where, and which servers are named.
fn local_settings(env: &mut Env<'_>) -> LocalSettings {
    let named = |env: &Env<'_>, names: &[&str]| {
        names.iter().any(|name| {
            [name.to_string(), format!("{name}_FILE")]
                .iter()
                .any(|var| env.var(var).is_some_and(|v| !v.is_empty()))
        })
    };
    let dir = match env
        .var("LOCAL_SERVICES_DIR")
        .filter(|v| !v.trim().is_empty())
    {
        Some(dir) => std::path::PathBuf::from(dir),
        None => default_local_dir(),
    };
    LocalSettings {
        enabled: env.choice("LOCAL_SERVICES", "auto", &["auto", "off"]) == "auto",
        dir,
        redis_named: named(
            env,
            &["REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"],
        ),
        postgres_named: named(
            env,
            &[
                "DATABASE_URL",
                "POSTGRES_HOST",
                "POSTGRES_PORT",
                "POSTGRES_USER",
                "POSTGRES_PASSWORD",
                "POSTGRES_DB",
            ],
        ),
    }
}

/// `$XDG_DATA_HOME/execution-service`, else `~/.local/share/execution-service`;
/// as root `/var/lib/execution-service` (Postgres then runs as `postgres`,
/// which cannot enter `/root`).
fn default_local_dir() -> std::path::PathBuf {
    if crate::local::is_root() {
        return "/var/lib/execution-service".into();
    }
    match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
        (Some(data), _) if !data.is_empty() => {
            std::path::PathBuf::from(data).join("execution-service")
        }
        (_, Some(home)) if !home.is_empty() => {
            std::path::PathBuf::from(home).join(".local/share/execution-service")
        }
        _ => std::env::temp_dir().join("execution-service"),
    }
}

/// How long the shim merges copies of one message: `DEDUP_WINDOW_MS`, at
/// most `DEDUP_TTL_SECS` (its older, upper bound). Copies of one publish
/// reach the replicas' shims milliseconds apart; a re-send after the
/// window is mirrored again, and answered from the stored order.
fn dedup_window_ms(env: &mut Env<'_>) -> u64 {
    let window = env.ranged("DEDUP_WINDOW_MS", 3_000, 100..=60_000);
    let ttl_secs = env.ranged("DEDUP_TTL_SECS", 86_400, 1..=7 * 86_400);
    if env.all_valid(&["DEDUP_WINDOW_MS", "DEDUP_TTL_SECS"]) && window > ttl_secs * 1000 {
        env.invalid(
            "DEDUP_WINDOW_MS",
            window,
            &format!("at most DEDUP_TTL_SECS × 1000 = {}", ttl_secs * 1000),
        );
    }
    window.min(ttl_secs * 1000)
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

fn trading_settings(env: &mut Env<'_>) -> TradingSettings {
    let mode_text = env.text("TRADING_MODE", "paper");
    let mode = [Mode::Paper, Mode::Mock, Mode::Live]
        .into_iter()
        .find(|mode| mode.as_str().eq_ignore_ascii_case(mode_text.trim()))
        .unwrap_or_else(|| {
            env.invalid("TRADING_MODE", &mode_text, "paper, mock or live");
            Mode::Paper
        });
    // A fee of a tenth of the notional is already far beyond any venue's.
    let paper_fee_rate = env.amount_in(
        "PAPER_FEE_RATE",
        "0.001",
        Decimal::ZERO..=Decimal::new(1, 1),
    );
    let mock_success_rate = env
        .amount_in("MOCK_SUCCESS_RATE", "0.95", Decimal::ZERO..=Decimal::ONE)
        .to_f64()
        .unwrap_or_default();
    let paper_price_source = mexc::paper_price_source(env);
    // A default table would stand in for MEXC's prices, or for an
    // operator's, as if it were either.
    let defaults = mode != Mode::Live && paper_price_source == PaperPriceSource::Reference;
    TradingSettings {
        mode,
        dry_run: env.flag("DRY_RUN", true),
        paper_fee_rate,
        reference_prices: reference_prices(env, defaults),
        paper_price_source,
        mock_success_rate,
        mock_seed: env.ranged("MOCK_SEED", 42, 0..=u64::MAX),
        // 10 000 bps would price a SELL at zero, and more below it.
        mock_max_slippage_bps: env.amount_in(
            "MOCK_MAX_SLIPPAGE_BPS",
            "10",
            Decimal::ZERO..=Decimal::from(1000),
        ),
    }
}

/// The reference prices of the simulated modes when
/// `PAPER_REFERENCE_PRICES` is unset: round figures so that a MARKET order
/// without a price fills out of the box, not market prices.
pub const DEFAULT_REFERENCE_PRICES: &str = "BTCUSDT=50000,ETHUSDT=3000";

/// `PAPER_REFERENCE_PRICES=BTCUSDT=50000,ETH/USDT=3000`; set empty, none.
/// Unset, [`DEFAULT_REFERENCE_PRICES`] when `defaults` (paper and mock
/// mode with reference prices as the price source), else none: real
/// orders' notional checks, and paper fills when MEXC's ticker cannot be
/// read, must never rest on made-up prices.
fn reference_prices(env: &mut Env<'_>, defaults: bool) -> HashMap<String, Decimal> {
    let text = match env.var("PAPER_REFERENCE_PRICES") {
        Some(text) => text,
        None if defaults => DEFAULT_REFERENCE_PRICES.to_owned(),
        None => String::new(),
    };
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
