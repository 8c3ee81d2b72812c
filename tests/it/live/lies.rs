//! Real orders against a fake MEXC that misbehaves the way MEXC is
//! reported to in the field: lookups that deny an accepted order for many
//! seconds, orders filled in hundreds of trades, fees in two assets,
//! cancels by the account's owner, two deployments of one account, and a
//! halt while orders wait for the request budget. For each: at most one
//! exchange order per `order_id`, quantities, trades and fees equal to the
//! exchange's, each change announced once on the fills stream, and every
//! order's stored status equal to its last recorded event.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{LiveRig, exchange_id, limit_order, market_order, spawn_live, wait_for_status};
use crate::fake_mexc::{FakeMexc, Fault, Script, symbol_info};
use crate::helpers::TestEnv;
use crate::proxy::Proxy;

/// Every live order's stored status is its last event's, and its state
/// sequence number the last event's number.
async fn assert_history_matches(env: &TestEnv) {
    let astray = env
        .texts(
            "SELECT o.order_id || ': ' || o.status || ' #' || o.state_seq || ' vs ' || \
               COALESCE(e.to_status, 'none') || ' #' || COALESCE(e.seq, 0) \
             FROM orders o LEFT JOIN LATERAL ( \
               SELECT to_status, seq FROM order_events WHERE order_id = o.order_id \
               ORDER BY seq DESC LIMIT 1) e ON true \
             WHERE o.client_order_id IS NOT NULL \
               AND (e.to_status IS DISTINCT FROM o.status OR e.seq IS DISTINCT FROM o.state_seq)",
        )
        .await;
    assert!(
        astray.is_empty(),
        "stored state differs from the last event: {astray:?}"
    );
}

/// Each change of `order_id` on the fills stream once: distinct result
/// ids, increasing sequence numbers. Returns the statuses announced.
async fn announced_changes(env: &TestEnv, order_id: &str) -> Vec<String> {
    let fills: Vec<_> = env
        .stream("FILLS_STREAM")
        .await
        .into_iter()
        .filter(|r| r["order_id"] == order_id)
        .collect();
    let ids: HashSet<&String> = fills.iter().map(|r| &r["result_id"]).collect();
    assert_eq!(
        ids.len(),
        fills.len(),
        "a change announced twice: {fills:?}"
    );
    let seqs: Vec<i64> = fills.iter().map(|r| r["seq"].parse().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {fills:?}"
    );
    fills.iter().map(|r| r["status"].clone()).collect()
}

/// MEXC applies the first order request but its answer is lost (`fault`
/// after applying), and every read denies the order for `secs` seconds.
fn accepted_unanswered_then_denied(fake: &FakeMexc, fault: Fault, secs: u64) {
    fake.deny_orders_for(Duration::from_secs(secs));
    fake.script(
        Script::nth(1, fault)
            .on("POST", "/api/v3/order")
            .after_applying(),
    );
}

/// Trades recorded for an order, and their quantities summed.
async fn recorded_trades(env: &TestEnv, order_id: &str) -> (i64, Decimal) {
    let count = env
        .count(&format!(
            "SELECT count(*) FROM trades WHERE order_id = '{order_id}'"
        ))
        .await;
    let sum = env
        .scalar_text(&format!(
            "SELECT COALESCE(sum(quantity), 0)::text FROM trades WHERE order_id = '{order_id}'"
        ))
        .await
        .unwrap()
        .parse()
        .unwrap();
    (count, sum)
}

#[tokio::test]
async fn a_long_denial_after_an_unanswered_post_sends_no_second_order() {
    // MEXC accepts the order, the answer is lost, then every read denies
    // it for 6 s: three times the absence window of the old rule. Even a
    // deployment that opted in to re-sending sends nothing more, since the
    // window outlasts the denial.
    for resend in ["false", "true"] {
        let env = LiveRig::start().await;
        accepted_unanswered_then_denied(&env.fake, Fault::Reset, 6);
        let app = env
            .replica(
                "lies-a",
                &[
                    ("LIVE_ABSENCE_WINDOW_SECS", "10"),
                    ("LIVE_RESEND_NOT_PLACED", resend),
                ],
            )
            .await;
        env.xadd_payload(&limit_order("denied", "0.002", "50000"))
            .await;

        let result = wait_for_status(&env, "denied", "FILLED").await;
        let client_id = exchange_id(&env, "denied");
        assert_eq!(
            env.fake.posts_for(&client_id),
            1,
            "resend={resend}: sent twice"
        );
        assert_eq!(env.fake.orders_for(&client_id).len(), 1);
        assert_eq!(result["filled_quantity"], "0.00200000");
        assert_eq!(announced_changes(&env, "denied").await, ["FILLED"]);
        assert!(
            env.fake.count("GET", "/api/v3/order") >= 3,
            "the denial was looked at"
        );
        assert_history_matches(&env).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_sixty_second_denial_with_the_default_window_sends_one_order() {
    // The field's worst reports: an accepted order denied by every read
    // for a minute, its answer lost, and MEXC accepting duplicate client
    // ids as new orders. With the default absence window (90 s) the order
    // is found, never re-sent, and not reported not placed on the way.
    let env = LiveRig::start().await;
    env.fake.reject_duplicate_client_ids(false);
    accepted_unanswered_then_denied(&env.fake, Fault::Hang, 60);
    let app = env
        .replica(
            "lies-k",
            &[
                // The defaults (the test settings shorten them).
                ("LIVE_ABSENCE_WINDOW_SECS", "90"),
                ("LIVE_RESOLVE_DEADLINE_SECS", "120"),
                ("LIVE_RESEND_NOT_PLACED", "true"),
            ],
        )
        .await;
    env.xadd_payload(&limit_order("a-minute", "0.002", "50000"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(80);
    while env.results_for("a-minute").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no result 80 s after a 60 s denial"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client_id = exchange_id(&env, "a-minute");
    assert_eq!(announced_changes(&env, "a-minute").await, ["FILLED"]);
    assert_eq!(env.fake.posts_for(&client_id), 1);
    assert_eq!(env.fake.orders_for(&client_id).len(), 1);
    assert_eq!(
        env.fake.count("GET", "/api/v3/allOrders"),
        0,
        "searched before the window passed"
    );
    assert_history_matches(&env).await;
    app.stop().await;
}

#[tokio::test]
async fn a_denial_longer_than_the_window_is_reported_not_placed_then_corrected_when_it_appears() {
    let env = LiveRig::start().await;
    accepted_unanswered_then_denied(&env.fake, Fault::Reset, 7);
    let app = env
        .replica("lies-b", &[("LIVE_ABSENCE_WINDOW_SECS", "2")])
        .await;
    env.xadd_payload(&limit_order("late", "0.002", "50000"))
        .await;

    let rejected = wait_for_status(&env, "late", "REJECTED").await;
    let reason = &rejected["error_message"];
    assert!(reason.starts_with("not placed"), "{reason}");
    assert!(reason.contains("LIVE_ABSENCE_WINDOW_SECS=2"), "{reason}");
    assert!(
        env.fake.count("GET", "/api/v3/allOrders") >= 1
            && env.fake.count("GET", "/api/v3/myTrades") >= 1,
        "reported not placed without searching the order list and trades"
    );
    let client_id = exchange_id(&env, "late");
    assert_eq!(
        env.fake.posts_for(&client_id),
        1,
        "re-sent without opting in"
    );

    // The order was there all along: once MEXC shows it, its fills are
    // recorded and the earlier result corrected.
    let filled = wait_for_status(&env, "late", "FILLED").await;
    assert_eq!(filled["corrects"], rejected["result_id"]);
    assert!(!filled.contains_key("error_message"), "{filled:?}");
    assert_eq!(filled["filled_quantity"], "0.00200000");
    assert_eq!(app.stats.live.late_appearances.get(), 1);
    assert_eq!(app.stats.live.not_placed.get(), 1);
    assert_eq!(env.fake.posts_for(&client_id), 1);
    assert_eq!(
        announced_changes(&env, "late").await,
        ["REJECTED", "FILLED"]
    );
    let (trades, quantity) = recorded_trades(&env, "late").await;
    assert_eq!(
        trades as usize,
        env.fake.orders_for(&client_id)[0].trades.len()
    );
    assert_eq!(quantity, env.fake.orders_for(&client_id)[0].executed_qty);
    let observations = env
        .texts("SELECT observation FROM order_events WHERE order_id = 'late' ORDER BY seq")
        .await;
    assert_eq!(
        observations,
        ["received", "claimed", "not_placed", "late_appearance"]
    );
    let history: Value = reqwest::get(format!("{}/orders/late/events", app.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = history["events"].as_array().unwrap();
    assert_eq!(history["status"], "FILLED");
    assert_eq!(events.last().unwrap()["to_status"], "FILLED");
    assert_eq!(events.last().unwrap()["seq"], history["seq"]);
    assert_eq!(events[2]["from_status"], "SUBMITTED");
    assert!(
        events[2]["evidence"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not placed"),
        "{history}"
    );
    assert_eq!(
        reqwest::get(format!("{}/orders/no-such-order/events", app.url))
            .await
            .unwrap()
            .status(),
        404
    );
    env.wait_until("the corrected order is let go of", || async {
        env.count(
            "SELECT count(*) FROM orders WHERE lease_until IS NOT NULL OR watch_until IS NOT NULL",
        )
        .await
            == 0
    })
    .await;
    assert_history_matches(&env).await;
    app.stop().await;
}

#[tokio::test]
async fn a_refused_resend_is_looked_up_and_never_ends_the_order_on_its_own() {
    // Opted in to re-sending; the first POST is applied but its answer
    // lost and the order denied longer than the window: the re-send is
    // refused (mapped code 30004, as when the first order used the
    // balance, and an unmapped one), and the order stays in flight until
    // MEXC shows the first one.
    for (code, msg) in [
        (30004, "Insufficient position"),
        (-2010, "Duplicate order sent."),
    ] {
        let env = LiveRig::start().await;
        accepted_unanswered_then_denied(&env.fake, Fault::Reset, 7);
        super::refuse_nth_order(&env.fake, 2, code, msg);
        let app = env
            .replica(
                "lies-c",
                &[
                    ("LIVE_ABSENCE_WINDOW_SECS", "2"),
                    ("LIVE_RESEND_NOT_PLACED", "true"),
                ],
            )
            .await;
        env.xadd_payload(&limit_order("refused-again", "0.002", "50000"))
            .await;
        wait_for_status(&env, "refused-again", "FILLED").await;
        let client_id = exchange_id(&env, "refused-again");
        assert_eq!(env.fake.posts_for(&client_id), 2, "code {code}");
        assert_eq!(env.fake.orders_for(&client_id).len(), 1);
        // Whatever it went through, no refusal ended it: a REJECTED on the
        // way (the searches after the refused re-send found nothing yet)
        // says not placed, and the order's real fill corrected it.
        let changes = announced_changes(&env, "refused-again").await;
        assert_eq!(
            changes.last().map(String::as_str),
            Some("FILLED"),
            "code {code}"
        );
        for result in env.results_for("refused-again").await {
            if result["status"] == "REJECTED" {
                assert!(
                    result["error_message"].starts_with("not placed"),
                    "code {code}: {result:?}"
                );
            }
        }
        let refusals = env
            .count("SELECT count(*) FROM order_events WHERE order_id = 'refused-again' AND observation = 'refused'")
            .await;
        assert_eq!(refusals, 0, "code {code}: ended on the refusal");
        assert_history_matches(&env).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn orders_filled_in_hundreds_of_trades_are_recorded_whole() {
    let env = LiveRig::start().await;
    // 160 fills, a millisecond apart, all due at once.
    let steps = 160u32;
    let fractions: Vec<String> = (1..=steps)
        .map(|i| (Decimal::from(i) / Decimal::from(steps)).to_string())
        .collect();
    env.fake.fill_plan(
        fractions
            .iter()
            .enumerate()
            .map(|(i, f)| (Duration::from_millis(i as u64), f.as_str()))
            .collect(),
    );
    let app = env.replica("lies-d", &[]).await;
    env.xadd_payload(&limit_order("many-fills", "0.016", "50000"))
        .await;
    env.xadd_payload(&market_order("swept", "0.016")).await;

    for order_id in ["many-fills", "swept"] {
        let result = wait_for_status(&env, order_id, "FILLED").await;
        assert_eq!(result["filled_quantity"], "0.01600000", "{order_id}");
        let exchange = &env.fake.orders_for(&exchange_id(&env, order_id))[0];
        assert_eq!(exchange.trades.len(), 160);
        let (trades, quantity) = recorded_trades(&env, order_id).await;
        assert_eq!(trades, 160, "{order_id}: trades recorded");
        assert_eq!(quantity, exchange.executed_qty);
        let fee = env
            .scalar_text(&format!(
                "SELECT fee::text FROM orders WHERE order_id = '{order_id}'"
            ))
            .await
            .unwrap();
        let exchange_fee: Decimal = exchange.trades.iter().map(|t| t.commission).sum();
        assert_eq!(fee.parse::<Decimal>().unwrap(), exchange_fee.round_dp(8));
    }
    assert!(
        env.fake.count("GET", "/api/v3/myTrades") >= 4,
        "160 trades cannot come in one page of 100"
    );
    assert_history_matches(&env).await;
    app.stop().await;
}

#[tokio::test]
async fn fees_in_two_assets_are_kept_per_asset() {
    let env = LiveRig::start().await;
    env.fake.fees_also_in("MX");
    env.fake.fill_plan(vec![
        (Duration::ZERO, "0.5"),
        (Duration::from_millis(5), "1"),
    ]);
    let app = env.replica("lies-e", &[]).await;
    env.xadd_payload(&limit_order("two-assets", "0.002", "50000"))
        .await;
    let result = wait_for_status(&env, "two-assets", "FILLED").await;
    let exchange = &env.fake.orders_for(&exchange_id(&env, "two-assets"))[0];
    let mut expected: BTreeMap<String, Decimal> = BTreeMap::new();
    for trade in &exchange.trades {
        *expected.entry(trade.commission_asset.clone()).or_default() += trade.commission;
    }
    assert_eq!(expected.len(), 2);
    let fees: BTreeMap<String, Decimal> =
        serde_json::from_str::<BTreeMap<String, String>>(&result["fees"])
            .expect("fees as an object")
            .into_iter()
            .map(|(asset, amount)| (asset, amount.parse().unwrap()))
            .collect();
    assert_eq!(fees, expected);
    assert!(
        !result.contains_key("fee") && !result.contains_key("fee_asset"),
        "one fee figure for two assets: {result:?}"
    );
    let stored: Value = serde_json::from_str(
        &env.scalar_text("SELECT fees::text FROM orders WHERE order_id = 'two-assets'")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        stored["MX"].as_str().map(|m| m.parse::<Decimal>().unwrap()),
        Some(expected["MX"])
    );
    assert_eq!(
        env.count("SELECT count(DISTINCT fee_asset) FROM trades")
            .await,
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_by_the_accounts_owner_is_recorded_with_what_filled() {
    let env = LiveRig::start().await;
    env.fake.fill_plan(vec![(Duration::ZERO, "0.25")]);
    let app = env.replica("lies-f", &[]).await;
    env.xadd_payload(&limit_order("cancelled-by-hand", "0.004", "50000"))
        .await;
    wait_for_status(&env, "cancelled-by-hand", "PARTIALLY_FILLED").await;
    assert!(
        env.fake
            .cancel_by_user(&exchange_id(&env, "cancelled-by-hand"))
    );
    let result = wait_for_status(&env, "cancelled-by-hand", "CANCELED").await;
    assert_eq!(result["filled_quantity"], "0.00100000");
    assert_eq!(
        env.fake.count("DELETE", "/api/v3/order"),
        0,
        "the service cancelled it"
    );
    assert_eq!(
        announced_changes(&env, "cancelled-by-hand").await,
        ["PARTIALLY_FILLED", "CANCELED"]
    );
    assert_history_matches(&env).await;
    app.stop().await;
}

#[tokio::test]
async fn a_halt_stops_every_order_still_waiting_for_the_request_budget() {
    const TOKEN: &str = "lies-admin-token-0123456789";
    let env = LiveRig::start().await;
    let app = env
        .replica(
            "lies-g",
            &[("MEXC_MAX_ORDERS_PER_SEC", "4"), ("ADMIN_TOKEN", TOKEN)],
        )
        .await;
    let orders = 120;
    for i in 0..orders {
        env.xadd_payload(&market_order(&format!("queued-{i}"), "0.002"))
            .await;
    }
    env.wait_until("the first orders left", || async {
        env.fake.count("POST", "/api/v3/order") >= 4
    })
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/halts", app.url))
        .bearer_auth(TOKEN)
        .json(&json!({"scope": "all", "reason": "desk stop"}))
        .send()
        .await
        .expect("POST /halts");
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    // Applied on this replica by the time the answer came.
    let applied = Instant::now();

    env.wait_until("every order is answered", || async {
        let answered: HashSet<String> = env
            .results()
            .await
            .into_iter()
            .map(|r| r["order_id"].clone())
            .collect();
        answered.len() == orders
    })
    .await;
    let late: Vec<Duration> = env
        .fake
        .order_writes()
        .iter()
        .filter(|w| w.at > applied)
        .map(|w| w.at - applied)
        .collect();
    assert!(
        late.iter().all(|after| *after <= Duration::from_millis(50)),
        "orders sent after the halt was applied: {late:?}"
    );
    let sent = env.fake.count("POST", "/api/v3/order");
    assert!(sent < orders, "the halt stopped nothing: {sent} sent");
    let halted = env
        .results()
        .await
        .into_iter()
        .filter(|r| r["status"] == "REJECTED" && r["error_message"].starts_with("halted:"))
        .count();
    assert_eq!(
        halted + sent,
        orders,
        "every order either left or was halted"
    );
    assert_history_matches(&env).await;
    app.stop().await;
}

#[tokio::test]
async fn two_deployments_of_one_account_share_its_request_budget() {
    // Two deployments: their own streams, databases and client id
    // namespaces, one MEXC key. The budget is the account's.
    let fake = FakeMexc::start().await;
    let (one, two) = (TestEnv::new().await, TestEnv::new().await);
    let shared = [
        ("MEXC_MAX_ORDERS_PER_SEC", "2"),
        ("MEXC_RATE_LIMIT_KEY", ""),
    ];
    let apps = [
        spawn_live(&one, &fake, "lies-h1", &shared).await,
        spawn_live(&two, &fake, "lies-h2", &shared).await,
    ];
    for i in 0..5 {
        one.xadd_payload(&market_order(&format!("one-{i}"), "0.002"))
            .await;
        two.xadd_payload(&market_order(&format!("two-{i}"), "0.002"))
            .await;
    }
    for env in [&one, &two] {
        env.wait_until("every order filled", || async {
            env.results()
                .await
                .iter()
                .filter(|r| r["status"] == "FILLED")
                .count()
                == 5
        })
        .await;
    }
    let busiest = fake.max_order_writes_within(Duration::from_secs(1));
    assert!(
        busiest <= 2,
        "{busiest} orders within one second against a budget of 2"
    );
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test]
async fn a_symbol_paused_and_resumed_at_mexc_trades_again_at_once() {
    let env = LiveRig::start().await;
    let mut paused = symbol_info("BTCUSDT", "BTC", "USDT");
    paused["status"] = json!("2");
    env.fake.set_symbol(paused);
    let app = env.replica("lies-i", &[]).await;
    env.xadd_payload(&limit_order("while-paused", "0.002", "50000"))
        .await;
    wait_for_status(&env, "while-paused", "REJECTED").await;
    let refused_at = Instant::now();
    env.fake.set_symbol(symbol_info("BTCUSDT", "BTC", "USDT"));
    // Rules older than a second are read again before an order is refused
    // on them (the cache keeps them a minute otherwise).
    tokio::time::sleep_until((refused_at + Duration::from_millis(1_100)).into()).await;
    env.xadd_payload(&limit_order("after-resume", "0.002", "50000"))
        .await;
    wait_for_status(&env, "after-resume", "FILLED").await;
    assert_eq!(env.fake.posts_for(&exchange_id(&env, "while-paused")), 0);
    assert_eq!(env.fake.posts_for(&exchange_id(&env, "after-resume")), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_postgres_cut_while_requests_are_in_flight_announces_each_change_once() {
    // Six orders reach MEXC, then Postgres goes away for 8 s before their
    // outcomes are recorded: batches fail and are retried, leases expire
    // and the reconciler takes over; each order must still be one order at
    // MEXC, and each of its changes one entry on the fills stream.
    let env = LiveRig::start().await;
    let proxy = Proxy::start(crate::helpers::postgres_addr()).await;
    let through_proxy = env
        .var("DATABASE_URL")
        .replace(crate::helpers::postgres_addr(), &proxy.addr.to_string());
    env.fake.fill_plan(vec![
        (Duration::ZERO, "0.5"),
        (Duration::from_millis(1_500), "1"),
    ]);
    let app = env
        .replica(
            "lies-j",
            &[
                ("DATABASE_URL", through_proxy.as_str()),
                ("CLAIM_IDLE_MS", "2000"),
            ],
        )
        .await;
    let ids: Vec<String> = (0..6).map(|i| format!("cut-{i}")).collect();
    for id in &ids {
        env.xadd_payload(&limit_order(id, "0.002", "50000")).await;
    }
    env.wait_until("every order reached MEXC", || async {
        env.fake.count("POST", "/api/v3/order") >= ids.len()
    })
    .await;
    proxy.cut();
    let cut_until = Instant::now() + Duration::from_secs(8);
    env.wait_until("the cut lasted 8 s", || async {
        Instant::now() >= cut_until
    })
    .await;
    proxy.restore();
    for id in &ids {
        wait_for_status(&env, id, "FILLED").await;
    }
    env.wait_until("every entry is acknowledged", || async {
        env.pending().await == 0
    })
    .await;
    for id in &ids {
        let client_id = exchange_id(&env, id);
        assert_eq!(env.fake.orders_for(&client_id).len(), 1, "{id}");
        assert_eq!(env.fake.posts_for(&client_id), 1, "{id}");
        let changes = announced_changes(&env, id).await;
        assert_eq!(changes.last().map(String::as_str), Some("FILLED"), "{id}");
        assert_eq!(
            changes.iter().filter(|c| *c == "FILLED").count(),
            1,
            "{id}: {changes:?}"
        );
        let (_, quantity) = recorded_trades(&env, id).await;
        assert_eq!(
            quantity,
            env.fake.orders_for(&client_id)[0].executed_qty,
            "{id}"
        );
    }
    let stuck = env
        .count("SELECT count(*) FROM orders WHERE status NOT IN ('FILLED', 'CANCELED', 'REJECTED', 'ERROR')")
        .await;
    assert_eq!(stuck, 0, "orders left unfinished");
    assert_history_matches(&env).await;
    app.stop().await;
}
