//! Redis and Postgres for the suite: the ones given (`TEST_REDIS_URL`,
//! `TEST_POSTGRES_ADMIN_URL`), else the ones at their default addresses
//! when they answer, else private ones the suite starts itself on free
//! ports (`redis-server`; `initdb` and `postgres` into a temporary folder)
//! and that stop when the test process exits. Without the programs, the
//! suite stops at once with one message naming the packages to install.
//! `TEST_SERVICES=private` starts private ones even when the defaults
//! answer.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DEFAULT_REDIS: &str = "127.0.0.1:6379";
const DEFAULT_POSTGRES: &str = "127.0.0.1:5432";
const PACKAGES: &str =
    "install Redis and PostgreSQL (Debian/Ubuntu: sudo apt-get install redis-server postgresql)";

pub struct Services {
    pub redis_url: String,
    pub admin_url: String,
    /// Postgres' `host:port`, for tests that put a proxy in front of it.
    pub postgres_addr: String,
}

pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let private = std::env::var("TEST_SERVICES").as_deref() == Ok("private");
        let redis_url = match std::env::var("TEST_REDIS_URL") {
            Ok(url) => url,
            Err(_) if !private && answers(DEFAULT_REDIS) => format!("redis://{DEFAULT_REDIS}/"),
            Err(_) => format!("redis://{}/", private_redis()),
        };
        let (admin_url, postgres_addr) = match std::env::var("TEST_POSTGRES_ADMIN_URL") {
            Ok(url) => {
                let parsed = url::Url::parse(&url).expect("TEST_POSTGRES_ADMIN_URL is a URL");
                let addr = format!(
                    "{}:{}",
                    parsed.host_str().unwrap_or("127.0.0.1"),
                    parsed.port().unwrap_or(5432)
                );
                (url, addr)
            }
            Err(_) if !private && answers(DEFAULT_POSTGRES) => (
                format!("postgres://postgres@{DEFAULT_POSTGRES}/postgres"),
                DEFAULT_POSTGRES.to_owned(),
            ),
            Err(_) => {
                let addr = private_postgres();
                (format!("postgres://postgres@{addr}/postgres"), addr)
            }
        };
        Services {
            redis_url,
            admin_url,
            postgres_addr,
        }
    })
}

fn answers(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("a socket address");
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Stops the whole test run with one message.
fn missing(what: &str) -> ! {
    say(&format!(
        "\nThe integration tests need Redis and PostgreSQL. Nothing answers at {DEFAULT_REDIS} / \
         {DEFAULT_POSTGRES} (or TEST_SERVICES=private asks for private ones), and {what} was not \
         found to start one. Start them, point TEST_REDIS_URL / TEST_POSTGRES_ADMIN_URL at running \
         ones, or {PACKAGES}.\n"
    ));
    std::process::exit(1);
}

/// A program on `PATH`, or in one of `also` (highest first).
fn program(name: &str, also: &[PathBuf]) -> Option<PathBuf> {
    also.iter()
        .map(|dir| dir.join(name))
        .chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join(name)),
        )
        .find(|path| path.is_file())
}

/// Debian keeps the server's programs off `PATH`, one folder per version.
fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort_by(|a, b| b.cmp(a));
    dirs
}

/// Runs `script` under `sh`, with `$WATCH` the test process: the script
/// starts a server in the background and stops it once the test process
/// is gone.
// Never waited for: it outlives the test process on purpose, to stop the
// server after it (init reaps it).
#[allow(clippy::zombie_processes)]
fn supervise(script: &str) {
    Command::new("sh")
        .args(["-c", script])
        .env("WATCH", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sh");
}

fn wait_until_answering(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(addr) {
        assert!(
            Instant::now() < deadline,
            "the private {what} did not start at {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn private_redis() -> String {
    let addr = start_redis();
    say(&format!(
        "integration tests: started a private redis-server at {addr}"
    ));
    addr
}

/// A Redis of one test's own, for what would disturb the others (its
/// memory limit, its shutdown): its URL. It stops with the test process,
/// or earlier by `SHUTDOWN NOSAVE`.
pub fn own_redis() -> String {
    format!("redis://{}/", start_redis())
}

/// Starts a `redis-server` on a free port that keeps nothing on disk and
/// stops when the test process exits; its address.
fn start_redis() -> String {
    let server = program("redis-server", &[]).unwrap_or_else(|| missing("redis-server"));
    let port = crate::helpers::free_port();
    supervise(&format!(
        "'{}' --port {port} --bind 127.0.0.1 --save '' --appendonly no & child=$!; \
         while kill -0 \"$WATCH\" 2>/dev/null; do sleep 1; done; kill $child",
        server.display()
    ));
    let addr = format!("127.0.0.1:{port}");
    wait_until_answering(&addr, "redis-server");
    addr
}

fn private_postgres() -> String {
    let dirs = postgres_bin_dirs();
    let initdb = program("initdb", &dirs)
        .filter(|path| {
            path.parent()
                .is_some_and(|dir| dir.join("postgres").is_file())
        })
        .unwrap_or_else(|| missing("initdb (with postgres beside it)"));
    let bin = initdb.parent().expect("a folder").to_path_buf();
    let data = std::env::temp_dir().join(format!("execution-service-it-pg-{}", std::process::id()));
    // Postgres refuses to run as root: then it runs as the `postgres` user.
    let as_user = if is_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    std::fs::create_dir_all(&data).expect("a data folder");
    if is_root() {
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&data)
            .status()
            .expect("chown the data folder");
    }
    let init = Command::new("sh")
        .args([
            "-c",
            &format!(
                "{as_user}'{}' -D '{}' -U postgres --auth=trust --encoding=UTF8 --no-sync",
                bin.join("initdb").display(),
                data.join("db").display()
            ),
        ])
        .stdout(Stdio::null())
        .output()
        .expect("run initdb");
    assert!(
        init.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let port = crate::helpers::free_port();
    supervise(&format!(
        "{as_user}'{postgres}' -D '{db}' -p {port} -k '{data}' -c listen_addresses=127.0.0.1 \
           -c max_connections=200 & child=$!; \
         while kill -0 \"$WATCH\" 2>/dev/null; do sleep 1; done; \
         {as_user}'{pg_ctl}' -D '{db}' stop -m fast; rm -rf '{data}'",
        postgres = bin.join("postgres").display(),
        pg_ctl = bin.join("pg_ctl").display(),
        db = data.join("db").display(),
        data = data.display(),
    ));
    let addr = format!("127.0.0.1:{port}");
    wait_until_ready(&bin, port);
    say(&format!(
        "integration tests: started a private PostgreSQL at {addr} (data in {})",
        data.display()
    ));
    addr
}

/// Until the server accepts connections (it listens before it does).
fn wait_until_ready(bin: &Path, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the private PostgreSQL did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Straight to the process's stderr: the test harness captures what a
/// test prints, and would swallow this.
fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
