//! What a receiver's answer means for its delivery: the one place an exchange, sent by a
//! worker or reported by a pull webhook's poller, becomes the attempt record the queue writes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{
    Answer, Before, DeliveryId, HealthPolicy, RetryAfter, RetrySchedule, WebhookId, decide,
};
use crate::store::{AttemptRecord, ClaimedDelivery, HeldPull};

/// The service's rules for judging answers.
#[derive(Debug, Clone)]
pub struct Verdicts {
    /// The service's schedule, for webhooks without their own.
    pub retry: RetrySchedule,
    /// How long a delivery may be throttled before it fails.
    pub throttle_give_up: Duration,
    /// An endpoint's concurrency when its webhook sets none.
    pub per_endpoint: usize,
    pub health_policy: HealthPolicy,
    /// A uniform sample from [0, 1) for retry jitter.
    pub jitter: fn() -> f64,
}

/// The delivery an exchange belongs to, as its claim (or its pulled lease) describes it.
pub struct Attempted<'a> {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub lease_token: Uuid,
    pub attempt_number: u32,
    pub before: Before,
    pub retry_schedule: Option<&'a RetrySchedule>,
    pub max_concurrency: Option<u32>,
}

impl<'a> Attempted<'a> {
    pub fn claim(claim: &'a ClaimedDelivery) -> Self {
        Self {
            delivery_id: claim.id,
            webhook_id: claim.webhook_id,
            lease_token: claim.lease_token,
            attempt_number: claim.attempt_number,
            before: claim.before,
            retry_schedule: claim.retry_schedule.as_ref(),
            max_concurrency: claim.max_concurrency,
        }
    }

    pub fn pulled(held: &'a HeldPull, webhook_id: WebhookId) -> Self {
        Self {
            delivery_id: held.id,
            webhook_id,
            lease_token: held.lease_token,
            attempt_number: held.attempt_number,
            before: held.before,
            retry_schedule: held.retry_schedule.as_ref(),
            max_concurrency: held.max_concurrency,
        }
    }
}

/// One exchange with the receiver, as it went.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u32,
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    pub body_excerpt: Option<String>,
    /// Why the exchange did not complete, when it did not.
    pub error: Option<String>,
    pub timed_out: bool,
    /// The receiver's `Retry-After`, as it sent it.
    pub retry_after: Option<String>,
    /// The headers sent, as a JSON object; `None` when they are not known.
    pub request_headers: Option<String>,
}

impl Verdicts {
    /// The most attempts in flight a webhook allows, given its own setting.
    pub fn max_concurrency(&self, own: Option<u32>) -> u32 {
        own.unwrap_or(u32::try_from(self.per_endpoint).unwrap_or(u32::MAX))
    }

    /// The attempt record of `exchange`: what follows it (success, a retry, a throttling hold,
    /// or failure) as `domain::decide` rules.
    pub fn judge(&self, attempted: &Attempted<'_>, exchange: Exchange) -> AttemptRecord {
        let answer = Answer {
            status: exchange.status,
            transport_error: exchange.error.is_some(),
            timed_out: exchange.timed_out,
            retry_after: exchange.retry_after.as_deref().and_then(RetryAfter::parse),
        };
        let decision = decide(
            answer,
            attempted.before,
            attempted.retry_schedule.unwrap_or(&self.retry),
            self.throttle_give_up,
            (self.jitter)(),
            exchange.finished_at,
        );
        AttemptRecord {
            delivery_id: attempted.delivery_id,
            webhook_id: attempted.webhook_id,
            lease_token: attempted.lease_token,
            attempt_number: attempted.attempt_number,
            started_at: exchange.started_at,
            duration_ms: exchange.duration_ms,
            response_status: exchange.status,
            response_body: exchange.body_excerpt,
            error: decision.reason.or(exchange.error),
            result: decision.result,
            finished_at: exchange.finished_at,
            health_policy: self.health_policy,
            hold: decision.hold,
            retry_after: exchange.retry_after,
            request_headers: exchange.request_headers,
            pressure: answer.pressure(),
            max_concurrency: self.max_concurrency(attempted.max_concurrency),
        }
    }
}
