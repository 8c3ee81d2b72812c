//! A valid order, through the channel and through the stream, ends FILLED
//! on both outputs and in both tables, with exact decimals.

use futures_util::StreamExt;

use crate::helpers::{DEADLINE, TestEnv};

#[tokio::test]
async fn an_order_on_the_channel_is_filled_and_announced_on_both_outputs() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[]).await;
    let mut results = Box::pin(env.subscribe_results().await);

    let order = r#"{"order_id":"happy-1","symbol":"BTCUSDT","side":"buy","quantity":0.001,"price":50000,
                   "client_id":"cl-1","strategy_id":"momentum","bot_id":"bot-7"}"#;
    env.publish(&[order.to_owned()]).await;

    let announced = tokio::time::timeout(DEADLINE, results.next())
        .await
        .expect("a result")
        .expect("open channel");
    assert_eq!(announced.order_id, "happy-1");
    assert_eq!(announced.status.as_str(), "FILLED");
    assert_eq!(announced.filled_quantity.to_string(), "0.00100000");
    assert_eq!(
        announced.fee.map(|f| f.to_string()).as_deref(),
        Some("0.05000000")
    );
    assert_eq!(announced.bot_id.as_deref(), Some("bot-7"));

    let streamed = env.wait_for_results(1).await;
    let result = &streamed[0];
    assert_eq!(result["type"], "order_result");
    assert_eq!(result["order_id"], "happy-1");
    assert_eq!(result["status"], "FILLED");
    assert_eq!(result["symbol"], "BTCUSDT");
    assert_eq!(result["side"], "BUY");
    assert_eq!(result["quantity"], "0.00100000");
    assert_eq!(result["filled_quantity"], "0.00100000");
    assert_eq!(result["price"], "50000.00000000");
    assert_eq!(result["fee"], "0.05000000");
    assert_eq!(result["client_id"], "cl-1");
    assert_eq!(result["strategy_id"], "momentum");
    assert_eq!(result["mode"], "paper");
    assert!(
        result["timestamp"].parse::<i64>().is_ok(),
        "timestamp {:?} is not an integer",
        result["timestamp"]
    );
    assert!(!result.contains_key("error_message"));

    let quantity = env
        .scalar_text("SELECT quantity::text FROM orders WHERE order_id = 'happy-1'")
        .await;
    assert_eq!(quantity.as_deref(), Some("0.00100000"));
    let status = env
        .scalar_text("SELECT status FROM orders WHERE order_id = 'happy-1'")
        .await;
    assert_eq!(status.as_deref(), Some("FILLED"));
    let trade = env
        .scalar_text("SELECT price::text || ' ' || quantity::text || ' ' || fee::text FROM trades WHERE order_id = 'happy-1'")
        .await;
    assert_eq!(
        trade.as_deref(),
        Some("50000.00000000 0.00100000 0.05000000")
    );
    assert_eq!(env.pending().await, 0);

    app.stop().await;
}

#[tokio::test]
async fn a_flat_stream_entry_is_filled_like_a_json_one() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[("SHIM_ENABLED", "false")]).await;
    let issued_ms = (chrono::Utc::now().timestamp_millis() - 1_500).to_string();

    env.xadd(&[
        ("order_id", "flat-1"),
        ("symbol", "ETH/USDT"),
        ("side", "SELL"),
        ("quantity", "1.5"),
        ("price", "3000.25"),
        ("timestamp", &issued_ms),
    ])
    .await;
    env.xadd_payload(
        r#"{"order_id":"wrapped-1","symbol":"ETHUSDT","side":"BUY","quantity":"2","price":"10"}"#,
    )
    .await;

    let results = env.wait_for_results(2).await;
    let flat = results
        .iter()
        .find(|r| r["order_id"] == "flat-1")
        .expect("flat result");
    assert_eq!(flat["status"], "FILLED");
    assert_eq!(flat["symbol"], "ETH/USDT");
    assert_eq!(flat["quantity"], "1.50000000");
    assert_eq!(flat["price"], "3000.25000000");
    assert_eq!(flat["fee"], "4.50037500");
    let wrapped = results
        .iter()
        .find(|r| r["order_id"] == "wrapped-1")
        .expect("wrapped result");
    assert_eq!(wrapped["status"], "FILLED");

    let stamp = env
        .scalar_text(
            "SELECT (extract(epoch FROM order_timestamp) * 1000)::bigint::text FROM orders WHERE order_id = 'flat-1'",
        )
        .await;
    assert_eq!(stamp, Some(issued_ms));
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 2);

    app.stop().await;
}

#[tokio::test]
async fn an_order_older_than_the_maximum_age_is_rejected_unexecuted() {
    let env = TestEnv::new().await;
    let app = env
        .spawn(
            "replica-a",
            &[("SHIM_ENABLED", "false"), ("ORDER_MAX_AGE_SECS", "60")],
        )
        .await;
    let old = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    env.xadd_payload(&format!(
        r#"{{"order_id":"stale-1","symbol":"BTCUSDT","side":"BUY","quantity":1,"price":10,"timestamp":"{old}"}}"#
    ))
    .await;
    env.xadd_payload(&crate::helpers::order_json("fresh-1", "1", "10"))
        .await;

    let results = env.wait_for_results(2).await;
    let stale = results
        .iter()
        .find(|r| r["order_id"] == "stale-1")
        .expect("stale result");
    assert_eq!(stale["status"], "REJECTED");
    assert!(
        stale["error_message"].contains("ORDER_MAX_AGE_SECS=60"),
        "{stale:?}"
    );
    let fresh = results
        .iter()
        .find(|r| r["order_id"] == "fresh-1")
        .expect("fresh result");
    assert_eq!(fresh["status"], "FILLED");
    assert_eq!(
        env.count("SELECT count(*) FROM trades WHERE order_id = 'stale-1'")
            .await,
        0
    );
    let reason = env
        .scalar_text("SELECT reject_reason FROM orders WHERE order_id = 'stale-1'")
        .await;
    assert!(reason.unwrap_or_default().starts_with("stale"));
    assert_eq!(app.stats.executed.get(), 1);

    app.stop().await;
}

#[tokio::test]
async fn an_order_stamped_in_the_future_is_rejected_unexecuted_beyond_the_skew() {
    let env = TestEnv::new().await;
    // With the stale check off, too: a future stamp is not trusted either way.
    let settings = [
        ("SHIM_ENABLED", "false"),
        ("ORDER_MAX_AGE_SECS", "0"),
        ("ORDER_MAX_FUTURE_SECS", "5"),
    ];
    let app = env.spawn("replica-a", &settings).await;
    let stamped = |id: &str, ahead: chrono::Duration| {
        let at = (chrono::Utc::now() + ahead).timestamp_millis();
        format!(
            r#"{{"order_id":"{id}","symbol":"BTCUSDT","side":"BUY","quantity":1,"price":10,"timestamp":{at}}}"#
        )
    };
    env.xadd_payload(&stamped("future-1", chrono::Duration::hours(1)))
        .await;
    env.xadd_payload(&stamped("skewed-1", chrono::Duration::seconds(2)))
        .await;

    let results = env.wait_for_results(2).await;
    let status = |id: &str| {
        results
            .iter()
            .find(|r| r["order_id"] == id)
            .cloned()
            .expect("a result")
    };
    let future = status("future-1");
    assert_eq!(future["status"], "REJECTED");
    assert!(
        future["error_message"].contains("in the future")
            && future["error_message"].contains("ORDER_MAX_FUTURE_SECS"),
        "{future:?}"
    );
    assert_eq!(status("skewed-1")["status"], "FILLED");
    assert_eq!(app.stats.executed.get(), 1);
    app.stop().await;
}

#[tokio::test]
async fn every_result_is_also_on_the_fills_stream_with_the_original_field_names() {
    let env = TestEnv::new().await;
    let app = env.spawn("fills", &[("SHIM_ENABLED", "false")]).await;
    env.xadd_payload(&crate::helpers::order_json("fills-1", "0.002", "50000"))
        .await;
    env.xadd_payload(&crate::helpers::order_json("fills-2", "-1", "50000"))
        .await;
    let results = env.wait_for_results(2).await;
    env.wait_until("both results are on the fills stream", || async {
        env.stream_len("FILLS_STREAM").await >= 2
    })
    .await;
    let fills = env.stream("FILLS_STREAM").await;
    assert_eq!(fills.len(), 2, "one entry per result");
    for (fill, result) in fills.iter().zip(&results) {
        // The same fields as the results stream, plus the aliases.
        for (name, value) in result {
            assert_eq!(fill.get(name), Some(value), "{name}");
        }
        assert_eq!(fill["filled_size"], result["filled_quantity"]);
        assert_eq!(
            fill.get("avg_fill_price"),
            result.get("price"),
            "absent together"
        );
        assert_eq!(fill["type"], "order_result");
        let timestamp: i64 = fill["timestamp"].parse().expect("unix seconds");
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    }
    assert_eq!(fills[0]["status"], "FILLED");
    assert_eq!(fills[0]["avg_fill_price"], "50000.00000000");
    assert_eq!(fills[0]["filled_size"], "0.00200000");
    assert_eq!(fills[1]["status"], "REJECTED");
    assert!(!fills[1].contains_key("avg_fill_price"));
    app.stop().await;

    // Set empty, FILLS_STREAM turns the second stream off.
    let app = env
        .spawn(
            "no-fills",
            &[("SHIM_ENABLED", "false"), ("FILLS_STREAM", "")],
        )
        .await;
    env.xadd_payload(&crate::helpers::order_json("fills-3", "1", "10"))
        .await;
    env.wait_for_results(3).await;
    assert_eq!(env.stream_len("FILLS_STREAM").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_market_order_without_a_price_fills_at_the_default_reference_price() {
    let env = TestEnv::new().await;
    let app = env.spawn("reference", &[]).await;
    // As the original pipeline's end-to-end test sends it.
    let order = r#"{"order_id":"market-1","symbol":"BTC/USDT","side":"BUY","order_type":"MARKET","quantity":0.002}"#;
    env.publish(&[order.to_owned()]).await;
    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "FILLED", "{:?}", results[0]);
    assert_eq!(results[0]["price"], "50000.00000000");
    assert_eq!(results[0]["filled_quantity"], "0.00200000");
    app.stop().await;

    // Set empty, there is no table: the order names no price to fill at.
    let app = env
        .spawn("no-reference", &[("PAPER_REFERENCE_PRICES", "")])
        .await;
    let order = r#"{"order_id":"market-2","symbol":"BTC/USDT","side":"BUY","order_type":"MARKET","quantity":0.002}"#;
    env.publish(&[order.to_owned()]).await;
    let results = env.wait_for_results(2).await;
    let second = results
        .iter()
        .find(|r| r["order_id"] == "market-2")
        .expect("a result");
    assert_eq!(second["status"], "REJECTED");
    assert!(second["error_message"].contains("no price"), "{second:?}");
    app.stop().await;
}

/// A Redis that forgot the service's scripts (restarted, or `SCRIPT
/// FLUSH`): the shim and the results script load theirs again, and no
/// order waits for it.
#[tokio::test]
async fn orders_still_go_through_after_redis_forgets_the_scripts() {
    let env = TestEnv::new().await;
    let _app = env.spawn("replica-a", &[]).await;
    env.publish(&[crate::helpers::order_json("forgotten-1", "0.001", "50000")])
        .await;
    env.wait_for_results(1).await;

    let client = redis::Client::open(crate::helpers::redis_url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("flush");

    env.publish(&[crate::helpers::order_json("forgotten-2", "0.001", "50000")])
        .await;
    let results = env.wait_for_results(2).await;
    assert_eq!(results[1]["order_id"], "forgotten-2");
    assert_eq!(results[1]["status"], "FILLED");
}
