//! A Redis Cluster of three primaries, created by the test: the pipeline
//! runs with hash-tagged names, and refuses to start with names in
//! several slots.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use execution_service::app::Application;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{connect, wait_until};
use crate::helpers::{DEADLINE, TestEnv, free_port, order_json};

struct Cluster {
    ports: Vec<u16>,
    _nodes: Vec<Child>,
    dir: std::path::PathBuf,
}

impl Cluster {
    async fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-cluster"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a folder for the cluster");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for port in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--dir", &dir.to_string_lossy()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start a cluster node");
            nodes.push(child);
        }
        for port in &ports {
            wait_until("a node answers", || async { connect(*port).await.is_ok() }).await;
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .expect("run redis-cli --cluster create");
        assert!(
            created.status.success(),
            "creating the cluster failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        for port in &ports {
            wait_until("the cluster is ok", || async {
                let Ok(mut conn) = connect(*port).await else {
                    return false;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
            })
            .await;
        }
        Cluster {
            ports,
            _nodes: nodes,
            dir,
        }
    }

    fn nodes(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the node serving `key`, and a connection to it.
    async fn owner_of(&self, key: &str) -> (u16, redis::aio::MultiplexedConnection) {
        let mut any = connect(self.ports[0]).await.expect("a node");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut any)
            .await
            .expect("CLUSTER KEYSLOT");
        assert_eq!(
            slot,
            execution_service::bus::key_slot(key.as_bytes()),
            "the service computes the slot as Redis does"
        );
        for port in &self.ports {
            let mut conn = connect(*port).await.expect("a node");
            // Another node answers MOVED.
            let owner: redis::RedisResult<i64> =
                redis::cmd("EXISTS").arg(key).query_async(&mut conn).await;
            if owner.is_ok() {
                return (*port, conn);
            }
        }
        panic!("no node serves {key}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The stream and channel names of a test, all with one hash tag.
fn tagged(prefix: &str) -> Vec<(String, String)> {
    let tag = format!("{{{prefix}}}");
    [
        ("ORDERS_STREAM", "stream.orders"),
        ("RESULTS_STREAM", "stream.order_results"),
        ("FILLS_STREAM", "stream.fills"),
        ("DLQ_STREAM", "stream.orders.dlq"),
        ("SHUTDOWN_STREAM", "stream.bot_shutdown"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), format!("{tag}:{value}")))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_on_a_cluster_with_hash_tagged_names() {
    let env = TestEnv::new().await;
    let cluster = Cluster::start(&env.prefix).await;
    let nodes = cluster.nodes();
    let names = tagged(&env.prefix);
    let mut overrides: Vec<(&str, &str)> = names
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    overrides.extend([
        ("REDIS_CLUSTER_NODES", nodes.as_str()),
        ("REDIS_URL", "redis://127.0.0.1:1/"),
    ]);
    let app = env.build("cluster-a", &overrides).await;
    let cancel = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(cancel.clone()));

    let orders_stream = &names[0].1;
    let results_stream = &names[1].1;
    let (owner_port, mut owner) = cluster.owner_of(orders_stream).await;
    let channel = env.var("ORDERS_CHANNEL");
    wait_until("the shim subscribes", || async {
        let (_, listeners): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut owner.clone())
            .await
            .unwrap_or_default();
        listeners > 0
    })
    .await;
    // Published on another node: cluster pub/sub reaches every node.
    let other = cluster.ports.iter().copied().find(|p| *p != owner_port);
    let mut publisher = connect(other.expect("three nodes")).await.expect("a node");
    let ids: Vec<String> = (0..200).map(|i| format!("{}-c{i}", env.prefix)).collect();
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.cmd("PUBLISH")
            .arg(&channel)
            .arg(order_json(id, "1", "100"))
            .ignore();
    }
    let () = pipe.query_async(&mut publisher).await.expect("PUBLISH");

    let deadline = Instant::now() + DEADLINE;
    let results = loop {
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(results_stream)
            .arg("-")
            .arg("+")
            .query_async(&mut owner)
            .await
            .unwrap_or_default();
        if entries.len() >= ids.len() {
            break entries;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} results",
            entries.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let filled: std::collections::HashSet<&str> = results
        .iter()
        .filter(|(_, f)| f.get("status").map(String::as_str) == Some("FILLED"))
        .map(|(_, f)| f["order_id"].as_str())
        .collect();
    assert_eq!(filled.len(), ids.len(), "every order filled once");
    assert_eq!(
        env.count("SELECT count(*) FROM orders WHERE status = 'FILLED'")
            .await,
        ids.len() as i64
    );
    cancel.cancel();
    running
        .await
        .expect("the application task")
        .expect("the application stops cleanly");
}

#[tokio::test]
async fn names_in_several_slots_stop_start_up_naming_them() {
    let env = TestEnv::new().await;
    let cluster = Cluster::start(&env.prefix).await;
    let nodes = cluster.nodes();
    // The suite's own names carry no hash tag.
    let settings = env.settings(&[
        ("REDIS_CLUSTER_NODES", nodes.as_str()),
        ("REDIS_URL", "redis://127.0.0.1:1/"),
    ]);
    let err = Application::build(settings)
        .await
        .err()
        .expect("start-up refuses names in several slots")
        .to_string();
    for needle in [
        "one hash slot",
        "{exec}",
        "ORDERS_STREAM",
        "DLQ_STREAM",
        "SHUTDOWN_STREAM",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}
