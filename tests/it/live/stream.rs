//! The user data stream against the fake's websocket: fills pushed as they
//! happen reach `order_results` without a lookup; the REST backstop finds
//! what a gap (a drop, a refused connection, a frame that does not
//! decode, a forgotten key) kept from the stream; pushes twice or out of
//! order announce each change once; one replica holds the connection and
//! another takes it over when it dies.

use std::time::{Duration, Instant};

use execution_service::execution::mexc::push::Push;
use execution_service::execution::mexc::{Arrived, PushSocket};
use execution_service::stats::Stats;

use super::{LiveRig, exchange_id, limit_order, wait_for_status};
use crate::fake_mexc::{DEALS_CHANNEL, FakeClient, ORDERS_CHANNEL};
use crate::helpers::{DEADLINE, Running, TestEnv};

/// Settings of a replica that relies on the stream: lookups of described
/// orders only every minute, a stalled connection replaced after 2 s.
const ON_THE_STREAM: [(&str, &str); 3] = [
    ("LIVE_USER_STREAM", "true"),
    ("LIVE_STREAM_POLL_SECS", "60"),
    ("LIVE_STREAM_SILENCE_SECS", "2"),
];

fn connected(stats: &Stats) -> bool {
    stats.live.stream.connected.get() == 1
}

/// Lookups of one order (`GET /api/v3/order` naming its client id).
fn lookups_of(rig: &LiveRig, client_id: &str) -> usize {
    rig.fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v3/order" && r.query.contains(client_id))
        .count()
}

/// A replica on the stream, waited for until it is subscribed.
async fn subscribed_replica(rig: &LiveRig, name: &str, extra: &[(&str, &str)]) -> Running {
    let mut vars: Vec<(&str, &str)> = ON_THE_STREAM.to_vec();
    vars.extend_from_slice(extra);
    let app = rig.replica(name, &vars).await;
    app.wait_for_stat("the user data stream subscribed", connected)
        .await;
    app
}

/// Waits until MEXC has described the order (a lookup found it open).
async fn wait_described(env: &TestEnv, order_id: &str) {
    env.wait_until(&format!("{order_id} described by MEXC"), || async {
        exchange_status(env, order_id).await.as_deref() == Some("NEW")
    })
    .await;
}

async fn exchange_status(env: &TestEnv, order_id: &str) -> Option<String> {
    use sea_orm::{ConnectionTrait, Statement};
    env.db
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT exchange_status FROM orders WHERE order_id = $1",
            [order_id.into()],
        ))
        .await
        .unwrap()
        .and_then(|row| {
            row.try_get::<Option<String>>("", "exchange_status")
                .unwrap()
        })
}

/// The trades recorded for an order, and whether any exchange trade is
/// there twice.
async fn trades_of(env: &TestEnv, order_id: &str) -> Vec<String> {
    use sea_orm::{ConnectionTrait, Statement};
    env.db
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT trade_id FROM trades WHERE order_id = '{order_id}' ORDER BY trade_id"),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "trade_id").unwrap())
        .collect()
}

#[tokio::test]
async fn the_client_reads_the_fakes_pushes_as_lookups_would() {
    let rig = LiveRig::start().await;
    let client = rig.fake.client();
    let key = client.create_listen_key().await.unwrap();
    let mut socket = PushSocket::connect(&rig.fake.ws_url(), &key, Duration::from_secs(1))
        .await
        .unwrap();
    socket
        .subscribe(&[ORDERS_CHANNEL, DEALS_CHANNEL])
        .await
        .unwrap();
    let answer = tokio::time::timeout(DEADLINE, socket.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&answer, Arrived::Answer(a) if a["msg"].as_str().unwrap().contains(DEALS_CHANNEL)),
        "{answer:?}"
    );
    client
        .new_order(&crate::mexc::limit_buy("0.001", "50000"))
        .await
        .unwrap();
    // NEW, then FILLED with its deal.
    let mut pushes = Vec::new();
    while pushes.len() < 3 {
        match tokio::time::timeout(DEADLINE, socket.next())
            .await
            .unwrap()
            .unwrap()
        {
            Arrived::Push(push) => pushes.push((*push).expect("a frame that decodes")),
            Arrived::Answer(_) | Arrived::Other => {}
        }
    }
    let order = rig.fake.orders().pop().unwrap();
    match (&pushes[0], &pushes[1], &pushes[2]) {
        (
            Push::Order { state: new, .. },
            Push::Order { state: done, .. },
            Push::Deal {
                client_order_id,
                trade,
            },
        ) => {
            assert_eq!(new.executed_qty, 0.into());
            assert_eq!(done.executed_qty, order.executed_qty);
            assert_eq!(done.order_id.0, order.order_id);
            assert_eq!(client_order_id, &order.client_order_id);
            assert_eq!(trade.id, order.trades[0].id);
            assert_eq!(trade.qty, order.trades[0].qty);
            assert_eq!(trade.commission, order.trades[0].commission);
        }
        other => panic!("{other:?}"),
    }
    // MEXC's own PING, and a key it forgets.
    socket.ping().await.unwrap();
    client.keep_listen_key(&key).await.unwrap();
    rig.fake.forget_listen_keys();
    assert!(client.keep_listen_key(&key).await.is_err());
    assert!(
        PushSocket::connect(&rig.fake.ws_url(), &key, Duration::from_secs(1))
            .await
            .is_err(),
        "a forgotten key opens nothing"
    );
}

#[tokio::test]
async fn a_resting_orders_fills_arrive_by_push_with_no_lookup_after_it_is_described() {
    let rig = LiveRig::start().await;
    // It rests, then fills in two steps well after it was described.
    rig.fake.fill_plan(vec![
        (Duration::from_millis(1_500), "0.4"),
        (Duration::from_millis(2_500), "1"),
    ]);
    let app = subscribed_replica(&rig, "stream-a", &[]).await;
    rig.xadd_payload(&limit_order("rests", "0.002", "50000"))
        .await;
    let client_id = exchange_id(&rig, "rests");
    // Described (NEW) by a lookup, then parked until the slow poll.
    wait_described(&rig, "rests").await;
    let partial = wait_for_status(&rig, "rests", "PARTIALLY_FILLED").await;
    assert_eq!(partial["filled_quantity"], "0.00080000");
    let filled = wait_for_status(&rig, "rests", "FILLED").await;
    let order = rig.fake.orders_for(&client_id).pop().unwrap();
    let filled_at = order.accepted_at + Duration::from_millis(2_500);
    assert!(
        Instant::now().duration_since(filled_at) < Duration::from_secs(2),
        "the fill arrived {:?} after it happened",
        Instant::now().duration_since(filled_at)
    );
    assert_eq!(filled["filled_quantity"], "0.00200000");
    // Two early lookups at most (right after sending, then once more
    // before it was described); none for the fills.
    let lookups = lookups_of(&rig, &client_id);
    assert!(lookups <= 2, "{lookups} lookups");
    assert_eq!(rig.fake.count("GET", "/api/v3/myTrades"), 0);
    let trades = trades_of(&rig, "rests").await;
    assert_eq!(trades.len(), 2, "{trades:?}");
    assert!(app.stats.live.stream.applied.get() >= 2);
    app.stop().await;
}

#[tokio::test]
async fn pushes_twice_and_out_of_order_announce_each_change_once() {
    let rig = LiveRig::start().await;
    rig.fake.fill_plan(vec![
        (Duration::from_millis(600), "0.3"),
        (Duration::from_millis(900), "0.6"),
        (Duration::from_millis(1_200), "1"),
    ]);
    rig.fake.duplicate_pushes(true);
    rig.fake.reorder_pushes(true);
    let app = subscribed_replica(&rig, "stream-b", &[]).await;
    rig.xadd_payload(&limit_order("shuffled", "0.01", "50000"))
        .await;
    wait_for_status(&rig, "shuffled", "FILLED").await;
    let results = rig.results_for("shuffled").await;
    let seqs: Vec<&str> = results.iter().map(|r| r["seq"].as_str()).collect();
    let mut unique = seqs.clone();
    unique.dedup();
    assert_eq!(seqs, unique, "a change announced twice: {results:?}");
    let filled: Vec<&str> = results
        .iter()
        .map(|r| r["filled_quantity"].as_str())
        .collect();
    let mut rising = filled.clone();
    rising.sort();
    assert_eq!(filled, rising, "the filled quantity went back: {results:?}");
    assert_eq!(trades_of(&rig, "shuffled").await.len(), 3);
    let orders = app
        .stats
        .live
        .stream
        .frames
        .with_label_values(&["order"])
        .get();
    assert!(
        orders > app.stats.live.stream.applied.get(),
        "every order push twice, but no more changes than the fills"
    );
    app.stop().await;
}

#[tokio::test]
async fn when_the_stream_goes_down_every_order_is_polled_again_and_nothing_is_missed() {
    let rig = LiveRig::start().await;
    rig.fake
        .fill_plan(vec![(Duration::from_millis(2_000), "1")]);
    let app = subscribed_replica(&rig, "stream-c", &[]).await;
    for i in 0..5 {
        rig.xadd_payload(&limit_order(&format!("gap-{i}"), "0.002", "50000"))
            .await;
    }
    for i in 0..5 {
        wait_described(&rig, &format!("gap-{i}")).await;
    }
    // Down before the fills (their pushes are lost), up again only after
    // every order is recorded: REST alone finds them.
    rig.fake.refuse_stream(true);
    rig.fake.drop_stream_connections();
    app.wait_for_stat("the stream down, and known to be", |s| {
        !connected(s) && s.live.stream.healthy.get() == 0
    })
    .await;
    // REST carries on: the replica stays ready, and says what is down.
    let (code, _) = super::get_json(&format!("{}/ready", app.url)).await;
    assert_eq!(code, 200);
    let (_, status) = super::get_json(&format!("{}/status", app.url)).await;
    assert_eq!(status["live"]["stream"]["healthy"], false, "{status}");
    assert_eq!(status["live"]["stream"]["connected"], false, "{status}");
    for i in 0..5 {
        wait_for_status(&rig, &format!("gap-{i}"), "FILLED").await;
        assert_eq!(trades_of(&rig, &format!("gap-{i}")).await.len(), 1);
    }
    // Those parked for the slow poll (a minute away, beyond the wait
    // above) were made due when the stream went down; the youngest may
    // have been due anyway.
    assert!(app.stats.live.stream.lookups_forced.get() >= 1);
    rig.fake.refuse_stream(false);
    app.wait_for_stat("subscribed again", connected).await;
    assert!(app.stats.live.stream.reconnects.get() >= 1);
    app.stop().await;
}

#[tokio::test]
async fn fills_lost_in_a_stalled_connection_are_found_once_it_is_replaced() {
    let rig = LiveRig::start().await;
    rig.fake
        .fill_plan(vec![(Duration::from_millis(1_500), "1")]);
    let app = subscribed_replica(&rig, "stream-h", &[]).await;
    rig.xadd_payload(&limit_order("stalled", "0.002", "50000"))
        .await;
    wait_described(&rig, "stalled").await;
    // Open and silent: the fill's pushes are lost, the stream still looks
    // up until the silence gives it away.
    rig.fake.stall_stream(true);
    rig.wait_until("filled at the exchange", || async {
        rig.fake.orders().iter().all(|o| o.status == "FILLED")
    })
    .await;
    // Silent until the replica gives the connection up (frames lost
    // without a gap that ends sooner are the slow poll's to find).
    app.wait_for_stat("the stalled connection given up", |s| {
        s.live.stream.reconnects.get() >= 1
    })
    .await;
    rig.fake.stall_stream(false);
    let filled = wait_for_status(&rig, "stalled", "FILLED").await;
    assert_eq!(filled["filled_quantity"], "0.00200000");
    assert!(app.stats.live.stream.reconnects.get() >= 1);
    assert_eq!(trades_of(&rig, "stalled").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_halt_cancels_resting_orders_at_once_though_their_polls_are_slow() {
    let rig = LiveRig::start().await;
    rig.fake.fill_plan(vec![]);
    let app = subscribed_replica(&rig, "stream-i", &[]).await;
    rig.xadd_payload(&limit_order("resting", "0.002", "50000"))
        .await;
    wait_described(&rig, "resting").await;
    let halted = Instant::now();
    rig.kill_switch(&[("action", "halt"), ("scope", "all"), ("reason", "drill")])
        .await;
    let canceled = wait_for_status(&rig, "resting", "CANCELED").await;
    assert!(
        halted.elapsed() < Duration::from_secs(10),
        "cancelled {:?} after the halt",
        halted.elapsed()
    );
    assert!(canceled["error_message"].contains("halted"), "{canceled:?}");
    assert_eq!(rig.fake.count("DELETE", "/api/v3/order"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_frame_that_does_not_decode_is_counted_and_what_it_hid_is_looked_up() {
    let rig = LiveRig::start().await;
    rig.fake.fill_plan(vec![(Duration::from_millis(800), "1")]);
    let app = subscribed_replica(&rig, "stream-d", &[]).await;
    rig.xadd_payload(&limit_order("garbled", "0.002", "50000"))
        .await;
    wait_described(&rig, "garbled").await;
    rig.fake.send_undecodable_frames(1);
    wait_for_status(&rig, "garbled", "FILLED").await;
    app.wait_for_stat("a decode error counted", |s| {
        s.live.stream.decode_errors.get() == 1
    })
    .await;
    assert!(connected(&app.stats), "one bad frame keeps the connection");
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_connection_or_a_forgotten_key_is_replaced() {
    let rig = LiveRig::start().await;
    let app = subscribed_replica(&rig, "stream-e", &[]).await;
    let keys = rig.fake.listen_keys_created();
    rig.fake.stall_stream(true);
    app.wait_for_stat("the stalled connection given up", |s| {
        s.live.stream.reconnects.get() >= 1
    })
    .await;
    rig.fake.stall_stream(false);
    app.wait_for_stat("subscribed again", connected).await;
    rig.fake.forget_listen_keys();
    app.wait_for_stat("a second reconnect", |s| {
        s.live.stream.reconnects.get() >= 2
    })
    .await;
    app.wait_for_stat("subscribed on a new key", connected)
        .await;
    assert!(rig.fake.listen_keys_created() >= keys + 2);
    app.stop().await;
}

#[tokio::test]
async fn one_replica_holds_the_stream_and_another_takes_it_over_when_it_dies() {
    let rig = LiveRig::start().await;
    let first = subscribed_replica(&rig, "stream-f1", &[]).await;
    let second = rig.replica("stream-f2", &ON_THE_STREAM).await;
    second
        .wait_for_stat("the standby seeing a healthy stream", |s| {
            s.live.stream.holder.get() == 0
        })
        .await;
    assert_eq!(rig.fake.stream_connections().0, 1, "one connection");
    // The holder dies without a word: its lease runs out.
    first.handle.abort();
    second
        .wait_for_stat("the standby subscribed", connected)
        .await;
    rig.fake.fill_plan(vec![(Duration::from_millis(300), "1")]);
    rig.xadd_payload(&limit_order("handed-over", "0.002", "50000"))
        .await;
    wait_for_status(&rig, "handed-over", "FILLED").await;
    second.stop().await;
}

#[tokio::test]
async fn pushes_for_orders_that_are_not_ours_are_counted_and_change_nothing() {
    let rig = LiveRig::start().await;
    let app = subscribed_replica(&rig, "stream-g", &[]).await;
    // An order placed at the exchange by someone else.
    rig.fake
        .client()
        .new_order(&crate::mexc::limit_buy("0.001", "50000"))
        .await
        .unwrap();
    app.wait_for_stat("the foreign pushes counted", |s| {
        s.live.stream.foreign.get() >= 2
    })
    .await;
    assert!(rig.results().await.is_empty());
    app.stop().await;
}

/// Percentiles of durations, in ms.
fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} fills)",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        samples.len()
    )
}

/// The user data stream's figures (README "Live trading", the stream's
/// benchmark): a resting order's fill at the fake to its result on
/// `order_results`; signed requests per minute with 300 resting orders;
/// fills during a 30 s disconnect. Run with
/// `cargo test --release --test it -- --ignored --nocapture stream_benchmark`.
#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture, preferably with --release"]
async fn stream_benchmark() {
    use futures_util::StreamExt;

    const RESTING: usize = 300;
    let rig = LiveRig::start().await;
    // Every order rests for 3 s, then fills in full.
    rig.fake
        .fill_plan(vec![(Duration::from_millis(3_000), "1")]);
    let app = subscribed_replica(
        &rig,
        "stream-bench",
        &[
            ("MEXC_MAX_ORDERS_PER_SEC", "12"),
            ("LIVE_ORDER_TTL_SECS", "3600"),
        ],
    )
    .await;
    let mut results = rig.subscribe_results().await;

    // 1. Fill latency: 100 orders, each filling 3 s after acceptance.
    for i in 0..100 {
        rig.xadd_payload(&limit_order(&format!("lat-{i}"), "0.002", "50000"))
            .await;
    }
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.len() < 100 && Instant::now() < deadline {
        let Ok(Some(result)) = tokio::time::timeout(Duration::from_secs(5), results.next()).await
        else {
            continue;
        };
        if result.status.as_str() != "FILLED" || !result.order_id.starts_with("lat-") {
            continue;
        }
        let arrived = Instant::now();
        let client_id = exchange_id(&rig, &result.order_id);
        let order = rig.fake.orders_for(&client_id).pop().expect("at the fake");
        let filled_at = order.accepted_at + Duration::from_millis(3_000);
        latencies.push(arrived.saturating_duration_since(filled_at));
    }
    println!(
        "fill at the fake -> FILLED on order_results: {}",
        percentiles(latencies)
    );

    // 2. Request weight: 300 orders resting (they never fill), described,
    // then a minute of signed requests counted.
    rig.fake.fill_plan(vec![]);
    for i in 0..RESTING {
        rig.xadd_payload(&limit_order(&format!("rest-{i}"), "0.002", "50000"))
            .await;
    }
    rig.wait_until("every resting order described", || async {
        rig.count(
            "SELECT count(*) FROM orders WHERE order_id LIKE 'rest-%' AND exchange_status = 'NEW'",
        )
        .await
            == RESTING as i64
    })
    .await;
    let signed = |rig: &LiveRig| {
        rig.fake
            .requests()
            .iter()
            .filter(|r| r.keyed && r.path != "/api/v3/userDataStream")
            .count()
    };
    let before = signed(&rig);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let per_minute = signed(&rig) - before;
    let polling = RESTING * 12;
    println!(
        "signed requests in a minute with {RESTING} resting orders, stream healthy: {per_minute} \
         ({:.1} % of {polling}, one lookup per order every 5 s)",
        per_minute as f64 * 100.0 / polling as f64
    );

    // 3. A 30 s disconnect: orders fill during it.
    rig.fake
        .fill_plan(vec![(Duration::from_millis(5_000), "1")]);
    for i in 0..50 {
        rig.xadd_payload(&limit_order(&format!("gap-{i}"), "0.002", "50000"))
            .await;
    }
    rig.wait_until("the gap orders described", || async {
        rig.count(
            "SELECT count(*) FROM orders WHERE order_id LIKE 'gap-%' AND exchange_status = 'NEW'",
        )
        .await
            == 50
    })
    .await;
    rig.fake.refuse_stream(true);
    rig.fake.drop_stream_connections();
    let down = Instant::now();
    let mut recorded = Vec::new();
    while Instant::now() < down + Duration::from_secs(30) {
        if let Ok(Some(result)) =
            tokio::time::timeout(Duration::from_millis(200), results.next()).await
            && result.status.as_str() == "FILLED"
            && result.order_id.starts_with("gap-")
        {
            let client_id = exchange_id(&rig, &result.order_id);
            let order = rig.fake.orders_for(&client_id).pop().expect("at the fake");
            let filled_at = order.accepted_at + Duration::from_millis(5_000);
            recorded.push(Instant::now().saturating_duration_since(filled_at));
        }
    }
    rig.fake.refuse_stream(false);
    let back = Instant::now();
    app.wait_for_stat("subscribed again", connected).await;
    println!(
        "stream down 30 s, {} of 50 fills recorded while it was down (by REST), each after its fill: {}; subscribed again {:?} after it was allowed",
        recorded.len(),
        percentiles(recorded.clone()),
        back.elapsed()
    );
    assert_eq!(recorded.len(), 50, "every fill recorded during the gap");
    app.stop().await;
}
