//! A fixed one-minute window of requests per key (an API key, or a client address for failed
//! authentication), kept in this process's memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use crate::domain::ApiKeyId;

/// Where a key stands in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds at which the window resets.
    pub reset: u64,
    pub allowed: bool,
}

impl RateLimitStatus {
    pub fn retry_after_secs(&self, now_unix_secs: u64) -> u64 {
        self.reset.saturating_sub(now_unix_secs).max(1)
    }
}

pub struct RateLimiter<K = ApiKeyId> {
    limit: u32,
    windows: Mutex<HashMap<K, Window>>,
}

struct Window {
    minute: u64,
    count: u32,
}

/// Keys idle for a whole window are forgotten once the map grows past this.
const PRUNE_ABOVE: usize = 10_000;

impl<K: Hash + Eq> RateLimiter<K> {
    pub fn new(limit_per_minute: u32) -> Self {
        Self {
            limit: limit_per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` has used up this minute's budget, without counting anything.
    pub fn exhausted(&self, key: &K, now_unix_secs: u64) -> Option<RateLimitStatus> {
        let minute = now_unix_secs / 60;
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window = windows.get(key).filter(|w| w.minute == minute)?;
        (window.count >= self.limit).then_some(RateLimitStatus {
            limit: self.limit,
            remaining: 0,
            reset: (minute + 1) * 60,
            allowed: false,
        })
    }

    /// Counts one request and says whether it is within the limit.
    pub fn check(&self, key: K, now_unix_secs: u64) -> RateLimitStatus {
        let minute = now_unix_secs / 60;
        let reset = (minute + 1) * 60;
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, w| w.minute == minute);
        }
        let window = windows.entry(key).or_insert(Window { minute, count: 0 });
        if window.minute != minute {
            *window = Window { minute, count: 0 };
        }
        let allowed = window.count < self.limit;
        if allowed {
            window.count += 1;
        }
        RateLimitStatus {
            limit: self.limit,
            remaining: self.limit - window.count,
            reset,
            allowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_refuses_until_the_next_minute() {
        let limiter = RateLimiter::new(2);
        let key = ApiKeyId::generate();
        let now = 1_700_000_010;
        let first = limiter.check(key, now);
        assert!(first.allowed);
        assert_eq!(first.remaining, 1);
        assert_eq!(first.reset, 1_700_000_040);
        assert!(limiter.check(key, now).allowed);
        let refused = limiter.check(key, now + 5);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after_secs(now + 5), 25);
        assert!(limiter.check(key, 1_700_000_040).allowed);
    }

    #[test]
    fn counts_each_key_separately() {
        let limiter = RateLimiter::new(1);
        let now = 60;
        assert!(limiter.check(ApiKeyId::generate(), now).allowed);
        assert!(limiter.check(ApiKeyId::generate(), now).allowed);
    }

    #[test]
    fn exhausted_looks_without_counting() {
        let limiter: RateLimiter<&str> = RateLimiter::new(2);
        let now = 120;
        assert_eq!(limiter.exhausted(&"10.0.0.1", now), None);
        limiter.check("10.0.0.1", now);
        assert_eq!(
            limiter.exhausted(&"10.0.0.1", now),
            None,
            "looking counts nothing"
        );
        limiter.check("10.0.0.1", now);
        let status = limiter.exhausted(&"10.0.0.1", now + 10).unwrap();
        assert_eq!(status.retry_after_secs(now + 10), 50);
        assert_eq!(
            limiter.exhausted(&"10.0.0.1", now + 60),
            None,
            "a new minute"
        );
        assert_eq!(limiter.exhausted(&"10.0.0.2", now), None);
    }
}
