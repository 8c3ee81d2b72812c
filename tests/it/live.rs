//! Real orders against the fake MEXC: the live path end to end, through
//! the running service. Every test checks what the exchange received (one
//! order per order id, whatever failed) as well as what was announced.

use std::collections::HashMap;
use std::time::Duration;

use execution_service::execution::mexc::client_order_id;

use crate::fake_mexc::{API_KEY, API_SECRET, FakeClient, FakeMexc, Fault, Script};
use crate::helpers::{Running, TestEnv};

mod exchange_check;
mod lies;
mod stream;

/// Settings of a replica sending real orders to `fake`, quick to decide:
/// a one-second recvWindow, the shortest absence grace, frequent reconciler
/// rounds. The namespace (and so the request budget) is the test's own.
pub(crate) fn live_vars(env: &TestEnv, fake: &FakeMexc) -> Vec<(String, String)> {
    [
        ("SHIM_ENABLED", "false"),
        ("TRADING_MODE", "live"),
        ("DRY_RUN", "false"),
        ("CONFIRM_LIVE_TRADING", "true"),
        ("MEXC_BASE_URL", fake.url().as_str()),
        ("MEXC_WS_URL", fake.ws_url().as_str()),
        // REST alone, as when the user data stream is down; the stream's
        // own tests (live/stream.rs) turn it on.
        ("LIVE_USER_STREAM", "false"),
        ("MEXC_API_KEY", API_KEY),
        ("MEXC_API_SECRET", API_SECRET),
        ("MEXC_RECV_WINDOW_MS", "1000"),
        ("MEXC_TIMEOUT_MS", "1000"),
        ("LIVE_ABSENCE_WINDOW_SECS", "1"),
        ("LIVE_RECONCILE_INTERVAL_MS", "50"),
        ("LIVE_LEASE_SECS", "5"),
        (
            "LIVE_CLIENT_ID_NAMESPACE",
            env.var("CONSUMER_GROUP").as_str(),
        ),
        // Every test trades with the fake's one key: each keeps a budget
        // of its own, as if each were an account of its own.
        ("MEXC_RATE_LIMIT_KEY", env.var("CONSUMER_GROUP").as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Everything a live test stands on: its own database, streams and keys
/// (the `TestEnv` it derefs to) and its own fake MEXC. Both are released
/// when the rig drops, whether the test passed or not.
pub(crate) struct LiveRig {
    env: TestEnv,
    pub(crate) fake: FakeMexc,
}

impl LiveRig {
    pub(crate) async fn start() -> Self {
        let fake = FakeMexc::start().await;
        let env = TestEnv::new().await;
        Self { env, fake }
    }

    /// A replica trading on this rig's fake with [`live_vars`], plus `extra`.
    pub(crate) async fn replica(&self, name: &str, extra: &[(&str, &str)]) -> Running {
        spawn_live(&self.env, &self.fake, name, extra).await
    }
}

impl std::ops::Deref for LiveRig {
    type Target = TestEnv;

    fn deref(&self) -> &TestEnv {
        &self.env
    }
}

/// A replica of `env` trading on `fake`: for deployments that share one
/// exchange account; a test of one deployment uses [`LiveRig::replica`].
pub(crate) async fn spawn_live(
    env: &TestEnv,
    fake: &FakeMexc,
    name: &str,
    extra: &[(&str, &str)],
) -> Running {
    let mut vars = live_vars(env, fake);
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.spawn(name, &borrowed).await
}

/// Makes the `nth` order request get MEXC's refusal `code` (HTTP 400).
pub(crate) fn refuse_nth_order(fake: &FakeMexc, nth: usize, code: i64, msg: &str) {
    fake.script(
        Script::nth(
            nth,
            Fault::Error {
                status: 400,
                code,
                msg: msg.into(),
            },
        )
        .on("POST", "/api/v3/order"),
    );
}

/// The id the order carries at the exchange.
fn exchange_id(env: &TestEnv, order_id: &str) -> String {
    client_order_id(&env.var("CONSUMER_GROUP"), order_id)
}

pub(crate) fn limit_order(order_id: &str, quantity: &str, price: &str) -> String {
    serde_json::json!({
        "order_id": order_id, "symbol": "BTC/USDT", "side": "BUY",
        "order_type": "LIMIT", "quantity": quantity, "price": price,
    })
    .to_string()
}

fn market_order(order_id: &str, quantity: &str) -> String {
    serde_json::json!({
        "order_id": order_id, "symbol": "BTCUSDT", "side": "SELL", "quantity": quantity,
    })
    .to_string()
}

/// Waits for a result of `order_id` with `status`; returns it.
pub(crate) async fn wait_for_status(
    env: &TestEnv,
    order_id: &str,
    status: &str,
) -> HashMap<String, String> {
    env.wait_until(&format!("{order_id} is announced {status}"), || async {
        env.results_for(order_id)
            .await
            .iter()
            .any(|r| r["status"] == status)
    })
    .await;
    env.results_for(order_id)
        .await
        .into_iter()
        .find(|r| r["status"] == status)
        .expect("the result")
}

async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn an_accepted_order_is_looked_up_and_announced_filled_with_its_exchange_ids() {
    let env = LiveRig::start().await;
    let app = env.replica("live-a", &[]).await;
    env.xadd_payload(&limit_order("live-1", "0.002", "50000"))
        .await;

    let result = wait_for_status(&env, "live-1", "FILLED").await;
    let client_id = exchange_id(&env, "live-1");
    assert_eq!(result["mode"], "live");
    assert_eq!(result["client_order_id"], client_id);
    assert_eq!(result["filled_quantity"], "0.00200000");
    assert_eq!(result["price"], "50000.00000000");
    let exchange_order_id = &env.fake.orders_for(&client_id)[0].order_id;
    assert_eq!(&result["exchange_order_id"], exchange_order_id);
    assert_eq!(env.fake.posts_for(&client_id), 1);
    assert_eq!(
        env.texts("SELECT trade_id FROM trades").await.len(),
        1,
        "one trade per exchange fill"
    );
    assert!(
        env.texts("SELECT trade_id FROM trades").await[0].starts_with("mexc-"),
        "trades keep MEXC's trade id"
    );
    assert_eq!(
        env.scalar_text("SELECT fee_asset FROM orders")
            .await
            .as_deref(),
        Some("USDT")
    );
    env.wait_until("the entry is acknowledged", || async {
        env.pending().await == 0
    })
    .await;

    let (_, status) = get_json(&format!("{}/status", app.url)).await;
    assert_eq!(status["live"]["sent"], 1);
    assert_eq!(status["live"]["accepted"], 1);
    assert_eq!(status["live"]["breaker_open"], false);
    let metrics = reqwest::get(format!("{}/metrics", app.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("execution_live_orders_sent_total 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn accepted_then_no_answer_is_one_order_at_the_exchange_resolved_by_lookup() {
    let cases = [
        (Fault::Reset, false),
        (Fault::ServerError, false),
        (Fault::Hang, false),
        (Fault::Reset, true),
    ];
    for (fault, reject_duplicates) in cases {
        let env = LiveRig::start().await;
        env.fake.reject_duplicate_client_ids(reject_duplicates);
        env.fake.script(
            Script::nth(1, fault.clone())
                .on("POST", "/api/v3/order")
                .after_applying(),
        );
        let app = env.replica("live-b", &[]).await;
        env.xadd_payload(&limit_order("lost-answer", "0.002", "50000"))
            .await;

        let result = wait_for_status(&env, "lost-answer", "FILLED").await;
        let client_id = exchange_id(&env, "lost-answer");
        assert_eq!(
            env.fake.orders_for(&client_id).len(),
            1,
            "{fault:?}: one order at MEXC"
        );
        assert_eq!(
            env.fake.posts_for(&client_id),
            1,
            "{fault:?}: never sent twice"
        );
        assert_eq!(result["client_order_id"], client_id);
        app.stop().await;
    }
}

#[tokio::test]
async fn not_accepted_and_a_server_error_is_sent_again_only_where_opted_in_after_the_searches() {
    let env = LiveRig::start().await;
    env.fake
        .script(Script::nth(1, Fault::ServerError).on("POST", "/api/v3/order"));
    let app = env
        .replica("live-c", &[("LIVE_RESEND_NOT_PLACED", "true")])
        .await;
    env.xadd_payload(&limit_order("absent-1", "0.002", "50000"))
        .await;

    wait_for_status(&env, "absent-1", "FILLED").await;
    let client_id = exchange_id(&env, "absent-1");
    let writes: Vec<_> = env
        .fake
        .order_writes()
        .into_iter()
        .filter(|w| w.client_order_id == client_id)
        .collect();
    assert_eq!(writes.len(), 2, "one refused send, one re-send");
    assert!(
        writes[1].at - writes[0].at >= Duration::from_millis(2_000),
        "re-sent {:?} after the first, before its recvWindow and the grace passed",
        writes[1].at - writes[0].at
    );
    assert_eq!(env.fake.orders_for(&client_id).len(), 1);
    assert!(
        env.fake.count("GET", "/api/v3/allOrders") >= 1
            && env.fake.count("GET", "/api/v3/myTrades") >= 1,
        "re-sent without searching the order list and the trades"
    );
    assert_eq!(
        env.count("SELECT send_attempts::bigint FROM orders").await,
        2
    );
    assert_eq!(
        app.stats.executed.get(),
        1,
        "a re-send is not another execution"
    );
    app.stop().await;
}

#[tokio::test]
async fn lookups_that_lag_acceptance_cause_no_resend() {
    let env = LiveRig::start().await;
    // MEXC may deny an order it accepted for a few seconds: five lookups.
    env.fake.unknown_for_first_lookups(5);
    env.fake.script(
        Script::nth(1, Fault::Reset)
            .on("POST", "/api/v3/order")
            .after_applying(),
    );
    let app = env
        .replica("live-d", &[("LIVE_ABSENCE_WINDOW_SECS", "5")])
        .await;
    env.xadd_payload(&limit_order("lagging", "0.002", "50000"))
        .await;

    wait_for_status(&env, "lagging", "FILLED").await;
    let client_id = exchange_id(&env, "lagging");
    assert_eq!(
        env.fake.posts_for(&client_id),
        1,
        "re-sent on a lagging lookup"
    );
    assert_eq!(env.fake.orders_for(&client_id).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_same_order_published_five_times_is_one_post() {
    use futures_util::StreamExt;
    // One entry per batch, two batches at a time: the copies race each
    // other on one replica. Whether or not the exchange refuses a
    // duplicate client id must not matter.
    for reject_duplicates in [false, true] {
        let env = LiveRig::start().await;
        env.fake.reject_duplicate_client_ids(reject_duplicates);
        let app = env.replica("live-e", &[("BATCH_SIZE", "1")]).await;
        let mut channel = Box::pin(env.subscribe_results().await);
        for _ in 0..5 {
            env.xadd_payload(&market_order("five-times", "0.002")).await;
        }
        env.wait_until("every entry is acknowledged", || async {
            env.pending().await == 0
        })
        .await;
        // Every copy was answered on the channel: the change once, the
        // other copies as replays of it.
        let mut answers = Vec::new();
        while answers.len() < 5 {
            let answer = tokio::time::timeout(crate::helpers::DEADLINE, channel.next())
                .await
                .expect("five answers on the results channel")
                .expect("the channel stays open");
            if answer.order_id == "five-times" {
                answers.push(answer);
            }
        }
        assert!(answers.iter().all(|a| a.status.as_str() == "FILLED"));
        assert_eq!(
            answers.iter().filter(|a| a.replay.is_none()).count(),
            1,
            "one announcement, four replays: {answers:?}"
        );
        assert!(answers.iter().all(|a| a.result_id == answers[0].result_id));
        let client_id = exchange_id(&env, "five-times");
        assert_eq!(
            env.fake.posts_for(&client_id),
            1,
            "rejecting duplicates: {reject_duplicates}"
        );
        assert_eq!(app.stats.executed.get(), 1, "counted once, as it left");
        for stream in ["RESULTS_STREAM", "FILLS_STREAM"] {
            let announced: Vec<_> = env
                .stream(stream)
                .await
                .into_iter()
                .filter(|r| r["order_id"] == "five-times")
                .collect();
            assert_eq!(announced.len(), 1, "{stream}: {announced:?}");
            assert_eq!(announced[0]["status"], "FILLED");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_pre_trade_rule_failure_sends_nothing() {
    let env = LiveRig::start().await;
    let app = env.replica("live-f", &[("MAX_ORDER_NOTIONAL", "50")]).await;
    // Below MEXC's minimum notional, and above MAX_ORDER_NOTIONAL.
    env.xadd_payload(&limit_order("tiny", "0.0001", "5000"))
        .await;
    env.xadd_payload(&limit_order("huge", "1", "50000")).await;

    let tiny = wait_for_status(&env, "tiny", "REJECTED").await;
    assert!(
        tiny["error_message"].starts_with("min_notional"),
        "{tiny:?}"
    );
    let huge = wait_for_status(&env, "huge", "REJECTED").await;
    assert!(
        huge["error_message"].contains("MAX_ORDER_NOTIONAL"),
        "{huge:?}"
    );
    assert_eq!(env.fake.count("POST", "/api/v3/order"), 0);
    app.stop().await;
}

#[tokio::test]
async fn mapped_rejections_end_rejected_with_mexcs_code_and_are_never_resent() {
    let env = LiveRig::start().await;
    refuse_nth_order(&env.fake, 1, 10101, "Insufficient balance");
    refuse_nth_order(&env.fake, 2, 30016, "trading disabled");
    let app = env.replica("live-g", &[]).await;
    env.xadd_payload(&limit_order("broke", "0.002", "50000"))
        .await;
    let broke = wait_for_status(&env, "broke", "REJECTED").await;
    env.xadd_payload(&limit_order("closed", "0.002", "50000"))
        .await;
    let closed = wait_for_status(&env, "closed", "REJECTED").await;
    assert!(broke["error_message"].contains("10101"), "{broke:?}");
    assert!(closed["error_message"].contains("30016"), "{closed:?}");
    assert_eq!(env.fake.count("POST", "/api/v3/order"), 2);
    assert!(env.fake.orders().is_empty());
    let metrics = reqwest::get(format!("{}/metrics", app.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"execution_live_orders_rejected_total{code="10101"} 1"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_skewed_clock_costs_one_resync_and_one_retry() {
    for offset_ms in [2_000, -70_000] {
        let env = LiveRig::start().await;
        let app = env.replica("live-h", &[]).await;
        env.xadd_payload(&limit_order("before-skew", "0.002", "50000"))
            .await;
        wait_for_status(&env, "before-skew", "FILLED").await;
        let syncs = env.fake.count("GET", "/api/v3/time");

        env.fake.set_clock_offset_ms(offset_ms);
        env.xadd_payload(&limit_order("skewed", "0.002", "50000"))
            .await;
        wait_for_status(&env, "skewed", "FILLED").await;
        let client_id = exchange_id(&env, "skewed");
        assert_eq!(
            env.fake.posts_for(&client_id),
            2,
            "{offset_ms}: one refused, one retried"
        );
        assert_eq!(env.fake.orders_for(&client_id).len(), 1);
        assert_eq!(
            env.fake.count("GET", "/api/v3/time") - syncs,
            1,
            "{offset_ms}: one resync"
        );
        assert_eq!(
            env.count("SELECT send_attempts::bigint FROM orders WHERE order_id = 'skewed'")
                .await,
            2,
            "{offset_ms}: the retry after 700003 is a request like any other"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_rate_limit_answer_pauses_every_send_until_retry_after() {
    let env = LiveRig::start().await;
    env.fake.script(
        Script::nth(
            1,
            Fault::RateLimited {
                retry_after_secs: 2,
                banned: false,
            },
        )
        .on("POST", "/api/v3/order"),
    );
    let app = env.replica("live-i", &[]).await;
    env.xadd_payload(&limit_order("limited", "0.002", "50000"))
        .await;
    // Once the refusal is taken in (the pause set for every replica), no
    // order may leave before Retry-After expires.
    app.wait_for_stat("rate-limit waits", |stats| {
        stats.live.rate_limit_waits.get() >= 1
    })
    .await;
    env.xadd_payload(&limit_order("queued", "0.002", "50000"))
        .await;
    wait_for_status(&env, "limited", "FILLED").await;
    wait_for_status(&env, "queued", "FILLED").await;

    let writes = env.fake.order_writes();
    let refused_at = writes[0].at;
    assert!(
        writes[1..]
            .iter()
            .all(|w| w.at - refused_at >= Duration::from_millis(1_950)),
        "sent before Retry-After expired: {:?}",
        writes.iter().map(|w| w.at - refused_at).collect::<Vec<_>>()
    );
    for order_id in ["limited", "queued"] {
        assert_eq!(env.fake.orders_for(&exchange_id(&env, order_id)).len(), 1);
    }
    app.stop().await;
}

#[tokio::test]
async fn partial_fills_are_announced_then_the_fill_and_each_trade_is_recorded_once() {
    let env = LiveRig::start().await;
    env.fake.fill_plan(vec![
        (Duration::ZERO, "0.3"),
        (Duration::from_millis(1_500), "1"),
    ]);
    let app = env.replica("live-j", &[]).await;
    env.xadd_payload(&limit_order("partial", "0.002", "50000"))
        .await;

    let first = wait_for_status(&env, "partial", "PARTIALLY_FILLED").await;
    assert_eq!(first["filled_quantity"], "0.00060000");
    let done = wait_for_status(&env, "partial", "FILLED").await;
    assert_eq!(done["filled_quantity"], "0.00200000");
    let statuses: Vec<String> = env
        .results_for("partial")
        .await
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        ["PARTIALLY_FILLED", "FILLED"],
        "one result per change"
    );
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 2);
    assert_eq!(
        env.scalar_text("SELECT sum(quantity)::text FROM trades")
            .await
            .as_deref(),
        Some("0.00200000")
    );
    assert_eq!(env.fake.count("POST", "/api/v3/order"), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_open_order_past_its_ttl_is_cancelled_once_and_announced_with_what_filled() {
    let env = LiveRig::start().await;
    env.fake.fill_plan(vec![(Duration::ZERO, "0.3")]);
    let app = env.replica("live-k", &[("LIVE_ORDER_TTL_SECS", "1")]).await;
    env.xadd_payload(&limit_order("resting", "0.002", "50000"))
        .await;

    let canceled = wait_for_status(&env, "resting", "CANCELED").await;
    assert_eq!(canceled["filled_quantity"], "0.00060000");
    let client_id = exchange_id(&env, "resting");
    assert_eq!(
        env.fake.orders_for(&client_id)[0].status,
        "PARTIALLY_CANCELED"
    );
    assert_eq!(env.fake.count("DELETE", "/api/v3/order"), 1);
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 1);
    assert_eq!(
        env.scalar_text("SELECT status FROM orders")
            .await
            .as_deref(),
        Some("CANCELED")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_exchange_makes_an_order_unknown_never_resent_and_reconciled_after() {
    let env = LiveRig::start().await;
    env.fake.script(
        Script::nth(1, Fault::Reset)
            .on("POST", "/api/v3/order")
            .after_applying(),
    );
    env.fake.script(
        Script::nth(1, Fault::ServerError)
            .on("GET", "/api/v3/order")
            .times(12),
    );
    let app = env
        .replica("live-l", &[("LIVE_RESOLVE_DEADLINE_SECS", "1")])
        .await;
    env.xadd_payload(&limit_order("dark", "0.002", "50000"))
        .await;

    let unknown = wait_for_status(&env, "dark", "UNKNOWN").await;
    assert_eq!(unknown["client_order_id"], exchange_id(&env, "dark"));
    let (_, status) = get_json(&format!("{}/status", app.url)).await;
    assert_eq!(status["live"]["unknown"], 1);
    wait_for_status(&env, "dark", "FILLED").await;
    assert_eq!(
        env.fake.posts_for(&exchange_id(&env, "dark")),
        1,
        "an UNKNOWN order was re-sent"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_entry_redelivered_while_a_dead_replica_holds_the_lease_sends_nothing_until_it_expires()
{
    let env = LiveRig::start().await;
    // A replica that claimed the order, sent it, and died before recording.
    let payload = limit_order("orphan", "0.002", "50000");
    let (store, order, dead) = claimed_by_a_dead_replica(&env, &payload, 2_000).await;
    let client_id = exchange_id(&env, "orphan");
    let client = env.fake.client();
    let stamped = client.stamp().await.unwrap();
    store
        .mark_sending("orphan", &dead, stamped, true)
        .await
        .unwrap()
        .unwrap();
    let new_order =
        execution_service::execution::mexc::NewOrder::for_order(&order, client_id.clone());
    client.new_order_stamped(&new_order, stamped).await.unwrap();

    let app = env.replica("live-m", &[]).await;
    env.xadd_payload(&payload).await;
    let result = wait_for_status(&env, "orphan", "FILLED").await;
    assert_eq!(result["client_order_id"], client_id);
    assert_eq!(
        env.fake.posts_for(&client_id),
        1,
        "sent again while the order existed"
    );
    env.wait_until("the entry is acknowledged", || async {
        env.pending().await == 0
    })
    .await;
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE lease_owner IS NOT NULL")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refused_key_stops_sending_on_the_replica_visible_in_ready_and_status() {
    let env = LiveRig::start().await;
    let app = env
        .replica(
            "live-n",
            &[("MEXC_API_SECRET", "not-the-secret-the-exchange-knows")],
        )
        .await;
    env.xadd_payload(&limit_order("refused-1", "0.002", "50000"))
        .await;
    app.wait_for_stat("the breaker", |stats| stats.live.breaker_open.get() == 1)
        .await;
    // Once open, nothing more is sent: a later order waits.
    env.xadd_payload(&limit_order("refused-2", "0.002", "50000"))
        .await;
    env.wait_until("both rows are stored", || async {
        env.count("SELECT count(*) FROM orders").await == 2
    })
    .await;

    let (code, ready) = get_json(&format!("{}/ready", app.url)).await;
    assert_eq!(code, 503);
    assert_eq!(ready["exchange"], false);
    assert!(
        ready["failing"]
            .as_array()
            .unwrap()
            .contains(&"exchange".into())
    );
    let (_, status) = get_json(&format!("{}/status", app.url)).await;
    assert_eq!(status["live"]["breaker_open"], true);
    assert!(
        status["live"]["breaker_reason"]
            .as_str()
            .unwrap()
            .contains("700002"),
        "{status}"
    );
    assert!(
        !status.to_string().contains("not-the-secret"),
        "the secret leaked into /status"
    );
    // Nothing is rejected for a refused key: the orders wait, unacknowledged.
    assert!(env.results().await.is_empty());
    assert_eq!(env.pending().await, 2);
    assert_eq!(
        env.fake.count("POST", "/api/v3/order"),
        1,
        "sending went on after the key was refused"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE status = 'PENDING'")
            .await,
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn three_replicas_together_stay_under_the_request_budget_at_the_exchange() {
    let env = LiveRig::start().await;
    let limit = [("MEXC_MAX_ORDERS_PER_SEC", "3")];
    let apps = [
        env.replica("live-o1", &limit).await,
        env.replica("live-o2", &limit).await,
        env.replica("live-o3", &limit).await,
    ];
    for n in 0..12 {
        env.xadd_payload(&limit_order(&format!("budget-{n}"), "0.002", "50000"))
            .await;
    }
    env.wait_until("every order is filled", || async {
        env.results()
            .await
            .iter()
            .filter(|r| r["status"] == "FILLED")
            .count()
            == 12
    })
    .await;
    assert_eq!(env.fake.orders().len(), 12);
    let busiest = env.fake.max_order_writes_within(Duration::from_secs(1));
    assert!(busiest <= 3, "{busiest} order requests within one second");
    for app in apps {
        app.stop().await;
    }
}

/// Claims `order_id` for a replica that then dies: its lease (`lease_ms`)
/// runs out on its own. Returns the store and the order's row.
async fn claimed_by_a_dead_replica(
    env: &TestEnv,
    payload: &str,
    lease_ms: u64,
) -> (
    execution_service::store::Store,
    execution_service::domain::Order,
    execution_service::store::Lease,
) {
    use execution_service::domain::{Incoming, Parsed, TradingMode};
    use execution_service::store::{self, Lease, LiveClaim};

    let Parsed::Order(order) = Parsed::from_incoming(Incoming::Json(payload.as_bytes())) else {
        panic!("not an order: {payload}");
    };
    let store = store::Store::connect(&env.var("DATABASE_URL"), 2)
        .await
        .unwrap();
    let dead = Lease {
        owner: "dead-replica#0".into(),
        length: Duration::from_millis(lease_ms),
    };
    let row = store::pending_row(&order, TradingMode::Live, chrono::Utc::now());
    let client_id = exchange_id(env, &order.order_id);
    let LiveClaim::Send(_) = store.claim_live(&row, &client_id, &dead).await.unwrap() else {
        panic!("a new order is claimed for sending");
    };
    (store, order, dead)
}

#[tokio::test]
async fn an_order_in_flight_redelivered_under_a_halt_is_looked_up_not_overwritten() {
    let env = LiveRig::start().await;
    let payload = limit_order("in-flight", "0.002", "50000");
    let (store, order, dead) = claimed_by_a_dead_replica(&env, &payload, 1_000).await;
    let client = env.fake.client();
    let stamped = client.stamp().await.unwrap();
    store
        .mark_sending("in-flight", &dead, stamped, true)
        .await
        .unwrap()
        .unwrap();
    let client_id = exchange_id(&env, "in-flight");
    let new_order =
        execution_service::execution::mexc::NewOrder::for_order(&order, client_id.clone());
    client.new_order_stamped(&new_order, stamped).await.unwrap();
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "all"),
        ("reason", "market closed"),
        ("source", "operator"),
    ])
    .await;

    let app = env.replica("live-p", &[]).await;
    env.xadd_payload(&payload).await;
    env.xadd_payload(&limit_order("after-halt", "0.002", "50000"))
        .await;
    let halted = wait_for_status(&env, "after-halt", "REJECTED").await;
    assert!(halted["error_message"].starts_with("halted:"), "{halted:?}");
    // The order placed before the halt is still the exchange's: its fill
    // is learnt and announced, never replaced by a rejection.
    let filled = wait_for_status(&env, "in-flight", "FILLED").await;
    assert_eq!(filled["client_order_id"], client_id);
    assert!(
        env.results_for("in-flight")
            .await
            .iter()
            .all(|r| r["status"] == "FILLED")
    );
    assert_eq!(env.fake.posts_for(&client_id), 1);
    assert_eq!(
        env.fake.count("POST", "/api/v3/order"),
        1,
        "an order sent under a halt"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_finished_order_whose_result_never_went_out_is_announced_by_the_reconciler() {
    use execution_service::domain::OrderStatus;
    use execution_service::domain::lifecycle::Observation;
    use execution_service::store::LiveUpdate;

    let env = LiveRig::start().await;
    let payload = limit_order("unannounced", "0.002", "50000");
    let (store, _, dead) = claimed_by_a_dead_replica(&env, &payload, 60_000).await;
    // Recorded FILLED, then the replica died before publishing.
    let filled = LiveUpdate {
        observation: Some(Observation::Reported(OrderStatus::Filled)),
        exchange_status: Some("FILLED".into()),
        filled_quantity: Some("0.002".parse().unwrap()),
        fill_price: Some(50_000.into()),
        keep_lease: true,
        poll_in: Some(Duration::from_millis(300)),
        ..LiveUpdate::default()
    };
    store
        .record_live("unannounced", &dead, &filled, &[])
        .await
        .unwrap()
        .unwrap();

    let app = env.replica("live-q", &[]).await;
    let result = wait_for_status(&env, "unannounced", "FILLED").await;
    assert_eq!(result["filled_quantity"], "0.00200000");
    env.wait_until("the announced order's lease is released", || async {
        env.count("SELECT count(*) FROM orders WHERE lease_owner IS NOT NULL")
            .await
            == 0
    })
    .await;
    assert_eq!(env.results_for("unannounced").await.len(), 1);
    let unannounced = exchange_id(&env, "unannounced");
    assert!(
        env.fake
            .requests()
            .iter()
            .all(|r| !r.query.contains(&unannounced)),
        "nothing asked of MEXC for a finished order"
    );
    app.stop().await;
}

fn strategy_order(order_id: &str, strategy: &str) -> String {
    serde_json::json!({
        "order_id": order_id, "symbol": "BTCUSDT", "side": "BUY", "order_type": "LIMIT",
        "quantity": "0.002", "price": "49000", "strategy_id": strategy,
    })
    .to_string()
}

#[tokio::test]
async fn a_halt_cancels_the_open_orders_it_covers_once_across_replicas() {
    let env = LiveRig::start().await;
    // Orders rest on the book.
    env.fake.fill_plan(vec![]);
    let apps = [
        env.replica("live-r1", &[]).await,
        env.replica("live-r2", &[]).await,
    ];
    env.xadd_payload(&strategy_order("s1-open", "S1")).await;
    env.xadd_payload(&strategy_order("s2-open", "S2")).await;
    env.wait_until("both orders rest at MEXC", || async {
        env.fake
            .orders()
            .iter()
            .filter(|o| o.status == "NEW")
            .count()
            == 2
    })
    .await;
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "strategy"),
        ("strategy_id", "S1"),
        ("reason", "drawdown"),
        ("source", "risk-manager"),
    ])
    .await;

    let canceled = wait_for_status(&env, "s1-open", "CANCELED").await;
    assert!(canceled["error_message"].contains("halted"), "{canceled:?}");
    // The other order keeps being polled, and is never cancelled.
    let s2 = exchange_id(&env, "s2-open");
    let looked = env.fake.orders_for(&s2)[0].lookups;
    env.wait_until("the uncovered order is polled again twice", || async {
        env.fake.orders_for(&s2)[0].lookups >= looked + 2
    })
    .await;
    assert_eq!(
        env.fake.count("DELETE", "/api/v3/order"),
        1,
        "cancelled once"
    );
    assert_eq!(env.fake.orders_for(&s2)[0].status, "NEW");
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test]
async fn without_cancel_on_halt_open_orders_stay_open() {
    let env = LiveRig::start().await;
    env.fake.fill_plan(vec![]);
    let app = env
        .replica("live-s", &[("CANCEL_OPEN_ORDERS_ON_HALT", "false")])
        .await;
    env.xadd_payload(&strategy_order("kept-open", "S1")).await;
    env.wait_until("the order rests at MEXC", || async {
        env.fake.orders().len() == 1
    })
    .await;
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "all"),
        ("reason", "maintenance"),
        ("source", "operator"),
    ])
    .await;
    let client_id = exchange_id(&env, "kept-open");
    app.wait_for_stat("the halt is applied", |stats| stats.halts_active.get() == 1)
        .await;
    let looked = env.fake.orders_for(&client_id)[0].lookups;
    env.wait_until("the order is polled twice under the halt", || async {
        env.fake.orders_for(&client_id)[0].lookups >= looked + 2
    })
    .await;
    assert_eq!(env.fake.count("DELETE", "/api/v3/order"), 0);
    app.stop().await;
}

#[tokio::test]
async fn paper_and_mock_make_no_request_to_the_exchange() {
    for mode in ["paper", "mock"] {
        let env = LiveRig::start().await;
        let url = env.fake.url();
        let app = env
            .spawn(
                mode,
                &[
                    ("SHIM_ENABLED", "false"),
                    ("TRADING_MODE", mode),
                    ("MEXC_BASE_URL", url.as_str()),
                    ("MEXC_API_KEY", API_KEY),
                    ("MEXC_API_SECRET", API_SECRET),
                ],
            )
            .await;
        for n in 0..20 {
            env.xadd_payload(&limit_order(&format!("{mode}-{n}"), "0.002", "50000"))
                .await;
        }
        let results = env.wait_for_results(20).await;
        assert!(results.iter().all(|r| r["mode"] == mode));
        assert_eq!(env.fake.request_count(), 0, "{mode} asked MEXC");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_order_claimed_but_never_sent_is_not_sent_once_a_halt_covers_it() {
    let env = LiveRig::start().await;
    let payload = limit_order("claimed-only", "0.002", "50000");
    // Its replica committed the intent and died before stamping a request.
    claimed_by_a_dead_replica(&env, &payload, 500).await;
    env.kill_switch(&[
        ("action", "halt"),
        ("scope", "symbol"),
        ("symbol", "BTCUSDT"),
        ("reason", "exchange incident"),
        ("source", "operator"),
    ])
    .await;
    let app = env.replica("live-t", &[]).await;
    env.xadd_payload(&payload).await;

    let rejected = wait_for_status(&env, "claimed-only", "REJECTED").await;
    assert!(
        rejected["error_message"].starts_with("halted:"),
        "{rejected:?}"
    );
    assert_eq!(
        env.fake.count("POST", "/api/v3/order"),
        0,
        "sent under a halt"
    );
    env.wait_until("the entry is acknowledged", || async {
        env.pending().await == 0
    })
    .await;
    app.stop().await;
}
