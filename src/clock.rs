//! The clock every part reads time from, at the millisecond precision the API shows and both
//! backends store: the system's, or (in tests) one that stands still until moved.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// When set, the time stands here until `set` moves it.
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads `at` until it is set to another time.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(at))),
        }
    }

    /// Moves a manual clock; the system clock cannot be moved, so this does nothing to it.
    pub fn set(&self, at: DateTime<Utc>) {
        if let Some(manual) = &self.manual {
            *manual.lock().unwrap_or_else(|p| p.into_inner()) = at;
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let now = match &self.manual {
            Some(manual) => *manual.lock().unwrap_or_else(|p| p.into_inner()),
            None => Utc::now(),
        };
        now.duration_trunc(TimeDelta::milliseconds(1))
            .unwrap_or(now)
    }

    pub fn unix_secs(&self) -> u64 {
        u64::try_from(self.now().timestamp()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_set() {
        let start = DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start - TimeDelta::nanoseconds(456_789));
        let copy = clock.clone();
        copy.set(start + TimeDelta::seconds(60));
        assert_eq!(clock.unix_secs(), 1_800_000_060, "copies share one time");
    }
}
