//! High availability: the service behind Redis Sentinels, behind a
//! Postgres switchover, and on a Redis Cluster.

mod cluster;
mod failover;
mod replay;
mod sentinels;
mod standby;
mod switchover;
mod wait;

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::helpers::DEADLINE;

/// A connection to the Redis on `port` that answered `PING`; every wait
/// bounded.
async fn connect(port: u16) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(|_| conn)
}

/// Polls `check` until it holds, failing the test at the deadline.
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

/// Waits until a shim listens on `channel` of the node `conn` is on.
async fn wait_for_listener(conn: &MultiplexedConnection, channel: &str) {
    wait_until("the shim subscribes", || async {
        let (_, listeners): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut conn.clone())
            .await
            .unwrap_or_default();
        listeners > 0
    })
    .await;
}

/// Every entry of a stream, with its id, as text.
async fn read_stream(
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> Vec<(String, HashMap<String, String>)> {
    let mut entries = Vec::new();
    let mut after = "-".to_owned();
    loop {
        let page: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&after)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await
            .expect("XRANGE");
        let Some((last, _)) = page.last() else {
            return entries;
        };
        after = format!("({last}");
        entries.extend(page);
    }
}
