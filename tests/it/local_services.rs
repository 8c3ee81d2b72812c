//! `serve` with no settings on a machine where nothing is set up for it.
//! Each test runs inside a network namespace of its own (`unshare -n`,
//! which needs root), so that what listens at the default addresses is
//! what the test put there, as on a fresh machine:
//!
//! - nothing at all: `serve` starts a private Redis and Postgres under
//!   LOCAL_SERVICES_DIR, serves orders, lets the other subcommands find
//!   them, stops them when it stops, and finds its data again next time;
//! - a stock install (a Redis without a password, a Postgres that checks
//!   passwords over TCP): `serve` uses that Redis and starts only a
//!   Postgres of its own.

use std::path::Path;

use crate::skips::cannot_run;

const BINARY: &str = env!("CARGO_BIN_EXE_execution-service");

/// Shell functions for the scripts: `start` runs `serve` until it is
/// healthy, `stop` sends SIGTERM and waits until the private servers that
/// `services.json` names stop answering.
fn functions(dir: &Path) -> String {
    format!(
        r#"
set -u
ip link set lo up
export LOCAL_SERVICES_DIR='{dir}' HTTP_PORT=18003 LOG_FORMAT=json
start() {{
  '{bin}' serve >>'{dir}/serve.log' 2>&1 & serve=$!
  for _ in $(seq 1 600); do
    '{bin}' healthcheck >/dev/null 2>&1 && return 0
    kill -0 $serve 2>/dev/null || {{ echo "serve exited"; exit 1; }}
    sleep 0.1
  done
  echo "serve never became healthy"; exit 1
}}
answers() {{ [ -n "$1" ] && (exec 3<>/dev/tcp/${{1%:*}}/${{1#*:}}) 2>/dev/null; }}
stop() {{
  kill -TERM $serve; wait $serve; echo "serve exit: $?"
  redis=$(sed -n 's/.*"redis": "\(.*\)".*/\1/p' '{dir}/services.json')
  pg=$(sed -n 's/.*"postgres": "\(.*\)".*/\1/p' '{dir}/services.json')
  for _ in $(seq 1 300); do
    if ! answers "$redis" && ! answers "$pg"; then echo "servers stopped"; return 0; fi
    sleep 0.1
  done
  echo "servers still running"
}}
"#,
        dir = dir.display(),
        bin = BINARY,
    )
}

/// Runs `steps` after [`functions`] in a network namespace of its own;
/// what it printed, and `serve`'s log. `None` (reported) without root or
/// `unshare`.
fn in_namespace(check: &str, steps: &str) -> Option<(String, String)> {
    if !execution_service::local::is_root() || !crate::skips::runs("unshare") {
        cannot_run(
            check,
            "root and unshare(1)",
            "run the suite as root on Linux (util-linux's unshare)",
        );
        return None;
    }
    let dir = std::env::temp_dir().join(format!("execution-it-local-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let script =
        format!("{}\n{steps}", functions(&dir)).replace("{dir}", &dir.display().to_string());
    let output = std::process::Command::new("unshare")
        .args(["-n", "bash", "-c", &script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let context = format!(
        "{stdout}\n{}\nserve.log:\n{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{context}");
    let _ = std::fs::remove_dir_all(&dir);
    Some((stdout, log))
}

#[test]
fn serve_starts_private_servers_where_nothing_is_set_up_and_keeps_their_data() {
    let steps = format!(
        r#"
start
'{bin}' publish --order-id local-1 --price 50000 --timeout 20 | sed 's/^/first: /'
stop
start
'{bin}' order local-1 | head -n 3 | sed 's/^/again: /'
stop
"#,
        bin = BINARY
    );
    let Some((stdout, log)) = in_namespace("serve on a machine with nothing set up", &steps) else {
        return;
    };
    let context = format!("{stdout}\nserve.log:\n{log}");
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
    assert_eq!(
        log.matches("started private servers").count(),
        2,
        "{context}"
    );
}

#[test]
fn beside_a_stock_postgres_that_checks_passwords_serve_starts_only_its_own_postgres() {
    let bin = execution_service::local::postgres_bin().expect("the PostgreSQL programs");
    let redis = execution_service::local::redis_server().expect("redis-server");
    // As a distribution installs them: Redis without a password, Postgres
    // checking passwords over TCP, and no password for `postgres`.
    let steps = format!(
        r#"
stock={{dir}}/stock
mkdir -p "$stock" && chown postgres: "$stock"
runuser -u postgres -- '{initdb}' -D "$stock/db" -U postgres --auth-local=peer --auth-host=scram-sha-256 >/dev/null
runuser -u postgres -- '{pg_ctl}' -D "$stock/db" -l "$stock/log" -w \
  -o "-p 5432 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$stock" start >/dev/null
'{redis}' --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$stock/redis.pid" >/dev/null
for _ in $(seq 1 100); do answers 127.0.0.1:6379 && break; sleep 0.1; done
start
'{bin}' publish --order-id stock-1 --price 50000 --timeout 20 | sed 's/^/published: /'
cat '{{dir}}/services.json' | tr -d ' \n' | sed 's/^/services: /'; echo
stop
answers 127.0.0.1:6379 && echo "the stock Redis still runs"
kill "$(cat "$stock/redis.pid")"
runuser -u postgres -- '{pg_ctl}' -D "$stock/db" stop -m fast >/dev/null
"#,
        initdb = bin.join("initdb").display(),
        pg_ctl = bin.join("pg_ctl").display(),
        redis = redis.display(),
        bin = BINARY,
    );
    let Some((stdout, log)) = in_namespace(
        "serve beside a stock Postgres that checks passwords",
        &steps,
    ) else {
        return;
    };
    let context = format!("{stdout}\nserve.log:\n{log}");
    assert!(
        stdout.contains(r#"published:   "status": "FILLED""#),
        "{context}"
    );
    // Only a Postgres of its own; the stock Redis served.
    assert!(
        stdout.contains(r#"services: {"redis":null,"postgres":"127.0.0.1:"#),
        "{context}"
    );
    assert!(stdout.contains("serve exit: 0"), "{context}");
    assert!(stdout.contains("servers stopped"), "{context}");
    assert!(stdout.contains("the stock Redis still runs"), "{context}");
}
