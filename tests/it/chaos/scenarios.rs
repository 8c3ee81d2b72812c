//! The four fault scenarios, and a long soak behind `--ignored`.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;

use super::harness::{
    Cluster, PrivateRedis, add_paced, check_invariants, publish_paced, valid_orders,
    wait_until_settled,
};
use super::hostile::{Expected, Gen, hostile};
use crate::helpers::TestEnv;
use crate::proxy::Proxy;

/// Replica settings for fast recovery in tests.
const FAST_CLAIMS: [(&str, &str); 3] = [
    ("CLAIM_IDLE_MS", "1000"),
    ("CLAIM_INTERVAL_MS", "250"),
    ("POSTGRES_MAX_CONNECTIONS", "10"),
];

fn seed() -> u64 {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64);
    println!("CHAOS_SEED={seed}");
    seed
}

/// Which way the load goes in.
#[derive(Clone, Copy)]
enum Via {
    Channel,
    /// Straight onto the stream: the durable path, for loads a lagging shim
    /// could not hold (pub/sub keeps nothing for a killed subscriber).
    Stream,
}

/// Kills a random replica `kills` times during the load, starting a
/// replacement each time; every order still ends executed exactly once.
async fn kill_replicas_during_load(
    orders: usize,
    kills: usize,
    pace: Duration,
    via: Via,
    extra: &[(&str, &str)],
) {
    let env = TestEnv::new().await;
    let mut overrides = FAST_CLAIMS.to_vec();
    overrides.extend_from_slice(extra);
    let mut cluster = Cluster::new(&env, &overrides);
    for _ in 0..3 {
        cluster.start().await;
    }
    let load = valid_orders("kill", orders);
    let payloads: Vec<String> = load.iter().map(|(_, p)| p.clone()).collect();
    let ids: Vec<String> = load.into_iter().map(|(id, _)| id).collect();
    let mut generator = Gen::new(seed());

    let publishing = async {
        match via {
            Via::Channel => publish_paced(&env, &payloads, 50, pace).await,
            Via::Stream => add_paced(&env, &payloads, 50, pace).await,
        }
    };
    let killing = async {
        let run = pace * (orders / 50) as u32;
        for _ in 0..kills {
            let wait = run.as_millis() as u64 / (kills as u64 + 1);
            tokio::time::sleep(Duration::from_millis(
                wait / 2 + generator.below(wait.max(1)),
            ))
            .await;
            let victim = generator.below(cluster.replicas.len() as u64) as usize;
            let name = cluster.kill(victim).await;
            println!("killed {name}");
            cluster.start().await;
        }
    };
    tokio::join!(publishing, killing);

    wait_until_settled(&env, &ids).await;
    let counts = check_invariants(&env, &ids).await;
    assert_eq!(counts.filled, orders as i64);
    assert_eq!(
        counts.dead_letters, 0,
        "a killed replica sent orders to the DLQ"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn sigkilled_replicas_lose_and_duplicate_nothing() {
    kill_replicas_during_load(5_000, 3, Duration::from_millis(40), Via::Channel, &[]).await;
}

#[tokio::test]
#[ignore = "soak: run with --ignored, preferably with --release"]
async fn soak_many_kills() {
    let orders = std::env::var("SOAK_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    // Kills every second or so: an entry may be claimed by several replicas
    // that die in turn, so deliveries are allowed to run higher than usual.
    let kills = (orders / 5_000).max(3);
    kill_replicas_during_load(
        orders,
        kills,
        Duration::from_millis(10),
        Via::Stream,
        &[("MAX_DELIVERIES", "100")],
    )
    .await;
}

#[tokio::test]
async fn a_cut_postgres_pauses_the_work_and_loses_nothing() {
    let env = TestEnv::new().await;
    let proxy = Proxy::start(crate::helpers::postgres_addr()).await;
    let through_proxy = env
        .var("DATABASE_URL")
        .replace(crate::helpers::postgres_addr(), &proxy.addr.to_string());
    let mut overrides = FAST_CLAIMS.to_vec();
    overrides.push(("DATABASE_URL", &through_proxy));
    overrides.push(("MAX_DELIVERIES", "2"));
    let mut cluster = Cluster::new(&env, &overrides);
    cluster.start().await;
    cluster.start().await;

    let load = valid_orders("pg", 3_000);
    let payloads: Vec<String> = load.iter().map(|(_, p)| p.clone()).collect();
    let ids: Vec<String> = load.into_iter().map(|(id, _)| id).collect();
    let publishing = publish_paced(&env, &payloads, 50, Duration::from_millis(40));
    let cutting = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        proxy.cut();
        println!("postgres cut");
        // Longer than CLAIM_IDLE_MS times MAX_DELIVERIES: an outage must not
        // spend deliveries.
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.restore();
        println!("postgres restored");
    };
    tokio::join!(publishing, cutting);

    wait_until_settled(&env, &ids).await;
    let counts = check_invariants(&env, &ids).await;
    assert_eq!(counts.filled, 3_000);
    assert_eq!(counts.dead_letters, 0, "an outage pushed orders to the DLQ");
    cluster.stop().await;
}

#[tokio::test]
async fn a_restarted_redis_is_reconnected_and_retried_orders_execute_once() {
    let mut redis = PrivateRedis::start().await;
    let env = TestEnv::with(&[("REDIS_URL", &redis.url())]).await;
    let mut cluster = Cluster::new(&env, &FAST_CLAIMS);
    cluster.start().await;
    cluster.start().await;

    // A downstream subscriber that reconnects, as a real one would.
    let client = redis::Client::open(redis.url()).expect("URL");
    let channel = env.var("RESULTS_CHANNEL");
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let subscriber = tokio::spawn(async move {
        loop {
            if let Ok(mut pubsub) = client.get_async_pubsub().await
                && pubsub.subscribe(&channel).await.is_ok()
            {
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let result: serde_json::Value =
                        serde_json::from_slice(message.get_payload_bytes()).expect("JSON");
                    let _ =
                        seen_tx.send(result["order_id"].as_str().unwrap_or_default().to_owned());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let load = valid_orders("redis", 3_000);
    let payloads: HashMap<String, String> = load.iter().cloned().collect();
    let ids: Vec<String> = load.iter().map(|(id, _)| id.clone()).collect();
    let ordered: Vec<String> = load.into_iter().map(|(_, p)| p).collect();
    let publishing = publish_paced(&env, &ordered, 50, Duration::from_millis(40));
    let restarting = async {
        tokio::time::sleep(Duration::from_millis(900)).await;
        redis.kill().await;
        println!("redis killed");
        tokio::time::sleep(Duration::from_millis(700)).await;
        redis.restart().await;
        println!("redis restarted");
    };
    tokio::join!(publishing, restarting);

    // Redis kept nothing: what it held unprocessed is gone. The producer
    // re-sends every order without a settled row until all are settled.
    for round in 0..10 {
        let waiting = async {
            env.wait_until("the cluster is quiet", || async {
                env.pending().await == 0
            })
            .await;
        };
        waiting.await;
        let missing = unsettled(&env, &ids).await;
        if missing.is_empty() {
            break;
        }
        println!(
            "round {round}: re-sending {} orders Redis lost",
            missing.len()
        );
        let resend: Vec<String> = missing.iter().map(|id| payloads[id].clone()).collect();
        publish_paced(&env, &resend, 50, Duration::from_millis(20)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_until_settled(&env, &ids).await;
    let counts = check_invariants(&env, &ids).await;
    assert_eq!(counts.filled, 3_000);
    assert_eq!(counts.dead_letters, 0);

    // The reconnecting subscriber heard results after the restart too.
    let mut heard = std::collections::HashSet::new();
    while let Ok(id) = seen_rx.try_recv() {
        heard.insert(id);
    }
    println!("subscriber heard {} of {} orders", heard.len(), ids.len());
    assert!(
        heard.len() > ids.len() / 2,
        "the subscriber heard only {} results",
        heard.len()
    );
    subscriber.abort();
    cluster.stop().await;
    redis.kill().await;
}

/// Orders among `ids` without a terminal row.
async fn unsettled(env: &TestEnv, ids: &[String]) -> Vec<String> {
    let mut missing = Vec::new();
    for chunk in ids.chunks(500) {
        let list = chunk
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(",");
        let done: Vec<String> = env
            .texts(&format!(
                "SELECT order_id FROM orders WHERE order_id IN ({list}) AND status IN ('FILLED','REJECTED','ERROR')"
            ))
            .await;
        missing.extend(chunk.iter().filter(|id| !done.contains(id)).cloned());
    }
    missing
}

#[tokio::test]
async fn a_thousand_hostile_messages_in_valid_traffic_each_get_their_outcome() {
    let env = TestEnv::new().await;
    let mut cluster = Cluster::new(&env, &FAST_CLAIMS);
    cluster.start().await;
    cluster.start().await;

    let mut generator = Gen::new(seed());
    let valid = valid_orders("ok", 2_000);
    let ids: Vec<String> = valid.iter().map(|(id, _)| id.clone()).collect();
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut expected = Vec::new();
    let mut valid_iter = valid.into_iter();
    for n in 0..1_000 {
        for (_, payload) in valid_iter.by_ref().take(2) {
            messages.push(payload.into_bytes());
        }
        let (payload, outcome) = hostile(&mut generator, n);
        messages.push(payload);
        expected.push(outcome);
    }
    let mut conn = env.redis.clone();
    for chunk in messages.chunks(100) {
        let mut pipe = redis::pipe();
        for payload in chunk {
            pipe.cmd("PUBLISH")
                .arg(env.var("ORDERS_CHANNEL"))
                .arg(payload.as_slice())
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("PUBLISH");
    }

    let rejected: Vec<&String> = expected
        .iter()
        .filter_map(|e| {
            if let Expected::Rejected(id) = e {
                Some(id)
            } else {
                None
            }
        })
        .collect();
    let dead: Vec<&Vec<u8>> = expected
        .iter()
        .filter_map(|e| {
            if let Expected::DeadLetter(p) = e {
                Some(p)
            } else {
                None
            }
        })
        .collect();
    let ignored = expected.iter().filter(|e| **e == Expected::Ignored).count();
    env.wait_until("every message is settled", || async {
        env.stream_len("ORDERS_STREAM").await == messages.len() && env.pending().await == 0
    })
    .await;

    wait_until_settled(&env, &ids).await;
    let results = env.results().await;
    let statuses: HashMap<&str, &str> = results
        .iter()
        .map(|r| (r["order_id"].as_str(), r["status"].as_str()))
        .collect();
    for id in &ids {
        assert_eq!(statuses.get(id.as_str()), Some(&"FILLED"), "{id}");
    }
    for id in &rejected {
        assert_eq!(
            statuses.get(id.as_str()),
            Some(&"REJECTED"),
            "{id} was not rejected"
        );
    }
    let letters = env.stream_raw("DLQ_STREAM").await;
    let unnamed: Vec<&Vec<u8>> = letters
        .iter()
        .filter(|l| l.get("dlq_order_id").is_some_and(|id| id.is_empty()))
        .filter_map(|l| l.get("payload"))
        .collect();
    for payload in &dead {
        assert!(
            unnamed.contains(payload),
            "no dead letter for {:?}",
            String::from_utf8_lossy(payload)
        );
    }
    assert_eq!(unnamed.len(), dead.len(), "unexpected dead letters");
    println!(
        "valid={} rejected={} dead_lettered_unnamed={} ignored={} dead_letters_total={}",
        ids.len(),
        rejected.len(),
        dead.len(),
        ignored,
        letters.len()
    );
    let counts = check_invariants(&env, &ids).await;
    assert_eq!(counts.filled, 2_000);
    cluster.stop().await;
}
