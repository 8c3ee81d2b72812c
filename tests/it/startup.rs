//! Start-up: settings out of range stop it.

use std::collections::HashMap;
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::service_command;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("HTTP_HOST", "127.0.0.1"),
        ("HTTP_PORT", "0"),
        ("LOG_LEVEL", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    vars
}

struct Finished {
    code: Option<i32>,
    /// stdout and stderr together.
    output: String,
}

/// Runs the binary to its end, which must come within `within`.
async fn run(mut command: Command, within: Duration) -> Finished {
    let output = tokio::time::timeout(within, command.output())
        .await
        .unwrap_or_else(|_| panic!("the service still ran after {within:?}"))
        .expect("run the service");
    Finished {
        code: output.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

#[tokio::test]
async fn settings_that_lose_orders_stop_start_up() {
    let vars = vars(&[
        ("DEDUP_TTL_SECS", "0"),
        ("STREAM_MAXLEN", "0"),
        ("CLAIM_IDLE_MS", "0"),
        ("READ_BLOCK_MS", "0"),
        ("POSTGRES_MAX_CONNECTIONS", "0"),
        ("REDIS_POOL_SIZE", "0"),
        ("MOCK_MAX_SLIPPAGE_BPS", "30000"),
        ("LOG_LEVEL", "verbose"),
    ]);
    let mut command = service_command(&vars);
    command.arg("serve");
    let finished = run(command, Duration::from_secs(10)).await;
    assert_eq!(finished.code, Some(2), "{}", finished.output);
    for name in [
        "DEDUP_TTL_SECS",
        "STREAM_MAXLEN",
        "CLAIM_IDLE_MS",
        "READ_BLOCK_MS",
        "POSTGRES_MAX_CONNECTIONS",
        "REDIS_POOL_SIZE",
        "MOCK_MAX_SLIPPAGE_BPS",
        "LOG_LEVEL",
    ] {
        assert!(
            finished.output.contains(&format!("{name}=")),
            "{name} missing from: {}",
            finished.output
        );
    }
}
