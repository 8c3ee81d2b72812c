//! `serve` on a machine where nothing is set up: no variable names a Redis
//! or a Postgres and nothing listens at the defaults. It must start private
//! servers under LOCAL_SERVICES_DIR, serve orders, let the other
//! subcommands find them, stop them when it stops, and find its data again
//! the next time. Run inside a network namespace of its own (`unshare -n`,
//! which needs root), where nothing listens, as on a fresh machine.

use crate::skips::cannot_run;

const BINARY: &str = env!("CARGO_BIN_EXE_execution-service");

#[test]
fn serve_starts_private_servers_where_nothing_is_set_up_and_keeps_their_data() {
    if !execution_service::local::is_root() || !crate::skips::runs("unshare") {
        return cannot_run(
            "serve on a machine with nothing set up (a network namespace of its own)",
            "root and unshare(1)",
            "run the suite as root on Linux (util-linux's unshare)",
        );
    }
    let dir = std::env::temp_dir().join(format!("execution-it-local-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    // Every step in the namespace; each prints what the test checks.
    let script = format!(
        r#"
set -u
ip link set lo up
export LOCAL_SERVICES_DIR='{dir}' HTTP_PORT=18003 LOG_FORMAT=json
start() {{
  '{bin}' serve >>'{dir}/serve.log' 2>&1 & serve=$!
  for _ in $(seq 1 600); do
    '{bin}' healthcheck >/dev/null 2>&1 && return 0
    kill -0 $serve 2>/dev/null || {{ echo "serve exited"; cat '{dir}/serve.log'; exit 1; }}
    sleep 0.1
  done
  echo "serve never became healthy"; cat '{dir}/serve.log'; exit 1
}}
stop() {{
  kill -TERM $serve; wait $serve; echo "serve exit: $?"
  # Its servers stop after it.
  for _ in $(seq 1 300); do
    redis=$(sed -n 's/.*"redis": "\(.*\)".*/\1/p' '{dir}/services.json')
    pg=$(sed -n 's/.*"postgres": "\(.*\)".*/\1/p' '{dir}/services.json')
    if ! (exec 3<>/dev/tcp/${{redis%:*}}/${{redis#*:}}) 2>/dev/null \
       && ! (exec 3<>/dev/tcp/${{pg%:*}}/${{pg#*:}}) 2>/dev/null; then
      echo "servers stopped"; return 0
    fi
    sleep 0.1
  done
  echo "servers still running"
}}
start
'{bin}' publish --order-id local-1 --price 50000 --timeout 20 | sed 's/^/first: /'
stop
start
'{bin}' order local-1 | head -n 3 | sed 's/^/again: /'
stop
"#,
        dir = dir.display(),
        bin = BINARY,
    );
    let output = std::process::Command::new("unshare")
        .args(["-n", "bash", "-c", &script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let context = format!(
        "{stdout}\n{}\nserve.log:\n{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{context}");
    assert!(
        stdout.contains(r#"first:   "status": "FILLED""#),
        "{context}"
    );
    assert_eq!(stdout.matches("serve exit: 0").count(), 2, "{context}");
    assert_eq!(stdout.matches("servers stopped").count(), 2, "{context}");
    // The second run found the first run's order: the data stayed.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("again: ") && l.contains("local-1")),
        "{context}"
    );
    assert!(log.contains("started private servers"), "{context}");
    let _ = std::fs::remove_dir_all(&dir);
}
