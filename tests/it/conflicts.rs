//! One `order_id`, one outcome, forever: a later message with the same id
//! and other content is answered as a conflict and never executed, and a
//! REJECTED outcome keeps its id even when its values fit no column.

use futures_util::StreamExt;

use crate::helpers::{TestEnv, order_json};

#[tokio::test]
async fn fifty_quantities_under_one_id_fill_once_and_conflict_forty_nine_times() {
    let env = TestEnv::new().await;
    let app = env.spawn("conflicted", &[("SHIM_ENABLED", "false")]).await;

    env.xadd_payload(&order_json("reused-1", "43", "10")).await;
    env.wait_until("the first fills", || async {
        !env.results_for("reused-1").await.is_empty()
    })
    .await;
    for quantity in 44..93 {
        env.xadd_payload(&order_json("reused-1", &quantity.to_string(), "10"))
            .await;
    }
    env.wait_until("fifty results", || async {
        env.results_for("reused-1").await.len() == 50
    })
    .await;

    let results = env.results_for("reused-1").await;
    assert_eq!(results[0]["status"], "FILLED");
    assert_eq!(results[0]["quantity"], "43.00000000");
    for result in &results[1..] {
        assert_eq!(result["status"], "REJECTED", "{result:?}");
        assert_eq!(
            result["error_message"],
            "order_id reused with different content: quantity"
        );
    }
    // Each answer repeats what its conflicting message asked for.
    let mut answered: Vec<String> = results[1..].iter().map(|r| r["quantity"].clone()).collect();
    answered.sort();
    let asked: Vec<String> = (44..93).map(|q| format!("{q}.00000000")).collect();
    assert_eq!(answered, asked);
    assert_eq!(
        env.scalar_text("SELECT quantity::text FROM orders WHERE order_id = 'reused-1'")
            .await
            .as_deref(),
        Some("43.00000000"),
        "the stored order was touched"
    );
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 1);
    assert_eq!(app.stats.conflicts.get(), 49);
    let metrics = reqwest::get(format!("{}/metrics", app.url))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("execution_orders_conflicts_total 49"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn another_side_in_the_same_batch_conflicts_with_the_first() {
    let env = TestEnv::new().await;
    let buy = order_json("same-batch", "1", "10");
    let sell = buy.replace("\"BUY\"", "\"SELL\"");
    // Both wait in the stream before the worker starts: one batch.
    env.xadd_payload(&buy).await;
    env.xadd_payload(&sell).await;
    let app = env.spawn("batched", &[("SHIM_ENABLED", "false")]).await;
    let results = env.wait_for_results(2).await;
    assert_eq!(results[0]["status"], "FILLED");
    assert_eq!(results[1]["status"], "REJECTED");
    assert_eq!(
        results[1]["error_message"],
        "order_id reused with different content: side"
    );
    assert_eq!(results[1]["side"], "SELL");
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_rejection_whose_values_fit_no_column_keeps_its_id() {
    let env = TestEnv::new().await;
    let app = env.spawn("keeper", &[("SHIM_ENABLED", "false")]).await;
    let long_symbol = "X".repeat(10_000);
    let unfit = serde_json::json!({
        "order_id": "unfit-1", "symbol": long_symbol, "side": "BUY", "quantity": "1", "price": "10"
    })
    .to_string();
    env.xadd_payload(&unfit).await;
    let first = env.wait_for_results(1).await;
    assert_eq!(first[0]["status"], "REJECTED");

    // The row is there, the value that fits no column is NULL, and the
    // message is kept whole.
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE order_id = 'unfit-1' AND status = 'REJECTED' AND symbol IS NULL")
            .await,
        1
    );
    let raw = env
        .scalar_text("SELECT raw_message FROM orders WHERE order_id = 'unfit-1'")
        .await
        .expect("the raw message is kept");
    assert!(raw.contains(&long_symbol));
    assert_eq!(
        env.stream_len("DLQ_STREAM").await,
        1,
        "the raw message is dead-lettered too"
    );

    // The same message again: the stored outcome, replayed on the
    // channel only.
    let mut channel = Box::pin(env.subscribe_results().await);
    env.xadd_payload(&unfit).await;
    let replay = tokio::time::timeout(crate::helpers::DEADLINE, channel.next())
        .await
        .expect("an answer")
        .expect("the channel stays open");
    assert_eq!(replay.replay, Some(true));
    assert_eq!(
        replay.result_id.as_deref(),
        Some(first[0]["result_id"].as_str())
    );
    // A valid order under the same id: a conflict, not a fill.
    env.xadd_payload(&order_json("unfit-1", "1", "10")).await;
    let results = env.wait_for_results(2).await;
    let conflict = &results[1];
    assert_eq!(conflict["status"], "REJECTED");
    assert_eq!(
        conflict["error_message"],
        "order_id reused with different content: symbol"
    );
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 0);
    assert_eq!(app.stats.conflicts.get(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_id_stays_rejected_when_a_corrected_order_reuses_it() {
    let env = TestEnv::new().await;
    // Both wait in the stream first, so the rejected one is read first.
    env.xadd_payload(&order_json("fixed-later", "-1", "10"))
        .await;
    env.xadd_payload(&order_json("fixed-later", "1", "10"))
        .await;
    let app = env.spawn("strict", &[("SHIM_ENABLED", "false")]).await;
    let results = env.wait_for_results(2).await;
    assert_eq!(results[0]["status"], "REJECTED");
    assert_eq!(results[1]["status"], "REJECTED");
    assert!(
        results[1]["error_message"].ends_with(": quantity"),
        "{:?}",
        results[1]
    );
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 0);
    app.stop().await;
}
