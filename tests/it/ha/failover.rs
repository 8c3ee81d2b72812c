//! The pipeline behind Sentinels: a Redis failover under load loses no
//! order and executes none twice.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use execution_service::bus::RedisTarget;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use super::read_stream;
use super::sentinels::Sentinels;
use crate::chaos::harness::{Cluster, SETTLE, valid_orders};
use crate::helpers::{DEADLINE, TestEnv};
use crate::services::say;

/// Orders per 10 ms tick: 2,000 a second.
const PER_TICK: usize = 20;
const TICK: Duration = Duration::from_millis(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_failover_under_load_loses_no_order_and_executes_none_twice() {
    let env = TestEnv::new().await;
    let mut set = Sentinels::start(&env.prefix).await;
    let mut vars = set.vars();
    vars.extend([
        ("REDIS_WAIT_REPLICAS", "1".to_owned()),
        ("REDIS_WAIT_TIMEOUT_MS", "300".to_owned()),
        ("REDIS_REPLAY_SECS", "20".to_owned()),
        ("REDIS_POOL_SIZE", "8".to_owned()),
        ("POSTGRES_MAX_CONNECTIONS", "6".to_owned()),
    ]);
    let overrides: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cluster = Cluster::new(&env, &overrides);
    cluster.start().await;
    cluster.start().await;

    let orders = valid_orders(&env.prefix, 60_000);
    let ids: Vec<String> = orders.iter().map(|(id, _)| id.clone()).collect();
    let payloads: Vec<String> = orders.into_iter().map(|(_, payload)| payload).collect();
    let producer = tokio::spawn(produce(set.target(), env.var("ORDERS_CHANNEL"), payloads));

    // Two primaries SIGKILLed and one frozen, 8 s apart, under the load.
    let start = Instant::now();
    let mut faults = Vec::new();
    for (at, fault) in [(6, "SIGKILL"), (14, "SIGKILL"), (22, "DEBUG SLEEP 4")] {
        tokio::time::sleep_until(start + Duration::from_secs(at)).await;
        let since = Instant::now();
        let when = unix_ms();
        let old = if fault == "SIGKILL" {
            set.kill_primary().await
        } else {
            set.freeze_primary(4).await
        };
        let failover = set.wait_for_failover(old, since).await;
        if fault == "SIGKILL" {
            set.restart_as_replica(old).await;
        } else {
            // Sentinel makes the frozen primary a replica once it wakes.
            set.wait_in_sync(old).await;
        }
        say(&format!(
            "{fault} of the primary on {old}: the Sentinels named another after {} ms; a replica again after {} ms",
            failover.as_millis(),
            since.elapsed().as_millis()
        ));
        faults.push((fault, when));
    }
    let resent = producer.await.expect("the producer");

    let target = set.target();
    let mut conn = connect(&target).await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let done = env
            .count("SELECT count(*) FROM orders WHERE status IN ('FILLED', 'REJECTED', 'ERROR')")
            .await;
        let pending: i64 = redis::cmd("XPENDING")
            .arg(env.var("ORDERS_STREAM"))
            .arg(env.var("CONSUMER_GROUP"))
            .query_async::<(i64, redis::Value, redis::Value, redis::Value)>(&mut conn)
            .await
            .map(|reply| reply.0)
            .unwrap_or(i64::MAX);
        if done >= ids.len() as i64 && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "settled only {done} of {}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Postgres: one row and one fill per order.
    let rows = env
        .count("SELECT count(DISTINCT order_id) FROM orders")
        .await;
    assert_eq!(
        env.count("SELECT count(*) FROM orders").await,
        rows,
        "an order has two rows"
    );
    assert_eq!(rows, ids.len() as i64, "an order has no row");
    let filled = env
        .count("SELECT count(*) FROM orders WHERE status = 'FILLED'")
        .await;
    assert_eq!(filled, ids.len() as i64, "every order fills");
    assert_eq!(
        env.count("SELECT count(*) FROM trades").await,
        filled,
        "one fill per order"
    );

    // Redis: every order's result on the results stream, and the fills
    // stream exact once copies are merged by result id.
    let results = read_stream(&mut conn, &env.var("RESULTS_STREAM")).await;
    let announced: HashSet<&str> = results
        .iter()
        .filter(|(_, fields)| fields.get("status").map(String::as_str) == Some("FILLED"))
        .map(|(_, fields)| fields["order_id"].as_str())
        .collect();
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !announced.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} orders have no result, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let fills = read_stream(&mut conn, &env.var("FILLS_STREAM")).await;
    let mut by_result: HashMap<&str, &HashMap<String, String>> = HashMap::new();
    for (_, fields) in &fills {
        let result_id = fields.get("result_id").expect("every result has an id");
        if let Some(first) = by_result.insert(result_id, fields) {
            for field in ["order_id", "status", "price", "filled_quantity"] {
                assert_eq!(
                    first.get(field),
                    fields.get(field),
                    "two copies of {result_id} differ"
                );
            }
        }
    }
    let mut per_order: HashMap<&str, usize> = HashMap::new();
    for fields in by_result.values() {
        assert_eq!(fields["status"], "FILLED");
        *per_order.entry(fields["order_id"].as_str()).or_default() += 1;
    }
    assert_eq!(per_order.len(), ids.len(), "the fills stream misses orders");
    assert!(
        per_order.values().all(|n| *n == 1),
        "an order has two fills on the fills stream"
    );
    let replays = fills
        .iter()
        .filter(|(_, f)| f.get("replay").map(String::as_str) == Some("true"))
        .count();

    // The pause each fault made: the longest time without a result from
    // the fault on, before the next fault.
    let times: Vec<u64> = results.iter().map(|(id, _)| entry_ms(id)).collect();
    for (i, (fault, when)) in faults.iter().enumerate() {
        let until = faults.get(i + 1).map_or(u64::MAX, |(_, next)| *next);
        let mut last = *when;
        let mut pause = 0;
        for t in times.iter().copied().filter(|t| *t >= *when && *t < until) {
            pause = pause.max(t - last);
            last = t;
        }
        say(&format!("{fault}: results paused for {pause} ms at most"));
    }
    say(&format!(
        "redis failover: {} orders, {} results ({} copies on the fills stream, {replays} replays), {resent} messages the producer sent again",
        ids.len(),
        results.len(),
        fills.len() - by_result.len()
    ));
    cluster.stop().await;
}

/// Publishes at 2,000 a second through whichever primary the Sentinels
/// name, sending again what no shim received (a PUBLISH answered 0, or
/// not answered), as a producer behind Sentinels must; how many messages
/// it had to send more than once.
async fn produce(target: RedisTarget, channel: String, payloads: Vec<String>) -> usize {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut unsent: Vec<String> = Vec::new();
    let mut resent: HashSet<String> = HashSet::new();
    let mut next = Instant::now();
    for chunk in payloads.chunks(PER_TICK) {
        tokio::time::sleep_until(next).await;
        next += TICK;
        let mut batch = std::mem::take(&mut unsent);
        batch.extend(chunk.iter().cloned());
        unsent = publish(&target, &mut conn, &channel, batch).await;
        resent.extend(unsent.iter().cloned());
    }
    let deadline = Instant::now() + DEADLINE;
    while !unsent.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} messages found no shim",
            unsent.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        unsent = publish(&target, &mut conn, &channel, std::mem::take(&mut unsent)).await;
    }
    resent.len()
}

/// Publishes `batch`; returns what no subscriber received.
async fn publish(
    target: &RedisTarget,
    conn: &mut Option<MultiplexedConnection>,
    channel: &str,
    batch: Vec<String>,
) -> Vec<String> {
    if conn.is_none() {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)));
        let Ok(client) = target.client().await else {
            return batch;
        };
        *conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .ok();
    }
    let Some(open) = conn.as_mut() else {
        return batch;
    };
    let mut pipe = redis::pipe();
    for payload in &batch {
        pipe.cmd("PUBLISH").arg(channel).arg(payload);
    }
    match pipe.query_async::<Vec<i64>>(open).await {
        Ok(received) => batch
            .into_iter()
            .zip(received)
            .filter(|(_, n)| *n == 0)
            .map(|(payload, _)| payload)
            .collect(),
        Err(_) => {
            *conn = None;
            batch
        }
    }
}

async fn connect(target: &RedisTarget) -> MultiplexedConnection {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    target
        .client()
        .await
        .expect("the primary")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect to the primary")
}

fn entry_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
