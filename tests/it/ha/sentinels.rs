//! A Redis primary with one replica behind three Sentinels, all started by
//! the test on free ports, which it may kill, freeze and restart.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use execution_service::bus::RedisTarget;
use redis::IntoConnectionInfo;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::{connect, wait_until};
use crate::helpers::{DEADLINE, free_port};
use crate::proxy::Proxy;

/// The primary's name in the Sentinels' configuration.
pub const MASTER: &str = "exec-primary";

/// How long Sentinels wait before they call an unanswering primary down.
const DOWN_AFTER_MS: u64 = 1000;

struct Node {
    port: u16,
    child: Option<Child>,
}

pub struct Sentinels {
    nodes: Vec<Node>,
    sentinels: Vec<(u16, Child)>,
    dir: PathBuf,
    /// Between the replica and the primary, when asked for.
    link: Option<Proxy>,
}

impl Sentinels {
    /// A primary, its replica (in sync) and three Sentinels that know
    /// both and each other.
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, false).await
    }

    /// As [`Sentinels::start`], the replica replicating through a proxy
    /// the test can black-hole ([`Sentinels::link`]).
    pub async fn start_proxied(name: &str) -> Self {
        Self::start_with(name, true).await
    }

    /// The proxy the replica replicates through, if any.
    pub fn link(&self) -> &Proxy {
        self.link.as_ref().expect("started with start_proxied")
    }

    async fn start_with(name: &str, proxied: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-sentinels"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a folder for the Sentinels");
        let primary = free_port();
        let replica = free_port();
        let mut set = Sentinels {
            nodes: vec![
                Node {
                    port: primary,
                    child: None,
                },
                Node {
                    port: replica,
                    child: None,
                },
            ],
            sentinels: Vec::new(),
            dir,
            link: None,
        };
        set.run_node(primary, None).await;
        let upstream = if proxied {
            let proxy = Proxy::start(&format!("127.0.0.1:{primary}")).await;
            let port = proxy.addr.port();
            set.link = Some(proxy);
            port
        } else {
            primary
        };
        set.run_node(replica, Some(upstream)).await;
        set.wait_in_sync(replica).await;
        for _ in 0..3 {
            let port = free_port();
            let config = set.dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {MASTER} 4000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    set.dir.display()
                ),
            )
            .expect("a Sentinel configuration");
            let child = Command::new("redis-server")
                .arg(&config)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start redis-server --sentinel");
            set.sentinels.push((port, child));
        }
        // Each Sentinel must know the replica and the two others (from
        // their hello messages) before it can agree on a failover.
        let ports: Vec<u16> = set.sentinels.iter().map(|(port, _)| *port).collect();
        wait_until("the Sentinels know each other and the replica", || async {
            for port in &ports {
                let Ok(mut conn) = connect(*port).await else {
                    return false;
                };
                let others: redis::RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
                    .arg("SENTINELS")
                    .arg(MASTER)
                    .query_async(&mut conn)
                    .await;
                let replicas: redis::RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(MASTER)
                    .query_async(&mut conn)
                    .await;
                if !matches!((others, replicas), (Ok(o), Ok(r)) if o.len() == 2 && r.len() == 1) {
                    return false;
                }
            }
            true
        })
        .await;
        set
    }

    /// `REDIS_SENTINELS` for the service.
    pub fn addresses(&self) -> String {
        self.sentinels
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the first Sentinel.
    pub fn sentinel_port(&self) -> u16 {
        self.sentinels[0].0
    }

    /// The settings that point the service at this set.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REDIS_URL", "redis://127.0.0.1:1/".to_owned()),
            ("REDIS_SENTINELS", self.addresses()),
            ("REDIS_SENTINEL_MASTER", MASTER.to_owned()),
        ]
    }

    /// A target that follows the primary, as the service's does.
    pub fn target(&self) -> RedisTarget {
        let sentinels = self
            .sentinels
            .iter()
            .map(|(port, _)| {
                format!("redis://127.0.0.1:{port}/")
                    .into_connection_info()
                    .expect("a Sentinel URL")
            })
            .collect();
        let node = "redis://127.0.0.1/"
            .into_connection_info()
            .expect("a node URL");
        RedisTarget::sentinel(sentinels, MASTER, &node).expect("a Sentinel target")
    }

    /// The port of the primary the Sentinels name now.
    pub async fn primary(&self) -> u16 {
        for (port, _) in &self.sentinels {
            if let Ok(mut conn) = connect(*port).await
                && let Ok((_, primary)) = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(MASTER)
                    .query_async::<(String, u16)>(&mut conn)
                    .await
            {
                return primary;
            }
        }
        panic!("no Sentinel answers");
    }

    /// SIGKILLs the primary; returns its port.
    pub async fn kill_primary(&mut self) -> u16 {
        let port = self.primary().await;
        let node = self.node(port);
        if let Some(mut child) = node.child.take() {
            child.start_kill().expect("SIGKILL the primary");
            child.wait().await.expect("reap the primary");
        }
        port
    }

    /// Freezes the primary for `secs` (`DEBUG SLEEP`, which blocks the
    /// whole server); returns its port at once.
    pub async fn freeze_primary(&self, secs: u64) -> u16 {
        let port = self.primary().await;
        let mut conn = connect(port).await.expect("connect to the primary");
        tokio::spawn(async move {
            let _: redis::RedisResult<()> = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(secs)
                .query_async(&mut conn)
                .await;
        });
        port
    }

    /// Waits until the Sentinels name a primary other than `old` and it
    /// answers as one; how long that took from `since`.
    pub async fn wait_for_failover(&self, old: u16, since: Instant) -> Duration {
        let deadline = since + DEADLINE;
        loop {
            let primary = self.primary().await;
            if primary != old
                && let Ok(mut conn) = connect(primary).await
                && let Ok(redis::Role::Primary { .. }) =
                    redis::cmd("ROLE").query_async(&mut conn).await
            {
                return since.elapsed();
            }
            assert!(Instant::now() < deadline, "no failover away from {old}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the node on `port` again, as a replica of the primary now,
    /// and waits until it is in sync.
    pub async fn restart_as_replica(&mut self, port: u16) {
        let primary = self.primary().await;
        self.run_node(port, Some(primary)).await;
        self.wait_in_sync(port).await;
    }

    /// Waits until the node on `port` is a replica in sync with its primary.
    pub async fn wait_in_sync(&self, port: u16) {
        wait_until(&format!("the replica on {port} is in sync"), || async {
            let Ok(mut conn) = connect(port).await else {
                return false;
            };
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            info.contains("role:slave") && info.contains("master_link_status:up")
        })
        .await;
    }

    fn node(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of the set")
    }

    async fn run_node(&mut self, port: u16, replica_of: Option<u16>) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            // A replica (re)joining syncs at once, not 5 s later.
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--dir", &self.dir.to_string_lossy()])
            .args(["--dbfilename", &format!("dump-{port}.rdb")]);
        if let Some(primary) = replica_of {
            command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.node(port).child = Some(child);
        wait_until(&format!("Redis on {port} answers"), || async {
            connect(port).await.is_ok()
        })
        .await;
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
