//! The orders stream is never trimmed past an entry its group has not
//! acknowledged: a backlog far beyond `STREAM_MAXLEN` is worked off whole,
//! and only then trimmed.

use std::collections::HashSet;

use futures_util::StreamExt;
use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::helpers::{DEADLINE, TestEnv, order_json};

async fn status_backlog(url: &str) -> Option<u64> {
    let status: serde_json::Value = reqwest::get(format!("{url}/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    status["stream"]["backlog"].as_u64()
}

#[tokio::test]
async fn a_stalled_group_loses_nothing_to_trimming_and_works_off_its_backlog() {
    let env = TestEnv::new().await;
    let settings = [
        ("STREAM_MAXLEN", "1000"),
        ("STREAM_TRIM_INTERVAL_MS", "100"),
        ("POSTGRES_LOCK_TIMEOUT_MS", "200"),
    ];
    // Consumers stalled: every batch waits on a lock held here.
    let holder = env.db.begin().await.expect("BEGIN");
    holder
        .execute_unprepared("LOCK TABLE orders IN EXCLUSIVE MODE")
        .await
        .expect("lock the orders table");
    let app = env.spawn("replica-a", &settings).await;
    let mut results = Box::pin(env.subscribe_results().await);

    let orders: Vec<String> = (0..10_000)
        .map(|i| order_json(&format!("backlog-{i}"), "1", "10"))
        .collect();
    for chunk in orders.chunks(1000) {
        env.publish(chunk).await;
    }
    env.wait_until("every order is in the stream", || async {
        env.stream_len("ORDERS_STREAM").await == 10_000
    })
    .await;
    env.wait_until("the backlog shows in /status", || async {
        status_backlog(&app.url).await == Some(10_000)
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", app.url))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|line| line == "execution_stream_backlog 10000"),
        "{metrics}"
    );
    // The trimmer has run many times meanwhile; nothing went.
    assert_eq!(env.stream_len("ORDERS_STREAM").await, 10_000);
    assert!(
        env.results().await.is_empty(),
        "nothing is done while stalled"
    );

    holder.rollback().await.expect("ROLLBACK");
    let mut answered = HashSet::new();
    let collect = async {
        while answered.len() < 10_000 {
            let result = results.next().await.expect("the results channel ended");
            assert_eq!(result.status.as_str(), "FILLED", "{result:?}");
            answered.insert(result.order_id);
        }
    };
    tokio::time::timeout(DEADLINE * 2, collect)
        .await
        .expect("not every order got a result in time");
    assert_eq!(env.count("SELECT count(*) FROM orders").await, 10_000);
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 10_000);
    assert_eq!(env.stream_len("DLQ_STREAM").await, 0);

    // Acknowledged, the backlog is trimmed away.
    env.wait_until("the acknowledged entries are trimmed", || async {
        env.stream_len("ORDERS_STREAM").await <= 1000
    })
    .await;
    env.wait_until("the backlog is gone", || async {
        status_backlog(&app.url).await == Some(0)
    })
    .await;

    app.stop().await;
}
