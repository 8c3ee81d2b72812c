//! The binary itself: `publish`, `serve` under SIGTERM, and start-up with
//! bad settings.

use std::time::Duration;

use tokio::process::Command;

use crate::helpers::TestEnv;

fn binary(env: &TestEnv) -> Command {
    crate::helpers::service_command(env.vars())
}

#[tokio::test]
async fn publish_prints_the_result_of_its_order() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[]).await;

    let output = binary(&env)
        .args([
            "publish",
            "--order-id",
            "cli-1",
            "--symbol",
            "BTCUSDT",
            "--side",
            "SELL",
            "--quantity",
            "0.002",
        ])
        .args(["--price", "60000", "--timeout", "20"])
        .output()
        .await
        .expect("run publish");
    assert!(
        output.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("publish prints JSON");
    assert_eq!(printed["order_id"], "cli-1");
    assert_eq!(printed["status"], "FILLED");
    assert_eq!(printed["fee"], "0.12000000");

    app.stop().await;
}

#[tokio::test]
async fn publish_fails_when_no_result_arrives() {
    let env = TestEnv::new().await;
    let output = binary(&env)
        .args(["publish", "--price", "1", "--timeout", "1"])
        .output()
        .await
        .expect("run publish");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no result arrived"));
}

#[tokio::test]
async fn serve_finishes_its_work_and_exits_zero_on_sigterm() {
    let env = TestEnv::new().await;
    let before = env.subscribers().await;
    let mut child = binary(&env)
        .args(["serve"])
        .env("CONSUMER_NAME", "sigterm")
        .spawn()
        .expect("start serve");
    env.wait_until("the shim subscribes", || async {
        env.subscribers().await > before
    })
    .await;
    env.publish(&[crate::helpers::order_json("sig-1", "1", "10")])
        .await;
    env.wait_for_results(1).await;

    let pid = child.id().expect("a pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("serve did not exit within 10 s of SIGTERM")
        .expect("wait for serve");
    assert!(status.success(), "serve exited with {status}");
    assert_eq!(
        env.subscribers().await,
        before,
        "the shim did not unsubscribe"
    );
    assert_eq!(env.pending().await, 0);
}

#[tokio::test]
async fn bad_settings_stop_start_up_naming_each_variable() {
    let env = TestEnv::new().await;
    let output = binary(&env)
        .args(["serve"])
        .env("TRADING_MODE", "yolo")
        .env("REDIS_PORT", "not-a-port")
        .env("REDIS_URL", "")
        .output()
        .await
        .expect("run serve");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TRADING_MODE=\"yolo\""), "{stderr}");
    assert!(stderr.contains("REDIS_PORT=\"not-a-port\""), "{stderr}");
}

#[tokio::test]
async fn dead_letters_can_be_listed_shown_requeued_and_purged() {
    let env = TestEnv::new().await;
    env.refuse_orders_starting_with("poison").await;
    let settings = [
        ("SHIM_ENABLED", "false"),
        ("MAX_DELIVERIES", "1"),
        ("CLAIM_IDLE_MS", "1000"),
        ("CLAIM_INTERVAL_MS", "50"),
    ];
    let app = env.spawn("dlq", &settings).await;
    env.xadd_payload(&crate::helpers::order_json("poison-cli", "1", "10"))
        .await;
    env.xadd_payload("garbage").await;
    env.wait_until("both are dead-lettered", || async {
        env.stream_len("DLQ_STREAM").await == 2
    })
    .await;

    let dlq = |args: &[&str]| {
        let mut command = binary(&env);
        command.arg("dlq").args(args);
        command
    };
    let listed = dlq(&["list"]).output().await.expect("dlq list");
    assert!(listed.status.success());
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(table.contains("poison-cli"), "{table}");
    assert!(table.contains("not valid JSON"), "{table}");
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|h| h.contains("deliveries") && h.contains("age"))
    );

    let ids = env.stream_ids("DLQ_STREAM").await;
    let letters = env.stream("DLQ_STREAM").await;
    let poison_id = ids[letters
        .iter()
        .position(|l| l["dlq_order_id"] == "poison-cli")
        .expect("poison letter")]
    .clone();
    let shown = dlq(&["show", &poison_id]).output().await.expect("dlq show");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("payload: {") && shown.contains("poison-cli"),
        "{shown}"
    );
    assert!(shown.contains("dlq_first_error: "), "{shown}");

    // Once the cause is fixed, the requeued order goes through, under its own id.
    env.stop_refusing_orders().await;
    let requeued = dlq(&["requeue", &poison_id])
        .output()
        .await
        .expect("dlq requeue");
    assert!(
        requeued.status.success(),
        "{}",
        String::from_utf8_lossy(&requeued.stderr)
    );
    env.wait_until("the requeued order is filled", || async {
        env.results_for("poison-cli")
            .await
            .iter()
            .any(|r| r["status"] == "FILLED")
    })
    .await;
    assert_eq!(env.stream_len("DLQ_STREAM").await, 1);

    let refused = dlq(&["purge"]).output().await.expect("dlq purge");
    assert!(!refused.status.success());
    assert_eq!(env.stream_len("DLQ_STREAM").await, 1);
    let purged = dlq(&["purge", "--yes"])
        .output()
        .await
        .expect("dlq purge --yes");
    assert!(purged.status.success());
    assert_eq!(env.stream_len("DLQ_STREAM").await, 0);

    app.stop().await;
}

#[tokio::test]
async fn requeue_all_moves_every_letter_back_across_pages() {
    let env = TestEnv::new().await;
    // More letters than one page of reads (500), written as the service
    // writes them: the original fields beside `dlq_` ones.
    let letters = 1_234;
    let mut pipe = redis::pipe();
    for n in 0..letters {
        pipe.cmd("XADD")
            .arg(env.var("DLQ_STREAM"))
            .arg("*")
            .arg("payload")
            .arg(crate::helpers::order_json(
                &format!("letter-{n}"),
                "1",
                "10",
            ))
            .arg("dlq_reason")
            .arg("a test letter")
            .ignore();
    }
    let mut conn = env.redis.clone();
    let () = pipe.query_async(&mut conn).await.expect("XADD letters");

    let output = binary(&env)
        .args(["dlq", "requeue", "--all"])
        .env("LOG_LEVEL", "info")
        .env("LOG_FORMAT", "text")
        .output()
        .await
        .expect("dlq requeue --all");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.starts_with("requeued "))
            .count(),
        letters
    );
    assert_eq!(env.stream_len("DLQ_STREAM").await, 0);
    // Logs into a pipe are plain text: no colour codes.
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("dead letters requeued"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
    let requeued = env.stream("ORDERS_STREAM").await;
    assert_eq!(requeued.len(), letters);
    assert!(
        requeued
            .iter()
            .all(|entry| !entry.contains_key("dlq_reason"))
    );
    assert!(requeued[letters - 1]["payload"].contains(&format!("letter-{}", letters - 1)));
}

#[tokio::test]
async fn publish_can_send_a_whole_json_order_straight_onto_the_stream() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[("SHIM_ENABLED", "false")]).await;
    let order = r#"{"order_id":"cli-json","symbol":"ETH/USDT","side":"sell","quantity":"0.25","price":"3000"}"#;
    let output = binary(&env)
        .args([
            "publish",
            "--via",
            "stream",
            "--json",
            order,
            "--timeout",
            "20",
        ])
        .output()
        .await
        .expect("run publish");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(printed["order_id"], "cli-json");
    assert_eq!(printed["status"], "FILLED");
    assert_eq!(env.stream_len("ORDERS_STREAM").await, 1);

    // A numeric order_id is the order's id, not replaced by a generated one.
    let numeric =
        r#"{"order_id":424242,"symbol":"BTCUSDT","side":"BUY","quantity":"0.001","price":"50000"}"#;
    let output = binary(&env)
        .args(["publish", "--via", "stream", "--json", numeric])
        .args(["--timeout", "20"])
        .output()
        .await
        .expect("run publish");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(printed["order_id"], "424242");
    assert_eq!(printed["status"], "FILLED");
    // One that no result could come for is refused before anything is sent.
    let output = binary(&env)
        .args([
            "publish",
            "--via",
            "stream",
            "--json",
            r#"{"order_id":true}"#,
        ])
        .output()
        .await
        .expect("run publish");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("neither a string nor a number"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(env.stream_len("ORDERS_STREAM").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn migrate_applies_reports_and_rolls_back() {
    let env = TestEnv::new().await;
    let migrate = |action: &'static str| {
        let mut command = binary(&env);
        command.args(["migrate", action]).env("LOG_LEVEL", "info");
        command
    };
    let status = migrate("status").output().await.expect("migrate status");
    assert!(status.status.success());
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(log.contains("m20261126_000002_create_trades"), "{log}");

    let raw_column = "SELECT count(*) FROM information_schema.columns \
                      WHERE table_name = 'orders' AND column_name = 'raw_message'";
    assert_eq!(env.count(raw_column).await, 1);
    // Each `down` rolls back the newest migration: the index by update
    // time, the exchange orphans,
    // halt entries keyed by content, the order lifecycle (events, sequence
    // numbers), the live order columns, the halts tables, the nullable
    // rejection columns, then the trades table.
    let orphans =
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'exchange_orphans'";
    assert_eq!(env.count(orphans).await, 1);
    for _ in 0..8 {
        let down = migrate("down").output().await.expect("migrate down");
        assert!(
            down.status.success(),
            "{}",
            String::from_utf8_lossy(&down.stderr)
        );
    }
    assert_eq!(env.count(raw_column).await, 0);
    assert_eq!(env.count(orphans).await, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM information_schema.tables WHERE table_name = 'trades'")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM information_schema.tables WHERE table_name = 'orders'")
            .await,
        1
    );

    let up = migrate("up").output().await.expect("migrate up");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(
        env.count("SELECT count(*) FROM information_schema.tables WHERE table_name = 'trades'")
            .await,
        1
    );
    assert_eq!(env.count(raw_column).await, 1);
    assert_eq!(env.count(orphans).await, 1);
}

#[tokio::test]
async fn halt_resume_and_halts_work_through_the_stream() {
    let env = TestEnv::new().await;
    let app = env.spawn("cli-halts", &[("SHIM_ENABLED", "false")]).await;
    let run = |args: &[&str]| {
        let mut command = binary(&env);
        command.args(args);
        command.output()
    };
    let halted = run(&[
        "halt",
        "--scope",
        "bot",
        "--id",
        "b-42",
        "--reason",
        "runaway bot",
        "--source",
        "ops",
    ])
    .await
    .expect("halt");
    let printed = String::from_utf8_lossy(&halted.stdout);
    assert!(
        halted.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&halted.stderr)
    );
    assert!(printed.contains("applied by the fleet"), "{printed}");
    assert_eq!(
        env.count("SELECT count(*) FROM halts WHERE scope = 'bot' AND target = 'b-42' AND lifted_at IS NULL")
            .await,
        1
    );

    let listed = run(&["halts"]).await.expect("halts");
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(
        table.contains("b-42") && table.contains("runaway bot") && table.contains("in force"),
        "{table}"
    );

    // A halt needs a reason, a scope its id, and nothing the replicas would
    // refuse is sent.
    let long = "r".repeat(1_001);
    for args in [
        &["halt", "--all"][..],
        &["halt", "--scope", "strategy", "--reason", "x"][..],
        &["halt", "--all", "--reason", &long][..],
    ] {
        let refused = run(args).await.expect("run");
        assert!(!refused.status.success(), "{args:?} was accepted");
    }

    let resumed = run(&["resume", "--scope", "bot", "--id", "b-42"])
        .await
        .expect("resume");
    assert!(resumed.status.success());
    assert_eq!(
        env.count("SELECT count(*) FROM halts WHERE lifted_at IS NOT NULL AND lifted_by = 'cli'")
            .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn real_orders_without_confirmation_and_keys_refuse_to_start() {
    let env = TestEnv::new().await;
    let output = binary(&env)
        .args(["serve"])
        .env("TRADING_MODE", "live")
        .env("DRY_RUN", "false")
        .env("MEXC_API_KEY", "mx0-visible-key")
        .output()
        .await
        .expect("run serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CONFIRM_LIVE_TRADING=true") && stderr.contains("MEXC_API_SECRET"),
        "{stderr}"
    );
    assert!(!stderr.contains("mx0-visible-key"), "{stderr}");
}

#[tokio::test]
async fn bench_prints_the_postgres_ceiling_its_share_the_peak_memory_and_cpu_per_order() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[]).await;

    let output = binary(&env)
        .args([
            "bench",
            "--orders",
            "400",
            "--chunk",
            "100",
            "--timeout",
            "60",
        ])
        .args([
            "--ceiling",
            "--metrics-url",
            &format!("{}/metrics", app.url),
        ])
        .output()
        .await
        .expect("run bench");
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "bench failed: {printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value = |name: &str| -> f64 {
        let start = printed
            .find(&format!("{name}="))
            .unwrap_or_else(|| panic!("no {name} in: {printed}"))
            + name.len()
            + 1;
        printed[start..]
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not a number in: {printed}"))
    };
    assert!(value("ceiling") > 0.0, "{printed}");
    assert!(value("peak_rss") > 1.0, "{printed}");
    // CPU per order of each process: the service (here the test process
    // itself) and Redis are always known; Postgres when it runs here.
    assert!(printed.contains("cpu_us_per_order "), "{printed}");
    assert!(value("service") > 0.0, "{printed}");
    assert!(value("redis") > 0.0, "{printed}");
    // Each figure is rounded to 0.1 on its own.
    assert!(
        value("total") + 0.2 >= value("service") + value("redis"),
        "{printed}"
    );
    assert!(printed.contains("% of the ceiling"), "{printed}");
    assert!(printed.contains("results=400"), "{printed}");
    assert_eq!(
        env.count(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'bench_ceiling_%'"
        )
        .await,
        0,
        "the scratch schema was left behind"
    );
    app.stop().await;
}
