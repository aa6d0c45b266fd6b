//! The delivery state machine: what an attempt's answer means, and the state that follows it.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::RetryPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
    Cancelled,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
        DeliveryStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// What the receiver made of one attempt, as far as deciding what follows goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status, when the receiver answered at all.
    pub status: Option<u16>,
    /// The request could not be completed (refused, timed out, cut short).
    pub transport_error: bool,
}

impl Answer {
    pub fn succeeded(&self) -> bool {
        !self.transport_error && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// 410 Gone is the receiver saying no later attempt will succeed either.
    pub fn gone(&self) -> bool {
        self.status == Some(410)
    }
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Failed,
}

impl AttemptResult {
    /// The outcome as metrics and logs name it.
    pub fn label(self) -> &'static str {
        match self {
            AttemptResult::Succeeded => "succeeded",
            AttemptResult::RetryAt(_) => "retrying",
            AttemptResult::Failed => "failed",
        }
    }

    /// The delivery's status and next due time after this attempt.
    pub fn next_state(self) -> (DeliveryStatus, Option<DateTime<Utc>>) {
        match self {
            AttemptResult::Succeeded => (DeliveryStatus::Succeeded, None),
            AttemptResult::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
            AttemptResult::Failed => (DeliveryStatus::Failed, None),
        }
    }
}

/// The retry decision after attempt `attempt_number` (1 for the first) finished at `now` with
/// `answer`; `jitter` is a uniform sample from [0, 1).
pub fn decide(
    answer: Answer,
    attempt_number: u32,
    policy: &RetryPolicy,
    jitter: f64,
    now: DateTime<Utc>,
) -> AttemptResult {
    if answer.succeeded() {
        return AttemptResult::Succeeded;
    }
    if answer.gone() {
        return AttemptResult::Failed;
    }
    match policy.delay_after(attempt_number, jitter) {
        Some(delay) => AttemptResult::RetryAt(after(now, delay)),
        None => AttemptResult::Failed,
    }
}

/// `now + wait`, saturating instead of overflowing.
pub fn after(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_retries: 2,
        base: Duration::from_secs(30),
    };

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn status(code: u16) -> Answer {
        Answer {
            status: Some(code),
            transport_error: false,
        }
    }

    const REFUSED: Answer = Answer {
        status: None,
        transport_error: true,
    };

    #[test]
    fn a_2xx_succeeds_whatever_the_attempt() {
        assert_eq!(
            decide(status(204), 9, &POLICY, 0.5, at(0)),
            AttemptResult::Succeeded
        );
        assert_eq!(
            AttemptResult::Succeeded.next_state(),
            (DeliveryStatus::Succeeded, None)
        );
    }

    #[test]
    fn a_failure_is_retried_on_the_schedule_with_its_jitter() {
        assert_eq!(
            decide(status(500), 1, &POLICY, 0.0, at(0)),
            AttemptResult::RetryAt(at(30))
        );
        // Attempt 2 waits twice the base, plus a quarter of it at jitter 0.5 → 60 s · 1.125.
        assert_eq!(
            decide(REFUSED, 2, &POLICY, 0.5, at(100)),
            AttemptResult::RetryAt(at(167) + TimeDelta::milliseconds(500))
        );
        assert_eq!(
            AttemptResult::RetryAt(at(30)).next_state(),
            (DeliveryStatus::Pending, Some(at(30)))
        );
    }

    #[test]
    fn the_last_retry_failing_fails_the_delivery() {
        let result = decide(status(503), 3, &POLICY, 0.0, at(0));
        assert_eq!(result, AttemptResult::Failed);
        assert_eq!(result.next_state(), (DeliveryStatus::Failed, None));
    }

    #[test]
    fn gone_fails_at_once_even_with_retries_left() {
        assert_eq!(
            decide(status(410), 1, &POLICY, 0.0, at(0)),
            AttemptResult::Failed
        );
    }

    #[test]
    fn a_2xx_after_a_transport_error_is_not_a_success() {
        let cut_short = Answer {
            status: Some(200),
            transport_error: true,
        };
        assert!(!cut_short.succeeded());
        assert_eq!(
            decide(cut_short, 1, &POLICY, 0.0, at(0)),
            AttemptResult::RetryAt(at(30))
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::parse("queued"), None);
    }
}
