//! The one retry policy: exponential backoff with jitter (`backon`), from a
//! first delay up to a cap, for as long as it takes, giving way to
//! cancellation. Start-up, the shim and the worker all wait through it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// Successive delays between attempts; [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    steps: ExponentialBackoff,
    max: Duration,
}

impl Default for Backoff {
    /// 100 ms, doubling up to 5 s: an outage of Redis or Postgres.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times();
        Backoff {
            steps: builder.build(),
            builder,
            max,
        }
    }

    /// Starts again from the first delay.
    pub fn reset(&mut self) {
        self.steps = self.builder.build();
    }

    /// The next delay (the policy never runs out).
    pub fn next_delay(&mut self) -> Duration {
        self.steps.next().unwrap_or(self.max)
    }

    /// Sleeps one step; false when cancelled meanwhile.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_start_over_after_a_reset() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let mut backoff = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
        // Jitter adds up to one more delay on top of each step.
        assert!(delays[0] >= min && delays[0] <= 2 * min, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= 2 * max), "{delays:?}");
        assert!(delays[19] >= max, "{delays:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= 2 * min);
    }

    #[tokio::test]
    async fn a_cancelled_wait_returns_false_at_once() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(!backoff.wait(&cancel).await);
    }
}
