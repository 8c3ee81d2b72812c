//! A Postgres switchover under load: the primary stopped, its standby
//! promoted, the address moved to it, while orders flow.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use tokio::time::Instant;

use super::standby::Standby;
use crate::chaos::harness::{Cluster, SETTLE, publish_paced, valid_orders};
use crate::helpers::TestEnv;
use crate::proxy::Proxy;
use crate::services::say;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_switchover_under_load_loses_no_order_and_doubles_none() {
    let env = TestEnv::new().await;
    let pg = Standby::start(&env.prefix).await;
    let proxy = Proxy::start(&format!("127.0.0.1:{}", pg.primary_port)).await;
    let url = format!("postgres://postgres@{}/exec", proxy.addr);
    let mut cluster = Cluster::new(
        &env,
        &[
            ("DATABASE_URL", url.as_str()),
            ("POSTGRES_MAX_CONNECTIONS", "6"),
        ],
    );
    cluster.start().await;
    cluster.start().await;

    // 20,000 orders at 2,000 a second; the switchover 4 s in.
    let orders = valid_orders(&env.prefix, 20_000);
    let payloads: Vec<String> = orders.iter().map(|(_, p)| p.clone()).collect();
    let mut switched_at = 0;
    let load = publish_paced(&env, &payloads, 20, Duration::from_millis(10));
    let switch = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        switched_at = unix_ms();
        let promotion = pg.switch_over().await;
        proxy.retarget(&format!("127.0.0.1:{}", pg.standby_port));
        say(&format!(
            "postgres switchover: the standby was promoted in {} ms",
            promotion.as_millis()
        ));
    };
    tokio::join!(load, switch);

    let db = Database::connect(&url).await.expect("the promoted standby");
    let deadline = Instant::now() + SETTLE;
    loop {
        let done = count(
            &db,
            "SELECT count(*) FROM orders WHERE status IN ('FILLED', 'REJECTED', 'ERROR')",
        )
        .await;
        if done >= orders.len() as i64 && env.pending().await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "settled only {done} of {}",
            orders.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let rows = count(&db, "SELECT count(DISTINCT order_id) FROM orders").await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM orders").await,
        rows,
        "an order has two rows"
    );
    assert_eq!(rows, orders.len() as i64, "an order has no row");
    let filled = count(&db, "SELECT count(*) FROM orders WHERE status = 'FILLED'").await;
    assert_eq!(filled, rows, "every order fills");
    assert_eq!(
        count(&db, "SELECT count(*) FROM trades").await,
        filled,
        "one fill per order"
    );

    // Every order announced, every announcement of one order the same.
    let results = env.stream_ids("RESULTS_STREAM").await;
    let fields = env.results().await;
    let mut announced: HashMap<&str, &HashMap<String, String>> = HashMap::new();
    for result in &fields {
        if let Some(first) = announced.insert(result["order_id"].as_str(), result) {
            for field in ["status", "price", "filled_quantity"] {
                assert_eq!(
                    first.get(field),
                    result.get(field),
                    "two outcomes announced"
                );
            }
        }
    }
    for (id, _) in &orders {
        assert!(
            announced.contains_key(id.as_str()),
            "{id} was never announced"
        );
    }
    let times: Vec<u64> = results
        .iter()
        .filter_map(|id| id.split('-').next()?.parse().ok())
        .collect();
    let mut last = switched_at;
    let mut pause = 0;
    for t in times.into_iter().filter(|t| *t >= switched_at) {
        pause = pause.max(t - last);
        last = t;
    }
    say(&format!(
        "postgres switchover: {} orders, results paused for {pause} ms at most",
        orders.len()
    ));
    cluster.stop().await;
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .expect("a count")
        .expect("a row")
        .try_get_by_index(0)
        .expect("a number")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test]
async fn start_up_can_tell_whether_commits_wait_for_a_standby() {
    let name = format!("sync-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let pg = Standby::start(&name).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.primary_port);
    let store = execution_service::store::Store::connect(&url, 1)
        .await
        .expect("the primary");
    let durability = store.commit_durability().await.expect("the settings");
    assert_eq!(durability.standby_names, "");
    assert!(!durability.waits_for_a_standby(), "{durability:?}");

    let db = Database::connect(&url).await.expect("the primary");
    for sql in [
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "SELECT pg_reload_conf()",
    ] {
        db.execute_unprepared(sql).await.expect(sql);
    }
    let deadline = Instant::now() + crate::helpers::DEADLINE;
    loop {
        // A new session reads the reloaded file.
        let store = execution_service::store::Store::connect(&url, 1)
            .await
            .expect("the primary");
        let durability = store.commit_durability().await.expect("the settings");
        if durability.waits_for_a_standby() {
            assert_eq!(durability.standby_names, "*");
            break;
        }
        assert!(Instant::now() < deadline, "the setting never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.execute_unprepared("ALTER SYSTEM SET synchronous_commit = 'local'")
        .await
        .expect("synchronous_commit");
    db.execute_unprepared("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    loop {
        let store = execution_service::store::Store::connect(&url, 1)
            .await
            .expect("the primary");
        let durability = store.commit_durability().await.expect("the settings");
        if !durability.waits_for_a_standby() {
            assert_eq!(durability.synchronous_commit, "local");
            break;
        }
        assert!(Instant::now() < deadline, "the setting never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
