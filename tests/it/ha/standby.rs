//! A Postgres primary and a streaming standby (`pg_basebackup`) of the
//! test's own, on free ports, which it can switch over.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;

use execution_service::local::is_root;

use crate::helpers::{DEADLINE, free_port};

pub struct Standby {
    dir: PathBuf,
    pub primary_port: u16,
    pub standby_port: u16,
}

impl Standby {
    /// A primary and a standby streaming from it, both running.
    pub async fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-pg"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a folder for the clusters");
        let set = Standby {
            dir,
            primary_port: free_port(),
            standby_port: free_port(),
        };
        if is_root() {
            run("chown", &["-R", "postgres:postgres", &set.path("")]).await;
        }
        let primary = set.path("primary");
        set.pg(
            "initdb",
            &[
                "-D",
                &primary,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        )
        .await;
        set.start_cluster("primary", set.primary_port).await;
        set.pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &set.primary_port.to_string(),
                "-U",
                "postgres",
                "-D",
                &set.path("standby"),
                "-R",
                "-X",
                "stream",
            ],
        )
        .await;
        set.start_cluster("standby", set.standby_port).await;
        set.wait_streaming().await;
        set
    }

    /// Stops the primary (a fast shutdown: its standby receives all it
    /// wrote first) and promotes the standby; how long the promotion took.
    pub async fn switch_over(&self) -> Duration {
        self.pg_ctl(&["-D", &self.path("primary"), "stop", "-m", "fast", "-w"])
            .await;
        let started = Instant::now();
        self.pg_ctl(&["-D", &self.path("standby"), "promote", "-w"])
            .await;
        started.elapsed()
    }

    async fn start_cluster(&self, name: &str, port: u16) {
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=100"
        );
        self.pg_ctl(&[
            "-D",
            &self.path(name),
            "-o",
            &options,
            "-l",
            &self.path(&format!("{name}.log")),
            "-w",
            "start",
        ])
        .await;
    }

    async fn wait_streaming(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let output = Command::new("psql")
                .args(["-h", "127.0.0.1", "-p", &self.primary_port.to_string()])
                .args(["-U", "postgres", "-d", "postgres", "-tAc"])
                .arg("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                .output()
                .await
                .expect("run psql");
            if String::from_utf8_lossy(&output.stdout).trim() == "1" {
                return;
            }
            assert!(Instant::now() < deadline, "the standby does not stream");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    async fn pg_ctl(&self, args: &[&str]) {
        self.pg("pg_ctl", args).await;
    }

    /// Runs a Postgres program (as `postgres` when the tests run as root).
    async fn pg(&self, program: &str, args: &[&str]) {
        let bin = execution_service::local::postgres_bin().expect("Postgres' programs");
        let path = bin.join(program).to_string_lossy().into_owned();
        if is_root() {
            let mut all = vec!["-u", "postgres", "--", path.as_str()];
            all.extend_from_slice(args);
            run("runuser", &all).await;
        } else {
            run(&path, args).await;
        }
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        if let Ok(bin) = execution_service::local::postgres_bin() {
            for name in ["primary", "standby"] {
                let pg_ctl = bin.join("pg_ctl").to_string_lossy().into_owned();
                let data = self.path(name);
                let args = ["-D", data.as_str(), "stop", "-m", "immediate"];
                let _ = if is_root() {
                    std::process::Command::new("runuser")
                        .args(["-u", "postgres", "--", &pg_ctl])
                        .args(args)
                        .output()
                } else {
                    std::process::Command::new(&pg_ctl).args(args).output()
                };
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|err| panic!("run {program}: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
