//! Start-up: settings out of range stop it, no secret is ever printed, a
//! refusing Postgres or Redis stops it at once while an absent Postgres is
//! waited for, a missing database is created, and schema changes take
//! turns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::{DEADLINE, TestEnv, admin_url, free_port, service_command};

/// A password no output may contain.
const SECRET: &str = "Zq7-unmistakable-Secret";

/// `postgres://…/database` on the test server, as `user`.
fn postgres_url(user: &str, database: &str) -> String {
    let admin = url::Url::parse(&admin_url()).expect("admin URL");
    let host = admin.host_str().unwrap_or("127.0.0.1");
    let port = admin.port().unwrap_or(5432);
    format!("postgres://{user}@{host}:{port}/{database}")
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("HTTP_HOST", "127.0.0.1"),
        ("HTTP_PORT", "0"),
        ("LOG_LEVEL", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    vars
}

struct Finished {
    code: Option<i32>,
    /// stdout and stderr together.
    output: String,
}

/// Runs the binary to its end, which must come within `within`.
async fn run(mut command: Command, within: Duration) -> Finished {
    let output = tokio::time::timeout(within, command.output())
        .await
        .unwrap_or_else(|_| panic!("the service still ran after {within:?}"))
        .expect("run the service");
    Finished {
        code: output.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

async fn admin() -> sea_orm::DatabaseConnection {
    Database::connect(admin_url())
        .await
        .expect("connect to Postgres as admin")
}

async fn database_exists(name: &str) -> bool {
    let row = admin()
        .await
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .expect("query pg_database")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("a count") == 1
}

async fn drop_database(name: &str) {
    let _ = admin()
        .await
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

#[tokio::test]
async fn settings_that_lose_orders_stop_start_up() {
    let vars = vars(&[
        ("DEDUP_TTL_SECS", "0"),
        ("STREAM_MAXLEN", "0"),
        ("CLAIM_IDLE_MS", "0"),
        ("READ_BLOCK_MS", "0"),
        ("POSTGRES_MAX_CONNECTIONS", "0"),
        ("REDIS_POOL_SIZE", "0"),
        ("MOCK_MAX_SLIPPAGE_BPS", "30000"),
        ("LOG_LEVEL", "verbose"),
    ]);
    let mut command = service_command(&vars);
    command.arg("serve");
    let finished = run(command, Duration::from_secs(10)).await;
    assert_eq!(finished.code, Some(2), "{}", finished.output);
    for name in [
        "DEDUP_TTL_SECS",
        "STREAM_MAXLEN",
        "CLAIM_IDLE_MS",
        "READ_BLOCK_MS",
        "POSTGRES_MAX_CONNECTIONS",
        "REDIS_POOL_SIZE",
        "MOCK_MAX_SLIPPAGE_BPS",
        "LOG_LEVEL",
    ] {
        assert!(
            finished.output.contains(&format!("{name}=")),
            "{name} missing from: {}",
            finished.output
        );
    }
}

#[tokio::test]
async fn no_password_appears_in_any_output() {
    let dir = std::env::temp_dir().join(unique("secrets"));
    std::fs::create_dir_all(&dir).expect("a directory for secret files");
    let file = |name: &str, content: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("{content}\n")).expect("write a secret file");
        path.to_string_lossy().into_owned()
    };
    let bad_database_url = file(
        "database_url",
        &format!("postgres://svc:{SECRET}@127.0.0.1:99999/db"),
    );
    let bad_redis_url = file(
        "redis_url",
        &format!("redis://:{SECRET}@127.0.0.1:notaport/"),
    );
    let password = file("password", SECRET);
    let redis = "redis://127.0.0.1:6379/";
    let bad_port = format!("postgres://svc:{SECRET}@127.0.0.1:99999/db");
    let bad_scheme = format!("postgress://svc:{SECRET}@127.0.0.1:5432/db");
    let unparseable = format!("postgres://svc:{SECRET}/x@127.0.0.1:5432/db");
    let bad_redis = format!("redis://:{SECRET}@127.0.0.1:99999/");

    // Each way a URL or its password can be given, with a fault the
    // error must name.
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("DATABASE_URL", &bad_port), ("REDIS_URL", redis)],
            "DATABASE_URL",
        ),
        (
            vec![("DATABASE_URL", &bad_scheme), ("REDIS_URL", redis)],
            "DATABASE_URL",
        ),
        (
            vec![("DATABASE_URL", &unparseable), ("REDIS_URL", redis)],
            "DATABASE_URL",
        ),
        (
            vec![
                ("DATABASE_URL_FILE", &bad_database_url),
                ("REDIS_URL", redis),
            ],
            "DATABASE_URL_FILE",
        ),
        (
            vec![
                ("POSTGRES_PASSWORD", SECRET),
                ("POSTGRES_HOST", "bad host"),
                ("REDIS_URL", redis),
            ],
            "POSTGRES_HOST",
        ),
        (
            vec![
                ("POSTGRES_PASSWORD_FILE", &password),
                ("POSTGRES_HOST", "bad host"),
                ("REDIS_URL", redis),
            ],
            "POSTGRES_HOST",
        ),
        // Valid settings, refused by Postgres.
        (
            vec![
                ("POSTGRES_PASSWORD", SECRET),
                ("POSTGRES_USER", "no_such_role_xyz"),
                ("REDIS_URL", redis),
            ],
            "POSTGRES_USER",
        ),
        (vec![("REDIS_URL", &bad_redis)], "REDIS_URL"),
        (vec![("REDIS_URL_FILE", &bad_redis_url)], "REDIS_URL_FILE"),
        (
            vec![("REDIS_PASSWORD", SECRET), ("REDIS_HOST", "bad/host")],
            "REDIS_HOST",
        ),
        (
            vec![
                ("REDIS_PASSWORD_FILE", &password),
                ("REDIS_HOST", "bad/host"),
            ],
            "REDIS_HOST",
        ),
    ];
    for (pairs, named) in &cases {
        for args in [&["serve"][..], &["migrate", "status"][..]] {
            let mut command = service_command(&vars(pairs));
            command.args(args);
            let finished = run(command, Duration::from_secs(20)).await;
            let what = format!("{args:?} with {pairs:?}");
            assert_ne!(finished.code, Some(0), "{what} succeeded");
            assert!(
                !finished.output.contains(SECRET) && !finished.output.contains("unmistakable"),
                "{what} printed the password: {}",
                finished.output
            );
            assert!(
                finished.output.contains(named),
                "{what} does not name {named}: {}",
                finished.output
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn an_unknown_role_stops_start_up_at_once() {
    let url = postgres_url("no_such_role_xyz", "postgres");
    for args in [&["serve"][..], &["migrate", "status"][..]] {
        let vars = vars(&[
            ("DATABASE_URL", &url),
            ("REDIS_URL", &crate::helpers::redis_url()),
        ]);
        let mut command = service_command(&vars);
        command.args(args);
        let started = Instant::now();
        let finished = run(command, Duration::from_secs(15)).await;
        assert_eq!(finished.code, Some(1), "{args:?}: {}", finished.output);
        assert!(started.elapsed() < Duration::from_secs(10));
        for needle in [
            "Postgres refused the connection",
            "no_such_role_xyz",
            "check DATABASE_URL",
        ] {
            assert!(
                finished.output.contains(needle),
                "{args:?}: {needle} missing from: {}",
                finished.output
            );
        }
        assert!(
            !finished.output.contains("not reachable yet"),
            "{}",
            finished.output
        );
    }
}

#[tokio::test]
async fn a_missing_database_is_created_by_serve_and_by_migrate() {
    let env = TestEnv::new().await;
    let served = unique("exec_new");
    let before = env.subscribers().await;
    let mut vars = env.vars().clone();
    vars.insert("DATABASE_URL".into(), postgres_url("postgres", &served));
    let mut child = service_command(&vars)
        .arg("serve")
        .spawn()
        .expect("start serve");
    env.wait_until("the service starts", || async {
        env.subscribers().await > before
    })
    .await;
    assert!(database_exists(&served).await);
    let pid = child.id().expect("a pid").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(killed.expect("run kill").success());
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("serve stops on SIGTERM")
        .expect("wait for serve");
    assert!(status.success(), "serve exited with {status}");
    drop_database(&served).await;

    // Two migrations racing to create the same database both succeed.
    let migrated = unique("exec_new");
    vars.insert("DATABASE_URL".into(), postgres_url("postgres", &migrated));
    let migrate = || {
        let mut command = service_command(&vars);
        command.arg("migrate");
        command
    };
    let (first, second) = tokio::join!(run(migrate(), DEADLINE), run(migrate(), DEADLINE));
    for finished in [first, second] {
        assert_eq!(finished.code, Some(0), "{}", finished.output);
    }
    let db = Database::connect(postgres_url("postgres", &migrated))
        .await
        .expect("connect to the created database");
    let tables = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_name IN ('orders', 'trades')",
        ))
        .await
        .expect("count tables")
        .expect("a row");
    assert_eq!(tables.try_get::<i64>("", "n").expect("a count"), 2);
    db.close().await.ok();
    drop_database(&migrated).await;
}

#[tokio::test]
async fn a_missing_database_the_role_may_not_create_stops_start_up() {
    let role = unique("nocreate");
    let admin = admin().await;
    admin
        .execute_unprepared(&format!("CREATE ROLE {role} LOGIN NOCREATEDB"))
        .await
        .expect("create a role");
    let missing = unique("exec_missing");
    let vars = vars(&[
        ("DATABASE_URL", &postgres_url(&role, &missing)),
        ("REDIS_URL", &crate::helpers::redis_url()),
    ]);
    let mut command = service_command(&vars);
    command.arg("serve");
    let finished = run(command, Duration::from_secs(15)).await;
    admin
        .execute_unprepared(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .ok();
    assert_eq!(finished.code, Some(1), "{}", finished.output);
    for needle in [
        missing.as_str(),
        "cannot be created",
        "permission denied (SQLSTATE 42501)",
    ] {
        assert!(
            finished.output.contains(needle),
            "{needle} missing from: {}",
            finished.output
        );
    }
}

#[tokio::test]
async fn an_unreachable_postgres_is_waited_for() {
    // Nothing listens on a port just found free.
    let url = format!("postgres://postgres@127.0.0.1:{}/anything", free_port());
    let vars = vars(&[
        ("DATABASE_URL", &url),
        ("REDIS_URL", &crate::helpers::redis_url()),
    ]);
    let mut child = service_command(&vars)
        .arg("serve")
        .spawn()
        .expect("start serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let warned = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Postgres is not reachable yet; retrying") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(warned, Ok(true), "no retry was announced");
    let still_running = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
    assert!(still_running.is_err(), "serve gave up: {still_running:?}");
    child.kill().await.expect("kill serve");
}

#[tokio::test]
async fn schema_changes_wait_for_the_migration_lock() {
    let env = TestEnv::new().await;
    // The tables and the newest migration's index: `down` removes the
    // index, `fresh` puts everything back.
    let tables = "SELECT (SELECT count(*) FROM information_schema.tables \
                    WHERE table_name IN ('orders', 'trades', 'halts', 'halt_entries', \
                      'order_events', 'exchange_orphans')) \
                  + (SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_updated_at')";
    for (action, tables_after) in [("down", 6), ("fresh", 7)] {
        // Holds the lock, as a replica migrating at start-up would.
        let txn = env.db.begin().await.expect("begin");
        txn.execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock({})",
            execution_service::store::MIGRATION_LOCK
        ))
        .await
        .expect("take the migration lock");
        let mut child = service_command(env.vars())
            .args(["migrate", action])
            .spawn()
            .expect("start migrate");
        let key = execution_service::store::MIGRATION_LOCK;
        let waiting = format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid = {} AND objid = {} \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            key >> 32,
            key & 0xffff_ffff
        );
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("poll migrate") {
                panic!("migrate {action} ran ({status}) while the lock was held");
            }
            if env.count(&waiting).await > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "migrate {action} never waited");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        txn.commit().await.expect("release the lock");
        let finished = tokio::time::timeout(DEADLINE, child.wait_with_output())
            .await
            .expect("migrate finishes once the lock is free")
            .expect("wait for migrate");
        assert!(
            finished.status.success(),
            "{}",
            String::from_utf8_lossy(&finished.stderr)
        );
        assert_eq!(
            env.count(tables).await,
            tables_after,
            "after migrate {action}"
        );
    }
}

#[tokio::test]
async fn credentials_or_permissions_redis_refuses_stop_start_up() {
    let env = TestEnv::new().await;
    // A user of its own, allowed everything but TYPE.
    let user = format!("{}-user", env.prefix);
    let mut conn = env.redis.clone();
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{SECRET}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-type")
        .query_async(&mut conn)
        .await
        .expect("ACL SETUSER");
    let wrong = "Zq7-wrong-Secret";
    for (password, needles) in [
        (
            wrong,
            &["Redis refuses the credentials", "check REDIS_URL"][..],
        ),
        (
            SECRET,
            &["Redis refuses to tell the kinds", "NOPERM", "permissions"][..],
        ),
    ] {
        let mut url = url::Url::parse(&crate::helpers::redis_url()).expect("Redis URL");
        url.set_username(&user).unwrap();
        url.set_password(Some(password)).unwrap();
        let mut vars = env.vars().clone();
        vars.insert("REDIS_URL".into(), url.to_string());
        let mut command = service_command(&vars);
        command.arg("serve");
        let finished = run(command, Duration::from_secs(20)).await;
        assert_eq!(finished.code, Some(1), "{}", finished.output);
        for needle in needles {
            assert!(
                finished.output.contains(needle),
                "{needle} missing from: {}",
                finished.output
            );
        }
        for secret in [SECRET, wrong] {
            assert!(!finished.output.contains(secret), "{}", finished.output);
        }
    }
    let _: u64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut conn)
        .await
        .expect("ACL DELUSER");
}
