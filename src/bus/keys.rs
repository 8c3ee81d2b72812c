//! The kind of value the service expects under each Redis key it names.
//! A key of another kind (a setting that names a key some other program
//! uses, a key overwritten by hand) makes every command on it fail with
//! `WRONGTYPE`: start-up refuses it, naming the setting, instead of
//! retrying batches that cannot succeed; the announcing script checks
//! again before it writes anything.

use std::fmt;

use super::Pool;
use tokio_util::sync::CancellationToken;

use super::{BusError, Topology};
use crate::retry::Backoff;

/// A key the service reads or writes, and the kind it must hold when it
/// exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedKey {
    /// The setting that names it.
    pub setting: &'static str,
    pub key: String,
    /// As Redis `TYPE` names it: `stream`, `hash`.
    pub kind: &'static str,
}

impl ExpectedKey {
    /// The stream a setting names.
    pub fn stream(setting: &'static str, key: &str) -> Self {
        ExpectedKey {
            setting,
            key: key.to_owned(),
            kind: "stream",
        }
    }

    /// The hash of failure notes beside the orders stream.
    pub fn failure_notes(topology: &Topology) -> Self {
        ExpectedKey {
            setting: "ORDERS_STREAM (its failure notes)",
            key: topology.failures_key(),
            kind: "hash",
        }
    }
}

/// Every key the service names: the streams it reads and writes, and the
/// hash of failure notes.
pub fn expected_keys(topology: &Topology, shutdown_stream: &str) -> Vec<ExpectedKey> {
    let mut keys = vec![
        ExpectedKey::stream("ORDERS_STREAM", &topology.orders_stream),
        ExpectedKey::stream("RESULTS_STREAM", &topology.results_stream),
        ExpectedKey::stream("DLQ_STREAM", &topology.dlq_stream),
        ExpectedKey::stream("SHUTDOWN_STREAM", shutdown_stream),
        ExpectedKey::failure_notes(topology),
    ];
    if let Some(fills) = &topology.fills_stream {
        keys.push(ExpectedKey::stream("FILLS_STREAM", fills));
    }
    keys
}

/// Every key the pipeline writes, with the setting that names it: the
/// fixed ones, and one of each family made per message or per order (a
/// sample name: their slot depends on the setting's hash tag alone).
pub fn used_keys(topology: &Topology, shutdown_stream: &str) -> Vec<super::NamedKey> {
    let mut keys: Vec<super::NamedKey> = expected_keys(topology, shutdown_stream)
        .into_iter()
        .map(|key| super::NamedKey::new(key.setting, key.key))
        .collect();
    keys.push(super::NamedKey::new(
        "ORDERS_STREAM (its dedup keys)",
        super::shim::dedup_key(topology, "0"),
    ));
    keys.push(super::NamedKey::new(
        "ORDERS_STREAM (its WAIT probe)",
        super::shim::probe_key(topology),
    ));
    keys.push(super::NamedKey::new(
        "RESULTS_STREAM (its announced-state keys)",
        topology.announced_key("order"),
    ));
    keys
}

/// A key that holds another kind of value than the service needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongKind {
    pub expected: ExpectedKey,
    pub found: String,
}

impl fmt::Display for WrongKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} names the Redis key {:?}, which holds a {}, not a {}",
            self.expected.setting, self.expected.key, self.found, self.expected.kind
        )
    }
}

/// The keys among `expected` that exist with another kind of value, asked
/// in one round trip.
pub async fn wrong_kinds(
    pool: &Pool,
    expected: &[ExpectedKey],
) -> Result<Vec<WrongKind>, BusError> {
    let mut pipe = redis::pipe();
    for key in expected {
        pipe.cmd("TYPE").arg(&key.key);
    }
    let mut conn = pool.get().await?;
    let kinds: Vec<String> = pipe.query_async(&mut conn).await?;
    Ok(expected
        .iter()
        .zip(kinds)
        .filter(|(key, found)| found != "none" && found != key.kind)
        .map(|(key, found)| WrongKind {
            expected: key.clone(),
            found,
        })
        .collect())
}

/// The oldest Redis the service works with: `XAUTOCLAIM`'s three-part
/// reply and scripts with flags (`#!lua`) came with 7.0.
const MIN_REDIS_MAJOR: u32 = 7;

/// Asks until Redis answers, then refuses to go on when Redis is older
/// than 7.0 or a key holds the wrong kind: an error naming every such key.
/// Credentials or permissions Redis refuses stop it too, as no retry
/// changes them. False when cancelled first.
pub async fn check_redis(
    pool: &Pool,
    expected: &[ExpectedKey],
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    let mut backoff = Backoff::default();
    loop {
        match check_once(pool, expected).await {
            Ok((Some(version), _)) if major(&version).is_some_and(|m| m < MIN_REDIS_MAJOR) => {
                anyhow::bail!("Redis {version} is too old: the service needs Redis 7.0 or later");
            }
            Ok((_, wrong)) if wrong.is_empty() => return Ok(true),
            Ok((_, wrong)) => {
                let named: Vec<String> = wrong.iter().map(WrongKind::to_string).collect();
                anyhow::bail!("{}", named.join("; "));
            }
            Err(BusError::Pool(super::PoolError::Backend(err)))
                if err.kind() == redis::ErrorKind::AuthenticationFailed =>
            {
                anyhow::bail!(
                    "Redis refuses the credentials ({err}): check REDIS_URL, or REDIS_PASSWORD"
                );
            }
            Err(BusError::Redis(err)) if let Some(refusal) = refusal(&err) => {
                anyhow::bail!(
                    "Redis refuses to tell the kinds of the service's keys ({refusal}): check the \
                     credentials in REDIS_URL, or REDIS_PASSWORD, and the user's permissions"
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot check the Redis keys yet; retrying");
                if !backoff.wait(cancel).await {
                    return Ok(false);
                }
            }
        }
    }
}

/// Redis' version (`INFO server`) and the keys of the wrong kind.
async fn check_once(
    pool: &Pool,
    expected: &[ExpectedKey],
) -> Result<(Option<String>, Vec<WrongKind>), BusError> {
    let info: String = {
        let mut conn = pool.get().await?;
        redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?
    };
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|version| version.trim().to_owned());
    Ok((version, wrong_kinds(pool, expected).await?))
}

/// The major number of a version such as `7.0.15`.
fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

/// The first answer no retry changes (`NOPERM` for a user without
/// `TYPE`, ...), unlike a lost connection or a Redis still loading its
/// data. The errors of a pipeline are looked at one by one (its own code
/// names only the first, and only when the client knows it).
fn refusal(err: &redis::RedisError) -> Option<String> {
    const PASSING: [&str; 4] = ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"];
    let errors = err.clone().into_server_errors()?;
    let (_, refused) = errors.iter().find(|(_, e)| !PASSING.contains(&e.code()))?;
    Some(format!(
        "{} {}",
        refused.code(),
        refused.details().unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_key_is_expected_and_the_fills_stream_only_when_set() {
        let mut topology = Topology {
            orders_stream: "o".into(),
            results_stream: "r".into(),
            dlq_stream: "d".into(),
            ..Topology::default()
        };
        let names = |topology: &Topology| -> Vec<(String, &'static str)> {
            expected_keys(topology, "s")
                .into_iter()
                .map(|key| (key.key, key.kind))
                .collect()
        };
        let without = names(&topology);
        assert_eq!(
            without,
            [
                ("o".to_owned(), "stream"),
                ("r".to_owned(), "stream"),
                ("d".to_owned(), "stream"),
                ("s".to_owned(), "stream"),
                ("o:failures".to_owned(), "hash"),
            ]
        );
        topology.fills_stream = Some("f".into());
        assert_eq!(names(&topology).last(), Some(&("f".to_owned(), "stream")));
    }

    #[test]
    fn major_versions_are_read_and_odd_ones_are_not_guessed() {
        assert_eq!(major("7.0.15"), Some(7));
        assert_eq!(major("6.2.14"), Some(6));
        assert_eq!(major("255.255.255"), Some(255));
        assert_eq!(major(""), None);
        assert_eq!(major("seven"), None);
    }

    #[test]
    fn a_wrong_kind_names_the_setting_the_key_and_both_kinds() {
        let wrong = WrongKind {
            expected: ExpectedKey {
                setting: "RESULTS_STREAM",
                key: "stream.order_results".into(),
                kind: "stream",
            },
            found: "string".into(),
        };
        assert_eq!(
            wrong.to_string(),
            r#"RESULTS_STREAM names the Redis key "stream.order_results", which holds a string, not a stream"#
        );
    }
}
