//! The HTTP API against its own served OpenAPI document, through
//! schemathesis with every check: each response matches its documented
//! status, content type and schema, undeclared methods get 405 with `Allow`,
//! invalid input is refused with a 4xx, and nothing answers 5xx.
//!
//! Outside CI the test says so and passes over its check when schemathesis
//! is missing; with `CI` set it is required (`.ci/run` installs the pinned
//! version). The seed of a failing run is printed with its output: replay
//! it with `schemathesis run --seed <seed> …`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::{TestEnv, order_json};

/// Test cases per operation and phase: enough to reach every parameter's
/// edges, small enough to finish in seconds.
const MAX_EXAMPLES: &str = "50";

/// Longer than any healthy run; a hung run fails instead of hanging CI.
const BUDGET: Duration = Duration::from_secs(120);

/// The pinned release (as `.ci/run` installs it).
const PINNED: &str = "4.32.5";

/// `schemathesis --version`, or `None` (reported) when it is not installed.
fn installed_version() -> Option<String> {
    match std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
    {
        Err(err) => {
            crate::skips::cannot_run(
                "the API against its OpenAPI document (schemathesis)",
                &format!("schemathesis: {err}"),
                &format!("pip install schemathesis=={PINNED}"),
            );
            None
        }
        Ok(output) => Some(String::from_utf8_lossy(&output.stdout).trim().to_owned()),
    }
}

#[tokio::test]
async fn the_api_keeps_to_its_openapi_document_under_schemathesis() {
    let Some(version) = installed_version() else {
        return;
    };
    let env = TestEnv::new().await;
    // With an admin token, so the write endpoints of /halts are tried too
    // (and a request without it must get 401).
    let token = "schemathesis-admin-token-0123456789";
    let app = env
        .spawn(
            "schemathesis",
            &[("SHIM_ENABLED", "false"), ("ADMIN_TOKEN", token)],
        )
        .await;
    // A filled and a rejected order, so lists and lookups return rows with
    // trades and with nulls; the list's ids feed the lookups.
    env.xadd_payload(&order_json("st-filled", "0.001", "50000"))
        .await;
    env.xadd_payload(r#"{"order_id":"st-rejected","symbol":"BTCUSDT","side":"HOLD","quantity":1}"#)
        .await;
    env.wait_for_results(2).await;

    // Its example database and reports stay out of the repository; the
    // database replays past failures first.
    let workdir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    std::fs::create_dir_all(&workdir).expect("a working folder for schemathesis");
    let started = Instant::now();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let run = tokio::process::Command::new("schemathesis")
        .current_dir(&workdir)
        .args([
            "--no-color",
            "--config-file",
            config,
            "run",
            "--checks",
            "all",
        ])
        .args(["--max-examples", MAX_EXAMPLES, "--request-timeout", "5"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .arg(format!("{}/openapi.json", app.url))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BUDGET, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {BUDGET:?}"))
        .expect("run schemathesis");
    assert!(
        output.status.success(),
        "{version} found problems ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{version}: no problems in {:?}", started.elapsed());

    app.stop().await;
}
