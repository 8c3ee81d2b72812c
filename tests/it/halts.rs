//! The kill switch in one process: halts from the stream and the admin
//! API stop the orders they cover and spare the rest, resumes restore
//! them, malformed entries change nothing, and the write endpoints keep
//! to their token rules.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Running, TestEnv};

const TOKEN: &str = "test-admin-token-0123456789";

/// An order of a strategy, as JSON.
fn strategy_order(id: &str, strategy: &str) -> String {
    json!({"order_id": id, "symbol": "BTCUSDT", "side": "BUY", "quantity": "1", "price": "10", "strategy_id": strategy})
        .to_string()
}

/// The halts `/status` of an instance lists.
async fn active(app: &Running) -> Vec<Value> {
    let status: Value = reqwest::get(format!("{}/status", app.url))
        .await
        .expect("GET /status")
        .json()
        .await
        .expect("JSON");
    status["halts"].as_array().cloned().unwrap_or_default()
}

async fn wait_for_halts(env: &TestEnv, app: &Running, count: usize) {
    env.wait_until(&format!("{count} halts in force"), || async {
        active(app).await.len() == count
    })
    .await;
}

/// The latest result of each order.
async fn outcomes(env: &TestEnv) -> HashMap<String, HashMap<String, String>> {
    env.results()
        .await
        .into_iter()
        .map(|r| (r["order_id"].clone(), r))
        .collect()
}

#[tokio::test]
async fn a_halt_on_the_stream_stops_its_scope_only_until_resumed() {
    let env = TestEnv::new().await;
    let app = env.spawn("halted", &[("SHIM_ENABLED", "false")]).await;
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "strategy"),
        ("strategy_id", "S1"),
        ("reason", "drawdown limit"),
        ("source", "risk-manager"),
    ])
    .await;
    wait_for_halts(&env, &app, 1).await;

    env.xadd_payload(&strategy_order("h-s1", "S1")).await;
    env.xadd_payload(&strategy_order("h-s2", "S2")).await;
    env.wait_for_results(2).await;
    let results = outcomes(&env).await;
    assert_eq!(results["h-s1"]["status"], "REJECTED");
    assert_eq!(
        results["h-s1"]["error_message"],
        "halted: strategy S1 drawdown limit"
    );
    assert_eq!(results["h-s2"]["status"], "FILLED");
    assert_eq!(
        env.scalar_text("SELECT reject_reason FROM orders WHERE order_id = 'h-s1'")
            .await
            .as_deref(),
        Some("halted: strategy S1 drawdown limit"),
        "the row records the halt"
    );
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 1);
    assert_eq!(app.stats.halted.get(), 1);
    assert_eq!(app.stats.halts_active.get(), 1);

    env.kill_switch(&[
        ("action", "resume"),
        ("scope", "strategy"),
        ("strategy_id", "S1"),
        ("source", "risk-manager"),
    ])
    .await;
    wait_for_halts(&env, &app, 0).await;
    env.xadd_payload(&strategy_order("h-s1-later", "S1")).await;
    env.wait_for_results(3).await;
    assert_eq!(outcomes(&env).await["h-s1-later"]["status"], "FILLED");
    // Lifting keeps the history.
    assert_eq!(
        env.count(
            "SELECT count(*) FROM halts WHERE lifted_at IS NOT NULL AND lifted_by = 'risk-manager'"
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_entry_halts_nothing_and_is_dead_lettered_once() {
    let env = TestEnv::new().await;
    let one = env.spawn("one", &[("SHIM_ENABLED", "false")]).await;
    let two = env.spawn("two", &[("SHIM_ENABLED", "false")]).await;
    env.kill_switch(&[("action", "pause"), ("scope", "all"), ("reason", "x")])
        .await;
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "strategy"),
        ("reason", "no id"),
    ])
    .await;
    let mut conn = env.redis.clone();
    let _: String = redis::cmd("XADD")
        .arg(env.var("SHUTDOWN_STREAM"))
        .arg("*")
        .arg(&b"action"[..])
        .arg(&b"\xff\xfe"[..])
        .query_async(&mut conn)
        .await
        .expect("XADD bytes");

    env.wait_until("three dead letters", || async {
        env.stream_len("DLQ_STREAM").await == 3
    })
    .await;
    let letters = env.stream_raw("DLQ_STREAM").await;
    for letter in &letters {
        assert_eq!(
            letter["dlq_source_stream"],
            env.var("SHUTDOWN_STREAM").into_bytes()
        );
        assert!(
            String::from_utf8_lossy(&letter["dlq_reason"])
                .starts_with("kill-switch entry not understood"),
            "{letter:?}"
        );
    }
    assert_eq!(
        letters[2]["action"],
        b"\xff\xfe".to_vec(),
        "the raw bytes are kept"
    );
    assert_eq!(env.count("SELECT count(*) FROM halts").await, 0);
    assert!(active(&one).await.is_empty() && active(&two).await.is_empty());
    env.xadd_payload(&strategy_order("after-junk", "S1")).await;
    assert_eq!(env.wait_for_results(1).await[0]["status"], "FILLED");
    // Both replicas read every entry; the one that recorded it first
    // dead-lettered it, and nothing more arrives.
    assert_eq!(
        env.count("SELECT count(*) FROM halt_entries WHERE outcome = 'refused'")
            .await,
        3
    );
    assert_eq!(env.stream_len("DLQ_STREAM").await, 3);
    one.stop().await;
    two.stop().await;
}

async fn post(
    url: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST");
    let (status, headers) = (response.status(), response.headers().clone());
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn without_a_configured_token_the_write_endpoints_are_forbidden() {
    let env = TestEnv::new().await;
    let app = env.spawn("no-token", &[("SHIM_ENABLED", "false")]).await;
    let halt = json!({"scope": "all", "reason": "test"});
    for token in [None, Some(TOKEN)] {
        let (status, _, body) = post(&format!("{}/halts", app.url), token, halt.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "forbidden");
        assert!(
            body["message"].as_str().unwrap().contains("ADMIN_TOKEN"),
            "{body}"
        );
    }
    let (status, _, _) = post(&format!("{}/halts/resume-all", app.url), None, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Reading stays open.
    let list = reqwest::get(format!("{}/halts", app.url)).await.unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(env.count("SELECT count(*) FROM halts").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_admin_api_halts_and_lifts_on_every_replica_with_the_right_token() {
    let env = TestEnv::new().await;
    let settings = [("SHIM_ENABLED", "false"), ("ADMIN_TOKEN", TOKEN)];
    let one = env.spawn("one", &settings).await;
    let two = env.spawn("two", &settings).await;
    let halt = json!({"scope": "symbol", "symbol": "btc/usdt", "reason": "exchange incident", "source": "j.doe"});

    for (token, why) in [
        (None, "missing"),
        (Some("wrong-token-wrong-token"), "wrong"),
    ] {
        let (status, headers, body) =
            post(&format!("{}/halts", one.url), token, halt.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
        assert_eq!(
            headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some(r#"Bearer realm="execution-service""#),
            "{why}"
        );
        assert_eq!(body["error"], "unauthorized", "{why}");
    }
    let (status, _, body) = post(&format!("{}/halts", one.url), Some(TOKEN), halt).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["halts"][0].as_i64().expect("the halt's id");
    // In force on this replica when the call returns, on the other within
    // the same second.
    assert_eq!(active(&one).await.len(), 1);
    let started = tokio::time::Instant::now();
    wait_for_halts(&env, &two, 1).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let listed: Value = reqwest::get(format!("{}/halts", two.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["active"][0]["target"], "BTCUSDT");
    assert_eq!(listed["active"][0]["source"], "admin-api: j.doe");

    env.xadd_payload(&strategy_order("api-halted", "S9")).await;
    let results = env.wait_for_results(1).await;
    assert_eq!(
        results[0]["error_message"],
        "halted: symbol BTCUSDT exchange incident"
    );

    let lifted = reqwest::Client::new()
        .delete(format!("{}/halts/{id}", two.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), StatusCode::OK);
    wait_for_halts(&env, &one, 0).await;
    let missing = reqwest::Client::new()
        .delete(format!("{}/halts/999999", one.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Resume all lifts every scope at once.
    for body in [
        json!({"scope": "all", "reason": "a"}),
        json!({"scope": "bot", "bot_id": "b1", "reason": "b"}),
    ] {
        let (status, _, _) = post(&format!("{}/halts", one.url), Some(TOKEN), body).await;
        assert_eq!(status, StatusCode::OK);
    }
    wait_for_halts(&env, &two, 2).await;
    let (status, _, body) = post(
        &format!("{}/halts/resume-all", two.url),
        Some(TOKEN),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["halts"].as_array().map(Vec::len), Some(2));
    wait_for_halts(&env, &one, 0).await;
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn the_same_entry_read_by_three_replicas_is_recorded_once() {
    let env = TestEnv::new().await;
    let mut apps = Vec::new();
    for name in ["a", "b", "c"] {
        apps.push(env.spawn(name, &[("SHIM_ENABLED", "false")]).await);
    }
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "bot"),
        ("bot_id", "b-7"),
        ("reason", "runaway"),
    ])
    .await;
    for app in &apps {
        wait_for_halts(&env, app, 1).await;
    }
    assert_eq!(env.count("SELECT count(*) FROM halts").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM halt_entries").await, 1);
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test]
async fn a_halt_set_while_no_replica_ran_applies_before_the_first_batch() {
    let env = TestEnv::new().await;
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "all"),
        ("reason", "overnight"),
        ("source", "ops"),
    ])
    .await;
    env.xadd_payload(&strategy_order("queued-1", "S1")).await;
    let app = env.spawn("late", &[("SHIM_ENABLED", "false")]).await;
    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "REJECTED");
    assert_eq!(results[0]["error_message"], "halted: all overnight");
    app.stop().await;
}

#[tokio::test]
async fn a_stored_halt_this_version_cannot_read_halts_everything() {
    use sea_orm::ConnectionTrait;
    let env = TestEnv::new().await;
    env.db
        .execute_unprepared(
            "INSERT INTO halts (scope, target, reason, source) VALUES ('desk', 'emea', 'set by hand', 'dba')",
        )
        .await
        .expect("insert a halt");
    let app = env.spawn("strict", &[("SHIM_ENABLED", "false")]).await;
    env.xadd_payload(&strategy_order("unread-1", "S1")).await;
    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "REJECTED");
    assert!(
        results[0]["error_message"].starts_with("halted: all set by hand"),
        "{:?}",
        results[0]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_entry_with_a_nul_in_a_field_name_stops_no_later_halt() {
    let env = TestEnv::new().await;
    let app = env.spawn("nul", &[("SHIM_ENABLED", "false")]).await;
    let mut conn = env.redis.clone();
    let _: String = redis::cmd("XADD")
        .arg(env.var("SHUTDOWN_STREAM"))
        .arg("*")
        .arg(&b"\x00\xff"[..])
        .arg("x")
        .query_async(&mut conn)
        .await
        .expect("XADD");
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "bot"),
        ("bot_id", "b1"),
        ("reason", "after junk"),
    ])
    .await;
    wait_for_halts(&env, &app, 1).await;
    assert_eq!(env.stream_len("DLQ_STREAM").await, 1);
    app.stop().await;
}
