//! Checks that need a program or file from outside the crate (hadolint,
//! schemathesis, promtool, prometheus, kubernetes-validate, the Grafana
//! SDK, the Compose Specification schema). In CI (`CI` set) a missing one
//! fails its test. Elsewhere the test passes over that check, says so on
//! the run's own stderr at once (the harness would swallow a test's
//! output), and the run ends with a list of every check that did not run,
//! after cargo's summary, so a skipped check never looks like a pass.

use std::sync::{Mutex, Once, PoisonError};

use crate::services::say;

static NOT_RUN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `check` cannot run here because `missing`; `install` says how to get it
/// (with the pinned version). Panics in CI.
pub fn cannot_run(check: &str, missing: &str, install: &str) {
    let line = format!("{check}: NOT RUN: {missing} (install: {install})");
    if std::env::var_os("CI").is_some() {
        panic!("CI runs every check. {line}");
    }
    say(&format!("integration tests: {line}"));
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function with no captured state; libc
        // calls it once, at exit, after every test thread has finished.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(report);
        }
    });
    NOT_RUN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(line);
}

extern "C" fn report() {
    let lines = NOT_RUN.lock().unwrap_or_else(PoisonError::into_inner);
    if lines.is_empty() {
        return;
    }
    say(&format!(
        "\n{} check(s) of the integration tests did NOT run on this machine:\n  {}\n",
        lines.len(),
        lines.join("\n  ")
    ));
}

/// Whether `program` runs (`--version` exits 0).
pub fn runs(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
