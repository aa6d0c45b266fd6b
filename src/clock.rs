//! The wall clock, at the millisecond precision the API shows and both backends store.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

#[derive(Debug, Clone, Copy, Default)]
pub struct Clock;

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        now.duration_trunc(TimeDelta::milliseconds(1))
            .unwrap_or(now)
    }

    pub fn unix_secs(&self) -> u64 {
        u64::try_from(Utc::now().timestamp()).unwrap_or_default()
    }
}
