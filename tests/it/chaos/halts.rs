//! The kill switch across replica processes: how fast a halt reaches every
//! running replica, and that replicas started or SIGKILLed and restarted
//! while halted reject what the halt covers from their first batch.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::harness::{Cluster, add_paced};
use crate::helpers::{DEADLINE, TestEnv};

/// The targets of the halts a replica's `/status` lists.
async fn halted_targets(client: &reqwest::Client, url: &str) -> Vec<String> {
    let Ok(response) = client.get(format!("{url}/status")).send().await else {
        return Vec::new();
    };
    let status: Value = response.json().await.unwrap_or_default();
    status["halts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["target"].as_str().unwrap_or("all").to_owned())
        .collect()
}

/// How long after `since` each replica shows (or stops showing) `target`.
async fn time_to_apply(
    client: &reqwest::Client,
    urls: &[String],
    target: &str,
    present: bool,
    since: Instant,
) -> Vec<Duration> {
    let waits = urls.iter().map(|url| async move {
        loop {
            let shown = halted_targets(client, url)
                .await
                .iter()
                .any(|t| t == target);
            if shown == present {
                return since.elapsed();
            }
            assert!(since.elapsed() < DEADLINE, "{url} never applied {target}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    futures_util::future::join_all(waits).await
}

#[tokio::test]
async fn a_halt_reaches_three_replicas_within_a_second() {
    let env = TestEnv::new().await;
    let mut cluster = Cluster::new(&env, &[]);
    for _ in 0..3 {
        cluster.start().await;
    }
    let urls: Vec<String> = cluster.replicas.iter().map(|r| r.url.clone()).collect();
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    for round in 0..10 {
        let target = format!("S{round}");
        let since = Instant::now();
        env.kill_switch(&[
            ("action", "halt"),
            ("scope", "strategy"),
            ("strategy_id", &target),
            ("reason", "r"),
        ])
        .await;
        latencies.extend(time_to_apply(&client, &urls, &target, true, since).await);
        let since = Instant::now();
        env.kill_switch(&[
            ("action", "resume"),
            ("scope", "strategy"),
            ("strategy_id", &target),
        ])
        .await;
        latencies.extend(time_to_apply(&client, &urls, &target, false, since).await);
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "halt/resume applied on 3 replicas, {} samples: p50 {:?}, p90 {:?}, max {:?}",
        latencies.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
    assert!(at(1.0) < Duration::from_secs(1), "slowest {:?}", at(1.0));

    // With one halt in force, every replica rejects its orders and fills
    // the others.
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "strategy"),
        ("strategy_id", "S-final"),
        ("reason", "end of day"),
    ])
    .await;
    time_to_apply(&client, &urls, "S-final", true, Instant::now()).await;
    let orders: Vec<String> = (0..300)
        .map(|i| {
            let strategy = if i % 2 == 0 { "S-final" } else { "S-other" };
            serde_json::json!({"order_id": format!("hq-{i}"), "symbol": "BTCUSDT", "side": "BUY",
                "quantity": "1", "price": "10", "strategy_id": strategy})
            .to_string()
        })
        .collect();
    add_paced(&env, &orders, 50, Duration::from_millis(10)).await;
    env.wait_until("every order is settled", || async {
        env.count("SELECT count(*) FROM orders WHERE status IN ('FILLED','REJECTED')")
            .await
            == 300
            && env.pending().await == 0
    })
    .await;
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE strategy_id = 'S-final' AND status = 'REJECTED' AND reject_reason = 'halted: strategy S-final end of day'").await,
        150
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM orders WHERE strategy_id = 'S-other' AND status = 'FILLED'"
        )
        .await,
        150
    );
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 150);
    cluster.stop().await;
}

#[tokio::test]
async fn replicas_started_or_restarted_while_halted_reject_from_their_first_batch() {
    let env = TestEnv::new().await;
    let mut cluster = Cluster::new(&env, &[]);
    cluster.start().await;
    let client = reqwest::Client::new();
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "all"),
        ("reason", "incident"),
        ("source", "ops"),
    ])
    .await;
    let url = cluster.replicas[0].url.clone();
    time_to_apply(&client, &[url], "all", true, Instant::now()).await;

    let order = |i: usize| {
        serde_json::json!({"order_id": format!("rs-{i}"), "symbol": "ETHUSDT", "side": "SELL",
            "quantity": "1", "price": "10"})
        .to_string()
    };
    // Killed while halted; the orders wait in the stream; a new replica and
    // then a restarted one find them.
    for (round, range) in [(0, 0..200), (1, 200..400)] {
        cluster.kill(0).await;
        let orders: Vec<String> = range.clone().map(order).collect();
        add_paced(&env, &orders, 100, Duration::ZERO).await;
        cluster.start().await;
        env.wait_until("the waiting orders are settled", || async {
            env.count("SELECT count(*) FROM orders WHERE status IN ('FILLED','REJECTED')")
                .await
                == range.end as i64
                && env.pending().await == 0
        })
        .await;
        assert_eq!(
            env.count("SELECT count(*) FROM orders WHERE status = 'REJECTED' AND reject_reason = 'halted: all incident'").await,
            range.end as i64,
            "round {round}: an order slipped past the halt"
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 0);

    env.kill_switch(&[("action", "resume"), ("scope", "all"), ("source", "ops")])
        .await;
    let url = cluster.replicas[0].url.clone();
    time_to_apply(&client, &[url], "all", false, Instant::now()).await;
    add_paced(&env, &[order(400)], 1, Duration::ZERO).await;
    env.wait_until("the order after the resume fills", || async {
        env.count("SELECT count(*) FROM orders WHERE order_id = 'rs-400' AND status = 'FILLED'")
            .await
            == 1
    })
    .await;
    cluster.stop().await;
}
