//! Published events on their way into the queue: what the store takes, what it answers, and
//! the delivery rows one accepted event becomes.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::queue::{ClaimRow, ClaimedDelivery, FlowColumns};
use crate::domain::{
    AuditEntry, DeliveryId, EventId, ProjectId, Published, Subscriber, WebhookId, WebhookKind,
    event_fingerprint, plan_fanout,
};
use crate::store::cipher::SecretCipher;
use crate::store::decode::Int;
use crate::store::{StoreResult, records::filters_from_json};

/// Who receives an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTarget {
    /// Every active webhook of the project subscribed to the type whose filters match.
    Subscribers,
    /// One active webhook (or alert endpoint), whatever its subscriptions (test events).
    Webhook(WebhookId, WebhookKind),
}

pub struct NewEvent {
    pub id: EventId,
    pub project_id: ProjectId,
    pub event_type: String,
    /// The exact body every attempt sends and signs.
    pub payload: String,
    /// The event's `data`, for matching webhook filters.
    pub data: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The publishing request's W3C traceparent, when traces are exported.
    pub trace_context: Option<String>,
    pub target: EventTarget,
    /// Recorded for events a person sends (test events); published events are not changes.
    pub audit: Option<AuditEntry>,
}

impl NewEvent {
    /// Published to subscribers without an idempotency key or an audit entry: such events can
    /// share a transaction with others.
    pub fn batchable(&self) -> bool {
        self.idempotency_key.is_none()
            && self.audit.is_none()
            && matches!(self.target, EventTarget::Subscribers)
    }

    /// What the event's idempotency key stands for.
    pub(crate) fn fingerprint(&self) -> String {
        event_fingerprint(&self.event_type, &self.data)
    }

    pub(crate) fn published(&self) -> Published<'_> {
        Published {
            project: self.project_id,
            event_type: &self.event_type,
            data: &self.data,
        }
    }
}

/// A claim on deliveries: who holds them (the token) and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub token: Uuid,
    pub until: DateTime<Utc>,
}

/// An event to accept, and the lease its deliveries are written under when the accepting
/// instance will send them itself.
pub struct Accepting {
    pub event: NewEvent,
    pub lease: Option<Lease>,
}

/// The answer for an accepted event.
#[derive(Debug, Clone)]
pub struct AcceptedEvent {
    pub id: EventId,
    pub event_type: String,
    pub delivery_ids: Vec<DeliveryId>,
    /// True when an earlier event with the same idempotency key answered instead.
    pub replayed: bool,
}

/// An accepted event, and its new deliveries as claims when it was accepted under a lease.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub event: AcceptedEvent,
    pub claims: Vec<ClaimedDelivery>,
    /// The pull webhook of each new delivery that waits for a poller rather than a worker.
    pub pulled: Vec<WebhookId>,
}

impl Accepted {
    /// An earlier event that answers for a repeated idempotency key.
    pub(crate) fn replayed(id: Uuid, event_type: String, delivery_ids: Vec<Uuid>) -> Self {
        Self {
            event: AcceptedEvent {
                id: id.into(),
                event_type,
                delivery_ids: delivery_ids.into_iter().map(DeliveryId::from).collect(),
                replayed: true,
            },
            claims: Vec::new(),
            pulled: Vec::new(),
        }
    }

    /// The event with only these of its deliveries, the others having lost their webhook
    /// before they could be written.
    pub(crate) fn keeping(mut self, written: &HashSet<DeliveryId>) -> Self {
        self.event.delivery_ids.retain(|id| written.contains(id));
        self.claims.retain(|claim| written.contains(&claim.id));
        self
    }
}

/// A webhook an event may be queued for, with its stored filters, as both backends read it.
#[derive(sqlx::FromRow, Clone)]
pub(crate) struct TargetCandidate {
    id: Uuid,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    custom_headers: Option<String>,
    filters: String,
    /// False when the webhook's deliveries must wait in the queue for a claim: a rate limit
    /// hands out send slots there, and a throttling receiver's hold is kept there.
    direct: bool,
    /// The tenant paused the webhook: its deliveries wait in the queue until it resumes.
    paused: bool,
    /// A pull webhook: its deliveries wait for a poller, never for a worker.
    pull: bool,
    throttle_backoff_ms: Option<Int>,
    retry_schedule: Option<String>,
    max_concurrency: Option<Int>,
    effective_concurrency: Option<Int>,
}

impl TargetCandidate {
    /// The webhook whatever its filters say, for events sent to it alone, which go out even
    /// while it is paused.
    pub(crate) fn into_target(self) -> TargetRow {
        TargetRow {
            id: self.id,
            url: self.url,
            secret: self.secret,
            previous_secret: self.previous_secret,
            custom_headers: self.custom_headers,
            direct: self.direct && !self.pull,
            pull: self.pull,
            flow: FlowColumns {
                failures: Int(0),
                throttled_since: None,
                throttle_backoff_ms: self.throttle_backoff_ms,
                retry_schedule: self.retry_schedule,
                max_concurrency: self.max_concurrency,
                effective_concurrency: self.effective_concurrency,
            },
        }
    }
}

/// A webhook subscribed to one (project, event type) pair of a batch of events.
#[derive(sqlx::FromRow)]
pub(crate) struct BatchCandidate {
    #[sqlx(flatten)]
    candidate: TargetCandidate,
    project_id: Uuid,
    event_type: String,
}

impl BatchCandidate {
    /// The candidate of one event's own subscription.
    pub(crate) fn of(event: &NewEvent, candidate: TargetCandidate) -> Self {
        Self {
            candidate,
            project_id: event.project_id.as_uuid(),
            event_type: event.event_type.clone(),
        }
    }

    fn into_subscriber(self) -> StoreResult<Subscriber<TargetRow>> {
        Ok(Subscriber {
            project: self.project_id.into(),
            event_type: self.event_type,
            filters: filters_from_json(&self.candidate.filters)?,
            target: {
                let paused = self.candidate.paused;
                let target = self.candidate.into_target();
                TargetRow {
                    direct: target.direct && !paused,
                    ..target
                }
            },
        })
    }
}

/// The webhooks each event of a batch goes to, from the subscribers of the batch's (project,
/// event type) pairs.
pub(crate) fn batch_targets(
    events: &[&Accepting],
    candidates: Vec<BatchCandidate>,
) -> StoreResult<Vec<Vec<TargetRow>>> {
    let subscribers = candidates
        .into_iter()
        .map(BatchCandidate::into_subscriber)
        .collect::<StoreResult<Vec<_>>>()?;
    let published: Vec<Published<'_>> = events.iter().map(|a| a.event.published()).collect();
    Ok(plan_fanout(&published, subscribers))
}

/// A webhook an event is queued for.
#[derive(Clone)]
pub(crate) struct TargetRow {
    pub id: Uuid,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    custom_headers: Option<String>,
    direct: bool,
    pull: bool,
    flow: FlowColumns,
}

impl TargetRow {
    /// The delivery as a claim under `lease`, ready for its first attempt.
    fn into_claim(
        self,
        cipher: &SecretCipher,
        event: &NewEvent,
        delivery: Uuid,
        lease: Lease,
    ) -> StoreResult<ClaimedDelivery> {
        ClaimRow {
            id: delivery,
            project_id: event.project_id.as_uuid(),
            webhook_id: self.id,
            event_id: event.id.as_uuid(),
            event_type: event.event_type.clone(),
            payload: event.payload.clone(),
            url: self.url,
            secret: self.secret,
            previous_secret: self.previous_secret,
            custom_headers: self.custom_headers,
            trace_context: event.trace_context.clone(),
            attempt_count: Int(0),
            flow: self.flow,
            rate_limit: None,
        }
        .into_claim(cipher, lease.token)
    }
}

/// New deliveries as the columns of one insert.
#[derive(Default)]
pub(crate) struct DeliveryRows {
    pub ids: Vec<Uuid>,
    pub project_ids: Vec<Uuid>,
    pub webhook_ids: Vec<Uuid>,
    pub event_ids: Vec<Uuid>,
    pub created_at: Vec<DateTime<Utc>>,
    pub lease_until: Vec<Option<DateTime<Utc>>>,
    pub lease_tokens: Vec<Option<Uuid>>,
    /// Whether each row waits for a poller of its pull webhook.
    pub pull: Vec<bool>,
}

impl DeliveryRows {
    /// Adds a push delivery (of a notice, say) due at `created_at`, leased to nobody.
    pub(crate) fn push_unleased(
        &mut self,
        id: Uuid,
        project: Uuid,
        webhook: Uuid,
        event: Uuid,
        created_at: DateTime<Utc>,
    ) {
        self.ids.push(id);
        self.project_ids.push(project);
        self.webhook_ids.push(webhook);
        self.event_ids.push(event);
        self.created_at.push(created_at);
        self.lease_until.push(None);
        self.lease_tokens.push(None);
        self.pull.push(false);
    }

    /// True when a row is queued for any worker rather than leased to this instance's or
    /// waiting for a poller.
    pub(crate) fn any_for_workers(&self) -> bool {
        self.lease_tokens
            .iter()
            .zip(&self.pull)
            .any(|(lease, pull)| lease.is_none() && !pull)
    }

    /// The pull webhooks rows were queued for, each once, for waking their pollers.
    pub(crate) fn pull_webhooks(&self) -> Vec<Uuid> {
        let mut webhooks: Vec<Uuid> = self
            .webhook_ids
            .iter()
            .zip(&self.pull)
            .filter(|(_, pull)| **pull)
            .map(|(webhook, _)| *webhook)
            .collect();
        webhooks.sort_unstable();
        webhooks.dedup();
        webhooks
    }
}

/// One delivery per target of each event, as rows to insert and as the accepted events (with
/// their claims when leased).
pub(crate) fn queue_deliveries(
    cipher: &SecretCipher,
    events: &[&Accepting],
    targets: Vec<Vec<TargetRow>>,
) -> StoreResult<(DeliveryRows, Vec<Accepted>)> {
    let mut rows = DeliveryRows::default();
    let mut accepted = Vec::with_capacity(events.len());
    for (accepting, targets) in events.iter().zip(targets) {
        let (event, lease) = (&accepting.event, accepting.lease);
        let delivery_ids: Vec<DeliveryId> =
            targets.iter().map(|_| DeliveryId::generate()).collect();
        let (mut claims, mut pulled) = (Vec::new(), Vec::new());
        for (target, id) in targets.into_iter().zip(&delivery_ids) {
            let lease = lease.filter(|_| target.direct);
            if target.pull {
                pulled.push(WebhookId::from(target.id));
            }
            rows.pull.push(target.pull);
            rows.ids.push(id.as_uuid());
            rows.project_ids.push(event.project_id.as_uuid());
            rows.webhook_ids.push(target.id);
            rows.event_ids.push(event.id.as_uuid());
            rows.created_at.push(event.created_at);
            rows.lease_until.push(lease.map(|l| l.until));
            rows.lease_tokens.push(lease.map(|l| l.token));
            if let Some(lease) = lease {
                claims.push(target.into_claim(cipher, event, id.as_uuid(), lease)?);
            }
        }
        accepted.push(Accepted {
            event: AcceptedEvent {
                id: event.id,
                event_type: event.event_type.clone(),
                delivery_ids,
                replayed: false,
            },
            claims,
            pulled,
        });
    }
    Ok((rows, accepted))
}
