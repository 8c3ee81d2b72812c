//! At-least-once delivery: unfinished entries are resumed or claimed,
//! over-delivered ones are dead-lettered, and a stop finishes what it read.

use std::time::Duration;

use execution_service::bus::Entry;
use execution_service::worker::Worker;

use crate::helpers::{TestEnv, order_json};

#[tokio::test]
async fn entries_left_pending_by_a_stopped_consumer_are_claimed_and_completed() {
    let env = TestEnv::new().await;
    for i in 0..10 {
        env.xadd_payload(&order_json(&format!("orphan-{i}"), "1", "10"))
            .await;
    }
    // A replica read these and died before acknowledging them.
    assert_eq!(env.read_as("dead-replica", 10).await, 10);
    assert_eq!(env.pending().await, 10);

    let app = env
        .spawn(
            "survivor",
            &[
                ("SHIM_ENABLED", "false"),
                ("CLAIM_IDLE_MS", "1000"),
                ("CLAIM_INTERVAL_MS", "100"),
            ],
        )
        .await;
    let results = env.wait_for_results(10).await;
    assert!(results.iter().all(|r| r["status"] == "FILLED"));
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 10);
    assert_eq!(app.stats.redeliveries.get(), 10);

    app.stop().await;
}

#[tokio::test]
async fn a_restarted_consumer_resumes_its_own_pending_entries_first() {
    let env = TestEnv::new().await;
    for i in 0..5 {
        env.xadd_payload(&order_json(&format!("mine-{i}"), "1", "10"))
            .await;
    }
    assert_eq!(env.read_as("replica-1", 5).await, 5);

    // Claims are effectively off: only the own-pending pass can finish these.
    let app = env
        .spawn(
            "replica-1",
            &[("SHIM_ENABLED", "false"), ("CLAIM_IDLE_MS", "3600000")],
        )
        .await;
    env.wait_for_results(5).await;
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;

    app.stop().await;
}

#[tokio::test]
async fn an_entry_delivered_more_than_max_deliveries_goes_to_the_dead_letter_stream() {
    let env = TestEnv::new().await;
    let payload = order_json("poison-1", "1", "10");
    env.xadd_payload(&payload).await;
    assert_eq!(env.read_as("crashy", 1).await, 1);
    // Two more deliveries to the same consumer, as after two crashes.
    let worker = env.worker("crashy").await;
    for _ in 0..2 {
        assert_eq!(
            worker
                .consumer
                .read_own_pending("0-0", 10)
                .await
                .expect("re-read")
                .len(),
            1
        );
    }

    let app = env
        .spawn(
            "crashy",
            &[("SHIM_ENABLED", "false"), ("MAX_DELIVERIES", "3")],
        )
        .await;
    env.wait_until("the entry is dead-lettered", || async {
        env.stream_len("DLQ_STREAM").await == 1
    })
    .await;
    let letter = &env.stream("DLQ_STREAM").await[0];
    assert!(
        letter["dlq_reason"].contains("MAX_DELIVERIES=3"),
        "{letter:?}"
    );
    assert_eq!(letter["dlq_deliveries"], "4");
    assert_eq!(letter["payload"], payload, "the raw message is kept");
    assert_eq!(letter["dlq_source_stream"], env.var("ORDERS_STREAM"));
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;
    assert_eq!(
        env.count("SELECT count(*) FROM orders").await,
        0,
        "a dead letter was executed"
    );

    app.stop().await;
}

#[tokio::test]
async fn stopping_finishes_and_acknowledges_the_batch_in_flight() {
    let env = TestEnv::new().await;
    let app = env
        .spawn(
            "stopper",
            &[("SHIM_ENABLED", "false"), ("BATCH_SIZE", "50")],
        )
        .await;
    for i in 0..400 {
        env.xadd_payload(&order_json(&format!("stop-{i}"), "1", "10"))
            .await;
    }
    env.wait_until("processing has begun", || async {
        env.stream_len("RESULTS_STREAM").await > 0
    })
    .await;

    let stopped_at = tokio::time::Instant::now();
    app.stop().await;
    assert!(
        stopped_at.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        stopped_at.elapsed()
    );
    // Whatever was read was finished: nothing is left pending, and every
    // result on the stream belongs to a committed row.
    assert_eq!(env.pending().await, 0);
    let done = env.stream_len("RESULTS_STREAM").await as i64;
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE status = 'FILLED'")
            .await,
        done
    );

    // A new instance picks up the rest.
    let app = env.spawn("stopper-2", &[("SHIM_ENABLED", "false")]).await;
    env.wait_for_results(400).await;
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 400);
    app.stop().await;
}

#[tokio::test]
async fn a_message_postgres_refuses_is_retried_then_dead_lettered_while_its_batch_completes() {
    let env = TestEnv::new().await;
    env.refuse_orders_starting_with("poison").await;
    for i in 0..5 {
        env.xadd_payload(&order_json(&format!("before-{i}"), "1", "10"))
            .await;
    }
    env.xadd_payload(&order_json("poison-db", "1", "10")).await;
    for i in 0..5 {
        env.xadd_payload(&order_json(&format!("after-{i}"), "1", "10"))
            .await;
    }

    let settings = [
        ("SHIM_ENABLED", "false"),
        ("MAX_DELIVERIES", "3"),
        ("CLAIM_IDLE_MS", "1000"),
        ("CLAIM_INTERVAL_MS", "100"),
    ];
    let app = env.spawn("isolating", &settings).await;
    // The rest of the batch does not wait for the poison's retries.
    env.wait_for_results(10).await;
    env.wait_until("the poison is dead-lettered", || async {
        env.stream_len("DLQ_STREAM").await == 1
    })
    .await;
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;
    let letter = &env.stream("DLQ_STREAM").await[0];
    assert!(
        letter["dlq_reason"].contains("MAX_DELIVERIES=3"),
        "{letter:?}"
    );
    assert_eq!(letter["dlq_deliveries"], "4");
    assert!(
        letter["dlq_first_error"].contains("refused poison-db"),
        "{letter:?}"
    );
    assert!(
        letter["dlq_last_error"].contains("refused poison-db"),
        "{letter:?}"
    );
    assert!(letter["payload"].contains("poison-db"));
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 10);
    assert!(env.results_for("poison-db").await.is_empty());
    let mut conn = env.redis.clone();
    let notes: usize = redis::cmd("HLEN")
        .arg(format!("{}:failures", env.var("ORDERS_STREAM")))
        .query_async(&mut conn)
        .await
        .expect("HLEN");
    assert_eq!(
        notes, 0,
        "the failure notes of a dead letter are cleaned up"
    );

    app.stop().await;
}

#[tokio::test]
async fn a_batch_hung_in_postgres_is_abandoned_and_retried() {
    use sea_orm::ConnectionTrait;
    let env = TestEnv::new().await;
    // A statement that hangs (until switched off), like a lock or a stuck disk.
    env.db
        .execute_unprepared(
            "CREATE TABLE hang_switch (hang boolean NOT NULL); INSERT INTO hang_switch VALUES (true); \
             CREATE FUNCTION hang_orders() RETURNS trigger AS $$ BEGIN \
               IF NEW.order_id LIKE 'sleepy%' AND (SELECT hang FROM hang_switch) THEN PERFORM pg_sleep(600); END IF; \
               RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER hang_orders BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION hang_orders();",
        )
        .await
        .expect("install the hanging trigger");
    // The server's own statement timeout is set far off, so only the
    // service can end an abandoned attempt's backend.
    let settings = [
        ("SHIM_ENABLED", "false"),
        ("BATCH_TIMEOUT_SECS", "1"),
        ("POSTGRES_STATEMENT_TIMEOUT_MS", "600000"),
        ("POSTGRES_LOCK_TIMEOUT_MS", "600000"),
    ];
    let app = env.spawn("patient", &settings).await;
    env.xadd_payload(&order_json("sleepy-1", "1", "10")).await;

    let sleeping = format!(
        "SELECT pid::text FROM pg_stat_activity WHERE datname = '{}' AND wait_event = 'PgSleep'",
        env.database
    );
    // Each attempt is abandoned after a second and its backend terminated:
    // attempts follow one another, they never pile up on the server.
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + crate::helpers::DEADLINE;
    while seen.len() < 3 {
        let pids = env.texts(&sleeping).await;
        assert!(
            pids.len() <= 1,
            "abandoned attempts still run on the server: {pids:?}"
        );
        seen.extend(pids);
        assert!(
            tokio::time::Instant::now() < deadline,
            "saw only {} attempts",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.stats.batch_timeouts.get() >= 2);
    env.db
        .execute_unprepared("UPDATE hang_switch SET hang = false")
        .await
        .expect("switch the hang off");

    // The attempt sleeping now is abandoned too; the next one fills.
    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "FILLED");
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;
    assert_eq!(env.stream_len("DLQ_STREAM").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM trades").await, 1);

    app.stop().await;
}

#[tokio::test]
async fn a_batch_blocked_on_a_lock_is_reported_and_retried() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let env = TestEnv::new().await;
    let settings = [
        ("SHIM_ENABLED", "false"),
        ("POSTGRES_LOCK_TIMEOUT_MS", "200"),
    ];
    let app = env.spawn("blocked", &settings).await;
    // Another transaction holds a lock every upsert needs.
    let holder = env.db.begin().await.expect("BEGIN");
    holder
        .execute_unprepared("LOCK TABLE orders IN EXCLUSIVE MODE")
        .await
        .expect("lock the orders table");
    env.xadd_payload(&order_json("blocked-1", "1", "10")).await;

    env.wait_until("the lock wait is counted", || async {
        app.stats.lock_timeouts.get() >= 2
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", app.url))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.lines().any(
            |line| line.starts_with("execution_batch_lock_timeouts_total ")
                && !line.ends_with(" 0")
        ),
        "{metrics}"
    );
    assert_eq!(
        env.results().await.len(),
        0,
        "nothing is done while blocked"
    );
    holder.rollback().await.expect("ROLLBACK");

    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "FILLED");
    assert_eq!(
        app.stats.batch_timeouts.get(),
        0,
        "a lock wait is not a hang"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_postgres_session_carries_the_timeouts_and_keepalives() {
    let env = TestEnv::new().await;
    let app = env.build("timed", &[("BATCH_TIMEOUT_SECS", "9")]).await;
    let show = |name: &'static str| {
        let db = app.store().connection().clone();
        async move {
            use sea_orm::ConnectionTrait;
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    format!("SHOW {name}"),
                ))
                .await
                .expect("SHOW")
                .expect("a row");
            row.try_get_by_index::<String>(0).expect("a setting")
        }
    };
    assert_eq!(show("statement_timeout").await, "9s");
    assert_eq!(show("lock_timeout").await, "3s");
    assert_eq!(show("idle_in_transaction_session_timeout").await, "9s");
    assert_eq!(show("tcp_keepalives_idle").await, "15");
    assert_eq!(show("tcp_keepalives_interval").await, "5");
    assert_eq!(show("tcp_keepalives_count").await, "3");
    assert_eq!(show("application_name").await, "execution-service");
    drop(app);
}

#[tokio::test]
async fn entries_a_lost_read_reply_delivered_are_taken_back_without_counting_a_delivery() {
    let env = TestEnv::new().await;
    // Claims are effectively off: only taking back lost deliveries helps.
    let settings = [
        ("SHIM_ENABLED", "false"),
        ("CLAIM_IDLE_MS", "3600000"),
        ("CLAIM_INTERVAL_MS", "100"),
    ];
    let mut conn = env.redis.clone();
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(env.var("ORDERS_STREAM"))
        .arg(env.var("CONSUMER_GROUP"))
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .expect("XGROUP CREATE");
    let app = env.spawn("replica-1", &settings).await;
    // Past its start-up (where re-reading its own pending entries counts).
    env.wait_until("the instance reads new entries", || async {
        reqwest::get(format!("{}/ready", app.url))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // Redis delivers these to replica-1, whose reply never arrives (as
    // after a dropped connection): added and read in one transaction, so
    // the running worker's own read cannot get them first.
    let mut pipe = redis::pipe();
    pipe.atomic();
    for i in 0..3 {
        pipe.cmd("XADD")
            .arg(env.var("ORDERS_STREAM"))
            .arg("*")
            .arg("payload")
            .arg(order_json(&format!("lost-{i}"), "1", "10"))
            .ignore();
    }
    pipe.cmd("XREADGROUP")
        .arg("GROUP")
        .arg(env.var("CONSUMER_GROUP"))
        .arg("replica-1")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(env.var("ORDERS_STREAM"))
        .arg(">")
        .ignore();
    let () = pipe
        .query_async(&mut conn)
        .await
        .expect("XADD + XREADGROUP");

    let results = env.wait_for_results(3).await;
    assert!(results.iter().all(|r| r["status"] == "FILLED"));
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;
    assert_eq!(
        app.stats.redeliveries.get(),
        0,
        "taking them back counted a delivery"
    );

    app.stop().await;
}

#[tokio::test]
async fn claims_continue_past_a_long_run_of_busy_pending_entries() {
    let env = TestEnv::new().await;
    // With BATCH_SIZE=1 one XAUTOCLAIM looks at no more than 10 pending
    // entries: 15 busy ones come first, the stale ones after them.
    let mut ids = Vec::new();
    for i in 0..15 {
        ids.push(
            env.xadd_payload(&order_json(&format!("busy-{i}"), "1", "10"))
                .await,
        );
    }
    for i in 0..3 {
        env.xadd_payload(&order_json(&format!("stale-{i}"), "1", "10"))
            .await;
    }
    assert_eq!(env.read_as("dead-replica", 18).await, 18);
    // Another replica is working on the first 15: it keeps them fresh.
    let (stream, group) = (env.var("ORDERS_STREAM"), env.var("CONSUMER_GROUP"));
    let mut conn = env.redis.clone();
    let refresher = tokio::spawn(async move {
        loop {
            let _: Vec<String> = redis::cmd("XCLAIM")
                .arg(&stream)
                .arg(&group)
                .arg("busy-replica")
                .arg(0)
                .arg(&ids)
                .arg("JUSTID")
                .query_async(&mut conn)
                .await
                .expect("XCLAIM");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let settings = [
        ("SHIM_ENABLED", "false"),
        ("BATCH_SIZE", "1"),
        ("CLAIM_IDLE_MS", "1000"),
        ("CLAIM_INTERVAL_MS", "100"),
    ];
    let app = env.spawn("survivor", &settings).await;
    env.wait_until("the stale entries are claimed and filled", || async {
        env.results().await.len() >= 3
    })
    .await;
    let results = env.results().await;
    assert!(
        results.iter().all(|r| r["order_id"].starts_with("stale-")),
        "a busy entry was claimed: {results:?}"
    );

    refresher.abort();
    app.stop().await;
}

#[tokio::test]
async fn the_failure_note_of_an_entry_that_went_through_after_all_is_removed() {
    let env = TestEnv::new().await;
    env.refuse_orders_starting_with("flaky").await;
    let settings = [
        ("SHIM_ENABLED", "false"),
        ("CLAIM_IDLE_MS", "1000"),
        ("CLAIM_INTERVAL_MS", "100"),
    ];
    let app = env.spawn("noting", &settings).await;
    env.xadd_payload(&order_json("flaky-1", "1", "10")).await;
    let notes_key = format!("{}:failures", env.var("ORDERS_STREAM"));
    let notes = || {
        let (mut conn, key) = (env.redis.clone(), notes_key.clone());
        async move {
            let count: usize = redis::cmd("HLEN")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("HLEN");
            let ttl: i64 = redis::cmd("TTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("TTL");
            (count, ttl)
        }
    };
    env.wait_until("the failure is noted", || async { notes().await.0 > 0 })
        .await;
    assert!(notes().await.1 > 0, "the notes never expire");
    env.stop_refusing_orders().await;

    let results = env.wait_for_results(1).await;
    assert_eq!(results[0]["status"], "FILLED");
    env.wait_until("the note is gone", || async { notes().await.0 == 0 })
        .await;
    assert_eq!(env.stream_len("DLQ_STREAM").await, 0);

    app.stop().await;
}

#[tokio::test]
async fn a_pending_entry_deleted_from_the_stream_is_dead_lettered_not_lost_without_trace() {
    let env = TestEnv::new().await;
    let id = env.xadd_payload(&order_json("deleted-1", "1", "10")).await;
    // A consumer that read it and died; then someone deletes the entry.
    assert_eq!(env.read_as("ghost", 10).await, 1);
    let mut conn = env.redis.clone();
    let _: u64 = redis::cmd("XDEL")
        .arg(env.var("ORDERS_STREAM"))
        .arg(&id)
        .query_async(&mut conn)
        .await
        .expect("XDEL");
    let app = env
        .spawn(
            "claimer",
            &[
                ("SHIM_ENABLED", "false"),
                ("CLAIM_IDLE_MS", "1000"),
                ("CLAIM_INTERVAL_MS", "100"),
            ],
        )
        .await;
    env.wait_until("the deleted entry is dead-lettered", || async {
        env.stream_len("DLQ_STREAM").await == 1
    })
    .await;
    let letter = &env.stream("DLQ_STREAM").await[0];
    assert_eq!(letter["dlq_original_id"], id);
    assert!(letter["dlq_reason"].contains("deleted"), "{letter:?}");
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;
    app.stop().await;
}

/// A worker, and the entry of one order it has read.
async fn one_order_read(env: &TestEnv, consumer: &str, order_id: &str) -> (Worker, Vec<Entry>) {
    let worker = env.worker(consumer).await;
    worker.consumer.ensure_group().await.expect("group");
    env.xadd_payload(&order_json(order_id, "1", "10")).await;
    let entries = worker.consumer.read_new(10, 100).await.expect("read");
    assert_eq!(entries.len(), 1);
    (worker, entries)
}

#[tokio::test]
async fn an_entry_is_not_acknowledged_when_its_result_cannot_be_written() {
    let env = TestEnv::new().await;
    // The results stream's key holds a string: its XADD fails (WRONGTYPE)
    // after the order is recorded.
    env.spoil_key("RESULTS_STREAM", true).await;
    let (worker, entries) = one_order_read(&env, "unwritable", "unwritable-1").await;

    let err = worker
        .process_batch(&entries)
        .await
        .expect_err("the result could not be written");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert_eq!(env.pending().await, 1, "the entry was acknowledged");

    // Once the stream can be written, the same delivery is answered from
    // the stored row and acknowledged.
    env.spoil_key("RESULTS_STREAM", false).await;
    let report = worker.process_batch(&entries).await.expect("retried");
    assert_eq!(report.executed, 0, "executed twice");
    assert_eq!(report.results[0].status.as_str(), "FILLED");
    assert_eq!(env.results_for("unwritable-1").await.len(), 1);
    assert_eq!(env.pending().await, 0);
}

#[tokio::test]
async fn nothing_is_acknowledged_when_the_fills_stream_cannot_be_written() {
    let env = TestEnv::new().await;
    env.spoil_key("FILLS_STREAM", true).await;
    let (worker, entries) = one_order_read(&env, "unwritable-fills", "fills-wrongtype-1").await;

    let err = worker
        .process_batch(&entries)
        .await
        .expect_err("the fills stream could not be written");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    // The kinds are checked before anything is written: no result yet,
    // and the entry is not acknowledged, so it is delivered again.
    assert_eq!(env.results_for("fills-wrongtype-1").await.len(), 0);
    assert_eq!(env.pending().await, 1, "the entry was acknowledged");

    env.spoil_key("FILLS_STREAM", false).await;
    worker.process_batch(&entries).await.expect("retried");
    assert_eq!(env.pending().await, 0);
    assert_eq!(env.results_for("fills-wrongtype-1").await.len(), 1);
    assert_eq!(env.stream_len("FILLS_STREAM").await, 1);
}

#[tokio::test]
async fn a_dead_letter_keeps_thousands_of_fields() {
    let env = TestEnv::new().await;
    let worker = env.worker("wide").await;
    worker.consumer.ensure_group().await.expect("group");
    // A field name that is not UTF-8 makes the entry unreadable; it has
    // more fields than a script could pass on.
    let mut conn = env.redis.clone();
    let mut xadd = redis::cmd("XADD");
    xadd.arg(env.var("ORDERS_STREAM")).arg("*");
    xadd.arg(&b"\xff"[..]).arg("x");
    for n in 0..5_000 {
        xadd.arg(format!("f{n}")).arg("");
    }
    let _: String = xadd.query_async(&mut conn).await.expect("XADD");
    env.xadd_payload(&order_json("beside-wide-1", "1", "10"))
        .await;
    let entries = worker.consumer.read_new(10, 100).await.expect("read");
    assert_eq!(entries.len(), 2);

    let report = worker.process_batch(&entries).await.expect("batch");
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(report.results.len(), 1);
    assert_eq!(env.pending().await, 0);
    let letters: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(env.var("DLQ_STREAM"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    assert_eq!(letters.len(), 1);
    let redis::Value::Array(entry) = &letters[0] else {
        panic!("an entry: {:?}", letters[0]);
    };
    let redis::Value::Array(fields) = &entry[1] else {
        panic!("fields: {:?}", entry[1]);
    };
    assert!(fields.len() / 2 > 5_000, "only {} fields", fields.len() / 2);
}
