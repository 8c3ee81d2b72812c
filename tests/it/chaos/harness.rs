//! Replicas as child processes, a private Redis, paced load and the
//! invariant check every scenario ends with.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::helpers::{DEADLINE, TestEnv, order_json};

/// What a replica logs (at `info`) once its shim listens.
const SUBSCRIBED: &str = "order shim subscribed";

/// How long a scenario may take to settle after its load.
pub const SETTLE: Duration = Duration::from_secs(600);

pub struct Replica {
    pub name: String,
    /// Base URL of its HTTP API.
    pub url: String,
    child: Child,
}

/// Replica processes sharing one test environment.
pub struct Cluster<'a> {
    pub env: &'a TestEnv,
    overrides: Vec<(String, String)>,
    pub replicas: Vec<Replica>,
    started: usize,
}

impl<'a> Cluster<'a> {
    pub fn new(env: &'a TestEnv, overrides: &[(&str, &str)]) -> Self {
        let overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Cluster {
            env,
            overrides,
            replicas: Vec::new(),
            started: 0,
        }
    }

    /// Starts one more replica and waits until its shim listens.
    pub async fn start(&mut self) {
        self.started += 1;
        let name = format!("replica-{}", self.started);
        let log = std::fs::File::create(self.log_path(&name)).expect("replica log file");
        // A port of its own, unless the scenario chose one.
        let port = self
            .overrides
            .iter()
            .find(|(name, _)| name == "HTTP_PORT")
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(crate::helpers::free_port);
        let child = Command::new(env!("CARGO_BIN_EXE_execution-service"))
            .arg("serve")
            .env_clear()
            .envs(self.env.vars())
            .env("LOG_LEVEL", "info")
            .envs(self.overrides.iter().cloned())
            .env("CONSUMER_NAME", &name)
            .env("HTTP_PORT", port.to_string())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start a replica");
        // Its own log says so: a count of subscribers can stand still when
        // a replica killed just before drops out of Redis meanwhile.
        let log = self.log_path(&name);
        self.env
            .wait_until(&format!("{name} subscribes"), || async {
                std::fs::read_to_string(&log).is_ok_and(|text| text.contains(SUBSCRIBED))
            })
            .await;
        let url = format!("http://127.0.0.1:{port}");
        self.replicas.push(Replica { name, url, child });
    }

    /// Where a replica's log goes.
    pub fn log_path(&self, name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{}-{name}.log", self.env.prefix))
    }

    /// SIGKILLs the replica at `index`.
    pub async fn kill(&mut self, index: usize) -> String {
        let mut replica = self.replicas.remove(index);
        replica.child.start_kill().expect("SIGKILL a replica");
        replica.child.wait().await.expect("reap the replica");
        replica.name
    }

    /// SIGTERMs every replica; each must exit 0.
    pub async fn stop(self) {
        for mut replica in self.replicas {
            let pid = replica.child.id().expect("a live replica").to_string();
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .await
                .expect("send SIGTERM");
            let status = tokio::time::timeout(DEADLINE, replica.child.wait())
                .await
                .expect("a replica did not stop after SIGTERM")
                .expect("wait for a replica");
            assert!(status.success(), "{} exited with {status}", replica.name);
        }
    }
}

/// A Redis server of the test's own, which it may kill and restart.
pub struct PrivateRedis {
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        Self::start_with_password(None).await
    }

    /// A server that requires `password` (`--requirepass`), when given.
    pub async fn start_with_password(password: Option<&str>) -> Self {
        let port = crate::helpers::free_port();
        let mut redis = PrivateRedis {
            port,
            password: password.map(str::to_owned),
            child: None,
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// Starts the server (again) on its port, with nothing kept on disk.
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("private Redis URL");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the private Redis did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL redis-server");
            child.wait().await.expect("reap redis-server");
        }
    }
}

/// Valid paper orders, `count` of them, with ids under `prefix`.
pub fn valid_orders(prefix: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            let payload = order_json(&id, "0.01", &format!("{}.5", 100 + i % 50));
            (id, payload)
        })
        .collect()
}

/// Publishes on the orders channel in chunks, one chunk every `every`,
/// retrying a chunk while Redis is unreachable (as a producer would).
pub async fn publish_paced(env: &TestEnv, payloads: &[String], chunk: usize, every: Duration) {
    let mut next = tokio::time::Instant::now();
    for part in payloads.chunks(chunk) {
        tokio::time::sleep_until(next).await;
        next += every;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let mut conn = env.redis.clone();
            let mut pipe = redis::pipe();
            for payload in part {
                pipe.cmd("PUBLISH")
                    .arg(env.var("ORDERS_CHANNEL"))
                    .arg(payload)
                    .ignore();
            }
            if pipe.query_async::<()>(&mut conn).await.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Redis stayed unreachable for the producer"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Adds to the orders stream in chunks, one chunk every `every`.
pub async fn add_paced(env: &TestEnv, payloads: &[String], chunk: usize, every: Duration) {
    let mut next = tokio::time::Instant::now();
    let mut conn = env.redis.clone();
    for part in payloads.chunks(chunk) {
        tokio::time::sleep_until(next).await;
        next += every;
        let mut pipe = redis::pipe();
        for payload in part {
            pipe.cmd("XADD")
                .arg(env.var("ORDERS_STREAM"))
                .arg("*")
                .arg("payload")
                .arg(payload)
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("XADD");
    }
}

/// Waits until every order in `ids` has a terminal row and nothing is pending.
pub async fn wait_until_settled(env: &TestEnv, ids: &[String]) {
    let expected = ids.len() as i64;
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let done = terminal_rows(env).await;
        if done >= expected && env.pending().await == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "settled only {done} of {expected} orders"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn terminal_rows(env: &TestEnv) -> i64 {
    env.count("SELECT count(*) FROM orders WHERE status IN ('FILLED', 'REJECTED', 'ERROR')")
        .await
}

/// What the invariant check found (printed by every scenario).
#[derive(Debug, Default)]
#[allow(dead_code, reason = "read through its Debug output")]
pub struct Counts {
    pub valid: usize,
    pub rows: i64,
    pub filled: i64,
    pub trades: i64,
    pub results: usize,
    pub dead_letters: usize,
}

/// The invariants every scenario ends with, for the valid orders `ids`:
/// one row each, terminal; one trade per FILLED order and none for
/// others; every result announced for an order identical (one execution);
/// every order announced on the results stream or settled in its row.
pub async fn check_invariants(env: &TestEnv, ids: &[String]) -> Counts {
    let rows = env.count("SELECT count(*) FROM orders").await;
    let per_order = env.count("SELECT count(*) FROM (SELECT order_id FROM orders GROUP BY order_id HAVING count(*) > 1) d").await;
    assert_eq!(per_order, 0, "an order has more than one row");
    let unfinished = env
        .count("SELECT count(*) FROM orders WHERE status NOT IN ('FILLED', 'REJECTED', 'ERROR')")
        .await;
    assert_eq!(unfinished, 0, "orders were left unfinished");
    let filled = env
        .count("SELECT count(*) FROM orders WHERE status = 'FILLED'")
        .await;
    let trades = env.count("SELECT count(*) FROM trades").await;
    let doubled = env.count("SELECT count(*) FROM (SELECT order_id FROM trades GROUP BY order_id HAVING count(*) <> 1) d").await;
    assert_eq!(doubled, 0, "an order has more than one fill");
    let orphaned = env
        .count("SELECT count(*) FROM trades t JOIN orders o USING (order_id) WHERE o.status <> 'FILLED'")
        .await;
    assert_eq!(orphaned, 0, "an order that is not FILLED has a fill");
    assert_eq!(trades, filled, "every FILLED order has exactly one fill");

    let results = env.results().await;
    let mut announced: HashMap<&str, &HashMap<String, String>> = HashMap::new();
    for result in &results {
        let id = result["order_id"].as_str();
        if let Some(first) = announced.insert(id, result) {
            for field in ["status", "price", "fee", "filled_quantity", "timestamp"] {
                assert_eq!(
                    first.get(field),
                    result.get(field),
                    "two different outcomes announced for {id}"
                );
            }
        }
    }
    let stored: i64 = {
        let list = ids
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(",");
        env.count(&format!(
            "SELECT count(*) FROM orders WHERE order_id IN ({list})"
        ))
        .await
    };
    assert_eq!(stored, ids.len() as i64, "a valid order has no row");
    let counts = Counts {
        valid: ids.len(),
        rows,
        filled,
        trades,
        results: results.len(),
        dead_letters: env.stream_len("DLQ_STREAM").await,
    };
    println!("{counts:?}");
    counts
}
