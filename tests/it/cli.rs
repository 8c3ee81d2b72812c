//! The binary itself: `publish`, `serve` under SIGTERM, and start-up with
//! bad settings.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::TestEnv;

fn binary(env: &TestEnv) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_execution-service"));
    command
        .env_clear()
        .envs(env.vars())
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
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
    env.cleanup().await;
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
    env.cleanup().await;
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
    env.cleanup().await;
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
    env.cleanup().await;
}
