//! The exchange check: MEXC's orders compared with ours. An order with the
//! service's client id form and no row is an alert (recorded, counted,
//! shown in `/status`), cancelled only where the deployment says so; an
//! order MEXC no longer lists as open is looked up at once.

use sea_orm::{ConnectionTrait, Statement};

use super::{LiveRig, exchange_id, get_json, limit_order, wait_for_status};
use crate::fake_mexc::FakeClient;
use crate::helpers::TestEnv;

/// Checks at start-up and every 5 s.
const CHECKING: (&str, &str) = ("LIVE_EXCHANGE_CHECK_SECS", "5");

/// Places orders at the fake as someone else would: one with the
/// service's client id form (a restored database's, another deployment's)
/// and one a person placed on the website.
async fn place_strangers(rig: &LiveRig) -> String {
    let client = rig.fake.client();
    let ours = crate::mexc::limit_buy("0.001", "50000");
    client.new_order(&ours).await.unwrap();
    let mut web = crate::mexc::limit_buy("0.001", "49000");
    web.client_order_id = "web_1736417034".into();
    client.new_order(&web).await.unwrap();
    ours.client_order_id
}

async fn orphan_rows(env: &TestEnv) -> Vec<(String, bool, Option<String>)> {
    env.db
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT client_order_id, cancelled_at IS NOT NULL AS cancelled, cancel_error \
             FROM exchange_orphans ORDER BY id",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.try_get("", "client_order_id").unwrap(),
                row.try_get("", "cancelled").unwrap(),
                row.try_get("", "cancel_error").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_exchange_order_with_our_id_form_and_no_row_is_an_alert_and_left_alone() {
    let rig = LiveRig::start().await;
    rig.fake.fill_plan(vec![]);
    let orphan = place_strangers(&rig).await;
    let app = rig
        .replica("check-a", &[CHECKING, ("SYMBOL_ALLOWLIST", "BTCUSDT")])
        .await;
    app.wait_for_stat("the orphan found", |s| s.live.orphans.get() == 1)
        .await;
    // Seen again by later checks: still one alert, one row.
    app.wait_for_stat("a second check", |s| {
        s.live.exchange_checks.with_label_values(&["ok"]).get() >= 2
    })
    .await;
    assert_eq!(app.stats.live.orphans.get(), 1);
    assert_eq!(orphan_rows(&rig).await, [(orphan, false, None)]);
    let (code, status) = get_json(&format!("{}/status", app.url)).await;
    assert_eq!(code, 200);
    assert_eq!(status["live"]["orphan_orders"], 1, "{status}");
    assert_eq!(status["live"]["orphan_orders_open"], 1, "{status}");
    assert_eq!(rig.fake.count("DELETE", "/api/v3/order"), 0);
    app.stop().await;
}

#[tokio::test]
async fn with_live_cancel_orphans_an_open_orphan_is_cancelled_once() {
    let rig = LiveRig::start().await;
    rig.fake.fill_plan(vec![]);
    let orphan = place_strangers(&rig).await;
    let app = rig
        .replica(
            "check-b",
            &[
                CHECKING,
                ("SYMBOL_ALLOWLIST", "BTCUSDT"),
                ("LIVE_CANCEL_ORPHANS", "true"),
            ],
        )
        .await;
    app.wait_for_stat("two checks", |s| {
        s.live.exchange_checks.with_label_values(&["ok"]).get() >= 2
    })
    .await;
    assert_eq!(orphan_rows(&rig).await, [(orphan.clone(), true, None)]);
    assert_eq!(rig.fake.count("DELETE", "/api/v3/order"), 1);
    assert_eq!(rig.fake.orders_for(&orphan)[0].status, "CANCELED");
    // The website's order is not the service's business.
    assert!(
        rig.fake
            .orders()
            .iter()
            .any(|o| o.client_order_id == "web_1736417034" && o.status == "NEW")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_open_order_mexc_no_longer_lists_is_looked_up_at_once() {
    let rig = LiveRig::start().await;
    rig.fake.fill_plan(vec![]);
    let app = rig.replica("check-c", &[CHECKING]).await;
    rig.xadd_payload(&limit_order("vanished", "0.002", "50000"))
        .await;
    rig.wait_until("described as resting", || async {
        rig.count(
            "SELECT count(*) FROM orders WHERE order_id = 'vanished' AND exchange_status = 'NEW'",
        )
        .await
            == 1
    })
    .await;
    // Its next poll is an hour away; someone cancels it on the website.
    rig.db
        .execute_unprepared(
            "UPDATE orders SET lease_until = now() + interval '1 hour' WHERE order_id = 'vanished'",
        )
        .await
        .unwrap();
    assert!(rig.fake.cancel_by_user(&exchange_id(&rig, "vanished")));
    let canceled = wait_for_status(&rig, "vanished", "CANCELED").await;
    assert_eq!(canceled["filled_quantity"], "0.00000000");
    assert_eq!(
        app.stats.live.orphans.get(),
        0,
        "our own order is no orphan"
    );
    app.stop().await;
}
