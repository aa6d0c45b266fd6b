//! The delivery log as the store returns it, and the one decoding of its rows.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{DeliveryId, DeliveryStatus, EventId, WebhookId};
use crate::store::decode::{Int, Time};
use crate::store::{Entity, Reason, StoreError, StoreResult};

#[derive(Debug, Clone)]
pub struct DeliverySummary {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: EventId,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_response_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub number: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u32,
    pub response_status: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    /// The receiver asked us to slow down; the attempt used no retry.
    pub throttled: bool,
    /// The receiver's `Retry-After`, as it sent it.
    pub retry_after: Option<String>,
    /// The headers sent, signatures included; `None` when nothing was sent.
    pub request_headers: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone)]
pub struct DeliveryDetails {
    pub summary: DeliverySummary,
    /// The body exactly as sent.
    pub payload: String,
    pub attempts: Vec<Attempt>,
}

/// One page of a webhook's delivery log, newest first.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryQuery {
    pub status: Option<DeliveryStatus>,
    /// Only deliveries older than this one (the cursor).
    pub before: Option<DeliveryId>,
    pub limit: u32,
}

/// Which finished deliveries a recover call sends again, oldest first.
#[derive(Debug, Clone)]
pub struct RecoverFilter {
    /// `None`: every webhook of the project that is active, not paused and not disabled.
    pub webhooks: Option<Vec<WebhookId>>,
    /// Failed, cancelled or both.
    pub statuses: Vec<DeliveryStatus>,
    /// `None`: every event type.
    pub event_types: Option<Vec<String>>,
    /// Created at or after `since` and at or before `until`.
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Most deliveries queued by one call.
    pub limit: u32,
    /// Count only; change nothing.
    pub dry_run: bool,
}

/// What a recover call found and queued again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub matched: u64,
    pub queued: u64,
    /// More matched than one call queues: the same call again continues.
    pub truncated: bool,
}

impl Recovery {
    pub(crate) fn of(matched: u64, filter: &RecoverFilter) -> Self {
        let limit = u64::from(filter.limit);
        Self {
            matched,
            queued: if filter.dry_run {
                0
            } else {
                matched.min(limit)
            },
            truncated: matched > limit,
        }
    }

    /// The audit entry of the call, with what it found and queued.
    pub(crate) fn audited(
        &self,
        mut audit: crate::domain::AuditEntry,
    ) -> crate::domain::AuditEntry {
        if let Some(changes) = audit.changes.as_object_mut() {
            changes.insert("matched".into(), self.matched.into());
            changes.insert("queued".into(), self.queued.into());
            changes.insert("truncated".into(), self.truncated.into());
        }
        audit
    }
}

/// The webhooks a recover call sends to, from the project's `(id, active, paused, disabled)`
/// rows: the named ones, which must all be running, or every running one.
pub(crate) fn recoverable(
    named: Option<&[WebhookId]>,
    found: &[(Uuid, bool, bool, bool)],
) -> StoreResult<Vec<Uuid>> {
    if let Some(named) = named {
        check_recoverable(named, found)?;
    }
    Ok(found
        .iter()
        .filter(|(id, active, paused, disabled)| {
            *active
                && !paused
                && !disabled
                && named.is_none_or(|named| named.iter().any(|n| n.as_uuid() == *id))
        })
        .map(|(id, ..)| *id)
        .collect())
}

/// Why named webhooks cannot be recovered to, checked before anything changes.
fn check_recoverable(named: &[WebhookId], found: &[(Uuid, bool, bool, bool)]) -> StoreResult<()> {
    for id in named {
        let state = found.iter().find(|(found, ..)| *found == id.as_uuid());
        match state {
            None | Some((_, false, _, _)) => return Err(StoreError::NotFound(Entity::Webhook)),
            Some((_, true, true, _)) => return Err(StoreError::Conflict(Reason::WebhookPaused)),
            Some((_, true, false, true)) => {
                return Err(StoreError::Conflict(Reason::WebhookDisabled));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The pending deliveries nobody holds: push webhooks' (for the workers) apart from pull
/// webhooks' (for their pollers), which wait on the tenant rather than on the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    pub due: u64,
    pub scheduled: u64,
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// Webhooks a throttling receiver holds back now.
    pub throttled_webhooks: u64,
    pub pull_due: u64,
    pub pull_scheduled: u64,
}

/// One `queue_depth` group as both backends read it: pull or not, due, scheduled, oldest due.
pub(crate) type DepthRow<T> = (bool, i64, i64, Option<T>);

impl QueueDepth {
    /// The depth from its groups' rows (times already decoded) and the throttled count.
    pub(crate) fn of(rows: Vec<DepthRow<DateTime<Utc>>>, throttled: i64) -> Self {
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        let mut depth = QueueDepth {
            throttled_webhooks: count(throttled),
            ..QueueDepth::default()
        };
        for (pull, due, scheduled, oldest) in rows {
            if pull {
                (depth.pull_due, depth.pull_scheduled) = (count(due), count(scheduled));
            } else {
                (depth.due, depth.scheduled) = (count(due), count(scheduled));
                depth.oldest_due_at = oldest;
            }
        }
        depth
    }
}

/// Counts `QueueDepth`'s groups; `$1` is now. A live lease is an attempt in flight (or a
/// delivery a poller holds), not queued work; an expired one is due.
pub(crate) const DEPTH_SELECT: &str = "select pull, \
     count(*) filter (where next_attempt_at <= $1), \
     count(*) filter (where next_attempt_at > $1 and lease_token is null), \
     min(next_attempt_at) filter (where next_attempt_at <= $1) \
     from deliveries where status = 'pending' group by pull";

/// The columns `SummaryRow` reads, from `deliveries d join events e`. A leased delivery is
/// being attempted: its next_attempt_at is a lease end, not a schedule.
pub(crate) const SUMMARY_COLUMNS: &str = "d.id, d.webhook_id, d.event_id, e.event_type, d.status, \
     d.attempt_count, case when d.lease_token is null then d.next_attempt_at end \
     as next_attempt_at, d.last_response_status, d.last_error, d.created_at, d.updated_at";

/// A delivery log row as both backends read it.
#[derive(sqlx::FromRow)]
pub(crate) struct SummaryRow {
    id: Uuid,
    webhook_id: Uuid,
    event_id: Uuid,
    event_type: String,
    status: String,
    attempt_count: Int,
    next_attempt_at: Option<Time>,
    last_response_status: Option<Int>,
    last_error: Option<String>,
    created_at: Time,
    updated_at: Time,
}

/// A delivery with the body it sends, as one read of the delivery log gives it.
#[derive(sqlx::FromRow)]
pub(crate) struct DetailsRow {
    #[sqlx(flatten)]
    pub summary: SummaryRow,
    pub payload: String,
}

pub(crate) fn status_from_stored(raw: &str) -> StoreResult<DeliveryStatus> {
    DeliveryStatus::parse(raw).ok_or_else(|| StoreError::corrupt(format!("stored status {raw:?}")))
}

impl TryFrom<SummaryRow> for DeliverySummary {
    type Error = StoreError;

    fn try_from(row: SummaryRow) -> StoreResult<Self> {
        Ok(DeliverySummary {
            id: row.id.into(),
            webhook_id: row.webhook_id.into(),
            event_id: row.event_id.into(),
            event_type: row.event_type,
            status: status_from_stored(&row.status)?,
            attempt_count: row.attempt_count.to(),
            next_attempt_at: row.next_attempt_at.map(|t| t.0),
            last_response_status: row.last_response_status.map(Int::to),
            last_error: row.last_error,
            created_at: row.created_at.0,
            updated_at: row.updated_at.0,
        })
    }
}

/// The columns `AttemptRow` reads from `delivery_attempts`.
pub(crate) const ATTEMPT_COLUMNS: &str = "attempt_number, started_at, duration_ms, \
     response_status, response_body, error, throttled, retry_after, request_headers";

/// An attempt log row as both backends read it.
#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    attempt_number: Int,
    started_at: Time,
    duration_ms: Int,
    response_status: Option<Int>,
    response_body: Option<String>,
    error: Option<String>,
    throttled: bool,
    retry_after: Option<String>,
    request_headers: Option<String>,
}

impl From<AttemptRow> for Attempt {
    fn from(row: AttemptRow) -> Self {
        Attempt {
            number: row.attempt_number.to(),
            started_at: row.started_at.0,
            duration_ms: row.duration_ms.to(),
            response_status: row.response_status.map(Int::to),
            response_body: row.response_body,
            error: row.error,
            throttled: row.throttled,
            retry_after: row.retry_after,
            request_headers: row
                .request_headers
                .and_then(|text| serde_json::from_str(&text).ok()),
        }
    }
}
