//! The fixtures release what they hold even when a test fails.

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

use crate::helpers::{TestEnv, admin_url};

#[tokio::test]
async fn a_test_that_panics_still_drops_its_database_and_keys() {
    let (names, named) = tokio::sync::oneshot::channel();
    let failing = tokio::spawn(async move {
        let env = TestEnv::new().await;
        env.xadd_payload("left behind?").await;
        let _ = names.send((env.database.clone(), env.var("ORDERS_STREAM")));
        panic!("a failing test");
    });
    assert!(failing.await.is_err_and(|err| err.is_panic()));
    let (database, stream) = named.await.expect("the names");

    let admin = Database::connect(admin_url()).await.expect("admin");
    let left = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_database WHERE datname = $1",
            [database.clone().into()],
        ))
        .await
        .expect("query")
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("a count");
    assert_eq!(left, 0, "{database} was left behind");
    let client = redis::Client::open(crate::helpers::redis_url()).expect("a client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let exists: bool = redis::cmd("EXISTS")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert!(!exists, "{stream} was left behind");
}
