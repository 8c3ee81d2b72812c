use super::*;
use rust_decimal::Decimal;
use std::collections::HashMap;

use std::time::Duration;

fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn defaults_point_at_localhost_and_the_fixed_names() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.redis.url.expose_secret(), "redis://127.0.0.1:6379/");
    assert_eq!(
        s.postgres.url.expose_secret(),
        "postgres://claire_user@127.0.0.1:5432/claire_de_binare"
    );
    assert_eq!(s.http.port, 8003);
    assert_eq!(s.streams.topology.orders_stream, "stream.orders");
    assert_eq!(s.streams.topology.group, "execution");
    assert_eq!(s.trading.mode, Mode::Paper);
    assert!(s.trading.dry_run);
    assert_eq!(s.trading.paper_fee_rate, Decimal::new(1, 3));
}

#[test]
fn urls_win_over_their_parts_and_passwords_are_escaped() {
    let s = settings(&[("REDIS_HOST", "cdb_redis"), ("REDIS_PASSWORD", "p@ss:w/rd")]).unwrap();
    assert_eq!(
        s.redis.url.expose_secret(),
        "redis://:p%40ss%3Aw%2Frd@cdb_redis:6379/"
    );
    let s = settings(&[("REDIS_HOST", "x"), ("REDIS_URL", "redis://other:1/")]).unwrap();
    assert_eq!(s.redis.url.expose_secret(), "redis://other:1/");
    let s = settings(&[("POSTGRES_HOST", "x"), ("DATABASE_URL", "postgres://a@b/c")]).unwrap();
    assert_eq!(s.postgres.url.expose_secret(), "postgres://a@b/c");
}

#[test]
fn secrets_come_from_files_and_never_print() {
    let path = std::env::temp_dir().join(format!("pg-secret-{}", std::process::id()));
    std::fs::write(&path, "hunter2\n").unwrap();
    let s = settings(&[("POSTGRES_PASSWORD_FILE", path.to_str().unwrap())]).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(s.postgres.url.expose_secret().contains(":hunter2@"));
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn every_bad_value_is_named_in_one_error() {
    let err = settings(&[
        ("REDIS_PORT", "abc"),
        ("TRADING_MODE", "yolo"),
        ("MOCK_SUCCESS_RATE", "1.5"),
        ("DRY_RUN", "maybe"),
        ("BATCH_SIZE", "0"),
        ("PAPER_REFERENCE_PRICES", "BTCUSDT"),
        ("POSTGRES_PASSWORD_FILE", "/nonexistent/secret"),
    ])
    .unwrap_err()
    .to_string();
    for needle in [
        "REDIS_PORT=\"abc\"",
        "TRADING_MODE=\"yolo\"",
        "MOCK_SUCCESS_RATE=\"1.5\"",
        "DRY_RUN=\"maybe\"",
        "BATCH_SIZE=\"0\"",
        "PAPER_REFERENCE_PRICES",
        "POSTGRES_PASSWORD_FILE",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}

#[test]
fn reference_prices_are_keyed_by_normalised_symbol() {
    let s = settings(&[("PAPER_REFERENCE_PRICES", "BTC/USDT=50000, ethusdt=3000.5")]).unwrap();
    assert_eq!(s.trading.reference_prices["BTCUSDT"], Decimal::from(50_000));
    assert_eq!(
        s.trading.reference_prices["ETHUSDT"],
        Decimal::new(30005, 1)
    );
}

/// Every numeric setting, and whether 0 is one of its values.
const NUMBERS: [(&str, bool); 27] = [
    ("REDIS_PORT", false),
    ("REDIS_POOL_SIZE", false),
    ("REDIS_WAIT_REPLICAS", true),
    ("REDIS_WAIT_TIMEOUT_MS", false),
    ("REDIS_REPLAY_SECS", true),
    ("POSTGRES_PORT", false),
    ("POSTGRES_MAX_CONNECTIONS", false),
    ("HTTP_PORT", true),
    ("STREAM_MAXLEN", false),
    ("DEDUP_TTL_SECS", false),
    ("DEDUP_WINDOW_MS", false),
    ("MAX_MESSAGE_BYTES", false),
    ("STREAM_TRIM_INTERVAL_MS", false),
    ("BATCH_SIZE", false),
    ("READ_BLOCK_MS", false),
    ("CLAIM_IDLE_MS", false),
    ("CLAIM_INTERVAL_MS", false),
    ("MAX_DELIVERIES", false),
    ("WORKER_CONCURRENCY", false),
    ("BATCH_TIMEOUT_SECS", false),
    ("ORDER_MAX_AGE_SECS", true),
    ("MOCK_SEED", true),
    ("MOCK_MAX_SLIPPAGE_BPS", true),
    ("MOCK_SUCCESS_RATE", true),
    ("PAPER_FEE_RATE", true),
    ("MEXC_TIMEOUT_MS", false),
    ("MEXC_RECV_WINDOW_MS", false),
];

#[test]
fn every_number_is_range_checked_at_zero_negative_and_huge() {
    for (name, zero_allowed) in NUMBERS {
        for value in ["0", "-1", "99999999999999999999999", "1e400", "-0.5"] {
            let result = settings(&[(name, value)]);
            let allowed = value == "0" && zero_allowed;
            match result {
                Ok(_) => assert!(allowed, "{name}={value} was accepted"),
                Err(err) => {
                    assert!(!allowed, "{name}={value} was refused: {err}");
                    let err = err.to_string();
                    assert_eq!(err.matches("is not valid").count(), 1, "{err}");
                    assert!(err.contains(&format!("{name}=\"{value}\"")), "{err}");
                }
            }
        }
    }
}

#[test]
fn the_values_that_lost_orders_are_refused_in_one_message() {
    let err = settings(&[
        ("DEDUP_TTL_SECS", "0"),
        ("STREAM_MAXLEN", "0"),
        ("CLAIM_IDLE_MS", "0"),
        ("POSTGRES_MAX_CONNECTIONS", "0"),
        ("REDIS_POOL_SIZE", "0"),
        ("MOCK_MAX_SLIPPAGE_BPS", "30000"),
        ("READ_BLOCK_MS", "0"),
        ("BATCH_TIMEOUT_SECS", "0"),
        ("LOG_LEVEL", "verbose"),
    ])
    .unwrap_err()
    .to_string();
    for needle in [
        "DEDUP_TTL_SECS=\"0\" is not valid: expected a whole number in 1..=604800",
        "STREAM_MAXLEN=\"0\" is not valid: expected a whole number in 1000..=",
        "CLAIM_IDLE_MS=\"0\" is not valid: expected a whole number in 1000..=",
        "POSTGRES_MAX_CONNECTIONS=\"0\" is not valid: expected a whole number in 1..=1000",
        "REDIS_POOL_SIZE=\"0\" is not valid: expected a whole number in 1..=1000",
        "MOCK_MAX_SLIPPAGE_BPS=\"30000\" is not valid: expected a number in 0..=1000",
        "READ_BLOCK_MS=\"0\" is not valid: expected a whole number in 1..=4000",
        "BATCH_TIMEOUT_SECS=\"0\"",
        "LOG_LEVEL=\"verbose\"",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}

#[test]
fn the_bounds_of_every_range_are_values() {
    let s = settings(&[
        ("HTTP_PORT", "0"),
        ("ORDER_MAX_AGE_SECS", "0"),
        ("READ_BLOCK_MS", "4000"),
        ("CLAIM_IDLE_MS", "86400000"),
        ("CLAIM_INTERVAL_MS", "10"),
        ("DEDUP_TTL_SECS", "604800"),
        ("STREAM_MAXLEN", "1000"),
        ("MAX_DELIVERIES", "1000"),
        ("WORKER_CONCURRENCY", "64"),
        ("POSTGRES_MAX_CONNECTIONS", "1000"),
        ("REDIS_POOL_SIZE", "1000"),
        ("BATCH_TIMEOUT_SECS", "3600"),
        ("MOCK_MAX_SLIPPAGE_BPS", "1000"),
        ("MOCK_SEED", "18446744073709551615"),
    ])
    .unwrap();
    assert_eq!(s.streams.worker.max_order_age, None);
    assert_eq!(s.trading.mock_seed, u64::MAX);
    assert_eq!(s.streams.worker.batch_timeout, Duration::from_secs(3600));
}

#[test]
fn the_message_limit_has_its_range() {
    assert_eq!(
        settings(&[]).unwrap().streams.topology.max_message_bytes,
        65_536
    );
    let s = settings(&[("MAX_MESSAGE_BYTES", "16777216")]).unwrap();
    assert_eq!(s.streams.topology.max_message_bytes, 16 * 1024 * 1024);
    let err = settings(&[("MAX_MESSAGE_BYTES", "1023")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "MAX_MESSAGE_BYTES=\"1023\" is not valid: expected a whole number in 1024..=16777216"
        ),
        "{err}"
    );
}

#[test]
fn the_dedup_window_has_its_range_and_dedup_ttl_secs_bounds_it() {
    assert_eq!(
        settings(&[]).unwrap().streams.topology.dedup_window_ms,
        3_000
    );
    let s = settings(&[("DEDUP_WINDOW_MS", "100")]).unwrap();
    assert_eq!(s.streams.topology.dedup_window_ms, 100);
    let s = settings(&[("DEDUP_WINDOW_MS", "2000"), ("DEDUP_TTL_SECS", "2")]).unwrap();
    assert_eq!(s.streams.topology.dedup_window_ms, 2_000);
    let err = settings(&[("DEDUP_WINDOW_MS", "2001"), ("DEDUP_TTL_SECS", "2")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "DEDUP_WINDOW_MS=2001 is not valid: expected at most DEDUP_TTL_SECS × 1000 = 2000"
        ),
        "{err}"
    );
    let err = settings(&[("DEDUP_WINDOW_MS", "60001")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "DEDUP_WINDOW_MS=\"60001\" is not valid: expected a whole number in 100..=60000"
        ),
        "{err}"
    );
}

#[test]
fn the_trim_interval_has_its_range() {
    assert_eq!(
        settings(&[]).unwrap().streams.trim_interval,
        Duration::from_secs(10)
    );
    let s = settings(&[("STREAM_TRIM_INTERVAL_MS", "100")]).unwrap();
    assert_eq!(s.streams.trim_interval, Duration::from_millis(100));
    let err = settings(&[("STREAM_TRIM_INTERVAL_MS", "99")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "STREAM_TRIM_INTERVAL_MS=\"99\" is not valid: expected a whole number in 100..=3600000"
        ),
        "{err}"
    );
}

#[test]
fn related_settings_are_checked_against_each_other() {
    let err = settings(&[
        ("READ_BLOCK_MS", "2000"),
        ("CLAIM_IDLE_MS", "5000"),
        ("WORKER_CONCURRENCY", "8"),
        ("POSTGRES_MAX_CONNECTIONS", "8"),
        ("REDIS_POOL_SIZE", "9"),
    ])
    .unwrap_err()
    .to_string();
    for needle in [
        "CLAIM_IDLE_MS=5000 is not valid: expected at least 3 × READ_BLOCK_MS = 6000",
        "POSTGRES_MAX_CONNECTIONS=8 is not valid: expected at least WORKER_CONCURRENCY + 1 = 9",
        "REDIS_POOL_SIZE=9 is not valid: expected at least WORKER_CONCURRENCY + 2 = 10",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    // The test harness's and the chaos suite's settings stay valid.
    settings(&[
        ("READ_BLOCK_MS", "100"),
        ("CLAIM_IDLE_MS", "1000"),
        ("CLAIM_INTERVAL_MS", "250"),
        ("WORKER_CONCURRENCY", "2"),
        ("POSTGRES_MAX_CONNECTIONS", "4"),
        ("REDIS_POOL_SIZE", "4"),
    ])
    .unwrap();
    // A bad side is reported alone, not again as a broken relation.
    let err = settings(&[("WORKER_CONCURRENCY", "0")])
        .unwrap_err()
        .to_string();
    assert_eq!(err.matches("is not valid").count(), 1, "{err}");
}

#[test]
fn log_filters_are_levels_or_directives() {
    for good in [
        "warn",
        "INFO",
        "off",
        "info,execution_service=debug",
        "sqlx=warn",
    ] {
        let s = settings(&[("LOG_LEVEL", good)]).unwrap();
        assert_eq!(s.telemetry.log_level, good);
    }
    for bad in ["verbose", "warning", "info,loud", "info,sqlx=loud"] {
        let err = settings(&[("LOG_LEVEL", bad)]).unwrap_err().to_string();
        assert!(err.contains(&format!("LOG_LEVEL={bad:?}")), "{err}");
    }
    let err = settings(&[("RUST_LOG", "nonsense"), ("LOG_LEVEL", "info")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("RUST_LOG=\"nonsense\""), "{err}");
    let s = settings(&[("RUST_LOG", "debug"), ("LOG_LEVEL", "info")]).unwrap();
    assert_eq!(s.telemetry.log_level, "debug");
}

#[test]
fn malformed_urls_are_named_with_their_password_masked() {
    let path = std::env::temp_dir().join(format!("db-url-{}", std::process::id()));
    std::fs::write(&path, "postgres://svc:Fi1eSecret@db:70000/x\n").unwrap();
    let file = path.to_str().unwrap();
    // The variables, what the error must name, and what it must not show.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 8] = [
        (
            &[("DATABASE_URL", "postgres://svc:Sekr3tPw@db:99999/x")],
            "DATABASE_URL=\"postgres://svc:***@db:99999/x\"",
            "Sekr3tPw",
        ),
        (
            &[("DATABASE_URL", "mysql://svc:Sekr3tPw@db/x")],
            "DATABASE_URL=\"mysql://svc:***@db/x\"",
            "Sekr3tPw",
        ),
        (
            &[("DATABASE_URL", "postgres://svc:Sekr3t/Pw@db/x")],
            "DATABASE_URL=",
            "Sekr3t",
        ),
        (
            &[("DATABASE_URL_FILE", file)],
            "DATABASE_URL_FILE=\"postgres://svc:***@db:70000/x\"",
            "Fi1eSecret",
        ),
        (
            &[
                ("POSTGRES_PASSWORD", "Sekr3tPw"),
                ("POSTGRES_HOST", "bad host"),
            ],
            "POSTGRES_HOST=\"bad host\"",
            "Sekr3tPw",
        ),
        (
            &[("REDIS_URL", "redis://:Sekr3tPw@cache:99999/")],
            "REDIS_URL=\"redis://:***@cache:99999/\"",
            "Sekr3tPw",
        ),
        (
            &[("REDIS_URL", "http://:Sekr3tPw@cache/")],
            "REDIS_URL=\"http://:***@cache/\"",
            "Sekr3tPw",
        ),
        (
            &[("REDIS_PASSWORD", "Sekr3tPw"), ("REDIS_HOST", "bad/host")],
            "REDIS_HOST=\"bad/host\"",
            "Sekr3tPw",
        ),
    ];
    for (vars, named, secret) in cases {
        let err = settings(vars).unwrap_err().to_string();
        assert!(err.contains(named), "{named} missing from: {err}");
        assert!(!err.contains(secret), "{secret} shown in: {err}");
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn composed_urls_take_ipv6_hosts_and_the_redactor_knows_their_passwords() {
    let s = settings(&[
        ("REDIS_HOST", "::1"),
        ("POSTGRES_PASSWORD", "p@ss word"),
        ("REDIS_PASSWORD", "r3dis-secret"),
    ])
    .unwrap();
    assert_eq!(
        s.redis.url.expose_secret(),
        "redis://:r3dis-secret@[::1]:6379/"
    );
    let redacted = s
        .redactor()
        .redact("auth failed for p@ss word and r3dis-secret; p%40ss%20word");
    assert_eq!(redacted, "auth failed for *** and ***; ***");
}

mod live;
mod postgres;
mod redis;
mod stream;

#[test]
fn the_fills_stream_defaults_turns_off_when_empty_and_must_be_its_own() {
    let fills = |vars: &[(&str, &str)]| settings(vars).map(|s| s.streams.topology.fills_stream);
    assert_eq!(fills(&[]).unwrap().as_deref(), Some("stream.fills"));
    assert_eq!(fills(&[("FILLS_STREAM", "")]).unwrap(), None);
    assert_eq!(fills(&[("FILLS_STREAM", "  ")]).unwrap(), None);
    assert_eq!(
        fills(&[("FILLS_STREAM", "fills.v2")]).unwrap().as_deref(),
        Some("fills.v2")
    );
    for taken in [
        "stream.orders",
        "stream.order_results",
        "stream.orders.dlq",
        "stream.bot_shutdown",
        "stream.orders:failures",
    ] {
        let err = fills(&[("FILLS_STREAM", taken)]).unwrap_err().to_string();
        assert!(err.contains("FILLS_STREAM"), "{err}");
    }
}

#[test]
fn no_two_settings_may_name_one_stream_or_channel() {
    let streams = [
        "ORDERS_STREAM",
        "RESULTS_STREAM",
        "DLQ_STREAM",
        "SHUTDOWN_STREAM",
        "FILLS_STREAM",
    ];
    for (i, first) in streams.iter().enumerate() {
        for second in &streams[i + 1..] {
            let err = settings(&[(first, "one.stream"), (second, "one.stream")])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(first) && err.contains(second) && err.contains("loop or cross-feed"),
                "{first} = {second}: {err}"
            );
        }
    }
    // The failure notes hash is derived from ORDERS_STREAM.
    let err = settings(&[("ORDERS_STREAM", "o"), ("DLQ_STREAM", "o:failures")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DLQ_STREAM") && err.contains("failure notes"),
        "{err}"
    );
    let err = settings(&[("ORDERS_CHANNEL", "same"), ("RESULTS_CHANNEL", "same")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ORDERS_CHANNEL") && err.contains("RESULTS_CHANNEL"),
        "{err}"
    );
    // A channel and a stream of one name do not meet: pub/sub is apart.
    assert!(settings(&[("ORDERS_CHANNEL", "stream.orders")]).is_ok());
}

#[test]
fn simulated_modes_have_default_reference_prices_and_real_orders_none() {
    let prices = |vars: &[(&str, &str)]| settings(vars).unwrap().trading.reference_prices;
    for mode in ["paper", "mock"] {
        let defaults = prices(&[("TRADING_MODE", mode)]);
        assert_eq!(defaults["BTCUSDT"], Decimal::from(50_000), "{mode}");
        assert_eq!(defaults["ETHUSDT"], Decimal::from(3_000), "{mode}");
    }
    assert!(prices(&[("PAPER_REFERENCE_PRICES", "")]).is_empty());
    assert_eq!(
        prices(&[("PAPER_REFERENCE_PRICES", "SOLUSDT=150")])
            .keys()
            .collect::<Vec<_>>(),
        ["SOLUSDT"]
    );
    // Live, a dry run by default: its checks must not price with them.
    assert!(prices(&[("TRADING_MODE", "live")]).is_empty());
    // Nor do paper fills fall back to them when MEXC's ticker is down.
    assert!(prices(&[("PAPER_PRICE_SOURCE", "mexc")]).is_empty());
}

#[test]
fn otlp_goes_over_grpc_or_http_and_nothing_else() {
    let otlp = |protocol: &str| {
        settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ])
        .map(|s| s.telemetry.otlp.map(|(_, protocol)| protocol))
    };
    assert_eq!(otlp("grpc").unwrap(), Some(OtlpProtocol::Grpc));
    assert_eq!(otlp("http/protobuf").unwrap(), Some(OtlpProtocol::Http));
    assert_eq!(otlp("http/json").unwrap(), Some(OtlpProtocol::Http));
    let err = otlp("http/xml").unwrap_err().to_string();
    assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
    assert!(settings(&[]).unwrap().telemetry.otlp.is_none());
    // Checked even when nothing is exported.
    let err = settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "foo")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"foo\""), "{err}");
}
