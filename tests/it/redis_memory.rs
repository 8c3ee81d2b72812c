//! A Redis out of memory (`maxmemory` reached, nothing evicted): orders are
//! still read and recorded, but their results cannot be written, so their
//! entries stay pending with nothing published or parked; once memory is
//! back, each result goes out once and each dead letter is parked once.

use execution_service::domain::ExecutionResult;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use crate::helpers::{DEADLINE, TestEnv, announced_until, order_json};
use crate::services::own_redis;

async fn pending(env: &TestEnv, conn: &mut MultiplexedConnection) -> usize {
    let reply: redis::streams::StreamPendingReply = conn
        .xpending(env.var("ORDERS_STREAM"), env.var("CONSUMER_GROUP"))
        .await
        .expect("XPENDING");
    reply.count()
}

#[tokio::test]
async fn a_redis_out_of_memory_holds_results_and_publishes_each_once_after() {
    let env = TestEnv::new().await;
    let url = own_redis();
    let client = redis::Client::open(url.as_str()).expect("own Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("own Redis");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub
        .subscribe(env.var("RESULTS_CHANNEL"))
        .await
        .expect("SUBSCRIBE");
    let mut announced = pubsub.into_on_message().map(|message| {
        ExecutionResult::from_json(message.get_payload_bytes())
            .expect("a result")
            .order_id
    });
    let app = env
        .spawn(
            "out-of-memory",
            &[("REDIS_URL", &url), ("SHIM_ENABLED", "false")],
        )
        .await;
    let mut xadd = redis::cmd("XADD");
    xadd.arg(env.var("ORDERS_STREAM"))
        .arg("*")
        .arg("payload")
        .arg(order_json("memory-before", "0.001", "50000"));
    let _: String = xadd.query_async(&mut conn).await.expect("XADD");
    assert_eq!(
        announced_until(&mut announced, "memory-before").await,
        ["memory-before"]
    );

    // An order and a message to dead-letter, then a memory limit every
    // write is over, in one transaction: the worker reads the entries only
    // once all is in.
    let () = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(env.var("ORDERS_STREAM"))
        .arg("*")
        .arg("payload")
        .arg(order_json("memory-held", "0.001", "50000"))
        .ignore()
        .cmd("XADD")
        .arg(env.var("ORDERS_STREAM"))
        .arg("*")
        .arg("payload")
        .arg("{")
        .ignore()
        .cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .ignore()
        .query_async(&mut conn)
        .await
        .expect("MULTI XADD CONFIG SET");
    let failures = app.stats.batch_failures.get();
    app.wait_for_stat("three failed attempts", |stats| {
        stats.batch_failures.get() >= failures + 3
    })
    .await;
    assert_eq!(pending(&env, &mut conn).await, 2);

    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while pending(&env, &mut conn).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "still pending");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Whatever the held order's attempts published came before this.
    let mut xadd = redis::cmd("XADD");
    xadd.arg(env.var("ORDERS_STREAM"))
        .arg("*")
        .arg("payload")
        .arg(order_json("memory-after", "0.001", "50000"));
    let _: String = xadd.query_async(&mut conn).await.expect("XADD");
    assert_eq!(
        announced_until(&mut announced, "memory-after").await,
        ["memory-held", "memory-after"]
    );
    let letters: u64 = conn.xlen(env.var("DLQ_STREAM")).await.expect("XLEN");
    assert_eq!(letters, 1, "the malformed entry, parked once");
    assert_eq!(app.stats.executed.get(), 3);

    app.stop().await;
    let _: Result<(), _> = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async(&mut conn)
        .await;
    env.cleanup().await;
}
