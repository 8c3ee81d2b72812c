//! The exchange's clock as seen from here: the offset between MEXC's
//! server time and the local clock, learned from `GET /api/v3/time`.
//!
//! MEXC processes a signed request only when
//! `timestamp < serverTime + 1000` and `serverTime - timestamp <= recvWindow`,
//! so a local clock more than a second ahead, or more than `recvWindow`
//! behind, makes every signed request fail with `700003`. The offset is
//! learned at start, again once it is a minute old, and again after a
//! `700003`; the measurement takes the midpoint of the round trip.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// How long an offset is trusted before it is measured again.
pub const CLOCK_MAX_AGE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Clock {
    /// Server time minus local time, in milliseconds.
    offset_ms: AtomicI64,
    /// When the offset was last measured (never: `None`).
    synced_at: Mutex<Option<Instant>>,
    /// Held while measuring, so that concurrent callers measure once.
    pub(super) sync_lock: tokio::sync::Mutex<()>,
    max_age: Duration,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(CLOCK_MAX_AGE)
    }
}

impl Clock {
    pub fn new(max_age: Duration) -> Self {
        Clock {
            offset_ms: AtomicI64::new(0),
            synced_at: Mutex::new(None),
            sync_lock: tokio::sync::Mutex::new(()),
            max_age,
        }
    }

    /// The exchange's time now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        local_ms() + self.offset_ms()
    }

    /// Server time minus local time, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// When the offset was last measured.
    pub fn synced_at(&self) -> Option<Instant> {
        *self
            .synced_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the offset was never measured or is older than its max age.
    pub fn is_stale(&self) -> bool {
        self.synced_at()
            .is_none_or(|at| at.elapsed() >= self.max_age)
    }

    /// Whether the offset was measured after `instant` (a newer measurement
    /// makes another one after a failure at `instant` pointless).
    pub fn synced_since(&self, instant: Instant) -> bool {
        self.synced_at().is_some_and(|at| at > instant)
    }

    /// Records a measurement: the server said `server_ms` for a request sent
    /// at local `sent_ms` and answered at local `received_ms`. Returns the
    /// new offset.
    pub fn record(&self, server_ms: i64, sent_ms: i64, received_ms: i64) -> i64 {
        let offset = offset_from(server_ms, sent_ms, received_ms);
        self.offset_ms.store(offset, Ordering::Relaxed);
        *self
            .synced_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
        offset
    }
}

/// Server time minus the local time at the midpoint of the round trip.
pub fn offset_from(server_ms: i64, sent_ms: i64, received_ms: i64) -> i64 {
    let midpoint = sent_ms + (received_ms - sent_ms) / 2;
    server_ms - midpoint
}

/// The local wall clock in milliseconds since the epoch.
pub fn local_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_taken_at_the_midpoint_of_the_round_trip() {
        assert_eq!(offset_from(1_000_100, 1_000_000, 1_000_040), 80);
        assert_eq!(offset_from(999_000, 1_000_000, 1_000_000), -1_000);
        assert_eq!(offset_from(1_070_000, 1_000_000, 1_000_200), 69_900);
    }

    #[test]
    fn a_clock_is_stale_until_synced_and_again_after_its_max_age() {
        let clock = Clock::new(Duration::from_millis(30));
        assert!(clock.is_stale());
        let before = Instant::now();
        let server = local_ms() + 2_000;
        clock.record(server, local_ms(), local_ms());
        assert!(!clock.is_stale());
        assert!(clock.synced_since(before));
        assert!((clock.now_ms() - (local_ms() + 2_000)).abs() < 1_000);
        std::thread::sleep(Duration::from_millis(40));
        assert!(clock.is_stale());
        assert!(!clock.synced_since(Instant::now()));
    }
}
