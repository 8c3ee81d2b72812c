//! The fleet-wide request budget: however many replicas draw from it, no
//! second holds more grants than the limit.

use std::time::{Duration, Instant};

use execution_service::bus::{self, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::helpers::TestEnv;

#[tokio::test]
async fn three_replicas_together_never_exceed_the_limit_in_any_second() {
    let env = TestEnv::new().await;
    let key = format!("{}.mexc.budget", env.prefix);
    let limit = 10;
    let started = Instant::now();
    // Three "replicas", each with its own pool, each wanting 20 grants.
    let replicas = (0..3).map(|_| {
        let pool = bus::pool(&env.var("REDIS_URL"), 2).expect("a pool");
        let limiter = RateLimiter::new(pool, key.clone(), limit);
        async move {
            let cancel = CancellationToken::new();
            let mut grants = Vec::new();
            for _ in 0..20 {
                limiter
                    .take(&cancel)
                    .await
                    .expect("Redis answers")
                    .expect("not cancelled");
                grants.push(started.elapsed());
            }
            grants
        }
    });
    let mut grants: Vec<Duration> = futures_util::future::join_all(replicas)
        .await
        .into_iter()
        .flatten()
        .collect();
    grants.sort();
    assert_eq!(grants.len(), 60);
    // Every window of one second, starting at any grant, holds at most the
    // limit (a few ms of slack for the time between Redis and this process).
    let slack = Duration::from_millis(20);
    for (i, start) in grants.iter().enumerate() {
        let within = grants[i..]
            .iter()
            .take_while(|at| **at < *start + Duration::from_secs(1) - slack)
            .count();
        assert!(
            within <= limit as usize,
            "{within} grants in the second from {start:?}"
        );
    }
    // And the budget is used, not wasted: 60 grants at 10/s take about 5 s.
    let total = *grants.last().expect("grants");
    assert!(
        total >= Duration::from_millis(4_900) && total < Duration::from_secs(8),
        "{total:?}"
    );
    println!("60 grants at 10/s across 3 replicas in {total:?}");
}

#[tokio::test]
async fn a_refused_grant_says_how_long_to_wait_and_cancellation_ends_the_wait() {
    let env = TestEnv::new().await;
    let pool = bus::pool(&env.var("REDIS_URL"), 2).expect("a pool");
    let limiter = RateLimiter::new(pool, format!("{}.budget", env.prefix), 2);
    assert_eq!(limiter.try_take().await.unwrap(), None);
    assert_eq!(limiter.try_take().await.unwrap(), None);
    let wait = limiter
        .try_take()
        .await
        .unwrap()
        .expect("the window is full");
    assert!(
        wait > Duration::ZERO && wait <= execution_service::bus::RATE_WINDOW,
        "{wait:?}"
    );
    let cancel = CancellationToken::new();
    cancel.cancel();
    assert_eq!(limiter.take(&cancel).await.unwrap(), None);
}

#[tokio::test]
async fn a_pause_stops_every_grant_until_it_ends_and_is_never_shortened() {
    let env = TestEnv::new().await;
    let pool = bus::pool(&env.var("REDIS_URL"), 2).expect("a pool");
    let limiter = RateLimiter::new(pool.clone(), format!("{}.budget", env.prefix), 10);
    let other_replica = RateLimiter::new(pool, format!("{}.budget", env.prefix), 10);
    limiter.pause(Duration::from_millis(800)).await.unwrap();
    limiter.pause(Duration::from_millis(100)).await.unwrap();
    let wait = other_replica
        .try_take()
        .await
        .unwrap()
        .expect("paused for every replica");
    assert!(
        wait > Duration::from_millis(500),
        "a shorter pause won: {wait:?}"
    );
    assert!(other_replica.paused_for().await.unwrap().is_some());
    let started = std::time::Instant::now();
    let cancel = CancellationToken::new();
    other_replica.take(&cancel).await.unwrap().expect("a grant");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(other_replica.paused_for().await.unwrap(), None);
}
