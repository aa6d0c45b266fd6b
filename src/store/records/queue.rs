//! The durable queue's records: claims, attempt outcomes and what recording them did.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{
    AttemptFacts, AttemptResult, Before, DeliveryId, EventId, EventType, HealthPolicy, Hold,
    Pressure, ProjectId, RetrySchedule, WebhookId, WebhookTally,
};
use crate::store::cipher::{MissingKey, SecretCipher, SigningSecrets};
use crate::store::decode::{Int, Time};
use crate::store::{StoreError, StoreResult};

/// A due delivery taken by one worker until `lease_token` is superseded or released.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: DeliveryId,
    pub project_id: ProjectId,
    pub webhook_id: WebhookId,
    pub event_id: EventId,
    pub event_type: String,
    pub payload: String,
    pub url: String,
    /// What signs the attempt, or why nothing can: then the attempt fails without being sent.
    pub signing: Result<SigningSecrets, MissingKey>,
    /// The number this attempt will carry (1 for the first).
    pub attempt_number: u32,
    pub lease_token: Uuid,
    /// Where the delivery and its webhook stand: failures so far, throttling.
    pub before: Before,
    /// The webhook's own retry schedule, when it has one.
    pub retry_schedule: Option<RetrySchedule>,
    /// The webhook's own most attempts in flight, and the limit adapted to its receiver.
    pub max_concurrency: Option<u32>,
    pub effective_concurrency: Option<u32>,
    /// Not to be sent before this: the slot its webhook's rate limit gave it.
    pub not_before: Option<DateTime<Utc>>,
    /// The W3C traceparent of the request that published the event, if it was recorded.
    pub trace_context: Option<String>,
}

/// What a claim returns of each delivery (`d`), its event (`e`) and webhook (`w`), as a
/// `ClaimRow`; `$1` is now.
pub(crate) const CLAIM_COLUMNS: &str = "d.id, d.project_id, d.webhook_id, d.event_id, \
     e.event_type, e.payload, w.url, w.secret, d.attempt_count, case when \
     w.previous_secret_until > $1 then w.previous_secret end as previous_secret, d.failures, \
     d.throttled_since, w.throttle_backoff_ms, w.retry_schedule, w.max_concurrency, \
     w.effective_concurrency, w.rate_limit, w.custom_headers, e.trace_context";

/// A claimed row as both backends read it, before its secrets are opened.
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: String,
    pub url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub custom_headers: Option<String>,
    pub trace_context: Option<String>,
    pub attempt_count: Int,
    #[sqlx(flatten)]
    pub flow: FlowColumns,
    /// The webhook's deliveries per second, when it has a limit.
    pub rate_limit: Option<Int>,
}

/// What a claim reads of its delivery's and webhook's flow control, as both backends read it.
#[derive(sqlx::FromRow, Clone)]
pub(crate) struct FlowColumns {
    pub failures: Int,
    pub throttled_since: Option<Time>,
    pub throttle_backoff_ms: Option<Int>,
    pub retry_schedule: Option<String>,
    pub max_concurrency: Option<Int>,
    pub effective_concurrency: Option<Int>,
}

impl FlowColumns {
    /// The webhook's own retry schedule, when it has one.
    pub(crate) fn retry_schedule(&self) -> StoreResult<Option<RetrySchedule>> {
        self.retry_schedule
            .as_deref()
            .map(schedule_from_json)
            .transpose()
    }

    pub(crate) fn before(&self) -> Before {
        Before {
            failures: self.failures.to(),
            throttled_since: self.throttled_since.map(|t| t.0),
            backoff: self
                .throttle_backoff_ms
                .map(|ms| Duration::from_millis(ms.to())),
        }
    }
}

/// A webhook's schedule as stored: a JSON array of seconds.
pub(crate) fn schedule_from_json(stored: &str) -> StoreResult<RetrySchedule> {
    let seconds: Vec<u64> = serde_json::from_str(stored)
        .map_err(|e| StoreError::corrupt(format!("stored retry schedule: {e}")))?;
    Ok(RetrySchedule::new(
        seconds.into_iter().map(Duration::from_secs).collect(),
    ))
}

pub(crate) fn schedule_to_json(schedule: &RetrySchedule) -> String {
    serde_json::Value::from(schedule.to_seconds()).to_string()
}

impl ClaimRow {
    pub(crate) fn into_claim(
        self,
        cipher: &SecretCipher,
        token: Uuid,
    ) -> StoreResult<ClaimedDelivery> {
        Ok(ClaimedDelivery {
            id: self.id.into(),
            project_id: self.project_id.into(),
            webhook_id: self.webhook_id.into(),
            event_id: self.event_id.into(),
            event_type: self.event_type,
            payload: self.payload,
            url: self.url,
            signing: cipher.open_signing(
                &self.secret,
                self.previous_secret.as_deref(),
                self.custom_headers.as_deref(),
            )?,
            attempt_number: self.attempt_count.to::<u32>() + 1,
            lease_token: token,
            before: self.flow.before(),
            retry_schedule: self.flow.retry_schedule()?,
            max_concurrency: self.flow.max_concurrency.map(Int::to),
            effective_concurrency: self.flow.effective_concurrency.map(Int::to),
            not_before: None,
            trace_context: self.trace_context,
        })
    }
}

/// The claimed rows of rate-limited webhooks, by webhook: its rate and its deliveries, in the
/// order they were claimed.
pub(crate) fn rate_limited(rows: &[ClaimRow]) -> BTreeMap<Uuid, (u32, Vec<Uuid>)> {
    let mut by_webhook: BTreeMap<Uuid, (u32, Vec<Uuid>)> = BTreeMap::new();
    for row in rows {
        if let Some(rate) = row.rate_limit {
            let entry = by_webhook
                .entry(row.webhook_id)
                .or_insert((rate.to(), Vec::new()));
            entry.1.push(row.id);
        }
    }
    by_webhook
}

/// The claims of `rows` under `token`, each with the send slot its rate limit gave it.
pub(crate) fn into_claims(
    rows: Vec<ClaimRow>,
    cipher: &SecretCipher,
    token: Uuid,
    slots: &HashMap<Uuid, DateTime<Utc>>,
) -> StoreResult<Vec<ClaimedDelivery>> {
    rows.into_iter()
        .map(|row| {
            let id = row.id;
            let mut claim = row.into_claim(cipher, token)?;
            claim.not_before = slots.get(&id).copied();
            Ok(claim)
        })
        .collect()
}

/// One attempt's outcome, to be written with the delivery's new state and the webhook's stats.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub lease_token: Uuid,
    pub attempt_number: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u32,
    pub response_status: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub result: AttemptResult,
    pub finished_at: DateTime<Utc>,
    /// When this attempt's failure should disable the endpoint.
    pub health_policy: HealthPolicy,
    /// Set when the receiver throttled this attempt: the hold it put on the webhook.
    pub hold: Option<Hold>,
    /// The receiver's `Retry-After`, as it sent it.
    pub retry_after: Option<String>,
    /// The headers sent, as a JSON object; `None` when nothing was sent.
    pub request_headers: Option<String>,
    pub pressure: Pressure,
    /// The webhook's most attempts in flight.
    pub max_concurrency: u32,
}

impl AttemptRecord {
    /// What endpoint health takes from this attempt.
    pub fn facts(&self) -> AttemptFacts {
        AttemptFacts {
            delivery_id: self.delivery_id,
            webhook_id: self.webhook_id,
            result: self.result,
            gone: self.response_status == Some(410),
            throttled: self.hold.is_some(),
            hold: self.hold,
            pressure: self.pressure,
            max_concurrency: self.max_concurrency,
            finished_at: self.finished_at,
            policy: self.health_policy,
        }
    }

    /// Whether this attempt moves the delivery along its retry schedule.
    pub fn counts_as_failure(&self) -> bool {
        self.hold.is_none() && self.result != AttemptResult::Succeeded
    }
}

/// What recording an attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The lease was lost meanwhile: nothing was written.
    Stale,
    Recorded,
    /// Recorded, and the webhook was disabled (its pending deliveries cancelled) for this reason.
    Disabled(String),
}

/// What recording a batch did: one outcome per attempt, in order, each webhook's flow after
/// it, and the notices it queued for alert endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordedBatch {
    pub outcomes: Vec<Recorded>,
    pub flows: Vec<FlowChange>,
    pub notices: Vec<QueuedNotice>,
}

/// A notice about a webhook, queued for delivery to the project's alert endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedNotice {
    pub webhook_id: WebhookId,
    pub event: EventType,
    pub deliveries: usize,
}

/// What a recorded batch changed in each webhook's flow, for the worker's admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowChange {
    pub webhook_id: WebhookId,
    pub concurrency: u32,
    pub throttled_until: Option<DateTime<Utc>>,
}

impl From<&WebhookTally> for FlowChange {
    fn from(tally: &WebhookTally) -> Self {
        Self {
            webhook_id: tally.webhook_id,
            concurrency: tally.concurrency,
            throttled_until: tally.throttled_until,
        }
    }
}

/// What recording each of `records` did, given which of them still held their lease.
pub(crate) fn recorded_outcomes(
    records: &[AttemptRecord],
    held: &HashSet<DeliveryId>,
    tallies: &[WebhookTally],
) -> Vec<Recorded> {
    records
        .iter()
        .map(|record| {
            if !held.contains(&record.delivery_id) {
                return Recorded::Stale;
            }
            let disabled_here = tallies.iter().find_map(|t| match &t.disable {
                Some(disable) if disable.delivery_id == record.delivery_id => {
                    Some(disable.reason.clone())
                }
                _ => None,
            });
            disabled_here.map_or(Recorded::Recorded, Recorded::Disabled)
        })
        .collect()
}

/// The current target of a webhook, read again when an attempt waited for its turn.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub signing: Result<SigningSecrets, MissingKey>,
}

impl WebhookTarget {
    /// The target with its stored secrets opened.
    pub(crate) fn opened(
        cipher: &SecretCipher,
        url: String,
        secret: &str,
        previous: Option<&str>,
        headers: Option<&str>,
    ) -> StoreResult<Self> {
        Ok(Self {
            url,
            signing: cipher.open_signing(secret, previous, headers)?,
        })
    }
}

/// Text as both backends can store it: Postgres refuses NUL characters in `text`, so they become
/// U+FFFD on every backend alike.
pub(crate) fn storable(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|t| t.replace('\0', "\u{FFFD}"))
}
