//! The delivery state machine: what an attempt's answer means (success, failure, or a
//! receiver asking us to slow down), the state that follows it, and how much a webhook may
//! have in flight afterwards.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::RetrySchedule;

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

/// A receiver's `Retry-After`: delta-seconds or an HTTP-date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Seconds(u64),
    At(DateTime<Utc>),
}

impl RetryAfter {
    /// Reads the header's value; `None` when it is neither form.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Self::Seconds(seconds));
        }
        DateTime::parse_from_rfc2822(value)
            .ok()
            .map(|at| Self::At(at.with_timezone(&Utc)))
    }

    /// How long from `now` it asks us to wait.
    fn wait_from(self, now: DateTime<Utc>) -> Duration {
        match self {
            Self::Seconds(seconds) => Duration::from_secs(seconds),
            Self::At(at) => (at - now).to_std().unwrap_or_default(),
        }
    }
}

/// What the receiver made of one attempt, as far as deciding what follows goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answer {
    /// The HTTP status, when the receiver answered at all.
    pub status: Option<u16>,
    /// The request could not be completed (refused, timed out, cut short).
    pub transport_error: bool,
    /// The request ran out of time.
    pub timed_out: bool,
    pub retry_after: Option<RetryAfter>,
}

impl Answer {
    pub fn succeeded(&self) -> bool {
        !self.transport_error && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// 410 Gone is the receiver saying no later attempt will succeed either.
    pub fn gone(&self) -> bool {
        self.status == Some(410)
    }

    /// 429, or 503 with a `Retry-After`: the receiver asks us to slow down; that is not a
    /// failure.
    pub fn throttled(&self) -> bool {
        match self.status {
            Some(429) => true,
            Some(503) => self.retry_after.is_some(),
            _ => false,
        }
    }

    /// What the answer says about the receiver's load, for the webhook's concurrency.
    pub fn pressure(&self) -> Pressure {
        if self.succeeded() {
            Pressure::Eased
        } else if self.throttled() || self.timed_out || matches!(self.status, Some(502 | 504)) {
            Pressure::Overloaded
        } else {
            Pressure::Neutral
        }
    }
}

/// How an answer moves a webhook's effective concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    /// A success: one more attempt in flight, up to the maximum.
    Eased,
    /// Throttled, a gateway error or a timeout: half as many, never below one.
    Overloaded,
    Neutral,
}

/// A webhook's effective in-flight limit after an answer.
pub fn adapt_concurrency(current: u32, max: u32, pressure: Pressure) -> u32 {
    let current = current.clamp(1, max.max(1));
    match pressure {
        Pressure::Eased => (current + 1).min(max.max(1)),
        Pressure::Overloaded => (current / 2).max(1),
        Pressure::Neutral => current,
    }
}

/// Shortest and longest hold a throttling receiver gets.
const MIN_HOLD: Duration = Duration::from_secs(1);
const MAX_HOLD: Duration = Duration::from_secs(3_600);
/// A 429 without `Retry-After` backs off from 1 s, doubling up to this while it goes on.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Succeeded,
    RetryAt(DateTime<Utc>),
    /// The receiver asked us to slow down: due again at this time, no retry used.
    Throttled(DateTime<Utc>),
    Failed,
}

impl AttemptResult {
    /// The outcome as metrics and logs name it.
    pub fn label(self) -> &'static str {
        match self {
            AttemptResult::Succeeded => "succeeded",
            AttemptResult::RetryAt(_) => "retrying",
            AttemptResult::Throttled(_) => "throttled",
            AttemptResult::Failed => "failed",
        }
    }

    /// The delivery's status and next due time after this attempt.
    pub fn next_state(self) -> (DeliveryStatus, Option<DateTime<Utc>>) {
        match self {
            AttemptResult::Succeeded => (DeliveryStatus::Succeeded, None),
            AttemptResult::RetryAt(at) | AttemptResult::Throttled(at) => {
                (DeliveryStatus::Pending, Some(at))
            }
            AttemptResult::Failed => (DeliveryStatus::Failed, None),
        }
    }
}

/// Where a delivery and its webhook stood before an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Before {
    /// Failed attempts so far: the position in the retry schedule.
    pub failures: u32,
    /// When this delivery was first throttled, if it has been.
    pub throttled_since: Option<DateTime<Utc>>,
    /// The webhook's current backoff for throttling without `Retry-After`.
    pub backoff: Option<Duration>,
}

/// A hold on every attempt to the webhook, from a throttling answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub until: DateTime<Utc>,
    /// The backoff this hold used, when the receiver named no time; doubles next time.
    pub backoff: Option<Duration>,
}

/// The decision after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub result: AttemptResult,
    /// Set when the receiver throttled us.
    pub hold: Option<Hold>,
    /// Why the delivery failed when it was not the receiver's answer that said so.
    pub reason: Option<String>,
}

/// The retry decision after an attempt that finished at `now` with `answer`. A throttled
/// delivery is given up once it has been throttled for `give_up`. `jitter` is a uniform
/// sample from [0, 1).
pub fn decide(
    answer: Answer,
    before: Before,
    schedule: &RetrySchedule,
    give_up: Duration,
    jitter: f64,
    now: DateTime<Utc>,
) -> Decision {
    let plain = |result| Decision {
        result,
        hold: None,
        reason: None,
    };
    if answer.succeeded() {
        return plain(AttemptResult::Succeeded);
    }
    if answer.throttled() {
        return throttled(answer, before, give_up, now);
    }
    if answer.gone() {
        return plain(AttemptResult::Failed);
    }
    match schedule.delay_after(before.failures + 1, jitter) {
        Some(delay) => plain(AttemptResult::RetryAt(after(now, delay))),
        None => plain(AttemptResult::Failed),
    }
}

fn throttled(answer: Answer, before: Before, give_up: Duration, now: DateTime<Utc>) -> Decision {
    let (wait, backoff) = match answer.retry_after {
        Some(retry_after) => (retry_after.wait_from(now), None),
        None => {
            let backoff = before
                .backoff
                .map_or(MIN_HOLD, |b| (b * 2).min(MAX_BACKOFF));
            (backoff, Some(backoff))
        }
    };
    let hold = Hold {
        until: after(now, wait.clamp(MIN_HOLD, MAX_HOLD)),
        backoff,
    };
    let since = before.throttled_since.unwrap_or(now);
    if (now - since).to_std().unwrap_or_default() >= give_up {
        return Decision {
            result: AttemptResult::Failed,
            hold: Some(hold),
            reason: Some(format!(
                "gave up: the receiver kept throttling (HTTP {}) for more than {}",
                answer.status.unwrap_or_default(),
                humane(give_up)
            )),
        };
    }
    Decision {
        result: AttemptResult::Throttled(hold.until),
        hold: Some(hold),
        reason: None,
    }
}

/// A duration as a person writes it: `24h`, `90s`, `1500ms`.
fn humane(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// `now + wait`, saturating instead of overflowing.
pub fn after(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn schedule() -> RetrySchedule {
        RetrySchedule::doubling(Duration::from_secs(30), 2)
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn status(code: u16) -> Answer {
        Answer {
            status: Some(code),
            ..Answer::default()
        }
    }

    fn failures(n: u32) -> Before {
        Before {
            failures: n,
            ..Before::default()
        }
    }

    const REFUSED: Answer = Answer {
        status: None,
        transport_error: true,
        timed_out: false,
        retry_after: None,
    };

    #[test]
    fn a_2xx_succeeds_whatever_came_before() {
        let decision = decide(status(204), failures(9), &schedule(), DAY, 0.5, at(0));
        assert_eq!(decision.result, AttemptResult::Succeeded);
        assert_eq!(decision.hold, None);
        assert_eq!(
            AttemptResult::Succeeded.next_state(),
            (DeliveryStatus::Succeeded, None)
        );
    }

    #[test]
    fn a_failure_is_retried_on_the_schedule_with_its_jitter() {
        let first = decide(status(500), failures(0), &schedule(), DAY, 0.0, at(0));
        assert_eq!(first.result, AttemptResult::RetryAt(at(30)));
        // The second failure waits twice the base, plus a tenth of it at jitter 0.5.
        let second = decide(REFUSED, failures(1), &schedule(), DAY, 0.5, at(100));
        assert_eq!(second.result, AttemptResult::RetryAt(at(163)));
        assert_eq!(
            AttemptResult::RetryAt(at(30)).next_state(),
            (DeliveryStatus::Pending, Some(at(30)))
        );
    }

    #[test]
    fn the_last_retry_failing_fails_the_delivery() {
        let decision = decide(status(503), failures(2), &schedule(), DAY, 0.0, at(0));
        assert_eq!(decision.result, AttemptResult::Failed);
        assert_eq!(decision.result.next_state(), (DeliveryStatus::Failed, None));
    }

    #[test]
    fn gone_fails_at_once_even_with_retries_left() {
        let decision = decide(status(410), failures(0), &schedule(), DAY, 0.0, at(0));
        assert_eq!(decision.result, AttemptResult::Failed);
    }

    #[test]
    fn a_2xx_after_a_transport_error_is_not_a_success() {
        let cut_short = Answer {
            status: Some(200),
            transport_error: true,
            ..Answer::default()
        };
        assert!(!cut_short.succeeded());
        let decision = decide(cut_short, failures(0), &schedule(), DAY, 0.0, at(0));
        assert_eq!(decision.result, AttemptResult::RetryAt(at(30)));
    }

    #[test]
    fn a_429_with_retry_after_holds_until_then_and_uses_no_retry() {
        let answer = Answer {
            retry_after: Some(RetryAfter::Seconds(7)),
            ..status(429)
        };
        // Even with every retry used, a throttled answer is no failure.
        let decision = decide(answer, failures(2), &schedule(), DAY, 0.0, at(0));
        assert_eq!(decision.result, AttemptResult::Throttled(at(7)));
        assert_eq!(
            decision.hold,
            Some(Hold {
                until: at(7),
                backoff: None
            })
        );
        assert_eq!(decision.result.label(), "throttled");
        assert_eq!(
            decision.result.next_state(),
            (DeliveryStatus::Pending, Some(at(7)))
        );
    }

    #[test]
    fn a_503_throttles_only_with_retry_after_and_holds_are_clamped() {
        assert!(!status(503).throttled());
        let until_date = Answer {
            retry_after: RetryAfter::parse("Sat, 16 Jan 2027 08:00:00 GMT"),
            ..status(503)
        };
        assert!(until_date.throttled());
        let far = decide(until_date, Before::default(), &schedule(), DAY, 0.0, at(0));
        assert_eq!(far.hold.unwrap().until, at(3_600), "at most an hour");
        let now = Answer {
            retry_after: Some(RetryAfter::Seconds(0)),
            ..status(429)
        };
        let soon = decide(now, Before::default(), &schedule(), DAY, 0.0, at(0));
        assert_eq!(soon.hold.unwrap().until, at(1), "at least a second");
    }

    #[test]
    fn a_429_without_retry_after_backs_off_doubling_up_to_a_minute() {
        let mut before = Before::default();
        let mut holds = Vec::new();
        for _ in 0..8 {
            let decision = decide(status(429), before, &schedule(), DAY, 0.0, at(0));
            let hold = decision.hold.unwrap();
            holds.push((hold.until - at(0)).num_seconds());
            before.backoff = hold.backoff;
        }
        assert_eq!(holds, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn throttling_gives_up_after_the_limit_with_a_reason() {
        let before = Before {
            throttled_since: Some(at(0)),
            ..Before::default()
        };
        let limit = Duration::from_secs(10);
        let still = decide(status(429), before, &schedule(), limit, 0.0, at(9));
        assert!(matches!(still.result, AttemptResult::Throttled(_)));
        let given_up = decide(status(429), before, &schedule(), limit, 0.0, at(10));
        assert_eq!(given_up.result, AttemptResult::Failed);
        let reason = given_up.reason.unwrap();
        assert!(
            reason.contains("throttling") && reason.contains("10s"),
            "{reason}"
        );
    }

    #[test]
    fn retry_after_reads_both_forms() {
        assert_eq!(RetryAfter::parse(" 120 "), Some(RetryAfter::Seconds(120)));
        assert_eq!(
            RetryAfter::parse("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(RetryAfter::At(
                DateTime::from_timestamp(1_445_412_480, 0).unwrap()
            ))
        );
        assert_eq!(RetryAfter::parse("soon"), None);
    }

    #[test]
    fn concurrency_halves_under_pressure_and_climbs_back_one_at_a_time() {
        assert_eq!(status(429).pressure(), Pressure::Overloaded);
        assert_eq!(status(502).pressure(), Pressure::Overloaded);
        assert_eq!(status(500).pressure(), Pressure::Neutral);
        let timeout = Answer {
            transport_error: true,
            timed_out: true,
            ..Answer::default()
        };
        assert_eq!(timeout.pressure(), Pressure::Overloaded);
        assert_eq!(status(200).pressure(), Pressure::Eased);
        assert_eq!(adapt_concurrency(16, 16, Pressure::Overloaded), 8);
        assert_eq!(adapt_concurrency(1, 16, Pressure::Overloaded), 1);
        assert_eq!(adapt_concurrency(8, 16, Pressure::Eased), 9);
        assert_eq!(adapt_concurrency(16, 16, Pressure::Eased), 16);
        assert_eq!(adapt_concurrency(5, 16, Pressure::Neutral), 5);
        assert_eq!(
            adapt_concurrency(40, 16, Pressure::Neutral),
            16,
            "never above the max"
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
