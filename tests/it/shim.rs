//! The pub/sub shim: a chunk Redis refuses is retried, not dropped; copies
//! of one publish merge but a later re-send gets its answer; a message
//! too large is dead-lettered unparsed.

use execution_service::bus::{DeadLetters, Letter, RequeueError};
use sha2::{Digest, Sha256};

use crate::bytes::{RawFields, raw_entries, xadd_raw};
use crate::helpers::{TestEnv, order_json};

fn field<'a>(fields: &'a RawFields, name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

#[tokio::test]
async fn a_chunk_redis_refuses_is_retried_until_it_is_mirrored() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[]).await;
    // Running (start-up refuses a key of the wrong kind).
    env.publish(&[order_json("accepted", "1", "10")]).await;
    env.wait_for_results(1).await;
    // The orders stream's key now holds a string: every XADD fails
    // (WRONGTYPE).
    env.spoil_key("ORDERS_STREAM", true).await;
    let orders: Vec<String> = (0..5)
        .map(|i| order_json(&format!("refused-{i}"), "1", "10"))
        .collect();
    env.publish(&orders).await;
    env.wait_until("the shim has retried", || async {
        app.stats.shim_retries.get() >= 1
    })
    .await;

    env.spoil_key("ORDERS_STREAM", false).await;
    let results = env.wait_for_results(6).await;
    assert!(results.iter().all(|r| r["status"] == "FILLED"));
    assert_eq!(env.stream_len("ORDERS_STREAM").await, 5);

    app.stop().await;
}

#[tokio::test]
async fn an_order_sent_again_after_the_dedup_window_gets_its_result_again() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[("DEDUP_WINDOW_MS", "200")]).await;
    let mut channel = Box::pin(env.subscribe_results().await);
    let order = order_json("resent-1", "0.5", "100");
    env.publish(std::slice::from_ref(&order)).await;
    let first = env.wait_for_results(1).await;

    // The shim forgets the order once the window has passed.
    let key = format!(
        "{}:dedup:{}",
        env.var("ORDERS_STREAM"),
        hex::encode(Sha256::digest(order.as_bytes()))
    );
    env.wait_until("the dedup key expires", || async {
        let mut conn = env.redis.clone();
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("EXISTS");
        !exists
    })
    .await;
    env.publish(std::slice::from_ref(&order)).await;

    // The stored result again, on the channel, marked as a replay; the
    // streams carry the order's one change once.
    let answers = crate::helpers::next_results(&mut channel, 2).await;
    assert_eq!(answers[1].replay, Some(true));
    assert_eq!(answers[1].result_id, answers[0].result_id);
    assert_eq!(answers[0].status.as_str(), "FILLED");
    env.wait_until("the re-sent entry is acknowledged", || async {
        env.pending().await == 0
    })
    .await;
    assert_eq!(env.results().await, first, "the change announced twice");
    assert_eq!(
        env.count("SELECT count(*) FROM trades WHERE order_id = 'resent-1'")
            .await,
        1,
        "executed twice"
    );
    assert_eq!(app.stats.executed.get(), 1);

    app.stop().await;
}

#[tokio::test]
async fn messages_larger_than_the_limit_are_dead_lettered_unparsed_and_cut() {
    let env = TestEnv::new().await;
    let limit = 65_536;
    let app = env.spawn("replica-a", &[]).await;
    // 2 MB, on the channel: a valid JSON order padded with spaces.
    let order = order_json("big-1", "1", "10");
    let big = format!("{order}{}", " ".repeat(2_000_000));
    env.publish(std::slice::from_ref(&big)).await;
    // 100 kB, straight onto the stream.
    let padding = vec![b'p'; 100_000];
    let entry = xadd_raw(
        &env,
        &[
            (b"payload", order_json("big-2", "1", "10").as_bytes()),
            (b"padding", &padding),
        ],
    )
    .await;
    // An id of 60 kB fits the limit: its dedup key is its hash, not itself.
    let long_id = "i".repeat(60_000);
    env.publish(&[
        order_json(&long_id, "1", "10"),
        order_json("small-1", "1", "10"),
    ])
    .await;

    env.wait_until("the small order is filled", || async {
        !env.results_for("small-1").await.is_empty()
    })
    .await;
    env.wait_until("both large messages are dead-lettered", || async {
        env.stream_len("DLQ_STREAM").await >= 3 && env.pending().await == 0
    })
    .await;
    assert!(env.results_for("big-1").await.is_empty());
    assert!(env.results_for("big-2").await.is_empty());
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE order_id LIKE 'big-%'")
            .await,
        0
    );

    let letters: Vec<RawFields> = raw_entries(&env, "DLQ_STREAM")
        .await
        .into_iter()
        .map(|(_, fields)| fields)
        .collect();
    let from_channel = letters
        .iter()
        .find(|l| field(l, "dlq_source_channel").is_some())
        .expect("the channel message's letter");
    assert_eq!(field(from_channel, "dlq_truncated"), Some(&b"true"[..]));
    assert_eq!(
        field(from_channel, "dlq_message_bytes"),
        Some(big.len().to_string().as_bytes())
    );
    assert_eq!(
        field(from_channel, "dlq_message_sha256"),
        Some(hex::encode(Sha256::digest(big.as_bytes())).as_bytes())
    );
    assert_eq!(
        field(from_channel, "payload"),
        Some(&big.as_bytes()[..limit])
    );
    let reason = String::from_utf8_lossy(field(from_channel, "dlq_reason").unwrap_or_default());
    assert!(reason.contains("MAX_MESSAGE_BYTES=65536"), "{reason}");

    let from_stream = letters
        .iter()
        .find(|l| field(l, "dlq_original_id") == Some(entry.as_bytes()))
        .expect("the stream entry's letter");
    assert_eq!(field(from_stream, "dlq_truncated"), Some(&b"true"[..]));
    let kept: usize = from_stream
        .iter()
        .filter(|(name, _)| !name.starts_with(b"dlq_"))
        .map(|(name, value)| name.len() + value.len())
        .sum();
    assert_eq!(kept, limit, "the letter keeps exactly the first bytes");
    assert_eq!(
        app.stats.dead_lettered.get(),
        3,
        "big-1, big-2 and the long id"
    );

    // Every dedup key has the same short length, the 60 kB id's included.
    let mut conn = env.redis.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:dedup:*", env.var("ORDERS_STREAM")))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert!(!keys.is_empty());
    let expected = format!("{}:dedup:", env.var("ORDERS_STREAM")).len() + 64;
    assert!(keys.iter().all(|k| k.len() == expected), "{keys:?}");

    app.stop().await;

    // A letter holding only part of its message cannot be requeued.
    let app_settings = env.settings(&[]);
    let pool = execution_service::bus::pool(&env.var("REDIS_URL"), 2).expect("pool");
    let dlq = DeadLetters::new(
        pool,
        execution_service::app::topology(&app_settings.streams.topology),
    );
    let all: Vec<Letter> = dlq.list(10).await.expect("list");
    let truncated: Vec<Letter> = all.into_iter().filter(Letter::is_truncated).collect();
    assert_eq!(truncated.len(), 2);
    assert!(matches!(
        dlq.requeue(&truncated).await,
        Err(RequeueError::Truncated(_))
    ));
    // A letter Redis refuses to take back stays a letter.
    let whole: Vec<Letter> = dlq
        .list(10)
        .await
        .expect("list")
        .into_iter()
        .filter(|letter| !letter.is_truncated())
        .collect();
    assert!(!whole.is_empty());
    env.spoil_key("ORDERS_STREAM", true).await;
    let refused = dlq.requeue(&whole).await;
    assert!(
        matches!(&refused, Err(RequeueError::Bus(err)) if err.to_string().contains("WRONGTYPE")),
        "{refused:?}"
    );
    assert_eq!(
        dlq.list(10).await.expect("list").len(),
        truncated.len() + whole.len()
    );
    env.spoil_key("ORDERS_STREAM", false).await;
    let requeued = dlq.requeue(&whole).await.expect("requeued");
    assert_eq!(requeued.len(), whole.len());
    assert_eq!(dlq.list(10).await.expect("list").len(), truncated.len());
    assert_eq!(env.stream_len("ORDERS_STREAM").await, whole.len());
}

#[tokio::test]
async fn another_message_under_the_same_id_within_the_window_is_answered_as_a_conflict() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[]).await;
    let first = order_json("same-id", "1", "100");
    let second = order_json("same-id", "2", "100");
    env.publish(&[first, second]).await;
    let results = env.wait_for_results(2).await;
    let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str()).collect();
    assert!(
        statuses.contains(&"FILLED") && statuses.contains(&"REJECTED"),
        "{statuses:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| r.get("error_message").map(String::as_str)
                == Some("order_id reused with different content: quantity")),
        "{results:?}"
    );
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 1);
    app.stop().await;
}
