//! The store side of live orders: the intent committed before anything is
//! sent, leases that keep an order with one replica, records only by the
//! lease owner, fills recorded once, expired leases taken over without two
//! replicas taking the same order.

use std::time::Duration;

use chrono::Utc;
use execution_service::domain::lifecycle::Observation;
use execution_service::domain::{Order, OrderStatus, OrderType, Side, TradingMode};
use execution_service::store::{self, Lease, LiveClaim, LiveUpdate, NewTrade, Store};
use rust_decimal::Decimal;

use crate::helpers::TestEnv;

fn order(id: &str) -> Order {
    Order {
        order_id: id.to_owned(),
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        quantity: Decimal::new(1, 3),
        price: Some(Decimal::from(50_000)),
        order_type: OrderType::Limit,
        client_id: None,
        strategy_id: None,
        bot_id: None,
        stop_loss_pct: None,
        timestamp: None,
        traceparent: None,
    }
}

fn lease(owner: &str, millis: u64) -> Lease {
    Lease {
        owner: owner.to_owned(),
        length: Duration::from_millis(millis),
    }
}

async fn store(env: &TestEnv) -> Store {
    Store::connect(&env.var("DATABASE_URL"), 4)
        .await
        .expect("connect")
}

fn fill(order_id: &str, trade: &str) -> NewTrade {
    NewTrade {
        trade_id: format!("mexc-{trade}"),
        order_id: order_id.to_owned(),
        symbol: "BTCUSDT".into(),
        side: "BUY".into(),
        price: Decimal::from(50_000),
        quantity: Decimal::new(5, 4),
        fee: Decimal::new(1, 2),
        mode: "live".into(),
        exchange_order_id: Some("C02__1".into()),
        executed_at: Utc::now().fixed_offset(),
        fee_asset: Some("USDT".into()),
    }
}

#[tokio::test]
async fn a_new_order_is_committed_as_submitted_before_it_may_be_sent_and_held_by_its_lease() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let row = store::pending_row(&order("live-1"), TradingMode::Live, Utc::now());

    let LiveClaim::Send(sent) = store
        .claim_live(&row, "es0123", &lease("a", 60_000))
        .await
        .unwrap()
    else {
        panic!("a new order is to be sent");
    };
    assert_eq!(sent.status, OrderStatus::Submitted);
    assert_eq!(sent.client_order_id.as_deref(), Some("es0123"));
    // Committed: another connection sees the intent.
    assert_eq!(
        env.scalar_text("SELECT status FROM orders WHERE order_id = 'live-1'")
            .await
            .as_deref(),
        Some("SUBMITTED")
    );
    // A redelivery elsewhere while the lease holds sends nothing.
    assert!(matches!(
        store
            .claim_live(&row, "es0123", &lease("b", 60_000))
            .await
            .unwrap(),
        LiveClaim::Held(_)
    ));
    // The owner meeting it again (a restart) looks it up, never re-sends.
    assert!(matches!(
        store
            .claim_live(&row, "es0123", &lease("a", 60_000))
            .await
            .unwrap(),
        LiveClaim::LookUp(_)
    ));
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_looked_up_first() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let row = store::pending_row(&order("live-2"), TradingMode::Live, Utc::now());
    assert!(matches!(
        store
            .claim_live(&row, "es2", &lease("dead", 50))
            .await
            .unwrap(),
        LiveClaim::Send(_)
    ));
    env.wait_until("the lease expires", || async {
        env.count("SELECT count(*) FROM orders WHERE lease_until < now()")
            .await
            == 1
    })
    .await;
    let LiveClaim::LookUp(taken) = store
        .claim_live(&row, "es2", &lease("b", 60_000))
        .await
        .unwrap()
    else {
        panic!("an expired lease is taken over for a lookup");
    };
    assert_eq!(taken.lease_owner.as_deref(), Some("b"));
}

#[tokio::test]
async fn only_the_lease_owner_records_and_each_fill_is_recorded_once() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let row = store::pending_row(&order("live-3"), TradingMode::Live, Utc::now());
    store
        .claim_live(&row, "es3", &lease("a", 60_000))
        .await
        .unwrap();

    let partial = LiveUpdate {
        observation: Some(Observation::Reported(OrderStatus::PartiallyFilled)),
        exchange_status: Some("PARTIALLY_FILLED".into()),
        exchange_order_id: Some("C02__1".into()),
        filled_quantity: Some(Decimal::new(5, 4)),
        fees: Some([("USDT".to_owned(), Decimal::new(25, 3))].into()),
        not_found: 1,
        keep_lease: true,
        poll_in: None,
        ..LiveUpdate::default()
    };
    let intruder = store
        .record_live(
            "live-3",
            &lease("b", 60_000),
            &partial,
            &[fill("live-3", "1")],
        )
        .await
        .unwrap();
    assert!(intruder.is_none(), "a replica without the lease wrote");
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 0);

    for _ in 0..2 {
        let recorded = store
            .record_live(
                "live-3",
                &lease("a", 60_000),
                &partial,
                &[fill("live-3", "1")],
            )
            .await
            .unwrap()
            .expect("the owner records");
        assert_eq!(
            recorded.exchange_status.as_deref(),
            Some("PARTIALLY_FILLED")
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM trades").await,
        1,
        "a fill recorded twice"
    );
    assert_eq!(env.count("SELECT lookups::bigint FROM orders").await, 2);

    let done = LiveUpdate {
        observation: Some(Observation::Reported(OrderStatus::Filled)),
        exchange_status: Some("FILLED".into()),
        filled_quantity: Some(Decimal::new(1, 3)),
        fill_price: Some(Decimal::from(50_000)),
        ..LiveUpdate::default()
    };
    let finished = store
        .record_live(
            "live-3",
            &lease("a", 60_000),
            &done,
            &[fill("live-3", "1"), fill("live-3", "2")],
        )
        .await
        .unwrap()
        .expect("the owner records");
    assert_eq!(finished.status, OrderStatus::Filled);
    assert!(finished.lease_owner.is_none() && finished.filled_at.is_some());
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 2);
    // Terminal: a redelivery re-emits, sends nothing.
    assert!(matches!(
        store
            .claim_live(&row, "es3", &lease("a", 60_000))
            .await
            .unwrap(),
        LiveClaim::Done(_)
    ));
}

#[tokio::test]
async fn two_replicas_taking_expired_leases_at_once_never_take_the_same_order() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    for i in 0..40 {
        let row = store::pending_row(&order(&format!("live-x{i}")), TradingMode::Live, Utc::now());
        store
            .claim_live(&row, &format!("esx{i}"), &lease("dead", 1))
            .await
            .unwrap();
    }
    env.wait_until("every lease expires", || async {
        env.count("SELECT count(*) FROM orders WHERE lease_until < now()")
            .await
            == 40
    })
    .await;
    let (lease_a, lease_b) = (lease("a", 60_000), lease("b", 60_000));
    let (a, b) = tokio::join!(
        store.take_expired_leases(&lease_a, 25),
        store.take_expired_leases(&lease_b, 25)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 40, "{} + {}", a.len(), b.len());
    assert!(
        a.iter()
            .all(|row| !b.iter().any(|other| other.order_id == row.order_id))
    );
    assert_eq!(
        store
            .renew_leases(
                &lease("a", 60_000),
                &a.iter().map(|r| r.order_id.clone()).collect::<Vec<_>>()
            )
            .await
            .unwrap(),
        a.len() as u64
    );
    assert!(
        store
            .take_expired_leases(&lease("c", 60_000), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn every_change_is_guarded_by_the_state_machine_and_recorded_as_an_event() {
    let env = TestEnv::new().await;
    let store = store(&env).await;
    let row = store::pending_row(&order("live-events"), TradingMode::Live, Utc::now());
    let owner = lease("a", 60_000);
    store.claim_live(&row, "es9", &owner).await.unwrap();
    let filled = LiveUpdate {
        observation: Some(Observation::Reported(OrderStatus::Filled)),
        exchange_status: Some("FILLED".into()),
        filled_quantity: Some(Decimal::new(1, 3)),
        fees: Some([("USDT".to_owned(), Decimal::new(5, 2))].into()),
        keep_lease: true,
        ..LiveUpdate::default()
    };
    let done = store
        .record_live("live-events", &owner, &filled, &[fill("live-events", "9")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((done.status, done.state_seq), (OrderStatus::Filled, 3));
    // Changes the table does not have: nothing is written.
    for refused in [
        LiveUpdate::on(Observation::NotSent),
        LiveUpdate::on(Observation::Claimed),
        LiveUpdate::on(Observation::Overdue),
        LiveUpdate {
            filled_quantity: Some(Decimal::new(5, 4)),
            ..LiveUpdate::on(Observation::Reported(OrderStatus::Filled))
        },
    ] {
        let after = store
            .record_live("live-events", &owner, &refused, &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (after.status.as_str(), after.state_seq),
            ("FILLED", 3),
            "{refused:?}"
        );
    }
    let history = env
        .texts(
            "SELECT seq || ' ' || COALESCE(from_status, '-') || '>' || to_status || ' ' || observation \
             FROM order_events WHERE order_id = 'live-events' ORDER BY seq",
        )
        .await;
    assert_eq!(
        history,
        [
            "1 ->PENDING received",
            "2 PENDING>SUBMITTED claimed",
            "3 SUBMITTED>FILLED reported"
        ]
    );
    assert_eq!(
        env.scalar_text(
            "SELECT evidence->>'executed_qty' || ' ' || (evidence->'trade_ids'->>0) \
             FROM order_events WHERE order_id = 'live-events' AND seq = 3"
        )
        .await
        .as_deref(),
        Some("0.00100000 mexc-9")
    );

    // The same history from the command line.
    let shown = crate::helpers::service_command(env.vars())
        .args(["order", "live-events"])
        .output()
        .await
        .expect("run order");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(text.contains("live-events  FILLED  #3"), "{text}");
    for line in ["received", "claimed", "reported"] {
        assert!(text.contains(line), "{line}: {text}");
    }
    let missing = crate::helpers::service_command(env.vars())
        .args(["order", "no-such-order"])
        .output()
        .await
        .expect("run order");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no order with order_id"));
}
