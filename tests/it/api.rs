//! The HTTP API over real HTTP against a spawned instance on port 0.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestEnv, order_json};
use crate::proxy::Proxy;

async fn get(url: &str) -> (StatusCode, Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status();
    let body = response.json::<Value>().await.expect("a JSON body");
    (status, body)
}

async fn get_text(url: &str) -> (StatusCode, String) {
    let response = reqwest::get(url).await.expect("request");
    (response.status(), response.text().await.expect("a body"))
}

#[tokio::test]
async fn health_ready_and_status_describe_a_working_instance() {
    let env = TestEnv::new().await;
    let app = env.spawn("api-a", &[("SHIM_ENABLED", "false")]).await;

    let (status, health) = get(&format!("{}/health", app.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["service"], "execution");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    env.wait_until("the instance is ready", || async {
        reqwest::get(format!("{}/ready", app.url))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;

    for i in 0..3 {
        env.xadd_payload(&order_json(&format!("st-{i}"), "1", "10"))
            .await;
    }
    env.xadd_payload(r#"{"order_id":"st-bad","symbol":"X","side":"HOLD","quantity":1}"#)
        .await;
    env.wait_for_results(4).await;

    let (code, status) = get(&format!("{}/status", app.url)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status["service"], "execution");
    assert_eq!(status["mode"], "paper");
    assert_eq!(status["dry_run"], true);
    assert_eq!(status["redis_connected"], true);
    assert_eq!(status["database_connected"], true);
    assert_eq!(status["statistics"]["orders_received"], 4);
    assert_eq!(status["statistics"]["orders_filled"], 3);
    assert_eq!(status["statistics"]["orders_rejected"], 1);
    assert_eq!(status["database_stats"]["total_orders"], 4);
    assert_eq!(status["database_stats"]["filled_orders"], 3);
    assert_eq!(status["database_stats"]["rejected_orders"], 1);
    assert_eq!(status["consumer"]["name"], "api-a");
    assert_eq!(status["consumer"]["group"], env.var("CONSUMER_GROUP"));
    assert_eq!(status["stream"]["length"], 4);
    assert_eq!(status["stream"]["pending"], 0);
    assert_eq!(status["stream"]["lag"], 0);
    assert!(status["uptime_seconds"].is_i64());
    assert!(
        status["start_time"]
            .as_str()
            .is_some_and(|t| t.contains('T'))
    );

    app.stop().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_move_with_orders() {
    let env = TestEnv::new().await;
    let app = env.spawn("metrics", &[("SHIM_ENABLED", "false")]).await;
    let value = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split(' ').nth(1)?.parse().ok())
    };

    let (code, before) = get_text(&format!("{}/metrics", app.url)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(value(&before, "execution_orders_received_total"), Some(0.0));

    for i in 0..5 {
        env.xadd_payload(&order_json(&format!("m-{i}"), "1", "10"))
            .await;
    }
    env.xadd_payload("not json").await;
    env.wait_for_results(5).await;
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;

    let (_, after) = get_text(&format!("{}/metrics", app.url)).await;
    assert_eq!(value(&after, "execution_orders_received_total"), Some(6.0));
    assert_eq!(value(&after, "execution_orders_filled_total"), Some(5.0));
    assert_eq!(value(&after, "execution_orders_rejected_total"), Some(0.0));
    assert_eq!(
        value(&after, "execution_orders_dead_lettered_total"),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "execution_orders_redeliveries_total"),
        Some(0.0)
    );
    assert_eq!(value(&after, "execution_stream_length"), Some(6.0));
    assert_eq!(value(&after, "execution_dlq_length"), Some(1.0));
    assert_eq!(value(&after, "execution_stream_pending"), Some(0.0));
    assert_eq!(value(&after, "execution_consumer_lag"), Some(0.0));
    assert!(value(&after, "execution_uptime_seconds").is_some());
    assert!(value(&after, "execution_batch_size_count").is_some_and(|n| n >= 1.0));
    assert!(after.contains("execution_stage_seconds_bucket{stage=\"upsert\""));
    assert!(after.contains("# TYPE execution_stage_seconds histogram"));

    app.stop().await;
}

#[tokio::test]
async fn orders_are_listed_newest_first_filtered_and_paged() {
    let env = TestEnv::new().await;
    let app = env
        .spawn(
            "orders",
            // One batch at a time, so rows are recorded in the order sent.
            &[
                ("SHIM_ENABLED", "false"),
                ("BATCH_SIZE", "1"),
                ("WORKER_CONCURRENCY", "1"),
            ],
        )
        .await;
    for i in 0..25 {
        env.xadd_payload(&order_json(&format!("list-{i:02}"), "0.001", "50000"))
            .await;
    }
    env.xadd_payload(
        r#"{"order_id":"list-eth","symbol":"ETHUSDT","side":"SELL","quantity":"2","price":"3000"}"#,
    )
    .await;
    env.xadd_payload(r#"{"order_id":"list-bad","symbol":"BTCUSDT","side":"HOLD","quantity":1}"#)
        .await;
    env.wait_for_results(27).await;

    let (code, page) = get(&format!("{}/orders", app.url)).await;
    assert_eq!(code, StatusCode::OK);
    let orders = page["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 20, "the default page holds 20");
    assert_eq!(orders[0]["order_id"], "list-bad", "newest first");
    assert_eq!(orders[1]["order_id"], "list-eth");
    assert_eq!(orders[2]["quantity"], "0.00100000");
    assert_eq!(orders[2]["fill_price"], "50000.00000000");

    // The next page continues where the first stopped.
    let next = page["next_before"].as_i64().expect("a cursor");
    let (_, rest) = get(&format!("{}/orders?before={next}&limit=500", app.url)).await;
    assert_eq!(rest["orders"].as_array().expect("orders").len(), 7);
    assert!(rest["next_before"].is_null());

    let (_, filled) = get(&format!("{}/orders?status=REJECTED", app.url)).await;
    let ids: Vec<&str> = filled["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["list-bad"]);
    let (_, eth) = get(&format!("{}/orders?symbol=ethusdt&limit=5", app.url)).await;
    assert_eq!(eth["orders"][0]["order_id"], "list-eth");
    assert_eq!(eth["orders"].as_array().unwrap().len(), 1);

    let (code, detail) = get(&format!("{}/orders/list-eth", app.url)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(detail["order"]["status"], "FILLED");
    assert_eq!(detail["order"]["quantity"], "2.00000000");
    assert_eq!(detail["trades"][0]["price"], "3000.00000000");
    assert_eq!(detail["trades"][0]["fee"], "6.00000000");

    let (code, missing) = get(&format!("{}/orders/nope", app.url)).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"], "not_found");

    app.stop().await;
}

#[tokio::test]
async fn hostile_requests_get_clear_client_errors() {
    let env = TestEnv::new().await;
    let app = env.spawn("hostile", &[("SHIM_ENABLED", "false")]).await;
    let long = "x".repeat(300);
    let huge = "9".repeat(40);
    for query in [
        "limit=0".to_owned(),
        "limit=501".to_owned(),
        "limit=abc".to_owned(),
        format!("limit={huge}"),
        "limit=-5".to_owned(),
        "status=HALF_FILLED".to_owned(),
        "before=0".to_owned(),
        "before=abc".to_owned(),
        format!("symbol={long}"),
    ] {
        let (code, body) = get(&format!("{}/orders?{query}", app.url)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["error"], "bad_request", "{query}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{query}"
        );
    }
    let (code, body) = get(&format!("{}/orders/{long}", app.url)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "bad_request");

    let (code, body) = get(&format!("{}/no/such/path", app.url)).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");

    let client = reqwest::Client::new();
    for method in [
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
    ] {
        let response = client
            .request(method.clone(), format!("{}/health", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
    }
    // Odd bytes in the path: a client error or a not-found, never a 500.
    let response = reqwest::get(format!("{}/orders/%00%ff%fe", app.url))
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());

    app.stop().await;
}

#[tokio::test]
async fn every_null_in_a_response_is_declared_nullable() {
    let env = TestEnv::new().await;
    let app = env.spawn("nullable", &[("SHIM_ENABLED", "false")]).await;
    // Rejected without price, ids or fill: most optional columns stay empty.
    env.xadd_payload(r#"{"order_id":"null-1","symbol":"BTCUSDT","side":"HOLD","quantity":1}"#)
        .await;
    env.wait_for_results(1).await;
    let (_, document) = get(&format!("{}/openapi.json", app.url)).await;
    let schemas = &document["components"]["schemas"];

    let (code, page) = get(&format!("{}/orders", app.url)).await;
    assert_eq!(code, StatusCode::OK);
    let (code, detail) = get(&format!("{}/orders/null-1", app.url)).await;
    assert_eq!(code, StatusCode::OK);
    let mut checked = Vec::new();
    for (schema, object) in [
        ("OrderPage", &page),
        ("OrderView", &page["orders"][0]),
        ("OrderView", &detail["order"]),
    ] {
        let object = object.as_object().expect("an object");
        for (name, _) in object.iter().filter(|(_, value)| value.is_null()) {
            let property = &schemas[schema]["properties"][name];
            assert_eq!(
                property["nullable"], true,
                "{schema}.{name} comes back null but is not declared nullable: {property}"
            );
            checked.push(format!("{schema}.{name}"));
        }
    }
    for name in [
        "OrderPage.next_before",
        "OrderView.price",
        "OrderView.bot_id",
    ] {
        assert!(checked.iter().any(|c| c == name), "{name} was not null");
    }
    // Null when Postgres or Redis does not answer (see the lost-Postgres tests).
    for name in ["database_stats", "stream"] {
        assert_eq!(
            schemas["Status"]["properties"][name]["nullable"], true,
            "{name}"
        );
    }
    assert_eq!(
        schemas["TradeView"]["properties"]["exchange_order_id"]["nullable"],
        true
    );

    app.stop().await;
}

#[tokio::test]
async fn a_method_other_than_get_is_405_with_allow_on_every_path() {
    let env = TestEnv::new().await;
    let app = env.spawn("allow", &[("SHIM_ENABLED", "false")]).await;
    let client = reqwest::Client::new();
    for path in [
        "/health",
        "/ready",
        "/status",
        "/metrics",
        "/orders",
        "/orders/some-order",
        "/docs",
        "/docs/",
        "/openapi.json",
    ] {
        for method in ["POST", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS"] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = client
                .request(method.clone(), format!("{}{path}", app.url))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(
                response
                    .headers()
                    .get("allow")
                    .and_then(|v| v.to_str().ok()),
                Some("GET, HEAD"),
                "{method} {path}"
            );
            let body: Value = response.json().await.expect("a JSON body");
            assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
        }
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let response = client
                .request(method.clone(), format!("{}{path}", app.url))
                .send()
                .await
                .unwrap();
            assert!(
                response.status() != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
    }

    app.stop().await;
}

#[tokio::test]
async fn a_nul_in_an_order_id_or_symbol_finds_nothing_instead_of_failing() {
    let env = TestEnv::new().await;
    let app = env.spawn("nul", &[("SHIM_ENABLED", "false")]).await;
    env.wait_until("the instance is ready", || async {
        reqwest::get(format!("{}/ready", app.url))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;

    for id in ["%00", "a%00b", "%00%01"] {
        let (code, body) = get(&format!("{}/orders/{id}", app.url)).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{id}: {body}");
        assert_eq!(body["error"], "not_found", "{id}");
    }
    let (code, page) = get(&format!("{}/orders?symbol=BTC%00USDT", app.url)).await;
    assert_eq!(code, StatusCode::OK, "{page}");
    assert_eq!(page["orders"], serde_json::json!([]));
    // Other control characters can be stored (a rejected order keeps its
    // id as sent), so they are looked up like any id.
    let (code, body) = get(&format!("{}/orders/a%01b", app.url)).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");

    app.stop().await;
}

#[tokio::test]
async fn a_path_that_does_not_decode_gets_the_json_error() {
    let env = TestEnv::new().await;
    let app = env.spawn("undecodable", &[("SHIM_ENABLED", "false")]).await;
    for path in [
        "/orders/%ff",
        "/orders/%00%ff%fe",
        "/orders/a%c3",
        "/no/such/%ff",
    ] {
        let response = reqwest::get(format!("{}{path}", app.url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}"
        );
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["error"], "bad_request", "{path}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("UTF-8")),
            "{path}: {body}"
        );
    }

    app.stop().await;
}

#[tokio::test]
async fn a_lost_postgres_shows_in_ready_and_status_but_not_in_health() {
    lost_postgres(Proxy::cut).await;
}

#[tokio::test]
async fn a_hung_postgres_never_hangs_the_api() {
    lost_postgres(Proxy::stall).await;
}

/// Loses Postgres with `fault` while an instance runs, checks the API, then
/// restores it.
async fn lost_postgres(fault: fn(&Proxy)) {
    let env = TestEnv::new().await;
    let proxy = Proxy::start(crate::helpers::postgres_addr()).await;
    let through_proxy = env
        .var("DATABASE_URL")
        .replace(crate::helpers::postgres_addr(), &proxy.addr.to_string());
    let app = env
        .spawn(
            "pg-lost",
            &[("SHIM_ENABLED", "false"), ("DATABASE_URL", &through_proxy)],
        )
        .await;
    env.wait_until("the instance is ready", || async {
        reqwest::get(format!("{}/ready", app.url))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;

    fault(&proxy);
    let (code, _) = get(&format!("{}/health", app.url)).await;
    assert_eq!(code, StatusCode::OK);
    let started = Instant::now();
    let (code, ready) = get(&format!("{}/ready", app.url)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ready took {:?}",
        started.elapsed()
    );
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["failing"], serde_json::json!(["postgres"]));
    let started = Instant::now();
    let (code, status) = get(&format!("{}/status", app.url)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "status took {:?}",
        started.elapsed()
    );
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status["database_connected"], false);
    assert!(status["database_stats"].is_null());
    assert_eq!(status["redis_connected"], true);
    let (code, body) = get(&format!("{}/orders", app.url)).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "unavailable");

    proxy.restore();
    env.wait_until("the instance is ready again", || async {
        reqwest::get(format!("{}/ready", app.url))
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;

    app.stop().await;
}

#[tokio::test]
async fn the_committed_openapi_document_matches_the_code_and_is_valid_openapi_3() {
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed =
        std::fs::read_to_string(committed_path).expect("openapi/openapi.json is committed");
    let generated = execution_service::http::spec()
        .await
        .expect("generate the document");
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is out of date; regenerate it with:\n    cargo run -- openapi > openapi/openapi.json"
    );

    let env = TestEnv::new().await;
    let app = env.spawn("spec", &[("SHIM_ENABLED", "false")]).await;
    let (code, served) = get_text(&format!("{}/openapi.json", app.url)).await;
    assert_eq!(code, StatusCode::OK);
    let document: openapiv3::OpenAPI =
        serde_json::from_str(&served).expect("the served document is OpenAPI 3");
    assert!(document.openapi.starts_with("3."));
    for path in [
        "/health",
        "/ready",
        "/status",
        "/metrics",
        "/orders",
        "/orders/{order_id}",
    ] {
        let item = document
            .paths
            .paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        let get = item
            .as_item()
            .and_then(|item| item.get.as_ref())
            .expect("a GET operation");
        assert!(
            get.description.is_some() && get.summary.is_some(),
            "{path} lacks a description"
        );
    }
    // A 405's `Allow` names exactly the documented operations of its path.
    let expected = |path: &str| match path {
        "/halts" => vec!["get", "post"],
        "/halts/resume-all" => vec!["post"],
        "/halts/{id}" => vec!["delete"],
        _ => vec!["get"],
    };
    for (path, item) in document.paths.iter() {
        let item = item.as_item().expect("an inline path item");
        let operations = [
            ("get", &item.get),
            ("put", &item.put),
            ("post", &item.post),
            ("delete", &item.delete),
            ("options", &item.options),
            ("head", &item.head),
            ("patch", &item.patch),
            ("trace", &item.trace),
        ];
        let documented: Vec<&str> = operations
            .iter()
            .filter(|(_, op)| op.is_some())
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(
            documented,
            expected(path),
            "{path}: update the Allow header of its 405s"
        );
    }
    let schemas = &document.components.as_ref().expect("components").schemas;
    for name in ["OrderView", "Status", "ApiError", "Health"] {
        let schema = schemas.get(name).and_then(|s| s.as_item()).expect(name);
        assert!(
            schema.schema_data.example.is_some(),
            "{name} has no example"
        );
    }

    let (code, docs) = get_text(&format!("{}/docs", app.url)).await;
    assert_eq!(code, StatusCode::OK);
    assert!(docs.to_lowercase().contains("swagger"));

    app.stop().await;
}

#[tokio::test]
async fn start_up_waits_for_an_unreachable_postgres() {
    let env = TestEnv::new().await;
    let proxy = Proxy::start(crate::helpers::postgres_addr()).await;
    proxy.cut();
    let through_proxy = env
        .var("DATABASE_URL")
        .replace(crate::helpers::postgres_addr(), &proxy.addr.to_string());
    let settings = env.settings(&[("DATABASE_URL", &through_proxy), ("CONSUMER_NAME", "late")]);
    let mut build = tokio::spawn(execution_service::app::Application::build(settings));

    // Still retrying well after a failed connection would have surfaced.
    let waited = tokio::time::timeout(Duration::from_millis(1_500), &mut build).await;
    assert!(
        waited.is_err(),
        "start-up gave up instead of waiting for Postgres"
    );

    proxy.restore();
    let app = tokio::time::timeout(Duration::from_secs(30), build)
        .await
        .expect("start-up did not proceed once Postgres was back")
        .expect("build task")
        .expect("build");
    assert_eq!(app.settings().streams.topology.consumer, "late");
}
