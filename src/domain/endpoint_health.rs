//! When a failing endpoint is disabled: it answered 410 Gone, or it has failed every attempt
//! for long enough and often enough that more attempts only add noise.

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisablePolicy {
    /// How long every attempt must have failed.
    pub after: TimeDelta,
    /// How many failures in a row that run must hold at least.
    pub min_failures: i64,
}

impl DisablePolicy {
    /// Why the endpoint should be disabled after this attempt, or `None` to keep it.
    pub fn reason(
        &self,
        gone: bool,
        consecutive_failures: i64,
        failing_since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<String> {
        if gone {
            return Some("the endpoint answered 410 Gone".into());
        }
        let since = failing_since?;
        let failing_for = now - since;
        (consecutive_failures >= self.min_failures && failing_for >= self.after).then(|| {
            format!(
                "every attempt failed for {} hours ({consecutive_failures} failures in a row)",
                failing_for.num_hours()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: DisablePolicy = DisablePolicy {
        after: TimeDelta::hours(72),
        min_failures: 20,
    };

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + hours * 3600, 0).unwrap()
    }

    #[test]
    fn gone_disables_at_once() {
        let reason = POLICY.reason(true, 1, Some(at(0)), at(0)).unwrap();
        assert!(reason.contains("410"));
    }

    #[test]
    fn needs_both_the_duration_and_the_count() {
        assert_eq!(POLICY.reason(false, 19, Some(at(0)), at(100)), None);
        assert_eq!(POLICY.reason(false, 500, Some(at(0)), at(71)), None);
        assert_eq!(POLICY.reason(false, 500, None, at(100)), None);
        let reason = POLICY.reason(false, 20, Some(at(0)), at(72)).unwrap();
        assert_eq!(
            reason,
            "every attempt failed for 72 hours (20 failures in a row)"
        );
    }
}
