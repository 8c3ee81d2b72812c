//! Redis and Postgres for the suite: the ones given (`TEST_REDIS_URL`,
//! `TEST_POSTGRES_ADMIN_URL`), else the ones at their default addresses
//! when they serve (Redis answers PING; Postgres takes a password-less
//! login as `postgres`: a stock install that checks passwords over TCP
//! does not), else private ones the suite starts itself on free ports,
//! with the service's own code (`execution_service::local`), that stop
//! when the test process exits. Without the programs, the suite stops at
//! once with one message naming the packages to install.
//! `TEST_SERVICES=private` starts private ones even when the defaults
//! serve.

use std::sync::OnceLock;
use std::time::Duration;

use execution_service::local::{self, LocalError};

const DEFAULT_REDIS: &str = "127.0.0.1:6379";
const DEFAULT_POSTGRES: &str = "127.0.0.1:5432";

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
        let default_admin = format!("postgres://postgres@{DEFAULT_POSTGRES}/postgres");
        let redis_url = match std::env::var("TEST_REDIS_URL") {
            Ok(url) => url,
            Err(_)
                if !private
                    && serves(DEFAULT_REDIS, || {
                        login(
                            |url| async move { local::redis_serves(&url).await },
                            &format!("redis://{DEFAULT_REDIS}/"),
                        )
                    }) =>
            {
                format!("redis://{DEFAULT_REDIS}/")
            }
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
            Err(_)
                if !private
                    && serves(DEFAULT_POSTGRES, || {
                        login(
                            |url| async move { local::postgres_serves(&url).await },
                            &default_admin,
                        )
                    }) =>
            {
                (default_admin, DEFAULT_POSTGRES.to_owned())
            }
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

/// Whether the server at `addr` takes our login; says why not when it
/// listens but refuses (the suite then starts its own).
fn serves(addr: &str, login: impl FnOnce() -> Result<(), String>) -> bool {
    if !local::answers(addr) {
        return false;
    }
    match login() {
        Ok(()) => true,
        Err(why) => {
            say(&format!(
                "integration tests: {addr} listens but refuses our login ({why}); starting a private server instead"
            ));
            false
        }
    }
}

/// The service's own probe, on a runtime of its own on a thread of its
/// own: this runs inside a test's runtime, which cannot block on it.
fn login<F: std::future::Future<Output = Result<(), String>>>(
    probe: impl FnOnce(String) -> F + Send + 'static,
    url: &str,
) -> Result<(), String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(async move { probe(url).await })
    })
    .join()
    .unwrap_or_else(|_| Err("the check panicked".to_owned()))
}

/// Stops the whole test run with one message.
fn missing(err: LocalError) -> ! {
    say(&format!(
        "\nThe integration tests need Redis and PostgreSQL. None serves at {DEFAULT_REDIS} / \
         {DEFAULT_POSTGRES} (or TEST_SERVICES=private asks for private ones), and a private one \
         could not start: {err}. Start them, or point TEST_REDIS_URL / TEST_POSTGRES_ADMIN_URL at \
         running ones.\n"
    ));
    std::process::exit(1);
}

fn private_redis() -> String {
    let addr = local::start_redis(None, std::process::id()).unwrap_or_else(|err| missing(err));
    say(&format!(
        "integration tests: started a private redis-server at {addr}"
    ));
    addr
}

/// A Redis of one test's own, for what would disturb the others (its
/// memory limit, its shutdown). It shuts down when dropped, whether the
/// test passed or failed (and with the test process at the latest).
pub struct OwnRedis {
    pub url: String,
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(self.url.as_str())
            && let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2))
        {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut conn);
        }
    }
}

pub fn own_redis() -> OwnRedis {
    let addr = local::start_redis(None, std::process::id()).unwrap_or_else(|err| missing(err));
    OwnRedis {
        url: format!("redis://{addr}/"),
    }
}

fn private_postgres() -> String {
    let data = std::env::temp_dir().join(format!("execution-service-it-pg-{}", std::process::id()));
    let addr =
        local::start_postgres(&data, false, std::process::id()).unwrap_or_else(|err| missing(err));
    say(&format!(
        "integration tests: started a private PostgreSQL at {addr} (data in {})",
        data.display()
    ));
    addr
}

/// Straight to the process's stderr: the test harness captures what a
/// test prints, and would swallow this.
pub fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}
