//! Where a Redis Cluster keeps the service's one slot: `CLUSTER SLOTS`,
//! asked of the node found last, then of each seed.

use std::time::Duration;

use redis::{AsyncConnectionConfig, Client, ConnectionInfo, RedisError, RedisResult, Value};

/// A client for the primary serving `slot`, asked of the node found last
/// (`known`) first, then of each seed (`CLUSTER SLOTS`).
pub(super) async fn slot_owner(
    seeds: &[ConnectionInfo],
    slot: u16,
    node: &ConnectionInfo,
    known: Option<&str>,
) -> RedisResult<Client> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)));
    let mut asked: Vec<ConnectionInfo> = Vec::new();
    if let Some(known) = known.and_then(|k| k.rsplit_once(':'))
        && let Ok(port) = known.1.parse()
    {
        let host = known.0.trim_start_matches('[').trim_end_matches(']');
        asked.push(
            node.clone()
                .set_addr(redis::ConnectionAddr::Tcp(host.to_owned(), port)),
        );
    }
    asked.extend(seeds.iter().cloned());
    let mut last_error = None;
    for info in asked {
        let reply = async {
            let mut conn = Client::open(info.clone())?
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Vec<Value>>(&mut conn)
                .await
        }
        .await;
        match reply {
            Ok(ranges) => match owner_in(&ranges, slot) {
                Some((host, port)) => {
                    let host = if host.is_empty() {
                        // An empty address means the node asked.
                        match info.addr() {
                            redis::ConnectionAddr::Tcp(host, _) => host.clone(),
                            _ => host,
                        }
                    } else {
                        host
                    };
                    return Client::open(
                        node.clone()
                            .set_addr(redis::ConnectionAddr::Tcp(host, port)),
                    );
                }
                None => {
                    last_error = Some(RedisError::from((
                        redis::ErrorKind::Io,
                        "no cluster node serves the slot of the service's keys",
                    )))
                }
            },
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error
        .unwrap_or_else(|| RedisError::from((redis::ErrorKind::Io, "no cluster node to ask"))))
}

/// The primary's address in a `CLUSTER SLOTS` reply for `slot`: each range
/// is start, end, then the primary as [host, port, id, ...], then replicas.
fn owner_in(ranges: &[Value], slot: u16) -> Option<(String, u16)> {
    ranges.iter().find_map(|range| {
        let Value::Array(parts) = range else {
            return None;
        };
        let number = |value: &Value| match value {
            Value::Int(n) => Some(*n),
            _ => None,
        };
        let (start, end) = (number(parts.first()?)?, number(parts.get(1)?)?);
        if !(start..=end).contains(&i64::from(slot)) {
            return None;
        }
        let Value::Array(primary) = parts.get(2)? else {
            return None;
        };
        let host = match primary.first()? {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok()?,
            Value::SimpleString(text) => text.clone(),
            _ => return None,
        };
        let port = u16::try_from(number(primary.get(1)?)?).ok()?;
        Some((host, port))
    })
}
