//! Redis: one address (`REDIS_URL` or its parts), or the primary that
//! Sentinels name (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`), and what a
//! write must reach before the shim takes it as done (`REDIS_WAIT_*`).

use std::time::Duration;

use secrecy::SecretString;

use super::env::Env;
use super::urls;

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The server's address, or (with Sentinels) the credentials and
    /// database used on whichever primary they name.
    pub url: SecretString,
    pub pool_size: usize,
    pub sentinel: Option<SentinelSettings>,
    /// `host:port` of cluster nodes to ask where the service's slot is
    /// (`REDIS_CLUSTER_NODES`); empty: not a cluster.
    pub cluster_nodes: Vec<(String, u16)>,
    /// Replicas every mirrored chunk must reach (`WAIT`) before the shim
    /// takes it as done; 0: a single Redis, no wait.
    pub wait_replicas: u32,
    /// At most 4 s: every Redis command is given up after 5 s.
    pub wait_timeout: Duration,
    /// After the primary changed, results finished this long before the
    /// change are announced again (marked as replays): the old primary may
    /// have acknowledged them and not passed them on.
    pub replay_window: Duration,
}

/// Where the Sentinels are and which primary to ask them for.
#[derive(Debug, Clone)]
pub struct SentinelSettings {
    /// `host:port` of each Sentinel, in the order they are asked.
    pub addresses: Vec<(String, u16)>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
}

/// Sentinels listen on 26379 unless told otherwise.
const SENTINEL_PORT: u16 = 26379;

pub(super) fn redis_settings(env: &mut Env<'_>) -> RedisSettings {
    let sentinel = sentinel_settings(env);
    let cluster_nodes = addresses(env, "REDIS_CLUSTER_NODES", 6379).unwrap_or_default();
    if sentinel.is_some() && !cluster_nodes.is_empty() {
        let nodes = env.text("REDIS_CLUSTER_NODES", "");
        env.invalid(
            "REDIS_CLUSTER_NODES",
            nodes,
            "no REDIS_SENTINELS beside it (a cluster fails over on its own)",
        );
    }
    RedisSettings {
        url: urls::redis_url(env),
        pool_size: env.ranged("REDIS_POOL_SIZE", 16, 1..=1000),
        sentinel,
        cluster_nodes,
        wait_replicas: env.ranged("REDIS_WAIT_REPLICAS", 0, 0..=16),
        wait_timeout: Duration::from_millis(env.ranged("REDIS_WAIT_TIMEOUT_MS", 1000, 1..=4000)),
        replay_window: Duration::from_secs(env.ranged("REDIS_REPLAY_SECS", 30, 0..=3600)),
    }
}

/// A comma-separated list of `host:port` (the port defaults to
/// `default_port`); none when unset or invalid (recorded).
fn addresses(env: &mut Env<'_>, name: &str, default_port: u16) -> Option<Vec<(String, u16)>> {
    let list = env.text(name, "");
    let mut addresses = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match address(item, default_port) {
            Some(address) => addresses.push(address),
            None => {
                env.invalid(
                    name,
                    &list,
                    &format!(
                        "a comma-separated list of host:port (the port defaults to {default_port})"
                    ),
                );
                return None;
            }
        }
    }
    Some(addresses)
}

fn sentinel_settings(env: &mut Env<'_>) -> Option<SentinelSettings> {
    let addresses = addresses(env, "REDIS_SENTINELS", SENTINEL_PORT);
    let master = env
        .var("REDIS_SENTINEL_MASTER")
        .map(|m| m.trim().to_owned());
    let addresses = match addresses {
        Some(addresses) if !addresses.is_empty() => addresses,
        // Refused already.
        None => return None,
        Some(_) => {
            if master.as_deref().is_some_and(|m| !m.is_empty()) {
                env.invalid(
                    "REDIS_SENTINEL_MASTER",
                    master.unwrap_or_default(),
                    "REDIS_SENTINELS beside it (the Sentinels to ask for this primary)",
                );
            }
            return None;
        }
    };
    let master = match master.filter(|m| !m.is_empty()) {
        Some(master) if master.chars().all(|c| c.is_ascii_graphic()) => master,
        Some(master) => {
            env.invalid(
                "REDIS_SENTINEL_MASTER",
                master,
                "the primary's name in the Sentinels' configuration, without spaces",
            );
            return None;
        }
        None => {
            env.invalid(
                "REDIS_SENTINEL_MASTER",
                "",
                "the primary's name in the Sentinels' configuration (set beside REDIS_SENTINELS)",
            );
            return None;
        }
    };
    Some(SentinelSettings {
        addresses,
        master,
        username: env
            .var("REDIS_SENTINEL_USERNAME")
            .filter(|u| !u.trim().is_empty()),
        password: env.secret("REDIS_SENTINEL_PASSWORD").map(|(p, _)| p),
    })
}

/// `host`, `host:port` or `[v6]:port`.
fn address(item: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = item.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (host.to_owned(), default_port),
            after => (host.to_owned(), after.strip_prefix(':')?.parse().ok()?),
        }
    } else {
        match item.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (item.to_owned(), default_port),
        }
    };
    if port == 0 || url::Host::parse(&host).is_err() && host.parse::<std::net::Ipv6Addr>().is_err()
    {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::{SENTINEL_PORT, address};

    fn sentinel_address(item: &str) -> Option<(String, u16)> {
        address(item, SENTINEL_PORT)
    }

    #[test]
    fn sentinel_addresses_take_a_port_or_the_default() {
        assert_eq!(sentinel_address("s1"), Some(("s1".into(), 26379)));
        assert_eq!(sentinel_address("s1:5000"), Some(("s1".into(), 5000)));
        assert_eq!(sentinel_address("[::1]:7"), Some(("::1".into(), 7)));
        assert_eq!(sentinel_address("[::1]"), Some(("::1".into(), 26379)));
        for bad in [
            "s1:0", "s1:70000", "s1:x", "[::1", "[nope]:1", "a b:1", ":1",
        ] {
            assert_eq!(sentinel_address(bad), None, "{bad}");
        }
    }
}
