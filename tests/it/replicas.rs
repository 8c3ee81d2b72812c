//! Two instances on one group (and two shims on one channel) share the
//! work, and every order is executed exactly once.

use crate::helpers::{TestEnv, order_json};

#[tokio::test]
async fn two_replicas_execute_two_thousand_orders_exactly_once() {
    let env = TestEnv::new().await;
    let settings = [("BATCH_SIZE", "25")];
    let a = env.spawn("replica-a", &settings).await;
    let b = env.spawn("replica-b", &settings).await;
    assert!(env.subscribers().await >= 2);

    let orders: Vec<String> = (0..2000)
        .map(|i| order_json(&format!("rep-{i}"), "0.01", "100"))
        .collect();
    for chunk in orders.chunks(100) {
        env.publish(chunk).await;
    }
    env.wait_for_results(2000).await;
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;

    assert_eq!(
        env.stream_len("ORDERS_STREAM").await,
        2000,
        "the two shims mirrored a message twice"
    );
    assert_eq!(env.stream_len("RESULTS_STREAM").await, 2000);
    assert_eq!(
        env.count("SELECT count(DISTINCT order_id) FROM orders")
            .await,
        2000
    );
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE status = 'FILLED'")
            .await,
        2000
    );
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 2000);
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE attempts <> 1")
            .await,
        0
    );
    let (done_a, done_b) = (a.stats.executed.get(), b.stats.executed.get());
    assert_eq!(done_a + done_b, 2000);
    assert!(
        done_a > 0 && done_b > 0,
        "one replica did all the work: a={done_a} b={done_b}"
    );

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn mock_outcomes_repeat_for_the_same_order_and_seed() {
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let env = TestEnv::with(&[
            ("TRADING_MODE", "mock"),
            ("MOCK_SEED", "1234"),
            ("SHIM_ENABLED", "false"),
        ])
        .await;
        let app = env.spawn("mock", &[]).await;
        for i in 0..20 {
            env.xadd_payload(&order_json(&format!("mock-{i}"), "1", "100"))
                .await;
        }
        let mut results = env.wait_for_results(20).await;
        results.sort_by(|x, y| x["order_id"].cmp(&y["order_id"]));
        let outcome: Vec<(String, String, Option<String>, String)> = results
            .iter()
            .map(|r| {
                (
                    r["order_id"].clone(),
                    r["status"].clone(),
                    r.get("price").cloned(),
                    r["mode"].clone(),
                )
            })
            .collect();
        assert!(outcome.iter().all(|o| o.3 == "mock"));
        outcomes.push(outcome);
        app.stop().await;
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert!(
        outcomes[0]
            .iter()
            .any(|o| o.2.as_deref() != Some("100.00000000")),
        "no slippage was applied"
    );
}
