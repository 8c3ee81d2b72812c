//! The circuit breaker of live sending: a refused key or signature stops
//! this replica sending orders (they wait in the stream for it, or for
//! another replica) instead of failing order after order. After a cool-down
//! the next order is tried; success closes it, another refusal re-opens it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus::IntGauge;

#[derive(Debug)]
pub struct Breaker {
    cooldown: Duration,
    tripped: Mutex<Option<Tripped>>,
    gauge: IntGauge,
}

#[derive(Debug, Clone)]
struct Tripped {
    reason: String,
    since: DateTime<Utc>,
    at: Instant,
}

/// The breaker as `/status` and `/ready` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerState {
    pub reason: String,
    pub since: DateTime<Utc>,
}

/// What the HTTP API may know of a breaker: whether it stops sending, and
/// why. It can neither trip nor close it.
#[derive(Debug, Clone)]
pub struct BreakerView(Arc<Breaker>);

impl BreakerView {
    pub fn blocks(&self) -> bool {
        self.0.blocks()
    }

    pub fn state(&self) -> Option<BreakerState> {
        self.0.state()
    }
}

impl Breaker {
    /// A read-only view of this breaker.
    pub fn view(self: &Arc<Self>) -> BreakerView {
        BreakerView(self.clone())
    }

    pub fn new(cooldown: Duration, gauge: IntGauge) -> Self {
        Breaker {
            cooldown,
            tripped: Mutex::new(None),
            gauge,
        }
    }

    /// Stops sending; `reason` says why (never a secret: MEXC's code and
    /// message).
    pub fn trip(&self, reason: String) {
        tracing::error!(reason = %reason, cooldown_secs = self.cooldown.as_secs(), "MEXC refused the credentials: live sending stopped on this replica");
        let mut tripped = self.lock();
        let since = tripped.as_ref().map_or_else(Utc::now, |t| t.since);
        *tripped = Some(Tripped {
            reason,
            since,
            at: Instant::now(),
        });
        self.gauge.set(1);
    }

    /// A signed request succeeded: sending resumes.
    pub fn close(&self) {
        let mut tripped = self.lock();
        if tripped.take().is_some() {
            tracing::warn!("MEXC accepted the credentials again: live sending resumed");
        }
        self.gauge.set(0);
    }

    /// Whether sending is stopped now (false once the cool-down passed, for
    /// one more try).
    pub fn blocks(&self) -> bool {
        self.lock()
            .as_ref()
            .is_some_and(|t| t.at.elapsed() < self.cooldown)
    }

    /// Why sending stopped, while it has not resumed.
    pub fn state(&self) -> Option<BreakerState> {
        self.lock().as_ref().map(|t| BreakerState {
            reason: t.reason.clone(),
            since: t.since,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Tripped>> {
        self.tripped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGauge {
        IntGauge::new("breaker_test", "test").unwrap()
    }

    #[test]
    fn trips_blocks_until_the_cooldown_and_closes_on_success() {
        let breaker = Breaker::new(Duration::from_secs(3600), gauge());
        assert!(!breaker.blocks());
        breaker.trip("code 700002".into());
        assert!(breaker.blocks());
        assert_eq!(breaker.state().unwrap().reason, "code 700002");
        assert_eq!(breaker.gauge.get(), 1);
        breaker.close();
        assert!(!breaker.blocks());
        assert_eq!(breaker.state(), None);
        assert_eq!(breaker.gauge.get(), 0);
    }

    #[test]
    fn after_the_cooldown_one_more_try_is_allowed_but_the_state_stays() {
        let breaker = Breaker::new(Duration::ZERO, gauge());
        breaker.trip("code 10072".into());
        assert!(!breaker.blocks());
        assert!(breaker.state().is_some());
    }
}
