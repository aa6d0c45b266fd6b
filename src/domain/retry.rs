//! The retry schedule: exponential backoff with a little jitter, as a pure function.

use std::time::Duration;

/// How many retries follow a failed first attempt, and how far apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
}

/// The jitter adds at most a quarter, so each gap stays longer than the one before it.
const MAX_JITTER: f64 = 0.25;

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based), or `None` when no retry is left.
    /// `jitter` is a uniform sample from [0, 1).
    pub fn delay_after(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        if attempt == 0 || attempt > self.max_retries {
            return None;
        }
        let exponent = (attempt - 1).min(20);
        let backoff = self.base.saturating_mul(1 << exponent);
        Some(backoff.mul_f64(1.0 + MAX_JITTER * jitter.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_retries: 3,
        base: Duration::from_secs(30),
    };

    #[test]
    fn doubles_from_the_base_without_jitter() {
        assert_eq!(POLICY.delay_after(1, 0.0), Some(Duration::from_secs(30)));
        assert_eq!(POLICY.delay_after(2, 0.0), Some(Duration::from_secs(60)));
        assert_eq!(POLICY.delay_after(3, 0.0), Some(Duration::from_secs(120)));
    }

    #[test]
    fn stops_after_the_last_retry() {
        assert_eq!(POLICY.delay_after(4, 0.5), None);
        assert_eq!(POLICY.delay_after(0, 0.5), None);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter_so_gaps_keep_growing() {
        assert_eq!(
            POLICY.delay_after(1, 0.5),
            Some(Duration::from_millis(33_750))
        );
        let longest_first = POLICY.delay_after(1, 0.999_999).unwrap();
        let shortest_second = POLICY.delay_after(2, 0.0).unwrap();
        assert!(longest_first < shortest_second);
    }
}
