//! Reading never fails on content: bytes that are not UTF-8, in every place
//! Redis allows them, reach the dead-letter stream exactly as they were,
//! and the valid orders around them are executed as if nothing happened.

use crate::helpers::{TestEnv, order_json};

/// One field as a test writes it.
type ByteField<'a> = (&'a [u8], &'a [u8]);

/// An entry's fields as Redis holds them.
pub type RawFields = Vec<(Vec<u8>, Vec<u8>)>;

/// Every entry of a stream, names and values as bytes, in order.
pub async fn raw_entries(env: &TestEnv, var: &str) -> Vec<(String, RawFields)> {
    let mut conn = env.redis.clone();
    redis::cmd("XRANGE")
        .arg(env.var(var))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE")
}

/// XADDs an entry with byte fields; returns its id.
pub async fn xadd_raw(env: &TestEnv, fields: &[(&[u8], &[u8])]) -> String {
    let mut conn = env.redis.clone();
    let mut cmd = redis::cmd("XADD");
    cmd.arg(env.var("ORDERS_STREAM")).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query_async(&mut conn).await.expect("XADD")
}

/// Reads up to `count` new entries as `consumer` and acknowledges none:
/// a replica that died holding them. Returns how many it read.
pub async fn read_raw_as(env: &TestEnv, consumer: &str, count: usize) -> usize {
    let mut conn = env.redis.clone();
    let _: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(env.var("ORDERS_STREAM"))
        .arg(env.var("CONSUMER_GROUP"))
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    let reply: Vec<(String, Vec<(String, RawFields)>)> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(env.var("CONSUMER_GROUP"))
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(env.var("ORDERS_STREAM"))
        .arg(">")
        .query_async(&mut conn)
        .await
        .expect("XREADGROUP");
    reply.iter().map(|(_, entries)| entries.len()).sum()
}

fn field<'a>(fields: &'a RawFields, name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// The dead letter of the entry `id`.
async fn letter_of(env: &TestEnv, id: &str) -> RawFields {
    raw_entries(env, "DLQ_STREAM")
        .await
        .into_iter()
        .map(|(_, fields)| fields)
        .find(|fields| field(fields, "dlq_original_id") == Some(id.as_bytes()))
        .unwrap_or_else(|| panic!("no dead letter for {id}"))
}

async fn ready(url: &str) -> bool {
    reqwest::get(format!("{url}/ready"))
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test]
async fn bytes_that_are_not_utf8_anywhere_are_dead_lettered_exactly_and_stop_nothing() {
    let env = TestEnv::new().await;
    let app = env.spawn("replica-a", &[]).await;
    let beside = order_json("bytes-beside", "1", "10");
    let traceparent_beside: &[(&[u8], &[u8])] = &[
        (b"payload", beside.as_bytes()),
        (b"traceparent", b"\xff\xfe"),
    ];
    env.xadd_payload(&order_json("bytes-before", "1", "10"))
        .await;
    let poisons: Vec<(&str, Vec<ByteField>)> = vec![
        ("a field name", vec![(b"\xff\xfe", b"x")]),
        (
            "a field name beside an order",
            vec![
                (b"order_id", b"bytes-named"),
                (b"symbol", b"BTCUSDT"),
                (b"\xc3\x28", b"1"),
            ],
        ),
        (
            "a field value",
            vec![
                (b"order_id", b"bytes-value"),
                (b"symbol", b"BTC\xffUSDT"),
                (b"side", b"BUY"),
                (b"quantity", b"1"),
            ],
        ),
        ("the payload", vec![(b"payload", b"\xff\xfe\x00{")]),
        (
            "an only field that is not payload",
            vec![(b"note", b"\x80")],
        ),
    ];
    let mut poison_ids = Vec::new();
    for (what, fields) in &poisons {
        poison_ids.push((*what, xadd_raw(&env, fields).await, fields.clone()));
    }
    xadd_raw(&env, traceparent_beside).await;
    env.xadd_payload(&order_json("bytes-after", "1", "10"))
        .await;
    // On the channel too: the shim mirrors it, the worker dead-letters it.
    let message: &[u8] = b"\xfe\xff not an order \xc0";
    let mut conn = env.redis.clone();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(env.var("ORDERS_CHANNEL"))
        .arg(message)
        .query_async(&mut conn)
        .await
        .expect("PUBLISH");
    env.publish(&[order_json("bytes-channel", "1", "10")]).await;

    env.wait_until("the valid orders are filled", || async {
        env.results().await.len() >= 4
    })
    .await;
    env.wait_until("every entry is settled", || async {
        env.pending().await == 0 && env.stream_len("DLQ_STREAM").await > poisons.len()
    })
    .await;
    let results = env.results().await;
    for id in [
        "bytes-before",
        "bytes-beside",
        "bytes-after",
        "bytes-channel",
    ] {
        let result = results
            .iter()
            .find(|r| r["order_id"] == id)
            .unwrap_or_else(|| panic!("{id} has no result: {results:?}"));
        assert_eq!(result["status"], "FILLED", "{id}");
    }
    assert_eq!(results.len(), 4, "{results:?}");
    assert_eq!(
        app.stats.redeliveries.get(),
        0,
        "an entry was delivered twice"
    );
    assert!(ready(&app.url).await, "/ready is not 200");

    // Each dead letter holds the entry's exact bytes.
    for (what, id, fields) in &poison_ids {
        let letter = letter_of(&env, id).await;
        for (name, value) in fields {
            assert!(
                letter
                    .iter()
                    .any(|(n, v)| n.as_slice() == *name && v.as_slice() == *value),
                "{what}: {name:?} = {value:?} missing from {letter:?}"
            );
        }
        assert_eq!(field(&letter, "dlq_deliveries"), Some(&b"1"[..]), "{what}");
    }
    let named = letter_of(&env, &poison_ids[0].1).await;
    let reason = String::from_utf8_lossy(field(&named, "dlq_reason").unwrap_or_default());
    assert!(reason.contains("not UTF-8"), "{reason}");
    let mirrored = raw_entries(&env, "DLQ_STREAM")
        .await
        .into_iter()
        .any(|(_, fields)| field(&fields, "payload") == Some(message));
    assert!(mirrored, "the channel message's bytes are not in the DLQ");

    app.stop().await;
}

#[tokio::test]
async fn a_replica_restarted_with_an_undecodable_entry_pending_resumes_and_is_ready() {
    let env = TestEnv::new().await;
    env.xadd_payload(&order_json("resume-1", "1", "10")).await;
    let poison = xadd_raw(&env, &[(b"\xff\xfe", b"x")]).await;
    env.xadd_payload(&order_json("resume-2", "1", "10")).await;
    // The replica read all three and died before acknowledging them.
    assert_eq!(read_raw_as(&env, "replica-1", 10).await, 3);

    let app = env
        .spawn(
            "replica-1",
            &[("SHIM_ENABLED", "false"), ("CLAIM_IDLE_MS", "3600000")],
        )
        .await;
    let results = env.wait_for_results(2).await;
    assert!(results.iter().all(|r| r["status"] == "FILLED"));
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;
    let letter = letter_of(&env, &poison).await;
    assert!(letter.contains(&(b"\xff\xfe".to_vec(), b"x".to_vec())));
    assert_eq!(field(&letter, "dlq_deliveries"), Some(&b"2"[..]));
    env.wait_until("the instance is ready", || ready(&app.url))
        .await;

    app.stop().await;
}

#[tokio::test]
async fn an_undecodable_entry_pending_on_a_dead_replica_is_claimed_with_its_neighbours() {
    let env = TestEnv::new().await;
    for i in 0..3 {
        env.xadd_payload(&order_json(&format!("claimed-{i}"), "1", "10"))
            .await;
        xadd_raw(&env, &[(b"\xfe", format!("{i}").as_bytes())]).await;
    }
    assert_eq!(read_raw_as(&env, "dead-replica", 10).await, 6);

    let settings = [
        ("SHIM_ENABLED", "false"),
        ("CLAIM_IDLE_MS", "1000"),
        ("CLAIM_INTERVAL_MS", "100"),
        ("MAX_DELIVERIES", "2"),
    ];
    let app = env.spawn("survivor", &settings).await;
    env.wait_for_results(3).await;
    env.wait_until("nothing is pending", || async { env.pending().await == 0 })
        .await;
    // Claimed once each: the undecodable ones cost their neighbours nothing.
    let letters = raw_entries(&env, "DLQ_STREAM").await;
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert!(
        letters
            .iter()
            .all(|(_, f)| field(f, "dlq_deliveries") == Some(&b"2"[..]))
    );
    assert!(
        env.results().await.iter().all(|r| r["status"] == "FILLED"),
        "a valid neighbour was not filled"
    );
    assert_eq!(app.stats.redeliveries.get(), 6);

    app.stop().await;
}
