//! The retry schedule: the waits between failed attempts, with a little jitter, as pure
//! functions; and the durations with units (`500ms`, `2s`, `1m`, `10m`, `2h`, `1d`) it is
//! written in.

use std::sync::Arc;
use std::time::Duration;

/// The jitter adds at most a tenth of each wait.
const MAX_JITTER: f64 = 0.1;

/// A webhook's own schedule: at most this many retries…
pub const MAX_WEBHOOK_RETRIES: usize = 12;
/// …each of 1 s to a day…
pub const MAX_WEBHOOK_DELAY_SECS: u32 = 86_400;
/// …adding up to at most a week.
pub const MAX_WEBHOOK_SCHEDULE_SECS: u64 = 7 * 86_400;

/// The waits before each retry: the first after the first failed attempt, and so on; when
/// they run out, the next failure is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Arc<[Duration]>);

impl Default for RetrySchedule {
    /// DevTune's "up to 3 retries with exponential backoff", spaced to outlast a one-hour
    /// outage: 1 min, 10 min, 100 min.
    fn default() -> Self {
        Self::new([60, 600, 6_000].map(Duration::from_secs).to_vec())
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        Self(delays.into())
    }

    /// `retries` waits doubling from `base`.
    pub fn doubling(base: Duration, retries: u32) -> Self {
        Self::new(
            (0..retries)
                .map(|n| base.saturating_mul(1 << n.min(20)))
                .collect(),
        )
    }

    /// A comma-separated list of durations with units, e.g. `500ms,2s,1m,10m,2h`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::new(Vec::new()));
        }
        text.split(',')
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    /// A webhook's schedule as the API gives it: whole seconds, within the limits above.
    pub fn from_seconds(seconds: &[u64]) -> Result<Self, String> {
        if seconds.len() > MAX_WEBHOOK_RETRIES {
            return Err(format!("must hold at most {MAX_WEBHOOK_RETRIES} delays"));
        }
        if let Some(bad) = seconds
            .iter()
            .find(|s| !(1..=u64::from(MAX_WEBHOOK_DELAY_SECS)).contains(s))
        {
            return Err(format!(
                "each delay must be 1 to {MAX_WEBHOOK_DELAY_SECS} seconds, not {bad}"
            ));
        }
        if seconds.iter().sum::<u64>() > MAX_WEBHOOK_SCHEDULE_SECS {
            return Err("the delays must add up to at most 7 days (604800 seconds)".into());
        }
        Ok(Self::new(
            seconds.iter().copied().map(Duration::from_secs).collect(),
        ))
    }

    /// The schedule in whole seconds, as a webhook's `retrySchedule` shows it.
    pub fn to_seconds(&self) -> Vec<u64> {
        self.0.iter().map(Duration::as_secs).collect()
    }

    pub fn retries(&self) -> usize {
        self.0.len()
    }

    /// The wait after the `failures`-th failed attempt (1-based), or `None` when no retry is
    /// left. `jitter` is a uniform sample from [0, 1).
    pub fn delay_after(&self, failures: u32, jitter: f64) -> Option<Duration> {
        let index = usize::try_from(failures.checked_sub(1)?).ok()?;
        let wait = self.0.get(index)?;
        Some(wait.mul_f64(1.0 + MAX_JITTER * jitter.clamp(0.0, 1.0)))
    }
}

/// A duration with a unit: `ms`, `s`, `m`, `h` or `d`, e.g. `500ms` or `24h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 2s, 1m, 10m or 2h"))?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?} needs a unit: ms, s, m, h or d (as in 500ms, 2s, 1m, 10m, 2h)"
            ));
        }
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_outlasts_an_hour_in_three_retries() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.delay_after(1, 0.0), Some(Duration::from_secs(60)));
        assert_eq!(schedule.delay_after(2, 0.0), Some(Duration::from_secs(600)));
        assert_eq!(
            schedule.delay_after(3, 0.0),
            Some(Duration::from_secs(6_000))
        );
        assert_eq!(schedule.delay_after(4, 0.0), None);
        assert_eq!(schedule.delay_after(0, 0.5), None);
    }

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.delay_after(1, 0.5), Some(Duration::from_secs(63)));
        assert!(schedule.delay_after(1, 0.999_999).unwrap() < Duration::from_secs(66));
        assert_eq!(schedule.delay_after(1, 7.0), Some(Duration::from_secs(66)));
    }

    #[test]
    fn doubling_from_a_base_keeps_the_old_settings_working() {
        let schedule = RetrySchedule::doubling(Duration::from_secs(30), 3);
        assert_eq!(schedule.to_seconds(), [30, 60, 120]);
        assert_eq!(
            RetrySchedule::doubling(Duration::from_secs(1), 0).retries(),
            0
        );
    }

    #[test]
    fn schedules_parse_with_units() {
        let schedule = RetrySchedule::parse("500ms, 2s,1m,10m,2h").unwrap();
        assert_eq!(
            schedule.delay_after(1, 0.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            schedule.delay_after(5, 0.0),
            Some(Duration::from_secs(7_200))
        );
        assert_eq!(schedule.retries(), 5);
        assert_eq!(RetrySchedule::parse("").unwrap().retries(), 0);
        assert!(RetrySchedule::parse("10").unwrap_err().contains("unit"));
        assert!(RetrySchedule::parse("1m,soon").is_err());
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn a_webhooks_schedule_is_bounded() {
        assert_eq!(
            RetrySchedule::from_seconds(&[1, 2]).unwrap().to_seconds(),
            [1, 2]
        );
        assert_eq!(RetrySchedule::from_seconds(&[]).unwrap().retries(), 0);
        assert!(
            RetrySchedule::from_seconds(&[0])
                .unwrap_err()
                .contains("1 to 86400")
        );
        assert!(RetrySchedule::from_seconds(&[86_401]).is_err());
        assert!(
            RetrySchedule::from_seconds(&[1; 13])
                .unwrap_err()
                .contains("at most 12")
        );
        let eight_days = [86_400; 8];
        assert!(
            RetrySchedule::from_seconds(&eight_days)
                .unwrap_err()
                .contains("7 days")
        );
        assert!(RetrySchedule::from_seconds(&[86_400; 7]).is_ok());
    }
}
