//! A Redis out of memory (`maxmemory` reached, nothing evicted): orders are
//! still read and recorded, but their results cannot be written, so their
//! entries stay pending with nothing published or parked; once memory is
//! back, each result goes out once and each dead letter is parked once.

use execution_service::domain::ExecutionResult;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use crate::helpers::{DEADLINE, Running, TestEnv, announced_until, order_json};
use crate::services::own_redis;

async fn pending(env: &TestEnv, conn: &mut MultiplexedConnection) -> usize {
    let reply: redis::streams::StreamPendingReply = conn
        .xpending(env.var("ORDERS_STREAM"), env.var("CONSUMER_GROUP"))
        .await
        .expect("XPENDING");
    reply.count()
}

fn held(order_id: &str) -> String {
    order_json(order_id, "0.001", "50000")
}

async fn add(env: &TestEnv, conn: &mut MultiplexedConnection, payload: &str) {
    let _: String = redis::cmd("XADD")
        .arg(env.var("ORDERS_STREAM"))
        .arg("*")
        .arg("payload")
        .arg(payload)
        .query_async(conn)
        .await
        .expect("XADD");
}

/// Adds `payloads` and sets a memory limit every write is over, in one
/// transaction (the worker reads the entries only once all is in); waits
/// for three failed attempts at their batch, with the entries pending,
/// then lifts the limit and waits until they are acknowledged.
async fn out_of_memory_for_a_while(
    env: &TestEnv,
    app: &Running,
    conn: &mut MultiplexedConnection,
    payloads: &[&str],
) {
    let mut transaction = redis::pipe();
    transaction.atomic();
    for payload in payloads {
        transaction
            .cmd("XADD")
            .arg(env.var("ORDERS_STREAM"))
            .arg("*")
            .arg("payload")
            .arg(*payload)
            .ignore();
    }
    transaction
        .cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .ignore();
    let () = transaction
        .query_async(conn)
        .await
        .expect("MULTI XADD… CONFIG SET");
    let failures = app.stats.batch_failures.get();
    app.wait_for_stat("three failed attempts", |stats| {
        stats.batch_failures.get() >= failures + 3
    })
    .await;
    assert_eq!(pending(env, conn).await, payloads.len());
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(conn)
        .await
        .expect("CONFIG SET");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while pending(env, conn).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "still pending");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_redis_out_of_memory_holds_results_and_publishes_each_once_after() {
    let env = TestEnv::new().await;
    let own = own_redis();
    let url = own.url.clone();
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
    add(&env, &mut conn, &held("memory-before")).await;
    assert_eq!(
        announced_until(&mut announced, "memory-before").await,
        ["memory-before"]
    );

    // An order alone: the announcing script alone is refused (its flags).
    out_of_memory_for_a_while(&env, &app, &mut conn, &[&held("memory-held")]).await;
    add(&env, &mut conn, &held("memory-after")).await;
    assert_eq!(
        announced_until(&mut announced, "memory-after").await,
        ["memory-held", "memory-after"]
    );
    // With a message to dead-letter: the letters and the script go in one
    // transaction, refused as a whole.
    out_of_memory_for_a_while(&env, &app, &mut conn, &[&held("memory-held-2"), "{"]).await;
    add(&env, &mut conn, &held("memory-after-2")).await;
    assert_eq!(
        announced_until(&mut announced, "memory-after-2").await,
        ["memory-held-2", "memory-after-2"]
    );
    let letters: u64 = conn.xlen(env.var("DLQ_STREAM")).await.expect("XLEN");
    assert_eq!(letters, 1, "the malformed entry, parked once");
    assert_eq!(app.stats.executed.get(), 5);

    app.stop().await;
}
