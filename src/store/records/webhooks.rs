//! Webhook subscriptions and the audit log as the store takes and returns them, and the one
//! decoding of their rows.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::queue::schedule_from_json;
use crate::domain::{
    CustomHeaders, DeliveryMode, Destination, EndpointUrl, EventType, EventTypes, Filters,
    Metadata, ProjectId, RetrySchedule, WebhookId, WebhookKind, WebhookSecret,
};
use crate::store::cipher::SecretCipher;
use crate::store::decode::{Int, TextList, Time};
use crate::store::{StoreError, StoreResult};

pub struct NewWebhook {
    pub id: WebhookId,
    pub kind: WebhookKind,
    pub destination: Destination,
    pub events: EventTypes,
    pub filters: Filters,
    pub secret: WebhookSecret,
    pub created_at: DateTime<Utc>,
    pub limits: WebhookLimits,
    pub labels: WebhookLabels,
}

/// What the tenant writes about a webhook and adds to its requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookLabels {
    pub description: Option<String>,
    pub metadata: Metadata,
    pub headers: CustomHeaders,
}

/// What a tenant sets about how a webhook is delivered to; `None` is the service's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookLimits {
    pub retry_schedule: Option<RetrySchedule>,
    /// Deliveries per second, across every instance.
    pub rate_limit: Option<u32>,
    /// Attempts in flight.
    pub max_concurrency: Option<u32>,
}

/// A partial update; `None` leaves the field as it is, `Some(None)` resets it to the default.
pub struct WebhookChanges {
    pub url: Option<EndpointUrl>,
    pub events: Option<EventTypes>,
    pub filters: Option<Filters>,
    pub retry_schedule: Option<Option<RetrySchedule>>,
    pub rate_limit: Option<Option<u32>>,
    pub max_concurrency: Option<Option<u32>>,
    /// `Some(true)` pauses the webhook, `Some(false)` resumes it.
    pub paused: Option<bool>,
    /// `Some(None)` removes the description.
    pub description: Option<Option<String>>,
    pub metadata: Option<Metadata>,
    pub headers: Option<CustomHeaders>,
    pub updated_at: DateTime<Utc>,
}

/// A new signing secret, and until when the one it replaces still signs beside it.
pub struct SecretRotation {
    pub secret: WebhookSecret,
    /// `None` retires the old secret at once, as DevTune does.
    pub previous_valid_until: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// Delivery attempts to a webhook, kept exact by incrementing in the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookStats {
    pub total_deliveries: i64,
    pub successful_deliveries: i64,
    pub failed_deliveries: i64,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i64,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: WebhookId,
    pub kind: WebhookKind,
    pub project_id: ProjectId,
    pub mode: DeliveryMode,
    /// The URL deliveries are sent to; `None` for a pull webhook.
    pub url: Option<String>,
    pub events: Vec<EventType>,
    pub filters: Filters,
    pub secret: WebhookSecret,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub stats: WebhookStats,
    /// Set when endpoint health disabled the webhook; a PATCH clears it.
    pub disabled: Option<Disabled>,
    pub last_modified_by: Option<String>,
    pub last_modified_via: Option<String>,
    pub limits: WebhookLimits,
    /// No attempt starts before this while the receiver throttles.
    pub throttled_until: Option<DateTime<Utc>>,
    /// The in-flight limit as adapted to the receiver; `None` is the maximum.
    pub effective_concurrency: Option<u32>,
    /// Since when the tenant has paused it; no attempt starts meanwhile.
    pub paused_at: Option<DateTime<Utc>>,
    pub labels: WebhookLabels,
}

/// When and why endpoint health disabled a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A webhook row as both backends read it, before its stored strings are checked.
#[derive(sqlx::FromRow)]
pub(crate) struct WebhookRow {
    id: Uuid,
    kind: String,
    project_id: Uuid,
    mode: String,
    url: String,
    events: TextList,
    filters: String,
    secret: String,
    is_active: bool,
    created_at: Time,
    updated_at: Time,
    deleted_at: Option<Time>,
    total_deliveries: Int,
    successful_deliveries: Int,
    failed_deliveries: Int,
    last_success_at: Option<Time>,
    last_failure_at: Option<Time>,
    consecutive_failures: Int,
    disabled_at: Option<Time>,
    disabled_reason: Option<String>,
    last_modified_by: Option<String>,
    last_modified_via: Option<String>,
    retry_schedule: Option<String>,
    rate_limit: Option<Int>,
    max_concurrency: Option<Int>,
    throttled_until: Option<Time>,
    effective_concurrency: Option<Int>,
    paused_at: Option<Time>,
    description: Option<String>,
    metadata: String,
    custom_headers: Option<String>,
}

impl WebhookRow {
    pub(crate) fn into_webhook(self, cipher: &SecretCipher) -> StoreResult<Webhook> {
        let row = self;
        let events = row
            .events
            .0
            .iter()
            .map(|e| {
                EventType::parse_stored(e)
                    .ok_or_else(|| StoreError::corrupt(format!("stored event type {e:?}")))
            })
            .collect::<Result<_, _>>()?;
        let mode = DeliveryMode::parse(&row.mode)
            .ok_or_else(|| StoreError::corrupt(format!("stored webhook mode {:?}", row.mode)))?;
        Ok(Webhook {
            id: row.id.into(),
            kind: WebhookKind::parse(&row.kind).ok_or_else(|| {
                StoreError::corrupt(format!("stored webhook kind {:?}", row.kind))
            })?,
            project_id: row.project_id.into(),
            mode,
            url: (mode == DeliveryMode::Push).then_some(row.url),
            events,
            filters: filters_from_json(&row.filters)?,
            secret: cipher.open(&row.secret)?,
            is_active: row.is_active,
            created_at: row.created_at.0,
            updated_at: row.updated_at.0,
            deleted_at: row.deleted_at.map(|t| t.0),
            stats: WebhookStats {
                total_deliveries: row.total_deliveries.0,
                successful_deliveries: row.successful_deliveries.0,
                failed_deliveries: row.failed_deliveries.0,
                last_success_at: row.last_success_at.map(|t| t.0),
                last_failure_at: row.last_failure_at.map(|t| t.0),
                consecutive_failures: row.consecutive_failures.0,
            },
            disabled: row.disabled_at.map(|at| Disabled {
                at: at.0,
                reason: row.disabled_reason.unwrap_or_default(),
            }),
            last_modified_by: row.last_modified_by,
            last_modified_via: row.last_modified_via,
            limits: WebhookLimits {
                retry_schedule: row
                    .retry_schedule
                    .as_deref()
                    .map(schedule_from_json)
                    .transpose()?,
                rate_limit: row.rate_limit.map(Int::to),
                max_concurrency: row.max_concurrency.map(Int::to),
            },
            throttled_until: row.throttled_until.map(|t| t.0),
            effective_concurrency: row.effective_concurrency.map(Int::to),
            paused_at: row.paused_at.map(|t| t.0),
            labels: WebhookLabels {
                description: row.description,
                metadata: Metadata::from_json(&row.metadata).map_err(StoreError::corrupt)?,
                headers: row
                    .custom_headers
                    .as_deref()
                    .map(|h| cipher.open_headers(h))
                    .transpose()?
                    .unwrap_or_default(),
            },
        })
    }
}

/// Custom headers as stored: sealed JSON, or nothing when there are none.
pub(crate) fn stored_headers(cipher: &SecretCipher, headers: &CustomHeaders) -> Option<String> {
    (!headers.is_empty()).then(|| cipher.seal_text(&headers.to_json()))
}

/// Filters are stored as a JSON object of `key: "value1,value2"`, as the API writes them.
/// The condition a list of a project's webhooks adds: none with deleted ones, else
/// `is_active` written out, so the planner can use the index of active webhooks (a
/// parameter standing for it could not promise that).
pub(crate) fn listed_webhooks(include_inactive: bool) -> &'static str {
    if include_inactive {
        ""
    } else {
        " and is_active"
    }
}

pub(crate) fn filters_to_json(filters: &Filters) -> String {
    let map: serde_json::Map<String, serde_json::Value> = filters
        .to_pairs()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

pub(crate) fn filters_from_json(stored: &str) -> StoreResult<Filters> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(stored)
        .map_err(|e| StoreError::corrupt(format!("stored filters: {e}")))?;
    let pairs: Vec<(&str, &str)> = map
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
        .collect();
    Filters::parse(pairs).map_err(|e| StoreError::corrupt(format!("stored filters: {e}")))
}

/// A recorded change, as `GET …/audit-log` lists it.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: uuid::Uuid,
    pub at: DateTime<Utc>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub channel: String,
    pub action: String,
    pub target_id: String,
    pub changes: serde_json::Value,
}

/// An audit row as both backends read it; Postgres reads `changes` (jsonb) as text.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: Uuid,
    at: Time,
    actor_type: String,
    actor_id: Option<String>,
    channel: String,
    action: String,
    target_id: String,
    changes: String,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> StoreResult<Self> {
        Ok(AuditRecord {
            id: row.id,
            at: row.at.0,
            actor_type: row.actor_type,
            actor_id: row.actor_id,
            channel: row.channel,
            action: row.action,
            target_id: row.target_id,
            changes: serde_json::from_str(&row.changes)
                .map_err(|e| StoreError::corrupt(format!("stored audit changes: {e}")))?,
        })
    }
}
