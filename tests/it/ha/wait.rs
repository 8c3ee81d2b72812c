//! `WAIT` in the shim: a chunk the primary took but its replica never got
//! is mirrored again on the replica once it is promoted; without `WAIT`,
//! the failover takes it back.

use std::time::Duration;

use execution_service::bus::{self, Shim, Topology, WaitFor};
use prometheus::{IntCounter, IntGauge};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sentinels::Sentinels;
use super::{connect, wait_for_listener, wait_until};
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
async fn unconfirmed_messages_are_let_go_of_once_the_replica_has_them() {
    let name = format!(
        "wait-heal-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let set = Sentinels::start_proxied(&name).await;
    let (shim, topology, unconfirmed, cancel) = shim_for(&set, &name, 1);
    let running = tokio::spawn(shim.run(cancel.clone()));
    let mut primary = connect(set.primary().await).await.expect("the primary");
    wait_for_listener(&primary, &topology.orders_channel).await;

    // Stalled, the replica hears nothing; restored, it reconnects and
    // catches up, and the shim's probe finds the messages confirmed.
    set.link().stall();
    for i in 0..20 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&topology.orders_channel)
            .arg(order_json(&format!("{name}-{i}"), "1", "100"))
            .query_async(&mut primary)
            .await
            .expect("PUBLISH");
    }
    wait_until("20 messages wait for confirmation", || async {
        unconfirmed.get() == 20
    })
    .await;
    set.link().restore();
    wait_until("the replica confirms them", || async {
        unconfirmed.get() == 0
    })
    .await;
    assert_eq!(xlen(&mut primary, &topology.orders_stream).await, 20);
    cancel.cancel();
    running.await.expect("the shim stops");
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
    let (shim, topology, _, cancel) = shim_for(&set, &name, replicas);
    let retries = shim.retries.clone();
    let running = tokio::spawn(shim.run(cancel.clone()));

    let old = set.primary().await;
    let mut primary = connect(old).await.expect("the primary");
    wait_for_listener(&primary, &topology.orders_channel).await;

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
    let mut new = connect(set.primary().await).await.expect("the primary");
    wait_for_listener(&new, &topology.orders_channel).await;
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

/// A shim of its own on the set's primary, waiting for `replicas`.
fn shim_for(
    set: &Sentinels,
    name: &str,
    replicas: u32,
) -> (Shim, Topology, IntGauge, CancellationToken) {
    let topology = Topology {
        orders_channel: format!("{name}.orders"),
        orders_stream: format!("{name}.stream.orders"),
        dlq_stream: format!("{name}.stream.dlq"),
        stream_maxlen: 1_000_000,
        dedup_window_ms: 3_000,
        max_message_bytes: 65_536,
        ..Topology::default()
    };
    let unconfirmed = IntGauge::new("unconfirmed", "unconfirmed").expect("a gauge");
    let shim = Shim {
        pool: bus::pool_for(set.target(), 2).expect("a pool"),
        topology: topology.clone(),
        wait: WaitFor {
            replicas,
            timeout_ms: 200,
        },
        retries: IntCounter::new("retries", "retries").expect("a counter"),
        dead_lettered: IntCounter::new("dead", "dead").expect("a counter"),
        unconfirmed: unconfirmed.clone(),
    };
    (shim, topology, unconfirmed, CancellationToken::new())
}

async fn xlen(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> usize {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(conn)
        .await
        .unwrap_or(0)
}
