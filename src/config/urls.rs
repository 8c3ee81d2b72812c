//! The Redis and Postgres URLs: taken whole (`REDIS_URL`, `DATABASE_URL`,
//! or their `_FILE`) or composed from host, port and credentials, and
//! checked here so that no client library ever echoes a malformed one
//! (password included) into a log.
//!
//! An invalid URL is reported with its password masked.

use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use super::env::Env;
use super::redact::{Redactor, redact_url};

/// The Postgres URL and where it came from, for messages that tell an
/// operator which variable to fix.
pub(super) struct PostgresUrl {
    pub url: SecretString,
    pub source: String,
}

const COMPOSED_REDIS: &str = "REDIS_HOST, REDIS_PORT and REDIS_PASSWORD";
const COMPOSED_POSTGRES: &str =
    "POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB";

pub(super) fn redis_url(env: &mut Env<'_>) -> SecretString {
    if let Some((url, source)) = env.secret("REDIS_URL") {
        check_url(env, &source, url.expose_secret(), redis_url_problem);
        return url;
    }
    let host = host(env, "REDIS_HOST");
    let port: u16 = env.ranged("REDIS_PORT", 6379, 1..=u16::MAX);
    let auth = match env.secret("REDIS_PASSWORD") {
        Some((password, _)) => format!(":{}@", url_escape(password.expose_secret())),
        None => String::new(),
    };
    let url = format!("redis://{auth}{host}:{port}/");
    if env.all_valid(&["REDIS_HOST", "REDIS_PORT"]) {
        check_url(env, COMPOSED_REDIS, &url, redis_url_problem);
    }
    url.into()
}

pub(super) fn postgres_url(env: &mut Env<'_>) -> PostgresUrl {
    if let Some((url, source)) = env.secret("DATABASE_URL") {
        check_url(env, &source, url.expose_secret(), postgres_url_problem);
        return PostgresUrl { url, source };
    }
    let host = host(env, "POSTGRES_HOST");
    let port: u16 = env.ranged("POSTGRES_PORT", 5432, 1..=u16::MAX);
    let database = env.text("POSTGRES_DB", "claire_de_binare");
    let user = env.text("POSTGRES_USER", "claire_user");
    let password = env
        .secret("POSTGRES_PASSWORD")
        .map(|(password, _)| format!(":{}", url_escape(password.expose_secret())))
        .unwrap_or_default();
    let url = format!(
        "postgres://{}{password}@{host}:{port}/{}",
        url_escape(&user),
        url_escape(&database)
    );
    if env.all_valid(&["POSTGRES_HOST", "POSTGRES_PORT"]) {
        check_url(env, COMPOSED_POSTGRES, &url, postgres_url_problem);
    }
    PostgresUrl {
        url: url.into(),
        source: COMPOSED_POSTGRES.to_owned(),
    }
}

/// A host name or IP address (an IPv6 address gets its brackets).
fn host(env: &mut Env<'_>, name: &str) -> String {
    let host = env.text(name, "127.0.0.1").trim().to_owned();
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return format!("[{host}]");
    }
    if url::Host::parse(&host).is_err() {
        env.invalid(name, &host, "a host name or IP address");
    }
    host
}

/// Records `name` as invalid when `problem` finds fault with `url`; the
/// value and the reason are shown with the password masked.
fn check_url(env: &mut Env<'_>, name: &str, url: &str, problem: fn(&str) -> Option<String>) {
    if let Some(problem) = problem(url) {
        let redactor = Redactor::default().with_url(url);
        env.invalid(name, redact_url(url), &redactor.redact(&problem));
    }
}

/// Why a Postgres URL cannot be used, if it cannot.
fn postgres_url_problem(url: &str) -> Option<String> {
    const EXPECTED: &str = "a postgres://user:password@host:port/database URL";
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(err) => return Some(format!("{EXPECTED} ({err})")),
    };
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Some(format!(
            "{EXPECTED} (the scheme is {:?}; postgres or postgresql)",
            parsed.scheme()
        ));
    }
    if parsed.port() == Some(0) {
        return Some(format!("{EXPECTED} (port 0)"));
    }
    sea_orm::sqlx::postgres::PgConnectOptions::from_str(url)
        .err()
        .map(|err| format!("{EXPECTED} ({err})"))
}

/// Why a Redis URL cannot be used, if it cannot.
fn redis_url_problem(url: &str) -> Option<String> {
    const EXPECTED: &str = "a redis://:password@host:port/db URL";
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(err) => return Some(format!("{EXPECTED} ({err})")),
    };
    if !matches!(
        parsed.scheme(),
        "redis" | "rediss" | "unix" | "redis+unix" | "valkey" | "valkeys"
    ) {
        return Some(format!(
            "{EXPECTED} (the scheme is {:?}; redis, rediss or unix)",
            parsed.scheme()
        ));
    }
    if parsed.port() == Some(0) {
        return Some(format!("{EXPECTED} (port 0)"));
    }
    // What the client itself refuses: a database that is not a number, or
    // TLS when this build has none.
    redis::IntoConnectionInfo::into_connection_info(url)
        .err()
        .map(|err| format!("{EXPECTED} ({err})"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
