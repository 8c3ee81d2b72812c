//! Private Redis and PostgreSQL servers, for a machine where the packages
//! are installed but nothing is set up for this service (a stock Postgres
//! takes no password-less login over TCP): `serve` starts them under a data
//! folder when no server is named and the defaults do not serve, and the
//! test suite starts its own the same way.
//!
//! Each server runs under a small `sh` watcher that stops it once the
//! process it watches is gone, however that process ends (SIGKILL
//! included): Postgres with `pg_ctl stop -m fast`, Redis with SIGTERM (it
//! writes its append-only file first).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod serve;

pub use serve::{LocalServices, postgres_serves, redis_serves, use_private_services};

/// How long a server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The packages that hold the programs, for messages.
pub const PACKAGES: &str =
    "install Redis and PostgreSQL (Debian/Ubuntu: sudo apt-get install redis-server postgresql)";

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0} was not found to start a private server; {PACKAGES}")]
    Missing(&'static str),
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
    #[error("the private {what} did not answer at {addr} within {secs} s (its log: {log})")]
    NoAnswer {
        what: &'static str,
        addr: String,
        secs: u64,
        log: String,
    },
}

/// `redis-server`, from `PATH`.
pub fn redis_server() -> Result<PathBuf, LocalError> {
    program("redis-server", &[]).ok_or(LocalError::Missing("redis-server"))
}

/// The folder holding `initdb`, `postgres`, `pg_ctl` and `pg_isready`:
/// on `PATH`, or Debian's `/usr/lib/postgresql/<version>/bin` (highest
/// version first), which keeps them off `PATH`.
pub fn postgres_bin() -> Result<PathBuf, LocalError> {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    debian.sort_by(|a, b| b.cmp(a));
    program("initdb", &debian)
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .filter(|bin| {
            ["postgres", "pg_ctl", "pg_isready"]
                .iter()
                .all(|name| bin.join(name).is_file())
        })
        .ok_or(LocalError::Missing(
            "initdb (with postgres, pg_ctl and pg_isready beside it)",
        ))
}

/// A program in one of `first` (in order), else on `PATH`.
fn program(name: &str, first: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    first
        .iter()
        .cloned()
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// A TCP port nothing listens on now.
pub fn free_port() -> Result<u16, LocalError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| LocalError::Failed {
            what: "finding a free port on 127.0.0.1".into(),
            detail: e.to_string(),
        })
}

/// Whether something accepts TCP connections at `addr`.
pub fn answers(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
}

/// Starts `redis-server` on a free port of 127.0.0.1, stopped when the
/// process `watch` is gone; its `host:port`. With `data`, it keeps its
/// append-only file there across runs; without, it keeps nothing.
pub fn start_redis(data: Option<&Path>, watch: u32) -> Result<String, LocalError> {
    let server = redis_server()?;
    let port = free_port()?;
    let persistence = match data {
        Some(dir) => {
            create_dir(dir)?;
            format!(
                "--dir '{}' --appendonly yes --save '' --logfile '{}'",
                dir.display(),
                dir.join("redis.log").display()
            )
        }
        None => "--save '' --appendonly no".to_owned(),
    };
    supervise(
        &format!(
            "'{}' --port {port} --bind 127.0.0.1 {persistence} & child=$!; \
             while kill -0 \"$WATCH\" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; \
             kill $child 2>/dev/null",
            server.display()
        ),
        watch,
    )?;
    let addr = format!("127.0.0.1:{port}");
    let log = data.map_or("none".to_owned(), |dir| {
        dir.join("redis.log").display().to_string()
    });
    wait_for("redis-server", &addr, &log, || answers(&addr))?;
    Ok(addr)
}

/// Starts `postgres` on a free port of 127.0.0.1 (TCP only, user
/// `postgres`, trusted) over the cluster in `data`, creating the cluster
/// when `data` holds none; stopped when the process `watch` is gone, and
/// `data` then removed unless `keep`. Its `host:port`.
///
/// Postgres refuses to run as root: then it runs as the `postgres` user,
/// which must be able to reach `data`.
pub fn start_postgres(data: &Path, keep: bool, watch: u32) -> Result<String, LocalError> {
    let bin = postgres_bin()?;
    let as_user = if is_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let cluster = data.join("cluster");
    create_dir(data)?;
    if is_root() {
        run("chown -R postgres: the data folder", "chown", |cmd| {
            cmd.args(["-R", "postgres:postgres"]).arg(data)
        })?;
    }
    if !cluster.join("PG_VERSION").is_file() {
        let script = format!(
            "{as_user}'{}' -D '{}' -U postgres --auth=trust --encoding=UTF8 --no-sync",
            bin.join("initdb").display(),
            cluster.display()
        );
        run("initdb", "sh", |cmd| cmd.args(["-c", &script]))?;
    }
    let port = free_port()?;
    let log = data.join("postgres.log");
    let remove = if keep {
        String::new()
    } else {
        format!("; rm -rf '{}'", data.display())
    };
    supervise(
        &format!(
            "{as_user}'{postgres}' -D '{cluster}' -p {port} -c listen_addresses=127.0.0.1 \
               -c unix_socket_directories= -c max_connections=200 >>'{log}' 2>&1 & child=$!; \
             while kill -0 \"$WATCH\" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; \
             {as_user}'{pg_ctl}' -D '{cluster}' stop -m fast >/dev/null 2>&1{remove}",
            postgres = bin.join("postgres").display(),
            pg_ctl = bin.join("pg_ctl").display(),
            cluster = cluster.display(),
            log = log.display(),
        ),
        watch,
    )?;
    let addr = format!("127.0.0.1:{port}");
    wait_for("PostgreSQL", &addr, &log.display().to_string(), || {
        Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .is_ok_and(|status| status.success())
    })?;
    Ok(addr)
}

/// Runs `script` under `sh` in the background with `$WATCH` set; never
/// waited for: it outlives `watch` on purpose, to stop its server after it
/// (init reaps it).
#[allow(clippy::zombie_processes)]
fn supervise(script: &str, watch: u32) -> Result<(), LocalError> {
    Command::new("sh")
        .args(["-c", script])
        .env("WATCH", watch.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|err| LocalError::Failed {
            what: "starting sh".to_owned(),
            detail: err.to_string(),
        })
}

fn wait_for(
    what: &'static str,
    addr: &str,
    log: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<(), LocalError> {
    let deadline = Instant::now() + START_TIMEOUT;
    while !ready() {
        if Instant::now() >= deadline {
            return Err(LocalError::NoAnswer {
                what,
                addr: addr.to_owned(),
                secs: START_TIMEOUT.as_secs(),
                log: log.to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn run(
    what: &str,
    program: &str,
    args: impl FnOnce(&mut Command) -> &mut Command,
) -> Result<(), LocalError> {
    let mut command = Command::new(program);
    let output = args(&mut command)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| LocalError::Failed {
            what: what.to_owned(),
            detail: err.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(LocalError::Failed {
        what: what.to_owned(),
        detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

fn create_dir(dir: &Path) -> Result<(), LocalError> {
    std::fs::create_dir_all(dir).map_err(|err| LocalError::Failed {
        what: format!("creating {}", dir.display()),
        detail: err.to_string(),
    })
}

/// Whether this process runs as root (the owner of `/proc/self`).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}
