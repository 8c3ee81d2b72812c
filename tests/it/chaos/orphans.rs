//! Postgres network faults that leave the server holding what the service
//! gave up on: a severed connection whose server side stays open (with
//! the statement or transaction that was running in it), and a ten-second
//! partition that forwards nothing and closes nothing, after which the
//! connections it caught stay dead (only new ones work). Either way
//! every order ends terminal within `BATCH_TIMEOUT_SECS` + `CLAIM_IDLE_MS`
//! and a margin, and no backend is left waiting or idle in a transaction.

use std::time::Duration;

use tokio::time::Instant;

use super::harness::{Cluster, add_paced, check_invariants, valid_orders};
use crate::helpers::TestEnv;
use crate::proxy::Proxy;

const REPLICAS: usize = 3;
const MAX_CONNECTIONS: i64 = 4;
const BATCH_TIMEOUT_SECS: u64 = 3;
const CLAIM_IDLE_MS: u64 = 2_000;
/// Time to work through the backlog an outage leaves (debug build, three
/// replicas on two cores).
const MARGIN: Duration = Duration::from_secs(20);

/// Three replicas reaching Postgres through `proxy`, their sessions named
/// after the test so that `pg_stat_activity` tells them apart.
async fn cluster<'a>(env: &'a TestEnv, proxy: &Proxy) -> Cluster<'a> {
    let url = format!(
        "{}?application_name={}",
        env.var("DATABASE_URL")
            .replace(crate::helpers::postgres_addr(), &proxy.addr.to_string()),
        env.prefix
    );
    let batch_timeout = BATCH_TIMEOUT_SECS.to_string();
    let claim_idle = CLAIM_IDLE_MS.to_string();
    let max_connections = MAX_CONNECTIONS.to_string();
    let overrides = [
        ("DATABASE_URL", url.as_str()),
        ("BATCH_TIMEOUT_SECS", &batch_timeout),
        ("CLAIM_IDLE_MS", &claim_idle),
        ("CLAIM_INTERVAL_MS", "250"),
        ("POSTGRES_MAX_CONNECTIONS", &max_connections),
        ("WORKER_CONCURRENCY", "3"),
        ("REDIS_POOL_SIZE", "8"),
        ("BATCH_SIZE", "50"),
        // No delivery budget is spent by an outage, but make sure of it.
        ("MAX_DELIVERIES", "100"),
    ];
    let mut cluster = Cluster::new(env, &overrides);
    for _ in 0..REPLICAS {
        cluster.start().await;
    }
    cluster
}

/// The replicas' backends by state: (all, idle in a transaction, waiting
/// for a lock).
async fn backends(env: &TestEnv) -> (i64, i64, i64) {
    let from = format!(
        "FROM pg_stat_activity WHERE datname = '{}' AND application_name = '{}'",
        env.database, env.prefix
    );
    (
        env.count(&format!("SELECT count(*) {from}")).await,
        env.count(&format!(
            "SELECT count(*) {from} AND state LIKE 'idle in transaction%'"
        ))
        .await,
        env.count(&format!(
            "SELECT count(*) {from} AND wait_event_type = 'Lock'"
        ))
        .await,
    )
}

/// Waits until every order in `ids` has a terminal row and nothing is
/// pending, failing after `within`; returns how long it took.
async fn settle_within(env: &TestEnv, ids: &[String], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let done = env
            .count("SELECT count(*) FROM orders WHERE status IN ('FILLED', 'REJECTED', 'ERROR')")
            .await;
        if done >= ids.len() as i64 && env.pending().await == 0 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "only {done} of {} orders were terminal {within:?} after the fault ended",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After a fault: nothing of the replicas' is left waiting or idle in a
/// transaction, and their backends are back within their pools.
async fn assert_no_backend_left(env: &TestEnv) {
    let pools = REPLICAS as i64 * MAX_CONNECTIONS;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (all, idle_in_transaction, waiting) = backends(env).await;
        if all <= pools && idle_in_transaction == 0 && waiting == 0 {
            println!("backends after the fault: {all} (pools: {pools})");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backends left: {all} in all (pools hold {pools}), {idle_in_transaction} idle in a transaction, {waiting} waiting for a lock"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The settle deadline the issue sets: a batch's timeout, a claim's idle
/// time, and a margin for the backlog.
fn deadline() -> Duration {
    Duration::from_secs(BATCH_TIMEOUT_SECS) + Duration::from_millis(CLAIM_IDLE_MS) + MARGIN
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Sever,
    Blackhole,
}

/// Batches the replicas have given up on so far: failed on their
/// connection, or abandoned after `BATCH_TIMEOUT_SECS`.
async fn batches_given_up(cluster: &Cluster<'_>) -> f64 {
    let mut total = 0.0;
    for replica in &cluster.replicas {
        let metrics = reqwest::get(format!("{}/metrics", replica.url))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("a metrics body");
        total += metrics
            .lines()
            .filter(|line| {
                line.starts_with("execution_batch_failures_total ")
                    || line.starts_with("execution_batch_timeouts_total ")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

/// Applies `fault` while the replicas have statements running on the
/// server, until it catches a batch (the replica gives it up: the server
/// may still hold what it was doing, with no client that will ever end
/// it), keeps it up for `lasting` in all, and restores.
async fn fault_until_caught(cluster: &Cluster<'_>, proxy: &Proxy, fault: Fault, lasting: Duration) {
    let env = cluster.env;
    let busy = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = '{}' \
         AND (state = 'active' OR state LIKE 'idle in transaction%')",
        env.database, env.prefix
    );
    for round in 1..=20 {
        let before = batches_given_up(cluster).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while env.count(&busy).await == 0 {
            assert!(
                Instant::now() < deadline,
                "the replicas never ran a statement"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        match fault {
            Fault::Sever => proxy.sever(),
            Fault::Blackhole => proxy.blackhole(),
        }
        let mut caught = false;
        while !caught && started.elapsed() < lasting {
            caught = batches_given_up(cluster).await > before;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if caught {
            println!("{fault:?}, round {round}: a batch was caught");
            tokio::time::sleep(lasting.saturating_sub(started.elapsed())).await;
            proxy.restore();
            return;
        }
        proxy.restore();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("no {fault:?} caught a batch");
}

/// 5,000 orders on three replicas while `fault` is applied (until it
/// orphans a transaction) for `lasting`; then the settle deadline, no
/// backend left behind, and the usual invariants.
async fn orders_outlast(fault: Fault, lasting: Duration) {
    let env = TestEnv::new().await;
    let proxy = Proxy::start(crate::helpers::postgres_addr()).await;
    let cluster = cluster(&env, &proxy).await;
    let (before, _, _) = backends(&env).await;
    println!("{fault:?}: backends before: {before}");

    let load = valid_orders("fault", 5_000);
    let payloads: Vec<String> = load.iter().map(|(_, p)| p.clone()).collect();
    let ids: Vec<String> = load.into_iter().map(|(id, _)| id).collect();
    let loading = add_paced(&env, &payloads, 25, Duration::from_millis(20));
    tokio::join!(
        loading,
        fault_until_caught(&cluster, &proxy, fault, lasting)
    );

    let took = settle_within(&env, &ids, deadline()).await;
    println!("{fault:?}: settled {took:?} after the fault ended");
    // The connections the proxy still holds are idle sessions of its
    // making; none may be in a transaction, waiting, or still running a
    // statement; then they are let go and the backends must fall back
    // within the pools.
    let (_, idle_in_transaction, waiting) = backends(&env).await;
    assert_eq!(
        (idle_in_transaction, waiting),
        (0, 0),
        "a backend is still idle in a transaction or waiting for a lock"
    );
    let running = env
        .count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = '{}' \
             AND state = 'active' AND now() - query_start > interval '1 second'",
            env.database, env.prefix
        ))
        .await;
    assert_eq!(running, 0, "a statement of a given-up batch still runs");
    proxy.release_held();
    assert_no_backend_left(&env).await;
    let counts = check_invariants(&env, &ids).await;
    assert_eq!(counts.filled, 5_000);
    assert_eq!(
        counts.dead_letters, 0,
        "a network fault dead-lettered orders"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_severed_postgres_connection_leaves_no_orphan_holding_orders() {
    orders_outlast(Fault::Sever, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_black_holed_postgres_for_ten_seconds_stalls_nothing_for_long() {
    orders_outlast(Fault::Blackhole, Duration::from_secs(10)).await;
}
