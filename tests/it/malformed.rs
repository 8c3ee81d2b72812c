//! Bad input never crashes the service and never disappears: each message
//! gets its documented outcome, and valid traffic carries on.

use std::collections::HashMap;

use crate::helpers::{TestEnv, order_json};

#[tokio::test]
async fn every_malformed_message_gets_its_documented_outcome() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[]).await;
    let long_symbol = "S".repeat(10_000);

    let channel_messages = [
        "this is not json".to_owned(),
        "{}".to_owned(),
        r#"[1, 2, 3]"#.to_owned(),
        r#"{"order_id":"m-hold","symbol":"BTCUSDT","side":"HOLD","quantity":1}"#.to_owned(),
        r#"{"order_id":"m-negative","symbol":"BTCUSDT","side":"BUY","quantity":-1,"price":10}"#.to_owned(),
        r#"{"order_id":"m-abc","symbol":"BTCUSDT","side":"BUY","quantity":"abc"}"#.to_owned(),
        r#"{"order_id":"m-nine","symbol":"BTCUSDT","side":"BUY","quantity":0.123456789}"#.to_owned(),
        format!(r#"{{"order_id":"m-long","symbol":"{long_symbol}","side":"BUY","quantity":1}}"#),
        r#"{"type":"heartbeat","order_id":"m-type"}"#.to_owned(),
        r#"{"order_id":"m-huge","symbol":"BTCUSDT","side":"BUY","quantity":1e400,"price":99999999999999999999999}"#
            .to_owned(),
        r#"{"client_id":"m-client","symbol":"BTCUSDT","side":"BUY","quantity":0}"#.to_owned(),
        r#"{"order_id":"m-notional","symbol":"BTCUSDT","side":"BUY","quantity":1000000,"price":12000000}"#
            .to_owned(),
        r#"{"order_id":"m-dup","symbol":"BTCUSDT","side":"BUY","quantity":1,"order_id":"m-dup-2"}"#
            .to_owned(),
        order_json("m-valid", "1", "10"),
    ];
    env.publish(&channel_messages).await;
    // Raw bytes that are not UTF-8, straight onto the stream.
    let mut conn = env.redis.clone();
    let _: String = redis::cmd("XADD")
        .arg(env.var("ORDERS_STREAM"))
        .arg("*")
        .arg("payload")
        .arg(&[0xff_u8, 0xfe, 0x00][..])
        .query_async(&mut conn)
        .await
        .expect("XADD");
    env.xadd(&[("symbol", "BTCUSDT"), ("quantity", "1")]).await;

    env.wait_until("every message is settled", || async {
        env.pending().await == 0 && env.stream_len("ORDERS_STREAM").await == 16
    })
    .await;
    env.wait_until("all results and dead letters are out", || async {
        env.stream_len("RESULTS_STREAM").await >= 9 && env.stream_len("DLQ_STREAM").await >= 10
    })
    .await;

    let results: HashMap<String, HashMap<String, String>> = env
        .results()
        .await
        .into_iter()
        .map(|r| (r["order_id"].clone(), r))
        .collect();
    let status = |id: &str| results.get(id).map(|r| r["status"].as_str());
    let reason = |id: &str| {
        results
            .get(id)
            .map(|r| r["error_message"].clone())
            .unwrap_or_default()
    };

    assert_eq!(
        status("m-valid"),
        Some("FILLED"),
        "the service stopped serving valid orders"
    );
    for id in [
        "m-hold",
        "m-negative",
        "m-abc",
        "m-nine",
        "m-long",
        "m-huge",
        "m-client",
        "m-notional",
    ] {
        assert_eq!(status(id), Some("REJECTED"), "{id}");
    }
    assert!(reason("m-hold").contains("HOLD"));
    assert!(reason("m-negative").contains("greater than 0"));
    assert!(reason("m-abc").contains("not a decimal"));
    assert!(reason("m-nine").contains("8 decimal places"));
    assert!(reason("m-long").contains("longer than"));
    assert!(reason("m-huge").contains("too large"));
    assert!(reason("m-notional").contains("does not fit DECIMAL(20,8)"));
    assert!(status("m-dup").is_none() && status("m-dup-2").is_none());
    assert!(status("m-type").is_none(), "another type was answered");
    assert_eq!(results.len(), 9);

    // Every rejection keeps its id with a row; where a value fits no
    // column, the column is NULL and the row keeps the message's fields.
    for id in [
        "m-hold",
        "m-negative",
        "m-client",
        "m-notional",
        "m-abc",
        "m-nine",
        "m-long",
        "m-huge",
    ] {
        let row = env
            .scalar_text(&format!(
                "SELECT status FROM orders WHERE order_id = '{id}'"
            ))
            .await;
        assert_eq!(row.as_deref(), Some("REJECTED"), "{id}");
    }
    let stored_reason = env
        .scalar_text("SELECT reject_reason FROM orders WHERE order_id = 'm-hold'")
        .await;
    assert!(stored_reason.unwrap_or_default().contains("HOLD"));
    for id in ["m-abc", "m-nine", "m-long", "m-huge"] {
        assert_eq!(
            env.count(&format!(
                "SELECT count(*) FROM orders WHERE order_id = '{id}' AND raw_message IS NOT NULL"
            ))
            .await,
            1,
            "{id} keeps its raw message"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE order_id = 'm-long' AND symbol IS NULL")
            .await,
        1,
        "a symbol that fits no column is NULL, never cut"
    );

    // Dead letters: the unnamed ones, and the named ones that fit no row.
    let letters = env.stream("DLQ_STREAM").await;
    let named: Vec<&str> = letters
        .iter()
        .filter_map(|l| l.get("dlq_order_id").map(String::as_str))
        .collect();
    for id in ["m-abc", "m-nine", "m-long", "m-huge"] {
        assert!(named.contains(&id), "{id} missing from the DLQ");
    }
    let unnamed = letters
        .iter()
        .filter(|l| l["dlq_order_id"].is_empty())
        .count();
    assert_eq!(
        unnamed, 6,
        "not JSON, {{}}, an array, a repeated key, raw bytes and a flat entry without ids: {letters:?}"
    );
    assert!(
        letters
            .iter()
            .any(|l| l.get("payload").map(String::as_str) == Some("this is not json"))
    );
    assert!(
        letters
            .iter()
            .any(|l| l["dlq_reason"].contains("not valid JSON"))
    );
    assert!(
        letters
            .iter()
            .any(|l| l["dlq_reason"] == r#"duplicate key "order_id""#)
    );
    let long = letters
        .iter()
        .find(|l| l["dlq_order_id"] == "m-long")
        .expect("m-long letter");
    assert!(
        long["payload"].len() > 10_000,
        "the raw message was truncated"
    );

    let stats = &app.stats;
    assert_eq!(stats.received.get(), 16);
    assert_eq!(stats.dead_lettered.get(), 10);
    assert_eq!(stats.ignored.get(), 1);
    assert_eq!(stats.rejected.get(), 8);
    assert_eq!(stats.filled.get(), 1);

    app.stop().await;
}

#[tokio::test]
async fn an_id_too_long_for_a_row_is_answered_and_its_letter_says_it_is_the_only_record() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[]).await;
    let id = "L".repeat(300);
    env.publish(&[order_json(&id, "1", "10")]).await;
    env.wait_until("the letter is written", || async {
        env.stream_len("DLQ_STREAM").await == 1
    })
    .await;
    let letters = env.stream("DLQ_STREAM").await;
    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["order_id"], id);
    assert_eq!(results[0]["status"], "REJECTED");
    assert!(
        results[0]["error_message"].contains("order_id"),
        "{:?}",
        results[0]["error_message"]
    );
    assert_eq!(letters[0]["dlq_order_id"], id);
    assert!(
        letters[0]["dlq_reason"].contains("this letter is the only record"),
        "{:?}",
        letters[0]["dlq_reason"]
    );
    assert_eq!(env.count("SELECT count(*) FROM orders").await, 0);
    app.stop().await;
}
