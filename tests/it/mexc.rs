//! The MEXC client against the fake MEXC server: signed requests, the
//! exchange clock, every kind of failure the caller branches on, order
//! ids in both spellings, and the pre-trade rules from `exchangeInfo`.
//! Paper trading at the fake's ticker price is in `paper`.

mod paper;

use std::time::Duration;

use execution_service::domain::{Order, OrderType, Side};
use execution_service::execution::mexc::{
    ExchangeStatus, Limits, MexcClient, MexcConfig, MexcError, NewOrder, RuleBook, Signer, Window,
    client_order_id,
};
use rust_decimal::Decimal;

use crate::fake_mexc::{API_KEY, API_SECRET, FakeClient, FakeMexc, Fault, Script, symbol_info};
use crate::helpers::{DEADLINE, free_port};

fn order(
    symbol: &str,
    side: Side,
    order_type: OrderType,
    quantity: &str,
    price: Option<&str>,
) -> Order {
    Order {
        order_id: format!("ord-{}", uuid::Uuid::new_v4().simple()),
        symbol: symbol.to_owned(),
        side,
        quantity: quantity.parse().unwrap(),
        price: price.map(|p| p.parse().unwrap()),
        order_type,
        client_id: None,
        strategy_id: None,
        bot_id: None,
        stop_loss_pct: None,
        timestamp: None,
        traceparent: None,
    }
}

pub(crate) fn limit_buy(quantity: &str, price: &str) -> NewOrder {
    let order = order(
        "BTC/USDT",
        Side::Buy,
        OrderType::Limit,
        quantity,
        Some(price),
    );
    let id = client_order_id("it", &order.order_id);
    NewOrder::for_order(&order, id)
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

#[tokio::test]
async fn signed_requests_are_accepted_and_every_endpoint_reads() {
    let fake = FakeMexc::start().await;
    let client = fake.client();

    let server = client.server_time().await.unwrap();
    assert!((server - chrono::Utc::now().timestamp_millis()).abs() < 5_000);
    let info = client
        .exchange_info(&["BTC/USDT".to_owned()])
        .await
        .unwrap();
    assert_eq!(info.symbols.len(), 1);
    assert_eq!(info.symbols[0].symbol, "BTCUSDT");
    assert_eq!(
        client.ticker_price("BTC/USDT").await.unwrap().price,
        dec("50000")
    );

    let new = limit_buy("0.0015", "49000.5");
    client.test_order(&new).await.unwrap();
    assert!(fake.orders().is_empty(), "a test order was placed");

    let ack = client.new_order(&new).await.unwrap();
    assert_eq!(ack.symbol, "BTCUSDT");
    assert_eq!(fake.posts_for(&new.client_order_id), 1);
    let placed = fake.orders_for(&new.client_order_id);
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].orig_qty, dec("0.0015"));
    assert_eq!(placed[0].price, Some(dec("49000.5")));

    let state = client
        .query_order("BTCUSDT", &new.client_order_id)
        .await
        .unwrap();
    assert_eq!(state.order_id, ack.order_id);
    assert_eq!(state.status, ExchangeStatus::Filled);
    assert_eq!(state.executed_qty, dec("0.0015"));
    assert_eq!(state.average_price(), Some(dec("49000.5")));

    let trades = client
        .trades_of_order("BTCUSDT", &ack.order_id, Window::new(0, i64::MAX / 2))
        .await
        .unwrap();
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0].qty, dec("0.0015"));
    assert_eq!(trades[0].order_id, ack.order_id);
    assert!(trades[0].commission > Decimal::ZERO);

    // A filled order cannot be cancelled: MEXC knows no such open order.
    assert!(matches!(
        client.cancel_order("BTCUSDT", &new.client_order_id).await,
        Err(MexcError::UnknownOrder { code: -2011, .. })
    ));
    // Besides the explicit call, one clock measurement served every signed
    // request; only signed requests carry the key.
    assert_eq!(fake.count("GET", "/api/v3/time"), 2);
    for seen in fake.requests() {
        let signed = seen.query.contains("signature=");
        assert_eq!(seen.keyed, signed, "{seen:?}");
    }
}

#[tokio::test]
async fn a_tampered_request_or_a_wrong_key_is_a_signature_error() {
    let fake = FakeMexc::start().await;
    let wrong_secret = fake.client_with(Duration::from_secs(1), Some((API_KEY, "not-the-secret")));
    let err = wrong_secret
        .new_order(&limit_buy("0.001", "50000"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MexcError::Signature { code: 700002, .. }),
        "{err:?}"
    );
    assert!(err.is_credentials_problem());
    let wrong_key = fake.client_with(Duration::from_secs(1), Some(("mx0other", API_SECRET)));
    let err = wrong_key.query_order("BTCUSDT", "es1").await.unwrap_err();
    assert!(
        matches!(err, MexcError::Signature { code: 10072, .. }),
        "{err:?}"
    );
    assert!(fake.orders().is_empty());

    // A request signed correctly, then altered on the way: refused.
    let timestamp = chrono::Utc::now().timestamp_millis();
    let signed = format!(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=11&recvWindow=5000&timestamp={timestamp}"
    );
    let signature = Signer::new(API_SECRET).unwrap().sign(&signed, "");
    let http = reqwest::Client::new();
    let send = |query: String| {
        http.post(format!(
            "{}/api/v3/order?{query}&signature={signature}",
            fake.url()
        ))
        .header("X-MEXC-APIKEY", API_KEY)
        .send()
    };
    let tampered = send(signed.replace("quantity=1", "quantity=9"))
        .await
        .unwrap();
    assert_eq!(tampered.status(), 400);
    let body: serde_json::Value = tampered.json().await.unwrap();
    assert_eq!(body["code"], 700002);
    assert!(fake.orders().is_empty());
    let genuine = send(signed).await.unwrap();
    assert_eq!(genuine.status(), 200, "{:?}", genuine.text().await);
    assert_eq!(fake.orders().len(), 1);
}

#[tokio::test]
async fn a_skewed_clock_is_one_time_error_then_one_resync_and_the_next_request_passes() {
    for (skew_ms, fake_offset_ms) in [(2_000, -2_000), (-70_000, 70_000)] {
        let fake = FakeMexc::start().await;
        let client = fake.client();
        client.sync_clock().await.unwrap();
        assert!(client.clock().offset_ms().abs() < 1_000);
        // This machine's clock is now `skew_ms` off the exchange's.
        fake.set_clock_offset_ms(fake_offset_ms);
        let new = limit_buy("0.001", "50000");

        let err = client.new_order(&new).await.unwrap_err();
        assert!(
            matches!(err, MexcError::TimeOutsideWindow { .. }),
            "skew {skew_ms}: {err:?}"
        );
        assert!(err.certainly_not_applied());
        assert_eq!(fake.posts_for(&new.client_order_id), 1);
        assert!(
            fake.orders().is_empty(),
            "skew {skew_ms}: an order was placed"
        );
        assert_eq!(
            fake.count("GET", "/api/v3/time"),
            2,
            "skew {skew_ms}: one resync"
        );
        assert!(
            (client.clock().offset_ms() - fake_offset_ms).abs() < 1_000,
            "skew {skew_ms}: offset {}",
            client.clock().offset_ms()
        );

        client.new_order(&new).await.unwrap();
        assert_eq!(fake.posts_for(&new.client_order_id), 2);
        assert_eq!(fake.orders_for(&new.client_order_id).len(), 1);
        assert_eq!(fake.count("GET", "/api/v3/time"), 2);
    }
}

#[tokio::test]
async fn a_clock_that_was_never_measured_and_cannot_be_sends_nothing() {
    let fake = FakeMexc::start().await;
    let client = fake.client();
    fake.script(Script::nth(1, Fault::ServerError).on("GET", "/api/v3/time"));
    let new = limit_buy("0.001", "50000");
    let err = client.new_order(&new).await.unwrap_err();
    assert!(matches!(err, MexcError::ClockUnavailable { .. }), "{err:?}");
    assert!(err.certainly_not_applied());
    assert_eq!(fake.posts_for(&new.client_order_id), 0);
    // Once measured, a later failure to measure keeps the last offset.
    client.new_order(&new).await.unwrap();
    assert_eq!(fake.orders_for(&new.client_order_id).len(), 1);
}

#[tokio::test]
async fn rate_limits_surface_with_their_retry_after() {
    let fake = FakeMexc::start().await;
    let client = fake.client();
    fake.script(
        Script::nth(
            1,
            Fault::RateLimited {
                retry_after_secs: 7,
                banned: false,
            },
        )
        .on("POST", "/api/v3/order"),
    );
    fake.script(
        Script::nth(
            1,
            Fault::RateLimited {
                retry_after_secs: 120,
                banned: true,
            },
        )
        .on("GET", "/api/v3/order"),
    );
    let new = limit_buy("0.001", "50000");
    assert_eq!(
        client.new_order(&new).await,
        Err(MexcError::RateLimited {
            retry_after: Duration::from_secs(7),
            banned: false
        })
    );
    assert!(fake.orders().is_empty());
    assert_eq!(
        client.query_order("BTCUSDT", &new.client_order_id).await,
        Err(MexcError::RateLimited {
            retry_after: Duration::from_secs(120),
            banned: true
        })
    );
}

#[tokio::test]
async fn timeouts_resets_and_server_errors_are_unknown_outcomes() {
    let fake = FakeMexc::start().await;
    let client = fake.client_with(Duration::from_millis(300), Some((API_KEY, API_SECRET)));
    client.sync_clock().await.unwrap();
    let cases = [
        (Fault::Hang, false, "timed out"),
        (Fault::Hang, true, "timed out"),
        (Fault::Reset, false, "reset"),
        (Fault::Reset, true, "reset"),
        (Fault::ServerError, false, "HTTP 500"),
        (Fault::ServerError, true, "HTTP 500"),
    ];
    for (fault, applied, shown) in cases {
        let new = limit_buy("0.001", "50000");
        let mut script = Script::nth(1, fault.clone()).on("POST", "/api/v3/order");
        if applied {
            script = script.after_applying();
        }
        fake.script(script);
        let err = client.new_order(&new).await.unwrap_err();
        let MexcError::Unknown { reason } = &err else {
            panic!("{fault:?}: {err:?}")
        };
        assert!(reason.contains(shown), "{fault:?}: {reason}");
        assert!(!err.certainly_not_applied());
        assert_eq!(fake.posts_for(&new.client_order_id), 1, "{fault:?}");
        // Whether it was placed, only a lookup tells: exactly once, or not.
        let placed = fake.orders_for(&new.client_order_id).len();
        assert_eq!(placed, usize::from(applied), "{fault:?} applied={applied}");
        let looked_up = client.query_order("BTCUSDT", &new.client_order_id).await;
        if applied {
            assert_eq!(looked_up.unwrap().status, ExchangeStatus::Filled);
        } else {
            assert!(matches!(
                looked_up,
                Err(MexcError::UnknownOrder { code: -2013, .. })
            ));
        }
    }
    // An answer that cannot be read is unknown too.
    fake.script(
        Script::nth(
            1,
            Fault::Error {
                status: 200,
                code: 0,
                msg: String::new(),
            },
        )
        .on("GET", "/api/v3/order"),
    );
    let err = client.query_order("BTCUSDT", "es-any").await.unwrap_err();
    assert!(matches!(err, MexcError::Unknown { .. }), "{err:?}");

    // Nothing listening: unknown as well (the caller cannot tell a refused
    // connection from one cut after sending).
    let config = MexcConfig {
        base_url: format!("http://127.0.0.1:{}", free_port()),
        ..MexcConfig::default()
    };
    let nowhere = MexcClient::new(&config, None).unwrap();
    let err = nowhere.ticker_price("BTCUSDT").await.unwrap_err();
    let MexcError::Unknown { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.starts_with("could not connect"), "{reason}");
}

#[tokio::test]
async fn order_ids_parse_as_strings_and_as_numbers() {
    let fake = FakeMexc::start().await;
    let client = fake.client();
    let text = client
        .new_order(&limit_buy("0.001", "50000"))
        .await
        .unwrap();
    assert_eq!(text.order_id.0.len(), 32, "{}", text.order_id);
    assert!(!text.order_id.0.chars().all(|c| c.is_ascii_digit()));

    fake.numeric_order_ids(true);
    let new = limit_buy("0.002", "50000");
    let number = client.new_order(&new).await.unwrap();
    assert!(
        number.order_id.0.chars().all(|c| c.is_ascii_digit()),
        "{}",
        number.order_id
    );
    let raw = fake.orders_for(&new.client_order_id);
    assert_eq!(raw[0].order_id, number.order_id.0);
    let state = client
        .query_order("BTCUSDT", &new.client_order_id)
        .await
        .unwrap();
    assert_eq!(state.order_id, number.order_id);
    let trades = client
        .trades_of_order("BTCUSDT", &number.order_id, Window::new(0, i64::MAX / 2))
        .await
        .unwrap();
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0].order_id, number.order_id);
    let trades = client
        .trades_of_order("BTCUSDT", &text.order_id, Window::new(0, i64::MAX / 2))
        .await
        .unwrap();
    assert_eq!(trades[0].order_id, text.order_id);
}

#[tokio::test]
async fn orders_fill_partially_over_time_and_lookups_may_lag_acceptance() {
    let fake = FakeMexc::start().await;
    let client = fake.client();
    fake.fill_plan(vec![
        (Duration::ZERO, "0.3"),
        (Duration::from_millis(300), "1"),
    ]);
    fake.unknown_for_first_lookups(2);
    let new = limit_buy("1", "50000");
    client.new_order(&new).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(
            client.query_order("BTCUSDT", &new.client_order_id).await,
            Err(MexcError::UnknownOrder { code: -2013, .. })
        ));
    }
    let first = client
        .query_order("BTCUSDT", &new.client_order_id)
        .await
        .unwrap();
    if first.status == ExchangeStatus::PartiallyFilled {
        assert_eq!(first.executed_qty, dec("0.3"));
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let state = client
            .query_order("BTCUSDT", &new.client_order_id)
            .await
            .unwrap();
        if state.status == ExchangeStatus::Filled {
            assert_eq!(state.executed_qty, dec("1"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never filled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let trades = client
        .trades_of_order("BTCUSDT", &first.order_id, Window::new(0, i64::MAX / 2))
        .await
        .unwrap();
    let quantities: Vec<Decimal> = trades.iter().map(|t| t.qty).collect();
    assert_eq!(quantities, vec![dec("0.3"), dec("0.7")]);

    // A partly filled order cancels as PARTIALLY_CANCELED with its fills.
    fake.fill_plan(vec![(Duration::ZERO, "0.5")]);
    fake.unknown_for_first_lookups(0);
    let half = limit_buy("2", "50000");
    client.new_order(&half).await.unwrap();
    let cancelled = client
        .cancel_order("BTCUSDT", &half.client_order_id)
        .await
        .unwrap();
    assert_eq!(cancelled.status, ExchangeStatus::PartiallyCanceled);
    assert_eq!(cancelled.executed_qty, dec("1"));
    assert!(cancelled.status.is_final());
    assert_eq!(fake.max_order_writes_within(Duration::from_secs(60)), 3);
    let methods: Vec<String> = fake.order_writes().into_iter().map(|w| w.method).collect();
    assert_eq!(methods, ["POST", "POST", "DELETE"]);
}

#[tokio::test]
async fn a_duplicate_client_order_id_is_refused_only_when_the_fake_is_told_to() {
    let fake = FakeMexc::start().await;
    let client = fake.client();
    let new = limit_buy("0.001", "50000");
    client.new_order(&new).await.unwrap();
    client.new_order(&new).await.unwrap();
    assert_eq!(fake.orders_for(&new.client_order_id).len(), 2);

    fake.reject_duplicate_client_ids(true);
    let again = limit_buy("0.001", "50000");
    client.new_order(&again).await.unwrap();
    let err = client.new_order(&again).await.unwrap_err();
    // MEXC documents no code for it: the outcome is for a lookup to tell.
    assert!(matches!(err, MexcError::Unknown { .. }), "{err:?}");
    assert_eq!(fake.posts_for(&again.client_order_id), 2);
    assert_eq!(fake.orders_for(&again.client_order_id).len(), 1);
}

#[tokio::test]
async fn exchange_rules_refuse_an_order_before_anything_is_sent() {
    let fake = FakeMexc::start().await;
    let mut sell_only = symbol_info("MXUSDT", "MX", "USDT");
    sell_only["tradeSideType"] = "3".into();
    sell_only["quoteAmountPrecision"] = "5".into();
    fake.set_symbol(sell_only);
    let client = fake.client();
    let book = RuleBook::from_exchange_info(&client.exchange_info(&[]).await.unwrap());
    assert_eq!(book.len(), 3);
    let limits = Limits::default();

    let small = order(
        "BTC/USDT",
        Side::Buy,
        OrderType::Limit,
        "0.0001",
        Some("5000"),
    );
    let failure = book.check(&small, &limits, None).unwrap_err();
    assert_eq!(
        failure.to_string(),
        "min_notional: notional 0.5 is below BTCUSDT's minimum 1 (quoteAmountPrecision)"
    );
    let buy = order("MX/USDT", Side::Buy, OrderType::Limit, "10", Some("3"));
    assert_eq!(
        book.check(&buy, &limits, None).unwrap_err().rule,
        "trade_side"
    );
    let sell = order("MX/USDT", Side::Sell, OrderType::Limit, "1", Some("3"));
    assert_eq!(
        book.check(&sell, &limits, None).unwrap_err().rule,
        "min_notional"
    );
    let fine = order("MX/USDT", Side::Sell, OrderType::Limit, "2", Some("3"));
    assert_eq!(book.check(&fine, &limits, None), Ok(()));
    assert_eq!(fake.count("POST", "/api/v3/order"), 0);
}

#[tokio::test]
async fn a_live_dry_run_checks_and_tests_orders_but_never_places_one() {
    let fake = FakeMexc::start().await;
    let env = crate::helpers::TestEnv::new().await;
    let url = fake.url();
    let dry = [
        ("SHIM_ENABLED", "false"),
        ("TRADING_MODE", "live"),
        ("MEXC_BASE_URL", url.as_str()),
        ("MEXC_API_KEY", crate::fake_mexc::API_KEY),
        ("MEXC_API_SECRET", crate::fake_mexc::API_SECRET),
    ];
    let app = env.spawn("dry", &dry).await;
    // One that passes MEXC's rules and its test, one below the minimum
    // notional (rejected before anything is sent for it).
    env.xadd_payload(&crate::helpers::order_json("dry-ok", "0.01", "50000"))
        .await;
    env.xadd_payload(&crate::helpers::order_json("dry-small", "0.0001", "5000"))
        .await;
    let results = env.wait_for_results(2).await;
    let by_id = |id: &str| {
        results
            .iter()
            .find(|r| r["order_id"] == id)
            .cloned()
            .expect("a result")
    };
    let ok = by_id("dry-ok");
    assert_eq!(ok["status"], "FILLED");
    assert_eq!(ok["mode"], "dry_run");
    let small = by_id("dry-small");
    assert_eq!(small["status"], "REJECTED");
    assert!(
        small["error_message"].starts_with("min_notional"),
        "{small:?}"
    );
    assert_eq!(
        fake.count("POST", "/api/v3/order"),
        0,
        "a dry run placed an order"
    );
    assert_eq!(fake.count("POST", "/api/v3/order/test"), 1);
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE mode = 'dry_run'")
            .await,
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn a_dry_run_without_credentials_checks_the_rules_only() {
    let fake = FakeMexc::start().await;
    let env = crate::helpers::TestEnv::new().await;
    let url = fake.url();
    let app = env
        .spawn(
            "dry-anon",
            &[
                ("SHIM_ENABLED", "false"),
                ("TRADING_MODE", "live"),
                ("MEXC_BASE_URL", url.as_str()),
            ],
        )
        .await;
    env.xadd_payload(&crate::helpers::order_json("anon-1", "0.01", "50000"))
        .await;
    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "FILLED");
    assert_eq!(results[0]["mode"], "dry_run");
    assert_eq!(fake.count("POST", "/api/v3/order"), 0);
    assert_eq!(fake.count("POST", "/api/v3/order/test"), 0);
    assert!(fake.count("GET", "/api/v3/exchangeInfo") >= 1);
    app.stop().await;
}
