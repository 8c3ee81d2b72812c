//! After the Redis primary moves, the results of orders changed shortly
//! before are announced again, marked as replays: what the old primary
//! acknowledged and never passed on reaches consumers after all.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sentinels::{MASTER, Sentinels};
use super::{connect, wait_for_listener, wait_until};
use crate::helpers::{DEADLINE, TestEnv, order_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_the_new_primary_lacks_are_announced_again_as_replays() {
    let env = TestEnv::new().await;
    let set = Sentinels::start(&env.prefix).await;
    let mut vars = set.vars();
    vars.push(("REDIS_REPLAY_SECS", "60".to_owned()));
    let overrides: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = env.build("replay-a", &overrides).await;
    let stats = app.stats();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(cancel.clone()));

    let old = set.primary().await;
    let mut primary = connect(old).await.expect("the primary");
    let channel = env.var("ORDERS_CHANNEL");
    let results = env.var("RESULTS_STREAM");
    let fills = env.var("FILLS_STREAM");
    wait_for_listener(&primary, &channel).await;
    let ids: Vec<String> = (0..50).map(|i| format!("{}-r{i}", env.prefix)).collect();
    for id in &ids {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(order_json(id, "1", "100"))
            .query_async(&mut primary)
            .await
            .expect("PUBLISH");
    }
    wait_until("every result is announced", || async {
        read(&mut primary.clone(), &results).await.len() == ids.len()
    })
    .await;

    // What a failover that came too early would have taken back: the
    // results and the record of having announced them.
    let announced: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{results}:announced:*"))
        .query_async(&mut primary)
        .await
        .expect("KEYS");
    assert_eq!(announced.len(), ids.len());
    let mut del = redis::cmd("DEL");
    del.arg(&results).arg(&fills).arg(&announced);
    let _: i64 = del.query_async(&mut primary).await.expect("DEL");

    let since = Instant::now();
    let mut sentinel = connect(set.sentinel_port()).await.expect("a Sentinel");
    let () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(MASTER)
        .query_async(&mut sentinel)
        .await
        .expect("SENTINEL FAILOVER");
    set.wait_for_failover(old, since).await;
    let mut new = connect(set.primary().await).await.expect("the new primary");
    let deadline = Instant::now() + DEADLINE;
    let replayed = loop {
        let entries = read(&mut new, &results).await;
        if entries.len() >= ids.len() {
            break entries;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} results announced again",
            entries.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let orders: HashSet<&str> = replayed.iter().map(|f| f["order_id"].as_str()).collect();
    assert_eq!(orders.len(), ids.len(), "every order announced again");
    assert_eq!(replayed.len(), ids.len(), "no order announced again twice");
    for fields in &replayed {
        assert_eq!(
            fields.get("replay").map(String::as_str),
            Some("true"),
            "{fields:?}"
        );
        assert_eq!(fields["status"], "FILLED");
        assert_eq!(
            fields["result_id"],
            format!(
                "{}:{}",
                fields["order_id"],
                fields["result_id"].rsplit(':').next().unwrap_or_default()
            )
        );
    }
    assert!(stats.results_replayed.get() >= ids.len() as u64);
    // Announced once more, not twice: the replayer's copies set the
    // announced-state keys again.
    let again: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{results}:announced:*"))
        .query_async(&mut new)
        .await
        .expect("KEYS");
    assert_eq!(again.len(), ids.len());
    cancel.cancel();
    running
        .await
        .expect("the application task")
        .expect("the application stops cleanly");
}

async fn read(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> Vec<HashMap<String, String>> {
    let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap_or_default();
    entries.into_iter().map(|(_, fields)| fields).collect()
}
