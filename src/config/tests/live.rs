//! MEXC, the live gates and limits, the admin token.

use super::*;
use rust_decimal::Decimal;

#[test]
fn mexc_settings_default_to_the_real_api_and_are_range_checked() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.mexc.base_url, "https://api.mexc.com");
    assert_eq!(s.mexc.timeout, Duration::from_millis(5_000));
    assert_eq!(s.mexc.recv_window_ms, 5_000);
    assert_eq!(s.trading.paper_price_source, PaperPriceSource::Reference);

    let s = settings(&[
        ("MEXC_BASE_URL", "http://127.0.0.1:4100/"),
        ("MEXC_TIMEOUT_MS", "60000"),
        ("LIVE_LEASE_SECS", "240"),
        ("MEXC_RECV_WINDOW_MS", "59999"),
        ("PAPER_PRICE_SOURCE", "MEXC"),
    ])
    .unwrap();
    assert_eq!(s.mexc.base_url, "http://127.0.0.1:4100");
    assert_eq!(s.mexc.timeout, Duration::from_secs(60));
    assert_eq!(s.mexc.recv_window_ms, 59_999);
    assert_eq!(s.trading.paper_price_source, PaperPriceSource::Mexc);
    assert_eq!(
        settings(&[("MEXC_RECV_WINDOW_MS", "1")])
            .unwrap()
            .mexc
            .recv_window_ms,
        1
    );

    let err = settings(&[
        ("MEXC_RECV_WINDOW_MS", "60000"),
        ("MEXC_TIMEOUT_MS", "99"),
        ("PAPER_PRICE_SOURCE", "binance"),
    ])
    .unwrap_err()
    .to_string();
    for needle in [
        "MEXC_RECV_WINDOW_MS=\"60000\" is not valid: expected a whole number in 1..=59999",
        "MEXC_TIMEOUT_MS=\"99\" is not valid: expected a whole number in 100..=60000",
        "PAPER_PRICE_SOURCE=\"binance\" is not valid: expected reference or mexc",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}

#[test]
fn the_mexc_url_is_https_or_loopback_http_without_anything_else() {
    for good in [
        "https://api.mexc.com",
        "https://api.mexc.com/",
        "http://localhost:8080",
        "http://[::1]:9000",
        "http://127.0.0.2",
    ] {
        assert!(
            settings(&[("MEXC_BASE_URL", good)]).is_ok(),
            "{good} was refused"
        );
    }
    for (bad, why) in [
        ("http://api.mexc.com", "plain http leaves this machine"),
        ("ftp://api.mexc.com", "the scheme is \"ftp\""),
        ("https://user:secret@api.mexc.com", "it carries credentials"),
        (
            "https://api.mexc.com/api/v3",
            "it has a path, query or fragment",
        ),
        (
            "https://api.mexc.com?x=1",
            "it has a path, query or fragment",
        ),
        ("api.mexc.com", "relative URL without a base"),
    ] {
        let err = settings(&[("MEXC_BASE_URL", bad)]).unwrap_err().to_string();
        assert!(
            err.contains("MEXC_BASE_URL") && err.contains(why),
            "{bad}: {err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }
}

#[test]
fn market_prices_are_for_paper_trading_only() {
    let err = settings(&[("PAPER_PRICE_SOURCE", "mexc"), ("TRADING_MODE", "mock")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "PAPER_PRICE_SOURCE=\"mexc\" is not valid: expected reference with TRADING_MODE=mock"
        ),
        "{err}"
    );
    assert!(
        settings(&[
            ("PAPER_PRICE_SOURCE", "reference"),
            ("TRADING_MODE", "mock")
        ])
        .is_ok()
    );
}

#[test]
fn an_admin_token_is_checked_without_being_shown() {
    let err = settings(&[("ADMIN_TOKEN", "sh0rt-t0ken")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ADMIN_TOKEN") && !err.contains("sh0rt-t0ken"),
        "{err}"
    );
    let err = settings(&[("ADMIN_TOKEN", "has blanks in the token")])
        .unwrap_err()
        .to_string();
    assert!(!err.contains("blanks"), "{err}");
    let s = settings(&[("ADMIN_TOKEN", "a-long-enough-admin-token")]).unwrap();
    assert!(!format!("{s:?}").contains("a-long-enough-admin-token"));
    assert_eq!(
        s.redactor().redact("bearer a-long-enough-admin-token"),
        "bearer ***"
    );
}

#[test]
fn real_orders_need_both_keys_and_the_confirmation() {
    let real = [("TRADING_MODE", "live"), ("DRY_RUN", "false")];
    let err = settings(&real).unwrap_err().to_string();
    for missing in [
        "CONFIRM_LIVE_TRADING=true",
        "MEXC_API_KEY",
        "MEXC_API_SECRET",
    ] {
        assert!(err.contains(missing), "{missing} not named: {err}");
    }
    let mut confirmed = real.to_vec();
    confirmed.push(("CONFIRM_LIVE_TRADING", "true"));
    confirmed.push(("MEXC_API_KEY", "mx0-key-1234"));
    let err = settings(&confirmed).unwrap_err().to_string();
    assert!(
        err.contains("MEXC_API_SECRET") && !err.contains("MEXC_API_KEY ("),
        "{err}"
    );
    confirmed.push(("MEXC_API_SECRET", "s3cr3t-value-5678"));
    let s = settings(&confirmed).unwrap();
    assert!(s.mexc.confirm_live_trading);
    let shown = format!("{s:?}");
    assert!(!shown.contains("mx0-key-1234") && !shown.contains("s3cr3t-value-5678"));
    assert_eq!(s.redactor().redact("key s3cr3t-value-5678"), "key ***");
    // A dry run needs neither; paper ignores the gates.
    assert!(settings(&[("TRADING_MODE", "live")]).is_ok());
    assert!(settings(&[("DRY_RUN", "false")]).is_ok());
}

#[test]
fn live_limits_are_read_and_range_checked() {
    let s = settings(&[
        ("SYMBOL_ALLOWLIST", "btc/usdt, ETHUSDT"),
        ("MAX_ORDER_NOTIONAL", "2500.50"),
        ("MEXC_MAX_ORDERS_PER_SEC", "12"),
    ])
    .unwrap();
    assert_eq!(s.mexc.symbol_allowlist, ["BTCUSDT", "ETHUSDT"]);
    assert_eq!(s.mexc.max_order_notional, Some(Decimal::new(250_050, 2)));
    assert_eq!(s.mexc.max_orders_per_sec, 12);
    assert_eq!(s.mexc.order_ttl, Duration::from_secs(300));
    for (name, value) in [
        ("MEXC_MAX_ORDERS_PER_SEC", "13"),
        ("MEXC_MAX_ORDERS_PER_SEC", "0"),
        ("LIVE_ORDER_TTL_SECS", "0"),
        ("LIVE_RESOLVE_DEADLINE_SECS", "-5"),
        ("MAX_ORDER_NOTIONAL", "0"),
        ("MAX_ORDER_NOTIONAL", "lots"),
        ("SYMBOL_ALLOWLIST", "BTCUSDT,///"),
        ("MEXC_RECV_WINDOW_MS", "60000"),
    ] {
        let err = settings(&[(name, value)]).unwrap_err().to_string();
        assert!(err.contains(name), "{name}={value}: {err}");
    }
}

#[test]
fn a_dry_run_is_live_with_dry_run_set_not_a_mode_of_its_own() {
    let err = settings(&[("TRADING_MODE", "dry_run")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("TRADING_MODE"), "{err}");
}

#[test]
fn the_live_path_settings_have_defaults_ranges_and_a_lease_that_outlives_requests() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.mexc.lease, Duration::from_secs(30));
    assert_eq!(s.mexc.absence_window, Duration::from_secs(90));
    assert!(!s.mexc.resend_not_placed, "re-sending is opt-in");
    assert_eq!(s.mexc.watch_not_placed, Duration::from_secs(86_400));
    assert_eq!(s.mexc.rate_limit_key, None);
    assert_eq!(s.streams.topology.announced_ttl_secs, 172_800);
    assert_eq!(s.mexc.max_send_attempts, 2);
    assert_eq!(s.mexc.reconcile_interval, Duration::from_millis(250));
    assert!(s.mexc.cancel_open_orders_on_halt);
    let s = settings(&[
        ("LIVE_LEASE_SECS", "3600"),
        ("LIVE_ABSENCE_WINDOW_SECS", "1"),
        ("LIVE_RESEND_NOT_PLACED", "true"),
        ("LIVE_WATCH_NOT_PLACED_SECS", "0"),
        ("MEXC_RATE_LIMIT_KEY", " account-7 "),
        ("LIVE_MAX_SEND_ATTEMPTS", "5"),
        ("LIVE_RECONCILE_INTERVAL_MS", "10"),
        ("CANCEL_OPEN_ORDERS_ON_HALT", "false"),
    ])
    .unwrap();
    assert_eq!(s.mexc.lease, Duration::from_secs(3600));
    assert_eq!(s.mexc.absence_window, Duration::from_secs(1));
    assert!(s.mexc.resend_not_placed);
    assert_eq!(s.mexc.watch_not_placed, Duration::ZERO);
    assert_eq!(s.mexc.rate_limit_key.as_deref(), Some("account-7"));
    assert_eq!(s.mexc.max_send_attempts, 5);
    assert_eq!(s.mexc.reconcile_interval, Duration::from_millis(10));
    assert!(!s.mexc.cancel_open_orders_on_halt);
    for (name, value) in [
        ("LIVE_LEASE_SECS", "4"),
        ("LIVE_LEASE_SECS", "-30"),
        ("LIVE_LEASE_SECS", "99999999999999999999999"),
        ("LIVE_ABSENCE_WINDOW_SECS", "0"),
        ("LIVE_ABSENCE_WINDOW_SECS", "3601"),
        ("LIVE_ABSENCE_WINDOW_SECS", "-1"),
        ("LIVE_WATCH_NOT_PLACED_SECS", "604801"),
        ("LIVE_RESEND_NOT_PLACED", "maybe"),
        ("RESULT_DEDUP_SECS", "59"),
        ("RESULT_DEDUP_SECS", "99999999999999999999"),
        // Its meaning changed: a deployment still setting it is stopped.
        ("LIVE_ABSENCE_GRACE_SECS", "10"),
        ("LIVE_MAX_SEND_ATTEMPTS", "0"),
        ("LIVE_MAX_SEND_ATTEMPTS", "6"),
        ("LIVE_RECONCILE_INTERVAL_MS", "9"),
        ("CANCEL_OPEN_ORDERS_ON_HALT", "sometimes"),
    ] {
        let err = settings(&[(name, value)]).unwrap_err().to_string();
        assert!(err.contains(name), "{name}={value}: {err}");
    }
    // With real orders a lease must outlive four requests.
    let real = [
        ("TRADING_MODE", "live"),
        ("DRY_RUN", "false"),
        ("CONFIRM_LIVE_TRADING", "true"),
        ("MEXC_API_KEY", "mx0-key-1234"),
        ("MEXC_API_SECRET", "s3cr3t-value-5678"),
        ("MEXC_TIMEOUT_MS", "10000"),
    ];
    let mut short = real.to_vec();
    short.push(("LIVE_LEASE_SECS", "39"));
    let err = settings(&short).unwrap_err().to_string();
    assert!(
        err.contains("LIVE_LEASE_SECS") && err.contains("4 × MEXC_TIMEOUT_MS"),
        "{err}"
    );
    let mut enough = real.to_vec();
    enough.push(("LIVE_LEASE_SECS", "40"));
    assert!(settings(&enough).is_ok());
    // An order watched after it was reported not placed is announced
    // again; its state must be remembered longer than it is watched.
    let mut forgetful = enough.clone();
    forgetful.push(("RESULT_DEDUP_SECS", "86400"));
    let err = settings(&forgetful).unwrap_err().to_string();
    assert!(
        err.contains("RESULT_DEDUP_SECS") && err.contains("LIVE_WATCH_NOT_PLACED_SECS"),
        "{err}"
    );
    forgetful.push(("LIVE_WATCH_NOT_PLACED_SECS", "3600"));
    assert!(settings(&forgetful).is_ok());
    // Every mode holds the same rules: a setting that would stop live
    // trading stops a paper run too.
    let err = settings(&[("LIVE_LEASE_SECS", "5"), ("MEXC_TIMEOUT_MS", "60000")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("LIVE_LEASE_SECS"), "{err}");
    let err = settings(&[("RESULT_DEDUP_SECS", "86400")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("RESULT_DEDUP_SECS"), "{err}");
}
