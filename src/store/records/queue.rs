//! The durable queue's records: claims, attempt outcomes and what recording them did.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{
    AttemptFacts, AttemptResult, DeliveryId, DisablePolicy, EventId, FailureRun, ProjectId,
    WebhookId, WebhookSecret, WebhookTally,
};
use crate::store::StoreResult;
use crate::store::cipher::SecretCipher;
use crate::store::decode::{Int, Time};

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
    pub secret: WebhookSecret,
    /// The rotated-out secret while its grace period lasts; it signs beside `secret`.
    pub previous_secret: Option<WebhookSecret>,
    /// The number this attempt will carry (1 for the first).
    pub attempt_number: u32,
    pub lease_token: Uuid,
}

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
    pub attempt_count: Int,
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
            secret: cipher.open(&self.secret)?,
            previous_secret: self.previous_secret.map(|p| cipher.open(&p)).transpose()?,
            attempt_number: self.attempt_count.to::<u32>() + 1,
            lease_token: token,
        })
    }
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
    pub disable_policy: DisablePolicy,
}

impl AttemptRecord {
    /// What endpoint health takes from this attempt.
    pub fn facts(&self) -> AttemptFacts {
        AttemptFacts {
            delivery_id: self.delivery_id,
            webhook_id: self.webhook_id,
            result: self.result,
            gone: self.response_status == Some(410),
            finished_at: self.finished_at,
            policy: self.disable_policy,
        }
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

/// A webhook's failure run as both backends read it before recording a batch.
#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    id: Uuid,
    consecutive_failures: Int,
    failing_since: Option<Time>,
}

/// The failure runs by webhook, as the tally starts from them.
pub(crate) fn runs_before(rows: Vec<RunRow>) -> HashMap<WebhookId, FailureRun> {
    rows.into_iter()
        .map(|row| {
            let run = FailureRun {
                consecutive: row.consecutive_failures.0,
                since: row.failing_since.map(|t| t.0),
            };
            (WebhookId::from(row.id), run)
        })
        .collect()
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
    pub secret: WebhookSecret,
    pub previous_secret: Option<WebhookSecret>,
}

impl WebhookTarget {
    /// The target with its stored secrets opened.
    pub(crate) fn opened(
        cipher: &SecretCipher,
        url: String,
        secret: &str,
        previous: Option<&str>,
    ) -> StoreResult<Self> {
        Ok(Self {
            url,
            secret: cipher.open(secret)?,
            previous_secret: previous.map(|p| cipher.open(p)).transpose()?,
        })
    }
}

/// Text as both backends can store it: Postgres refuses NUL characters in `text`, so they become
/// U+FFFD on every backend alike.
pub(crate) fn storable(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|t| t.replace('\0', "\u{FFFD}"))
}
