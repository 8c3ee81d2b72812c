//! `TestEnv`: one private database and one private set of stream names,
//! shared by the application instances a test spawns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use execution_service::app::Application;
use execution_service::config::Settings;
use execution_service::domain::ExecutionResult;
use execution_service::stats::Stats;
use execution_service::worker::Worker;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn admin_url() -> String {
    crate::services::services().admin_url.clone()
}

pub fn redis_url() -> String {
    crate::services::services().redis_url.clone()
}

/// Postgres' `host:port`.
pub fn postgres_addr() -> &'static str {
    &crate::services::services().postgres_addr
}

pub struct TestEnv {
    pub prefix: String,
    pub database: String,
    pub db: DatabaseConnection,
    pub redis: ConnectionManager,
    redis_client: redis::Client,
    vars: HashMap<String, String>,
}

/// A running application instance.
pub struct Running {
    pub stats: Arc<Stats>,
    /// Base URL of the instance's HTTP API.
    pub url: String,
    pub cancel: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Polls this instance's counters until `check` holds, failing the test
    /// at the deadline.
    pub async fn wait_for_stat(&self, what: &str, check: impl Fn(&Stats) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !check(&self.stats) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Cancels and waits for a clean exit.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("the application did not stop in time")
            .expect("the application task panicked")
            .expect("the application failed");
    }
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    /// A fresh database and stream names, with extra settings.
    pub async fn with(overrides: &[(&str, &str)]) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("t{}", &id[..12]);
        let database = format!("exec_{prefix}");
        let admin = Database::connect(admin_url())
            .await
            .expect("connect to Postgres as admin");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {database}"))
            .await
            .expect("create test database");
        let base = admin_url();
        let db_url = format!(
            "{}/{database}",
            base.rsplit_once('/').expect("admin URL has a database").0
        );

        let mut vars: HashMap<String, String> = [
            ("DATABASE_URL", db_url.as_str()),
            ("REDIS_URL", redis_url().as_str()),
            ("ORDERS_CHANNEL", &format!("{prefix}.orders")),
            ("RESULTS_CHANNEL", &format!("{prefix}.order_results")),
            ("ORDERS_STREAM", &format!("{prefix}.stream.orders")),
            ("RESULTS_STREAM", &format!("{prefix}.stream.order_results")),
            ("FILLS_STREAM", &format!("{prefix}.stream.fills")),
            ("DLQ_STREAM", &format!("{prefix}.stream.orders.dlq")),
            ("SHUTDOWN_STREAM", &format!("{prefix}.stream.bot_shutdown")),
            ("CONSUMER_GROUP", &format!("{prefix}.execution")),
            ("READ_BLOCK_MS", "100"),
            ("HTTP_HOST", "127.0.0.1"),
            ("HTTP_PORT", "0"),
            // Pools must exceed the batches in flight (WORKER_CONCURRENCY + 1
            // for Postgres, + 2 for Redis): small ones keep tests light.
            ("WORKER_CONCURRENCY", "2"),
            ("POSTGRES_MAX_CONNECTIONS", "4"),
            ("REDIS_POOL_SIZE", "4"),
            ("LOG_LEVEL", "warn"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );

        let settings =
            Settings::from_lookup(|name| vars.get(name).cloned()).expect("valid test settings");
        let store = execution_service::store::Store::connect(&db_url, 2)
            .await
            .expect("connect to test database");
        store.migrate().await.expect("migrate the test database");
        drop(settings);
        let redis_client = redis::Client::open(vars["REDIS_URL"].as_str()).expect("Redis URL");
        // Generous: whole-stream reads of a busy test can take a while.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)));
        let redis = redis_client
            .get_connection_manager_with_config(config)
            .await
            .expect("connect to Redis");
        TestEnv {
            prefix,
            database,
            db: store.connection().clone(),
            redis,
            redis_client,
            vars,
        }
    }

    /// Every variable the instances of this test are configured with.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    pub fn var(&self, name: &str) -> String {
        self.vars[name].clone()
    }

    pub fn settings(&self, overrides: &[(&str, &str)]) -> Settings {
        let mut vars = self.vars.clone();
        vars.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Settings::from_lookup(|name| vars.get(name).cloned()).expect("valid test settings")
    }

    /// Builds an instance (named `consumer`) without starting it.
    pub async fn build(&self, consumer: &str, overrides: &[(&str, &str)]) -> Application {
        let mut all = vec![("CONSUMER_NAME", consumer)];
        all.extend_from_slice(overrides);
        Application::build(self.settings(&all))
            .await
            .expect("build the application")
    }

    pub async fn worker(&self, consumer: &str) -> Worker {
        self.build(consumer, &[]).await.worker()
    }

    /// Builds and starts an instance; waits until its shim listens.
    pub async fn spawn(&self, consumer: &str, overrides: &[(&str, &str)]) -> Running {
        let subscribers = self.subscribers().await;
        let app = self.build(consumer, overrides).await;
        let stats = app.stats();
        let url = format!("http://{}", app.http_addr());
        let shim = app.settings().streams.shim_enabled;
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(cancel.clone()));
        if shim {
            self.wait_until("the shim subscribes", || async {
                self.subscribers().await > subscribers
            })
            .await;
        }
        Running {
            stats,
            url,
            cancel,
            handle,
        }
    }

    pub async fn subscribers(&self) -> i64 {
        let mut conn = self.redis.clone();
        let reply: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(self.var("ORDERS_CHANNEL"))
            .query_async(&mut conn)
            .await
            .expect("PUBSUB NUMSUB");
        reply.1
    }

    /// Polls `check` until it holds, failing the test at the deadline.
    pub async fn wait_until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn publish(&self, payloads: &[String]) {
        let mut conn = self.redis.clone();
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.cmd("PUBLISH")
                .arg(self.var("ORDERS_CHANNEL"))
                .arg(payload)
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("PUBLISH");
    }

    /// XADDs one entry with the given fields; returns its id.
    pub async fn xadd(&self, fields: &[(&str, &str)]) -> String {
        let mut conn = self.redis.clone();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.var("ORDERS_STREAM")).arg("*");
        for (name, value) in fields {
            cmd.arg(*name).arg(*value);
        }
        cmd.query_async(&mut conn).await.expect("XADD")
    }

    /// Adds an entry to the kill-switch stream.
    pub async fn kill_switch(&self, fields: &[(&str, &str)]) -> String {
        let mut conn = self.redis.clone();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.var("SHUTDOWN_STREAM")).arg("*");
        for (name, value) in fields {
            cmd.arg(*name).arg(*value);
        }
        cmd.query_async(&mut conn).await.expect("XADD")
    }

    /// Makes the key a setting names hold a string (`spoiled`), so every
    /// stream command on it fails with `WRONGTYPE`, or deletes it.
    pub async fn spoil_key(&self, var: &str, spoiled: bool) {
        let mut conn = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.var(var)).ignore();
        if spoiled {
            pipe.cmd("SET")
                .arg(self.var(var))
                .arg("not a stream")
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("DEL (+ SET)");
    }

    pub async fn xadd_payload(&self, payload: &str) -> String {
        self.xadd(&[("payload", payload)]).await
    }

    /// Every entry of a stream, fields as text.
    pub async fn stream(&self, var: &str) -> Vec<HashMap<String, String>> {
        self.stream_raw(var)
            .await
            .into_iter()
            .map(|fields| {
                fields
                    .into_iter()
                    .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
                    .collect()
            })
            .collect()
    }

    /// The entry ids of a stream, oldest first.
    pub async fn stream_ids(&self, var: &str) -> Vec<String> {
        let mut conn = self.redis.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.var(var))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .expect("XRANGE");
        reply.ids.into_iter().map(|entry| entry.id).collect()
    }

    /// Makes Postgres refuse (SQLSTATE 22023) every order whose id starts
    /// with `prefix`: a stand-in for any value validation let through that
    /// Postgres rejects.
    pub async fn refuse_orders_starting_with(&self, prefix: &str) {
        use sea_orm::ConnectionTrait;
        self.db
            .execute_unprepared(&format!(
                "CREATE OR REPLACE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
                   IF NEW.order_id LIKE '{prefix}%' THEN \
                     RAISE EXCEPTION 'refused %', NEW.order_id USING ERRCODE = '22023'; \
                   END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER refuse_poison BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_poison();"
            ))
            .await
            .expect("install the refusing trigger");
    }

    pub async fn stop_refusing_orders(&self) {
        use sea_orm::ConnectionTrait;
        self.db
            .execute_unprepared("DROP TRIGGER refuse_poison ON orders")
            .await
            .expect("drop the trigger");
    }

    pub async fn stream_len(&self, var: &str) -> usize {
        let mut conn = self.redis.clone();
        redis::cmd("XLEN")
            .arg(self.var(var))
            .query_async(&mut conn)
            .await
            .expect("XLEN")
    }

    pub async fn results(&self) -> Vec<HashMap<String, String>> {
        self.stream("RESULTS_STREAM").await
    }

    /// Waits until the results stream holds at least `count` entries.
    pub async fn wait_for_results(&self, count: usize) -> Vec<HashMap<String, String>> {
        self.wait_until(&format!("{count} results are on the stream"), || async {
            self.stream_len("RESULTS_STREAM").await >= count
        })
        .await;
        self.results().await
    }

    /// The results stream's entries for one order.
    pub async fn results_for(&self, order_id: &str) -> Vec<HashMap<String, String>> {
        self.results()
            .await
            .into_iter()
            .filter(|r| r.get("order_id").map(String::as_str) == Some(order_id))
            .collect()
    }

    /// Results as announced on the results channel (subscribe first).
    pub async fn subscribe_results(
        &self,
    ) -> impl futures_util::Stream<Item = ExecutionResult> + use<> {
        let mut pubsub = self
            .redis_client
            .get_async_pubsub()
            .await
            .expect("pubsub connection");
        pubsub
            .subscribe(self.var("RESULTS_CHANNEL"))
            .await
            .expect("SUBSCRIBE");
        pubsub.into_on_message().map(|msg| {
            ExecutionResult::from_json(msg.get_payload_bytes())
                .expect("results are valid JSON results")
        })
    }

    /// Entries still pending in the group, for all consumers.
    pub async fn pending(&self) -> usize {
        let mut conn = self.redis.clone();
        let reply: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
            .arg(self.var("ORDERS_STREAM"))
            .arg(self.var("CONSUMER_GROUP"))
            .query_async(&mut conn)
            .await;
        let reply = match reply {
            // A restarted Redis has no group until a worker makes it again.
            Err(err) if err.code() == Some("NOGROUP") => return 0,
            other => other.expect("XPENDING"),
        };
        match reply {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(count)) => *count as usize,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// Reads entries as another consumer, without acknowledging them.
    pub async fn read_as(&self, consumer: &str, count: usize) -> usize {
        let mut conn = self.redis.clone();
        let _: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.var("ORDERS_STREAM"))
            .arg(self.var("CONSUMER_GROUP"))
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(self.var("CONSUMER_GROUP"))
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(self.var("ORDERS_STREAM"))
            .arg(">")
            .query_async(&mut conn)
            .await
            .expect("XREADGROUP");
        reply.keys.iter().map(|key| key.ids.len()).sum()
    }

    /// Every entry of a stream, values as raw bytes.
    pub async fn stream_raw(&self, var: &str) -> Vec<HashMap<String, Vec<u8>>> {
        let mut conn = self.redis.clone();
        let mut all = Vec::new();
        let mut start = "-".to_owned();
        // In pages, so a long stream never makes one slow reply.
        loop {
            let page: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
                .arg(self.var(var))
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(2_000)
                .query_async(&mut conn)
                .await
                .expect("XRANGE");
            let Some((last, _)) = page.last() else { break };
            start = format!("({last}");
            let full = page.len() == 2_000;
            all.extend(page.into_iter().map(|(_, fields)| fields));
            if !full {
                break;
            }
        }
        all
    }

    /// The first column of every row of a query, as text.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .expect("query");
        rows.into_iter()
            .filter_map(|row| row.try_get_by_index::<String>(0).ok())
            .collect()
    }

    /// One value from a query.
    pub async fn scalar_text(&self, sql: &str) -> Option<String> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .expect("query");
        row.and_then(|row| {
            row.try_get_by_index::<Option<String>>(0)
                .expect("a text column")
        })
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .expect("query")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("a count")
    }
}

impl Drop for TestEnv {
    /// Drops the database and the Redis keys the test used, whether the
    /// test passed or panicked.
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let database = self.database.clone();
        let client = self.redis_client.clone();
        // On a thread of its own: this may run inside a test's runtime,
        // which cannot block on a future of its own.
        let released = std::thread::spawn(move || {
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}.*"))
                    .query(&mut conn)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut conn);
                }
            }
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(admin_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                        ))
                        .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = released.join();
    }
}

/// The service binary with exactly these variables (and PATH), its output
/// captured, killed if the test drops it.
pub fn service_command(vars: &HashMap<String, String>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_execution-service"));
    command
        .env_clear()
        .envs(vars)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    execution_service::local::free_port().expect("a free port")
}

/// The order ids a results subscription carries, up to and including
/// `last`, each arriving within the deadline.
pub async fn announced_until(
    announced: &mut (impl futures_util::Stream<Item = String> + Unpin),
    last: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some(last) {
        let order_id = tokio::time::timeout(DEADLINE, announced.next())
            .await
            .unwrap_or_else(|_| panic!("{last} not announced in time; seen {seen:?}"))
            .expect("the subscription ended");
        seen.push(order_id);
    }
    seen
}

/// The next `count` results a results subscription carries, each within
/// the deadline.
pub async fn next_results(
    channel: &mut (impl futures_util::Stream<Item = ExecutionResult> + Unpin),
    count: usize,
) -> Vec<ExecutionResult> {
    let mut results = Vec::with_capacity(count);
    while results.len() < count {
        let result = tokio::time::timeout(DEADLINE, channel.next())
            .await
            .unwrap_or_else(|_| panic!("{count} results not announced in time; got {results:?}"))
            .expect("the channel stays open");
        results.push(result);
    }
    results
}

/// A valid order as JSON.
pub fn order_json(order_id: &str, quantity: &str, price: &str) -> String {
    serde_json::json!({"order_id": order_id, "symbol": "BTCUSDT", "side": "BUY", "quantity": quantity, "price": price})
        .to_string()
}
