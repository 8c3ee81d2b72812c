//! Redis behind Sentinels, and what the shim waits for.

use super::*;

#[test]
fn one_redis_and_no_wait_by_default() {
    let s = settings(&[]).unwrap();
    assert!(s.redis.sentinel.is_none());
    assert_eq!(s.redis.wait_replicas, 0);
    assert_eq!(s.redis.wait_timeout, Duration::from_millis(1000));
    assert_eq!(s.redis.replay_window, Duration::from_secs(30));
}

#[test]
fn sentinels_are_a_list_of_addresses_with_a_primary_name() {
    let s = settings(&[
        ("REDIS_SENTINELS", " s1:5000, s2 ,[::1]:26380,"),
        ("REDIS_SENTINEL_MASTER", " exec "),
        ("REDIS_SENTINEL_USERNAME", "watcher"),
        ("REDIS_SENTINEL_PASSWORD", "Sentin3lPw"),
        ("REDIS_WAIT_REPLICAS", "2"),
        ("REDIS_WAIT_TIMEOUT_MS", "250"),
        ("REDIS_REPLAY_SECS", "0"),
    ])
    .unwrap();
    let sentinel = s.redis.sentinel.as_ref().expect("sentinels");
    assert_eq!(
        sentinel.addresses,
        vec![
            ("s1".to_owned(), 5000),
            ("s2".to_owned(), 26379),
            ("::1".to_owned(), 26380)
        ]
    );
    assert_eq!(sentinel.master, "exec");
    assert_eq!(sentinel.username.as_deref(), Some("watcher"));
    assert_eq!(s.redis.wait_replicas, 2);
    assert_eq!(s.redis.wait_timeout, Duration::from_millis(250));
    assert_eq!(s.redis.replay_window, Duration::ZERO);
    // The password is a secret: never in Debug output, masked in text.
    assert!(!format!("{s:?}").contains("Sentin3lPw"));
    assert_eq!(
        s.redactor().redact("auth Sentin3lPw failed"),
        "auth *** failed"
    );
}

#[test]
fn the_sentinel_password_may_come_from_a_file() {
    let path = std::env::temp_dir().join(format!("sentinel-pw-{}", std::process::id()));
    std::fs::write(&path, "fr0mFile\n").unwrap();
    let s = settings(&[
        ("REDIS_SENTINELS", "s1"),
        ("REDIS_SENTINEL_MASTER", "exec"),
        ("REDIS_SENTINEL_PASSWORD_FILE", path.to_str().unwrap()),
    ])
    .unwrap();
    let _ = std::fs::remove_file(&path);
    let password = s.redis.sentinel.unwrap().password.unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&password), "fr0mFile");
}

#[test]
fn a_sentinel_setting_without_its_partner_is_refused() {
    let err = settings(&[("REDIS_SENTINELS", "s1:26379")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("REDIS_SENTINEL_MASTER=\"\""), "{err}");
    let err = settings(&[("REDIS_SENTINEL_MASTER", "exec")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("REDIS_SENTINELS beside it"), "{err}");
    let err = settings(&[("REDIS_SENTINELS", "s1"), ("REDIS_SENTINEL_MASTER", "a b")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("without spaces"), "{err}");
}

#[test]
fn a_malformed_sentinel_list_is_refused_whole() {
    for bad in ["s1:0", "s1:99999", "s1:x", "[::1", "bad host:1", ":26379"] {
        let err = settings(&[("REDIS_SENTINELS", bad), ("REDIS_SENTINEL_MASTER", "m")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("REDIS_SENTINELS="), "{bad}: {err}");
        assert!(err.contains("host:port"), "{bad}: {err}");
    }
    // Only commas and blanks: no Sentinel at all, as if unset.
    assert!(
        settings(&[("REDIS_SENTINELS", " , ")])
            .unwrap()
            .redis
            .sentinel
            .is_none()
    );
}

#[test]
fn cluster_nodes_are_addresses_and_exclude_sentinels() {
    let s = settings(&[("REDIS_CLUSTER_NODES", "n1:7000,n2, [::1]:7002")]).unwrap();
    assert_eq!(
        s.redis.cluster_nodes,
        vec![
            ("n1".to_owned(), 7000),
            ("n2".to_owned(), 6379),
            ("::1".to_owned(), 7002)
        ]
    );
    assert!(settings(&[]).unwrap().redis.cluster_nodes.is_empty());
    let err = settings(&[("REDIS_CLUSTER_NODES", "n1:0")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("REDIS_CLUSTER_NODES=\"n1:0\""), "{err}");
    let err = settings(&[
        ("REDIS_CLUSTER_NODES", "n1:7000"),
        ("REDIS_SENTINELS", "s1"),
        ("REDIS_SENTINEL_MASTER", "m"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("no REDIS_SENTINELS beside it"), "{err}");
}
