//! SIGKILL of a replica sending real orders, at the moments that matter:
//! before its request left (stamped, waiting for the request budget), while
//! the request is on the wire and not applied, after MEXC applied it but
//! before the answer arrived, and during the lookup that follows. The replica that takes over must leave exactly one order
//! at the exchange and announce one outcome for it.

use execution_service::execution::mexc::client_order_id;

use super::harness::Cluster;
use crate::fake_mexc::{API_KEY, API_SECRET, FakeMexc, Fault, Script};
use crate::helpers::TestEnv;

/// Where the replica is when it dies: the request it is waiting on (or,
/// with `method` empty, the request budget: nothing sent yet).
struct KillPoint {
    method: &'static str,
    path: &'static str,
    applied: bool,
}

async fn killed_while_waiting_on(point: KillPoint) {
    let fake = FakeMexc::start().await;
    let env = TestEnv::new().await;
    let before_sending = point.method.is_empty();
    if !before_sending {
        let mut script = Script::nth(1, Fault::Hang).on(point.method, point.path);
        if point.applied {
            script = script.after_applying();
        }
        fake.script(script);
    }
    let namespace = env.var("CONSUMER_GROUP");
    // The budget of the fleet, paused as after a 429: a send waits for it.
    let pause_key = format!("mexc-orders:{namespace}:pause");
    if before_sending {
        let mut redis = env.redis.clone();
        let () = redis::cmd("SET")
            .arg(&pause_key)
            .arg(1)
            .arg("PX")
            .arg(60_000)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let url = fake.url();
    let vars = [
        ("TRADING_MODE", "live"),
        ("DRY_RUN", "false"),
        ("CONFIRM_LIVE_TRADING", "true"),
        ("MEXC_BASE_URL", url.as_str()),
        ("MEXC_API_KEY", API_KEY),
        ("MEXC_API_SECRET", API_SECRET),
        ("MEXC_RECV_WINDOW_MS", "1000"),
        ("MEXC_TIMEOUT_MS", "2000"),
        ("LIVE_LEASE_SECS", "8"),
        ("LIVE_ABSENCE_WINDOW_SECS", "1"),
        ("LIVE_RECONCILE_INTERVAL_MS", "100"),
        ("LIVE_CLIENT_ID_NAMESPACE", namespace.as_str()),
        ("MEXC_RATE_LIMIT_KEY", namespace.as_str()),
        // An order never placed is sent again here: exactly one order at
        // MEXC whatever the moment of the kill (without it, such an order
        // is reported not placed: see live::an_order_not_found_...).
        ("LIVE_RESEND_NOT_PLACED", "true"),
        ("CLAIM_IDLE_MS", "1000"),
        ("CLAIM_INTERVAL_MS", "200"),
    ];
    let mut cluster = Cluster::new(&env, &vars);
    cluster.start().await;
    let order_id = "killed-live";
    env.xadd_payload(
        &serde_json::json!({
            "order_id": order_id, "symbol": "BTCUSDT", "side": "BUY",
            "order_type": "LIMIT", "quantity": "0.002", "price": "50000",
        })
        .to_string(),
    )
    .await;
    if before_sending {
        env.wait_until("the replica stamped its request and waits", || async {
            env.count("SELECT count(*) FROM orders WHERE sent_at IS NOT NULL")
                .await
                == 1
        })
        .await;
    } else {
        env.wait_until("the replica waits on MEXC", || async {
            fake.count(point.method, point.path) >= 1
        })
        .await;
    }
    cluster.kill(0).await;
    if before_sending {
        assert_eq!(fake.count("POST", "/api/v3/order"), 0);
        let mut redis = env.redis.clone();
        let () = redis::cmd("DEL")
            .arg(&pause_key)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    cluster.start().await;

    env.wait_until("the order is announced FILLED", || async {
        env.results_for(order_id)
            .await
            .iter()
            .any(|r| r["status"] == "FILLED")
    })
    .await;
    let client_id = client_order_id(&namespace, order_id);
    assert_eq!(
        fake.orders_for(&client_id).len(),
        1,
        "orders at MEXC after a SIGKILL waiting on {} {}",
        point.method,
        point.path
    );
    let expected_posts = if point.method == "POST" && !point.applied {
        2
    } else {
        1
    };
    assert_eq!(fake.posts_for(&client_id), expected_posts);
    let results = env.results_for(order_id).await;
    assert!(
        results
            .iter()
            .all(|r| r["status"] == "FILLED" && r["filled_quantity"] == "0.00200000"),
        "one outcome, however often announced: {results:?}"
    );
    env.wait_until("the entry is acknowledged", || async {
        env.pending().await == 0
    })
    .await;
    assert_eq!(
        env.count("SELECT count(*) FROM trades").await,
        1,
        "one trade per exchange fill"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn sigkill_before_the_request_left_leaves_one_order_after_verified_absence() {
    killed_while_waiting_on(KillPoint {
        method: "",
        path: "",
        applied: false,
    })
    .await;
}

#[tokio::test]
async fn sigkill_before_the_order_is_applied_leaves_one_order_after_verified_absence() {
    killed_while_waiting_on(KillPoint {
        method: "POST",
        path: "/api/v3/order",
        applied: false,
    })
    .await;
}

#[tokio::test]
async fn sigkill_after_the_order_is_applied_leaves_one_order_found_by_lookup() {
    killed_while_waiting_on(KillPoint {
        method: "POST",
        path: "/api/v3/order",
        applied: true,
    })
    .await;
}

#[tokio::test]
async fn sigkill_during_the_lookup_leaves_one_order() {
    killed_while_waiting_on(KillPoint {
        method: "GET",
        path: "/api/v3/order",
        applied: false,
    })
    .await;
}
