//! `WAIT` in the shim: a chunk the primary took but its replica never got
//! is mirrored again on the replica once it is promoted; without `WAIT`,
//! the failover takes it back.

use std::time::Duration;

use execution_service::bus::{self, Shim, Topology, WaitFor};
use prometheus::IntCounter;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sentinels::Sentinels;
use crate::helpers::{DEADLINE, order_json};

#[tokio::test]
async fn a_chunk_the_promoted_replica_never_got_is_mirrored_again() {
    let (mirrored, retries) = lose_the_link_then_the_primary(1, "wait1").await;
    assert_eq!(
        mirrored, 21,
        "the 20 orders and the marker are on the new primary"
    );
    assert!(retries > 0, "the unconfirmed chunk was retried");
}

#[tokio::test]
async fn without_wait_the_failover_takes_the_chunk_back() {
    // The hazard the setting exists for: this is what WAIT prevents.
    let (mirrored, _) = lose_the_link_then_the_primary(0, "wait0").await;
    assert_eq!(mirrored, 1, "only the marker is on the new primary");
}

/// A shim mirrors 20 orders while its primary's replica hears nothing
/// (the link black-holed); the primary is SIGKILLed and the replica
/// promoted; then a marker order is published. Returns the entries the
/// new primary's orders stream holds once the marker is there, and the
/// shim's retries.
async fn lose_the_link_then_the_primary(replicas: u32, name: &str) -> (usize, u64) {
    let name = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut set = Sentinels::start_proxied(&name).await;
    let target = set.target();
    let topology = Topology {
        orders_channel: format!("{name}.orders"),
        orders_stream: format!("{name}.stream.orders"),
        dlq_stream: format!("{name}.stream.dlq"),
        stream_maxlen: 1_000_000,
        dedup_window_ms: 3_000,
        max_message_bytes: 65_536,
        ..Topology::default()
    };
    let retries = IntCounter::new("retries", "retries").expect("a counter");
    let shim = Shim {
        pool: bus::pool_for(target.clone(), 2).expect("a pool"),
        topology: topology.clone(),
        wait: WaitFor {
            replicas,
            timeout_ms: 200,
        },
        retries: retries.clone(),
        dead_lettered: IntCounter::new("dead", "dead").expect("a counter"),
    };
    let cancel = CancellationToken::new();
    let running = tokio::spawn(shim.run(cancel.clone()));

    let old = set.primary().await;
    let mut primary = connect(old).await;
    wait_until("the shim subscribes", || async {
        let (_, listeners): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&topology.orders_channel)
            .query_async(&mut primary.clone())
            .await
            .unwrap_or_default();
        listeners > 0
    })
    .await;

    set.link().blackhole();
    for i in 0..20 {
        let received: i64 = redis::cmd("PUBLISH")
            .arg(&topology.orders_channel)
            .arg(order_json(&format!("{name}-{i}"), "1", "100"))
            .query_async(&mut primary)
            .await
            .expect("PUBLISH");
        assert_eq!(received, 1);
    }
    wait_until("the primary has the 20 entries", || async {
        xlen(&mut primary.clone(), &topology.orders_stream).await == 20
    })
    .await;
    if replicas > 0 {
        wait_until("the shim finds them unconfirmed", || async {
            retries.get() > 0
        })
        .await;
    }

    let since = Instant::now();
    set.kill_primary().await;
    set.wait_for_failover(old, since).await;
    // A replica for the new primary, so that WAIT can be answered there.
    set.restart_as_replica(old).await;
    let mut new = connect(set.primary().await).await;
    wait_until("the shim listens on the new primary", || async {
        let (_, listeners): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&topology.orders_channel)
            .query_async(&mut new.clone())
            .await
            .unwrap_or_default();
        listeners > 0
    })
    .await;
    let marker = order_json(&format!("{name}-marker"), "1", "100");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&topology.orders_channel)
        .arg(&marker)
        .query_async(&mut new)
        .await
        .expect("PUBLISH the marker");
    let deadline = Instant::now() + DEADLINE;
    let entries = loop {
        let entries: Vec<(String, std::collections::HashMap<String, String>)> =
            redis::cmd("XRANGE")
                .arg(&topology.orders_stream)
                .arg("-")
                .arg("+")
                .query_async(&mut new)
                .await
                .unwrap_or_default();
        if entries
            .iter()
            .any(|(_, fields)| fields.get("payload") == Some(&marker))
        {
            break entries;
        }
        assert!(Instant::now() < deadline, "the marker was not mirrored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cancel.cancel();
    running.await.expect("the shim stops");
    (entries.len(), retries.get())
}

async fn connect(port: u16) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .expect("a URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

async fn xlen(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> usize {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(conn)
        .await
        .unwrap_or(0)
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
