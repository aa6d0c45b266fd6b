//! Latency percentiles and rates from raw samples.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Percentiles of a latency sample, in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// `None` for an empty sample.
pub fn percentiles(mut micros: Vec<u64>) -> Option<Percentiles> {
    if micros.is_empty() {
        return None;
    }
    micros.sort_unstable();
    let at = |q: f64| {
        let rank = (q * micros.len() as f64).ceil() as usize;
        micros[rank.clamp(1, micros.len()) - 1] as f64 / 1000.0
    };
    Some(Percentiles {
        count: micros.len(),
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: at(1.0),
    })
}

pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Events per second of those whose time falls in `[from, to)`.
pub fn rate_within(times: impl Iterator<Item = Instant>, from: Instant, to: Instant) -> f64 {
    let count = times.filter(|t| (from..to).contains(t)).count();
    count as f64 / (to - from).as_secs_f64()
}
