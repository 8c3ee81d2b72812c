//! Redis keys that hold the wrong kind of value: start-up refuses them by
//! setting name, and a key overwritten while the service runs stops the
//! batches that write it without announcing or parking anything twice (or
//! counting anything less than once), and nothing else.

use futures_util::StreamExt;

use crate::helpers::{DEADLINE, TestEnv, announced_until, order_json};
use crate::live::LiveRig;

/// A kill-switch entry nobody can understand, then a halt of ETHUSDT
/// (orders here are BTCUSDT).
async fn junk_then_a_halt(env: &TestEnv) {
    env.kill_switch(&[("action", "explode")]).await;
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "symbol"),
        ("symbol", "ETHUSDT"),
        ("reason", "test"),
    ])
    .await;
}

/// Once the held entries are acknowledged, one order more: whatever their
/// attempts published came before its result (announcements reach a
/// subscriber in order). The order ids announced up to it.
async fn announced_through_next(
    env: &TestEnv,
    announced: &mut (impl futures_util::Stream<Item = String> + Unpin),
    next: &str,
) -> Vec<String> {
    env.wait_until("the held entries are acknowledged", || async {
        env.pending().await == 0
    })
    .await;
    env.xadd_payload(&order_json(next, "0.01", "50000")).await;
    announced_until(announced, next).await
}

#[tokio::test]
async fn start_up_names_every_setting_whose_key_holds_the_wrong_kind() {
    let env = TestEnv::new().await;
    for var in ["RESULTS_STREAM", "FILLS_STREAM", "SHUTDOWN_STREAM"] {
        env.spoil_key(var, true).await;
    }
    let app = env.build("wrong-kinds", &[("SHIM_ENABLED", "false")]).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let ended = tokio::time::timeout(DEADLINE, app.run_until_stopped(cancel))
        .await
        .expect("start-up gives up instead of retrying");
    let message = format!("{:#}", ended.expect_err("start-up refuses the keys"));
    for var in ["RESULTS_STREAM", "FILLS_STREAM", "SHUTDOWN_STREAM"] {
        assert!(
            message.contains(&format!(
                "{var} names the Redis key {:?}, which holds a string, not a stream",
                env.var(var)
            )),
            "{var}: {message}"
        );
    }
    assert!(!message.contains("ORDERS_STREAM"), "{message}");
}

#[tokio::test]
async fn a_results_stream_overwritten_while_running_holds_its_batch_without_duplicates() {
    let env = TestEnv::new().await;
    let mut announced = env.subscribe_results().await.map(|r| r.order_id);
    let app = env.spawn("overwritten", &[("SHIM_ENABLED", "false")]).await;
    env.xadd_payload(&order_json("kinds-before", "0.001", "50000"))
        .await;
    assert_eq!(
        announced_until(&mut announced, "kinds-before").await,
        ["kinds-before"]
    );

    env.spoil_key("RESULTS_STREAM", true).await;
    // An order and a message to dead-letter, in one batch (one transaction
    // wakes the reader once).
    let mut conn = env.redis.clone();
    let held = order_json("kinds-held", "0.001", "50000");
    let () = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(env.var("ORDERS_STREAM"))
        .arg("*")
        .arg("payload")
        .arg(&held)
        .ignore()
        .cmd("XADD")
        .arg(env.var("ORDERS_STREAM"))
        .arg("*")
        .arg("payload")
        .arg("{")
        .ignore()
        .query_async(&mut conn)
        .await
        .expect("MULTI XADD XADD");
    // Several failed attempts: each used to publish the result again, and
    // to park the dead letter again.
    let failures = app.stats.batch_failures.get();
    app.wait_for_stat("three failed attempts", |stats| {
        stats.batch_failures.get() >= failures + 3
    })
    .await;
    assert_eq!(env.pending().await, 2, "the entries stay unacknowledged");
    assert_eq!(env.stream_len("DLQ_STREAM").await, 0);
    // The kill switch writes no results: an entry it cannot read is
    // dead-lettered and the halt after it applies.
    junk_then_a_halt(&env).await;
    app.wait_for_stat("the halt is applied", |stats| stats.halts_active.get() == 1)
        .await;

    env.spoil_key("RESULTS_STREAM", false).await;
    assert_eq!(
        announced_through_next(&env, &mut announced, "kinds-after").await,
        ["kinds-held", "kinds-after"]
    );
    assert_eq!(env.results_for("kinds-held").await.len(), 1);
    // The kill switch's letter and the batch's, each parked once.
    assert_eq!(env.stream_len("DLQ_STREAM").await, 2);
    // Executed once each, counted when stored: the held order's first
    // attempt stored it, the one that announced it found it stored.
    assert_eq!(app.stats.executed.get(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_failure_notes_key_overwritten_holds_a_transaction_batch_without_duplicates() {
    // A live dry run takes the transaction path.
    let env = LiveRig::start().await;
    let mut announced = env.subscribe_results().await.map(|r| r.order_id);
    let url = env.fake.url();
    let app = env
        .spawn(
            "dry-overwritten",
            &[
                ("SHIM_ENABLED", "false"),
                ("TRADING_MODE", "live"),
                ("MEXC_BASE_URL", url.as_str()),
                ("MEXC_API_KEY", crate::fake_mexc::API_KEY),
                ("MEXC_API_SECRET", crate::fake_mexc::API_SECRET),
            ],
        )
        .await;
    // Running (start-up refuses a key of the wrong kind).
    env.xadd_payload(&order_json("dry-before", "0.01", "50000"))
        .await;
    env.wait_for_results(1).await;
    let notes = format!("{}:failures", env.var("ORDERS_STREAM"));
    let mut conn = env.redis.clone();
    let () = redis::cmd("SET")
        .arg(&notes)
        .arg("not a hash")
        .query_async(&mut conn)
        .await
        .expect("SET");
    env.xadd_payload(&order_json("dry-held", "0.01", "50000"))
        .await;
    let failures = app.stats.batch_failures.get();
    app.wait_for_stat("three failed attempts", |stats| {
        stats.batch_failures.get() >= failures + 3
    })
    .await;
    let () = redis::cmd("DEL")
        .arg(&notes)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    assert_eq!(
        announced_through_next(&env, &mut announced, "dry-after").await,
        ["dry-before", "dry-held", "dry-after"]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_dead_letter_stream_that_cannot_be_written_holds_up_no_halt() {
    let env = TestEnv::new().await;
    let app = env
        .spawn("letters-held", &[("SHIM_ENABLED", "false")])
        .await;
    // Running (start-up refuses a key of the wrong kind).
    env.xadd_payload(&order_json("letters-before", "0.001", "50000"))
        .await;
    env.wait_for_results(1).await;
    env.spoil_key("DLQ_STREAM", true).await;
    junk_then_a_halt(&env).await;
    app.wait_for_stat("the halt behind the refused entry is applied", |stats| {
        stats.halts_active.get() == 1
    })
    .await;
    env.spoil_key("DLQ_STREAM", false).await;
    env.wait_until("the refused entry is dead-lettered", || async {
        env.stream_len("DLQ_STREAM").await == 1
    })
    .await;
    app.stop().await;
}
