use super::*;

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
    assert_eq!(s.trading.mode, TradingMode::Paper);
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
        "MOCK_SUCCESS_RATE=1.5",
        "DRY_RUN=\"maybe\"",
        "BATCH_SIZE=0",
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

#[test]
fn postgres_session_timeouts_derive_from_the_batch_timeout_unless_set() {
    let s = settings(&[("BATCH_TIMEOUT_SECS", "6")]).unwrap();
    assert_eq!(s.postgres.statement_timeout, Duration::from_secs(6));
    assert_eq!(s.postgres.lock_timeout, Duration::from_secs(2));
    assert_eq!(
        s.postgres.idle_in_transaction_timeout,
        Duration::from_secs(6)
    );
    assert_eq!(s.postgres.keepalive_idle, Duration::from_secs(15));

    let s = settings(&[
        ("POSTGRES_STATEMENT_TIMEOUT_MS", "9000"),
        ("POSTGRES_LOCK_TIMEOUT_MS", "250"),
        ("POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS", "4000"),
        ("POSTGRES_TCP_KEEPALIVE_SECS", "30"),
        ("POSTGRES_ACQUIRE_TIMEOUT_MS", "1500"),
    ])
    .unwrap();
    assert_eq!(s.postgres.statement_timeout, Duration::from_millis(9000));
    assert_eq!(s.postgres.lock_timeout, Duration::from_millis(250));
    assert_eq!(
        s.postgres.idle_in_transaction_timeout,
        Duration::from_secs(4)
    );
    assert_eq!(s.postgres.keepalive_idle, Duration::from_secs(30));
    assert_eq!(s.postgres.acquire_timeout, Duration::from_millis(1500));
}

#[test]
fn postgres_timeouts_out_of_range_are_refused() {
    for (name, value) in [
        ("POSTGRES_STATEMENT_TIMEOUT_MS", "0"),
        ("POSTGRES_LOCK_TIMEOUT_MS", "-1"),
        ("POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS", "86400001"),
        ("POSTGRES_ACQUIRE_TIMEOUT_MS", "0"),
        ("POSTGRES_TCP_KEEPALIVE_SECS", "0"),
        ("POSTGRES_TCP_KEEPALIVE_SECS", "99999999999999999999"),
    ] {
        let err = settings(&[(name, value)]).unwrap_err();
        assert!(err.to_string().contains(name), "{name}={value}: {err}");
    }
    // A lock wait is part of a statement, so it cannot outlast one.
    let err = settings(&[
        ("POSTGRES_STATEMENT_TIMEOUT_MS", "1000"),
        ("POSTGRES_LOCK_TIMEOUT_MS", "2000"),
    ])
    .unwrap_err();
    assert!(
        err.to_string().contains("POSTGRES_LOCK_TIMEOUT_MS"),
        "{err}"
    );
}
