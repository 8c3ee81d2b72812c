//! One identity rule for every id: orders and halts are held to the same
//! function, so no spelling of an id slips past a halt or executes twice;
//! a lift names the halt it lifts, and a retried one changes nothing.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestEnv, order_json};

const TOKEN: &str = "identity-admin-token-0123456789";

fn order_of(id: &str, field: &str, value: &str) -> String {
    let mut order =
        json!({"order_id": id, "symbol": "BTCUSDT", "side": "BUY", "quantity": "1", "price": "10"});
    order[field] = json!(value);
    order.to_string()
}

/// How many halts `/status` says are in force on this replica.
async fn halts_in_force(app: &crate::helpers::Running) -> usize {
    let status: Value = reqwest::get(format!("{}/status", app.url))
        .await
        .expect("GET /status")
        .json()
        .await
        .expect("JSON");
    status["halts"].as_array().map_or(0, Vec::len)
}

async fn post_halt(url: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/halts"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("POST /halts");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn delete_halt(url: &str, id: i64) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .delete(format!("{url}/halts/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("DELETE /halts/{id}");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn padded_and_invisible_ids_are_refused_on_orders_never_trimmed() {
    let env = TestEnv::new().await;
    let app = env.spawn("identity-a", &[("SHIM_ENABLED", "false")]).await;
    let cases = [
        ("pad-1", "strategy_id", "S7 ", "U+0020"),
        ("pad-2", "strategy_id", " S2", "U+0020"),
        ("pad-3", "bot_id", "B1\u{a0}", "U+00A0"),
        ("pad-4", "bot_id", "B\u{200b}1", "U+200B"),
        ("pad-5", "client_id", "\u{feff}c1", "U+FEFF"),
        ("pad-6", "strategy_id", "cafe\u{301}", "NFC"),
        ("pad-7", "symbol", "BTCUSD\u{422}", "U+0422"),
    ];
    for (id, field, value, _) in cases {
        env.xadd_payload(&order_of(id, field, value)).await;
    }
    let results = env.wait_for_results(cases.len()).await;
    let by_id: HashMap<&str, &HashMap<String, String>> = results
        .iter()
        .map(|r| (r["order_id"].as_str(), r))
        .collect();
    for (id, field, _, named) in cases {
        let result = by_id[id];
        assert_eq!(result["status"], "REJECTED", "{id}");
        assert!(
            result["error_message"].contains(field) || field == "symbol",
            "{id}: {result:?}"
        );
        assert!(result["error_message"].contains(named), "{id}: {result:?}");
    }
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_near_duplicate_order_id_is_refused_not_executed_again() {
    let env = TestEnv::new().await;
    let app = env.spawn("identity-b", &[("SHIM_ENABLED", "false")]).await;
    env.xadd_payload(&order_json("dup-id", "1", "10")).await;
    env.wait_for_results(1).await;
    for spelling in [
        "dup-id ",
        " dup-id",
        "dup-id\u{a0}",
        "dup\u{200b}-id",
        "dup-id\u{feff}",
    ] {
        env.xadd_payload(&order_json(spelling, "1", "10")).await;
    }
    let results = env.wait_for_results(6).await;
    let filled: Vec<&String> = results
        .iter()
        .filter(|r| r["status"] == "FILLED")
        .map(|r| &r["order_id"])
        .collect();
    assert_eq!(filled, ["dup-id"], "{results:?}");
    for result in &results[1..] {
        assert_eq!(result["status"], "REJECTED");
        assert!(
            result["error_message"].starts_with("order_id"),
            "{result:?}"
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn halts_meet_the_same_rule_on_the_stream_and_the_api() {
    let env = TestEnv::new().await;
    let app = env
        .spawn(
            "identity-c",
            &[("SHIM_ENABLED", "false"), ("ADMIN_TOKEN", TOKEN)],
        )
        .await;
    let refused = [
        json!({"scope": "strategy", "strategy_id": "S7 ", "reason": "x"}),
        json!({"scope": "strategy", "strategy_id": "  S2\u{a0} ", "reason": "x"}),
        json!({"scope": "bot", "bot_id": "b\u{200b}1", "reason": "x"}),
        json!({"scope": "symbol", "symbol": "BTCUSD\u{422}", "reason": "x"}),
        json!({"scope": "symbol", "symbol": "\u{412}\u{422}\u{421}USDT", "reason": "x"}),
        // One parser for both: `all` names no id on the API either.
        json!({"scope": "all", "strategy_id": "S1", "reason": "x"}),
    ];
    for body in &refused {
        let (status, answer) = post_halt(&app.url, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let mut fields: Vec<(String, String)> = vec![("action".into(), "halt".into())];
        for (name, value) in body.as_object().unwrap() {
            fields.push((name.clone(), value.as_str().unwrap().to_owned()));
        }
        let borrowed: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.kill_switch(&borrowed).await;
    }
    env.wait_until("every refused entry is dead-lettered", || async {
        env.stream_len("DLQ_STREAM").await == refused.len()
    })
    .await;
    let halts = env.count("SELECT count(*) FROM halts").await;
    assert_eq!(halts, 0, "a halt was stored from a refused id");
    // Nothing halted: the orders the look-alikes would have named fill.
    env.xadd_payload(&order_json("after-refusals", "1", "10"))
        .await;
    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "FILLED");
    app.stop().await;
}

#[tokio::test]
async fn a_lift_names_its_halt_and_a_retried_lift_changes_nothing() {
    let env = TestEnv::new().await;
    let app = env
        .spawn(
            "identity-d",
            &[("SHIM_ENABLED", "false"), ("ADMIN_TOKEN", TOKEN)],
        )
        .await;
    let halt = json!({"scope": "strategy", "strategy_id": "S5", "reason": "first"});
    let (status, first) = post_halt(&app.url, halt).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let first_id = first["halts"][0].as_i64().unwrap();
    // A second halt of the same strategy, from the Risk Manager's stream.
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "strategy"),
        ("strategy_id", "S5"),
        ("reason", "second"),
        ("source", "risk-manager"),
    ])
    .await;
    env.wait_until("both halts are stored", || async {
        env.count("SELECT count(*) FROM halts WHERE lifted_at IS NULL")
            .await
            == 2
    })
    .await;
    // Lifting the first by its id leaves the second in force.
    let (status, lifted) = delete_halt(&app.url, first_id).await;
    assert_eq!(status, StatusCode::OK, "{lifted}");
    assert_eq!(lifted["halts"], json!([first_id]));
    // The request retried: the same answer, nothing else lifted.
    let (status, again) = delete_halt(&app.url, first_id).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, lifted);
    assert_eq!(
        env.count("SELECT count(*) FROM halts WHERE lifted_at IS NULL AND reason = 'second'")
            .await,
        1,
        "a retried lift lifted a newer halt"
    );
    env.xadd_payload(&order_of("still-halted", "strategy_id", "S5"))
        .await;
    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "REJECTED");
    assert!(
        results[0]["error_message"].contains("second"),
        "{:?}",
        results[0]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_token_in_a_query_string_stays_out_of_the_access_log() {
    let env = TestEnv::new().await;
    let port = crate::helpers::free_port();
    let mut serve = crate::helpers::service_command(env.vars())
        .env("HTTP_PORT", port.to_string())
        .env("LOG_LEVEL", "info")
        .env("SHIM_ENABLED", "false")
        .env("ADMIN_TOKEN", TOKEN)
        .arg("serve")
        .spawn()
        .expect("start serve");
    let url = format!("http://127.0.0.1:{port}");
    env.wait_until("serve answers", || async {
        reqwest::get(format!("{url}/health"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let refused = reqwest::Client::new()
        .post(format!("{url}/halts?access_token=query-secret-1234"))
        .json(&json!({"scope": "all", "reason": "x"}))
        .send()
        .await
        .expect("POST /halts");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let listed = reqwest::get(format!("{url}/orders?symbol=query-secret-5678"))
        .await
        .expect("GET /orders");
    assert!(listed.status().is_success());
    serve.start_kill().expect("stop serve");
    let output = serve.wait_with_output().await.expect("serve's output");
    let logged = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(logged.contains("/halts"), "requests are logged:\n{logged}");
    assert!(
        !logged.contains("query-secret"),
        "a query string reached the log:\n{logged}"
    );
}

#[tokio::test]
async fn a_recreated_kill_switch_stream_is_read_again_and_its_halts_applied() {
    let env = TestEnv::new().await;
    let app = env.spawn("identity-e", &[("SHIM_ENABLED", "false")]).await;
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "bot"),
        ("bot_id", "B1"),
        ("reason", "before"),
    ])
    .await;
    env.wait_until("the first halt is applied", || async {
        env.count("SELECT count(*) FROM halts").await == 1
    })
    .await;
    // The stream is deleted and recreated with ids below the last applied
    // one, as after a Redis restart with its clock behind; the first new
    // entry even reuses an id the old stream never reached, the second
    // the very id of the applied entry, with other content.
    let applied_id = env
        .scalar_text("SELECT entry_id FROM halt_entries")
        .await
        .unwrap();
    let mut redis = env.redis.clone();
    let stream = env.var("SHUTDOWN_STREAM");
    let () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("1-1")
        .arg(&[
            "action", "halt", "scope", "bot", "bot_id", "B9", "reason", "after",
        ])
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg(&applied_id)
        .arg(&[
            "action", "halt", "scope", "bot", "bot_id", "B8", "reason", "same id",
        ])
        .query_async(&mut redis)
        .await
        .unwrap();
    // And one above it, which a read after the old position does return:
    // the entries below it must not be skipped for it.
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg(&[
            "action", "halt", "scope", "bot", "bot_id", "B7", "reason", "above",
        ])
        .query_async(&mut redis)
        .await
        .unwrap();
    env.wait_until("every entry of the new stream is in force here", || async {
        halts_in_force(&app).await == 4
    })
    .await;
    for bot in ["B9", "B8", "B7"] {
        env.xadd_payload(&order_of(&format!("order-{bot}"), "bot_id", bot))
            .await;
    }
    let results = env.wait_for_results(3).await;
    for result in &results {
        assert_eq!(result["status"], "REJECTED", "{result:?}");
        assert!(result["error_message"].starts_with("halted:"), "{result:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn while_halts_cannot_be_read_the_replica_is_not_ready_and_executes_nothing() {
    let env = TestEnv::new().await;
    let app = env.spawn("identity-f", &[("SHIM_ENABLED", "false")]).await;
    env.wait_until("ready", || async {
        reqwest::get(format!("{}/ready", app.url))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    // The kill-switch key replaced by a string: every read of it fails.
    env.spoil_key("SHUTDOWN_STREAM", true).await;
    env.wait_until("ready names the kill switch", || async {
        let response = reqwest::get(format!("{}/ready", app.url)).await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        status == StatusCode::SERVICE_UNAVAILABLE
            && body["failing"]
                .as_array()
                .unwrap()
                .contains(&json!("kill_switch"))
    })
    .await;
    let failures = app.stats.batch_failures.get();
    env.xadd_payload(&order_json("while-blind", "1", "10"))
        .await;
    app.wait_for_stat("a batch held back", |stats| {
        stats.batch_failures.get() > failures
    })
    .await;
    assert!(
        env.results().await.is_empty(),
        "an order executed while halts were unknown"
    );
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 0);
    // Readable again: the order goes through.
    env.spoil_key("SHUTDOWN_STREAM", false).await;
    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "FILLED");
    app.stop().await;
}

#[tokio::test]
async fn a_halt_on_a_short_market_halts_that_market_only() {
    let env = TestEnv::new().await;
    let app = env.spawn("identity-g", &[("SHIM_ENABLED", "false")]).await;
    // Stored as `ABCD`, shorter than a bare symbol may be as sent.
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "symbol"),
        ("symbol", "AB/CD"),
        ("reason", "short market"),
    ])
    .await;
    env.wait_until("the halt is in force here", || async {
        halts_in_force(&app).await == 1
    })
    .await;
    env.xadd_payload(&order_of("on-ab-cd", "symbol", "ab-cd"))
        .await;
    env.xadd_payload(&order_of("on-btc", "symbol", "BTCUSDT"))
        .await;
    let results = env.wait_for_results(2).await;
    let status = |id: &str| {
        results
            .iter()
            .find(|r| r["order_id"] == id)
            .map(|r| r["status"].clone())
    };
    assert_eq!(status("on-ab-cd").as_deref(), Some("REJECTED"));
    assert_eq!(status("on-btc").as_deref(), Some("FILLED"), "{results:?}");
    app.stop().await;
}
