//! The same order, however often it arrives, is executed once.

use execution_service::bus::Entry;
use execution_service::domain::ExecutionResult;

use crate::helpers::{TestEnv, order_json};

#[tokio::test]
async fn the_same_order_published_five_times_is_mirrored_and_executed_once() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[]).await;

    let order = order_json("dup-1", "0.25", "100");
    env.publish(&vec![order; 5]).await;
    env.publish(&[order_json("after-dup", "1", "1")]).await;

    // The later order's result proves the duplicates were all seen first.
    env.wait_until("the later order is done", || async {
        !env.results_for("after-dup").await.is_empty()
    })
    .await;
    assert_eq!(
        env.stream_len("ORDERS_STREAM").await,
        2,
        "the shim mirrored duplicates"
    );
    assert_eq!(env.results_for("dup-1").await.len(), 1);
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE order_id = 'dup-1'")
            .await,
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM trades WHERE order_id = 'dup-1'")
            .await,
        1
    );

    app.stop().await;
}

#[tokio::test]
async fn the_same_order_added_to_the_stream_three_times_gets_one_execution_and_equal_results() {
    let env = TestEnv::new().await;
    let app = env
        .spawn(
            "replica-a",
            &[("SHIM_ENABLED", "false"), ("BATCH_SIZE", "1")],
        )
        .await;

    let mut channel = Box::pin(env.subscribe_results().await);
    for _ in 0..3 {
        env.xadd_payload(&order_json("dup-2", "0.5", "20000")).await;
    }
    // Three answers on the channel: the change, then two replays of it.
    let answers = crate::helpers::next_results(&mut channel, 3).await;
    assert_eq!(answers[0].replay, None);
    for replay in &answers[1..] {
        assert_eq!(replay.replay, Some(true));
        let unmarked = ExecutionResult {
            replay: None,
            ..replay.clone()
        };
        assert_eq!(unmarked, answers[0], "a replay differs from the change");
    }
    env.wait_until("every entry is acknowledged", || async {
        env.pending().await == 0
    })
    .await;
    // The streams carry each change of an order once.
    let results = env.results_for("dup-2").await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["result_id"], "dup-2:1");
    assert_eq!(results[0]["status"], "FILLED");
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE order_id = 'dup-2'")
            .await,
        1
    );
    assert_eq!(
        env.count("SELECT attempts::bigint FROM orders WHERE order_id = 'dup-2'")
            .await,
        3
    );
    assert_eq!(
        env.count("SELECT count(*) FROM trades WHERE order_id = 'dup-2'")
            .await,
        1
    );
    assert_eq!(app.stats.executed.get(), 1);

    app.stop().await;
}

#[tokio::test]
async fn an_entry_delivered_twice_is_executed_once() {
    let env = TestEnv::new().await;
    let worker = env.worker("direct").await;
    worker.consumer.ensure_group().await.expect("group");
    let payload = order_json("redelivered-1", "3", "7.5");
    env.xadd_payload(&payload).await;
    let entries: Vec<Entry> = worker.consumer.read_new(10, 100).await.expect("read");
    assert_eq!(entries.len(), 1);

    let first = worker
        .process_batch(&entries)
        .await
        .expect("first delivery");
    let again: Vec<Entry> = entries
        .iter()
        .map(|e| Entry {
            deliveries: 2,
            ..e.clone()
        })
        .collect();
    let second = worker.process_batch(&again).await.expect("second delivery");

    assert_eq!(first.executed, 1);
    assert_eq!(second.executed, 0, "a terminal order was executed again");
    assert_eq!(first.results, second.results);
    assert_eq!(first.results[0].status.as_str(), "FILLED");
    assert_eq!(
        env.count("SELECT count(*) FROM trades WHERE order_id = 'redelivered-1'")
            .await,
        1
    );
    assert_eq!(
        env.results_for("redelivered-1").await.len(),
        1,
        "a redelivered entry whose change was announced is acknowledged silently"
    );
}

#[tokio::test]
async fn duplicates_inside_one_batch_share_one_execution() {
    let env = TestEnv::new().await;
    let worker = env.worker("direct").await;
    worker.consumer.ensure_group().await.expect("group");
    for _ in 0..4 {
        env.xadd_payload(&order_json("same-batch", "1", "2")).await;
    }
    let entries = worker.consumer.read_new(10, 100).await.expect("read");
    assert_eq!(entries.len(), 4);
    let report = worker.process_batch(&entries).await.expect("batch");
    assert_eq!(report.executed, 1);
    assert_eq!(report.results.len(), 4);
    assert!(report.results.iter().all(|r| r == &report.results[0]));
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 1);
    assert_eq!(env.pending().await, 0);
}

#[tokio::test]
async fn a_stored_order_left_unfinished_is_finished_once_in_a_transaction() {
    use sea_orm::ConnectionTrait;
    let env = TestEnv::new().await;
    let worker = env.worker("direct").await;
    worker.consumer.ensure_group().await.expect("group");
    // A row another path stored and did not finish, with the content of
    // the order about to arrive.
    env.db
        .execute_unprepared(
            "INSERT INTO orders (order_id, symbol, side, order_type, quantity, price, status, mode, \
             attempts, created_at, updated_at) \
             VALUES ('unfinished-1', 'BTCUSDT', 'BUY', 'MARKET', 2, 5, 'PENDING', 'paper', 1, now(), now())",
        )
        .await
        .expect("store an unfinished row");
    env.xadd_payload(&order_json("unfinished-1", "2", "5"))
        .await;
    env.xadd_payload(&order_json("fresh-1", "1", "5")).await;
    env.xadd_payload(&order_json("unfinished-1", "2", "5"))
        .await;
    // An invalid message naming it is answered too (a conflict).
    env.xadd_payload(&order_json("unfinished-1", "-2", "5"))
        .await;
    let entries = worker.consumer.read_new(10, 100).await.expect("read");
    assert_eq!(entries.len(), 4);

    let report = worker.process_batch(&entries).await.expect("batch");
    assert_eq!(report.executed, 2, "the new order and the unfinished one");
    let statuses: Vec<&str> = report.results.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["FILLED", "FILLED", "FILLED", "REJECTED"]);
    assert!(report.held.is_empty());
    assert_eq!(
        env.count("SELECT count(*) FROM trades WHERE order_id = 'unfinished-1'")
            .await,
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE status = 'FILLED'")
            .await,
        2
    );
    // Its change once, and the conflict's answer.
    assert_eq!(env.results_for("unfinished-1").await.len(), 2);
    assert_eq!(env.results_for("fresh-1").await.len(), 1);
    assert_eq!(env.pending().await, 0);

    // Delivered again, it is re-emitted, never executed again.
    let again = worker.process_batch(&entries).await.expect("again");
    assert_eq!(again.executed, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM trades").await,
        2,
        "an order was executed twice"
    );
}

/// Two batches holding the same order race to announce it: the one that
/// did not insert the row may announce the change first. The one that did
/// must then still answer its message, as a replay, not drop it.
#[tokio::test]
async fn a_first_answer_beaten_by_a_duplicates_answer_goes_out_as_a_replay() {
    use execution_service::bus::{Announce, Announcement, Publisher};
    use execution_service::domain::{OrderStatus, TradingMode};

    let env = TestEnv::new().await;
    let settings = env.settings(&[]);
    let pool = execution_service::bus::pool(&crate::helpers::redis_url(), 2).expect("a pool");
    let publisher = Publisher::new(
        pool,
        execution_service::app::topology(&settings.streams.topology),
    );
    let mut result =
        ExecutionResult::new("raced".into(), OrderStatus::Filled, TradingMode::Paper, 1);
    result.seq = Some(1);
    result.result_id = Some("raced:1".into());
    let mut channel = Box::pin(env.subscribe_results().await);
    for kind in [Announce::Answer, Announce::FirstAnswer] {
        let announcement = Announcement {
            result: result.clone(),
            kind,
        };
        publisher
            .publish_and_ack(&[announcement], &[], &[])
            .await
            .expect("announced");
    }
    let answers = crate::helpers::next_results(&mut channel, 2).await;
    assert_eq!(answers[0].replay, None, "the first announces the change");
    assert_eq!(answers[1].replay, Some(true), "the second is a replay");
    assert_eq!(
        ExecutionResult {
            replay: None,
            ..answers[1].clone()
        },
        answers[0]
    );
    // The change reached the streams once.
    assert_eq!(env.results_for("raced").await.len(), 1);
}
