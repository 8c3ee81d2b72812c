//! The Postgres pool and session timeouts.

use super::*;

#[test]
fn postgres_session_timeouts_derive_from_the_batch_timeout_unless_set() {
    let s = settings(&[("BATCH_TIMEOUT_SECS", "6")]).unwrap();
    assert_eq!(s.postgres.statement_timeout, Duration::from_secs(6));
    assert_eq!(s.postgres.lock_timeout, Duration::from_secs(2));
    assert_eq!(
        s.postgres.idle_in_transaction_timeout,
        Duration::from_secs(6)
    );
    assert_eq!(s.postgres.keepalive_idle, Duration::from_secs(15));

    let s = settings(&[
        ("POSTGRES_STATEMENT_TIMEOUT_MS", "9000"),
        ("POSTGRES_LOCK_TIMEOUT_MS", "250"),
        ("POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS", "4000"),
        ("POSTGRES_TCP_KEEPALIVE_SECS", "30"),
        ("POSTGRES_ACQUIRE_TIMEOUT_MS", "1500"),
    ])
    .unwrap();
    assert_eq!(s.postgres.statement_timeout, Duration::from_millis(9000));
    assert_eq!(s.postgres.lock_timeout, Duration::from_millis(250));
    assert_eq!(
        s.postgres.idle_in_transaction_timeout,
        Duration::from_secs(4)
    );
    assert_eq!(s.postgres.keepalive_idle, Duration::from_secs(30));
    assert_eq!(s.postgres.acquire_timeout, Duration::from_millis(1500));
}

#[test]
fn postgres_timeouts_out_of_range_are_refused() {
    for (name, value) in [
        ("POSTGRES_STATEMENT_TIMEOUT_MS", "0"),
        ("POSTGRES_LOCK_TIMEOUT_MS", "-1"),
        ("POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS", "86400001"),
        // Below the floors: a batch's own pauses would trip them.
        ("POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS", "50"),
        ("POSTGRES_STATEMENT_TIMEOUT_MS", "999"),
        ("POSTGRES_LOCK_TIMEOUT_MS", "99"),
        ("POSTGRES_ACQUIRE_TIMEOUT_MS", "0"),
        ("POSTGRES_TCP_KEEPALIVE_SECS", "0"),
        ("POSTGRES_TCP_KEEPALIVE_SECS", "99999999999999999999"),
    ] {
        let err = settings(&[(name, value)]).unwrap_err();
        assert!(err.to_string().contains(name), "{name}={value}: {err}");
    }
    // A lock wait is part of a statement, so it cannot outlast one.
    let err = settings(&[
        ("POSTGRES_STATEMENT_TIMEOUT_MS", "1000"),
        ("POSTGRES_LOCK_TIMEOUT_MS", "2000"),
    ])
    .unwrap_err();
    assert!(
        err.to_string().contains("POSTGRES_LOCK_TIMEOUT_MS"),
        "{err}"
    );
}
