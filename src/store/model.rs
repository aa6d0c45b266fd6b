//! The records the store takes and returns, shared by both backends.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::cipher::SecretCipher;
use super::{StoreError, StoreResult};
use crate::domain::{
    AccountId, ApiKeyId, DeliveryId, DisablePolicy, EndpointUrl, EventId, EventType, EventTypes,
    Filters, Name, ProjectId, Scopes, WebhookId, WebhookSecret,
};

pub struct NewAccount {
    pub id: AccountId,
    pub name: Name,
    pub created_at: DateTime<Utc>,
}

pub struct NewProject {
    pub id: ProjectId,
    pub account_id: AccountId,
    pub name: Name,
    pub created_at: DateTime<Utc>,
}

pub struct NewApiKey {
    pub id: ApiKeyId,
    pub project_id: ProjectId,
    pub key_hash: [u8; 32],
    pub display_prefix: String,
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
}

/// The first tenant of an empty database.
pub struct BootstrapTenant {
    pub account: NewAccount,
    pub project: NewProject,
    pub key: NewApiKey,
}

/// An API key as the operator's listing shows it: never the key itself.
#[derive(Debug, Clone)]
pub struct ApiKeyInfo {
    pub id: ApiKeyId,
    pub display_prefix: String,
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What authentication needs to know about a presented key.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub project_id: ProjectId,
    pub account_id: AccountId,
    pub scopes: Scopes,
    pub revoked: bool,
}

pub struct NewWebhook {
    pub id: WebhookId,
    pub url: EndpointUrl,
    pub events: EventTypes,
    pub filters: Filters,
    pub secret: WebhookSecret,
    pub created_at: DateTime<Utc>,
}

/// A partial update; `None` leaves the field as it is.
pub struct WebhookChanges {
    pub url: Option<EndpointUrl>,
    pub events: Option<EventTypes>,
    pub filters: Option<Filters>,
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
    pub project_id: ProjectId,
    pub url: String,
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
}

/// When and why endpoint health disabled a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A webhook row as both backends read it, before its stored strings are checked.
pub(super) struct WebhookRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub filters: String,
    pub secret: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub stats: WebhookStats,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub last_modified_by: Option<String>,
    pub last_modified_via: Option<String>,
}

impl WebhookRow {
    pub(super) fn into_webhook(self, cipher: &SecretCipher) -> StoreResult<Webhook> {
        let row = self;
        let events = row
            .events
            .iter()
            .map(|e| {
                EventType::parse(e)
                    .ok_or_else(|| StoreError::corrupt(format!("stored event type {e:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Webhook {
            id: row.id.into(),
            project_id: row.project_id.into(),
            url: row.url,
            events,
            filters: filters_from_json(&row.filters)?,
            secret: cipher.open(&row.secret)?,
            is_active: row.is_active,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
            stats: row.stats,
            disabled: row.disabled_at.map(|at| Disabled {
                at,
                reason: row.disabled_reason.unwrap_or_default(),
            }),
            last_modified_by: row.last_modified_by,
            last_modified_via: row.last_modified_via,
        })
    }
}

pub(super) fn parse_scopes(stored: &[String]) -> StoreResult<Scopes> {
    Scopes::parse(stored).map_err(|e| StoreError::corrupt(format!("stored scopes: {e}")))
}

/// Filters are stored as a JSON object of `key: "value1,value2"`, as the API writes them.
pub(super) fn filters_to_json(filters: &Filters) -> String {
    let map: serde_json::Map<String, serde_json::Value> = filters
        .to_pairs()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

pub(super) fn filters_from_json(stored: &str) -> StoreResult<Filters> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(stored)
        .map_err(|e| StoreError::corrupt(format!("stored filters: {e}")))?;
    let pairs: Vec<(&str, &str)> = map
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
        .collect();
    Filters::parse(pairs).map_err(|e| StoreError::corrupt(format!("stored filters: {e}")))
}

/// Who receives an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTarget {
    /// Every active webhook of the project subscribed to the type whose filters match.
    Subscribers,
    /// One active webhook, whatever its subscriptions (test events).
    Webhook(WebhookId),
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
    pub target: EventTarget,
    /// Recorded for events a person sends (test events); published events are not changes.
    pub audit: Option<AuditEntry>,
    /// When set, the deliveries are written already claimed under this lease and returned as
    /// claims, so the accepting instance can send them without a round trip through the queue.
    pub lease: Option<Lease>,
}

impl NewEvent {
    /// Published to subscribers without an idempotency key or an audit entry: such events can
    /// share a transaction with others.
    pub fn batchable(&self) -> bool {
        self.idempotency_key.is_none()
            && self.audit.is_none()
            && matches!(self.target, EventTarget::Subscribers)
    }
}

impl AcceptedEvent {
    /// The event with only these of its deliveries, the others having lost their webhook
    /// before they could be written.
    pub(super) fn keeping(mut self, written: &std::collections::HashSet<DeliveryId>) -> Self {
        self.delivery_ids.retain(|id| written.contains(id));
        self.claims.retain(|claim| written.contains(&claim.id));
        self
    }
}

/// A claim on deliveries: who holds them (the token) and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub token: Uuid,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct AcceptedEvent {
    pub id: EventId,
    pub event_type: String,
    pub delivery_ids: Vec<DeliveryId>,
    /// True when an earlier event with the same idempotency key answered instead.
    pub replayed: bool,
    /// The new deliveries as claims, when the event asked for a lease.
    pub claims: Vec<ClaimedDelivery>,
}

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

    pub(super) fn from_stored(raw: &str) -> StoreResult<Self> {
        Self::parse(raw).ok_or_else(|| StoreError::corrupt(format!("stored status {raw:?}")))
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Failed,
}

impl AttemptResult {
    /// The outcome as the metrics name it.
    pub fn label(self) -> &'static str {
        match self {
            AttemptResult::Succeeded => "succeeded",
            AttemptResult::RetryAt(_) => "retrying",
            AttemptResult::Failed => "failed",
        }
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

/// What `record_attempt` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The lease was lost meanwhile: nothing was written.
    Stale,
    Recorded,
    /// Recorded, and the webhook was disabled (its pending deliveries cancelled) for this reason.
    Disabled(String),
}

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
}

#[derive(Debug, Clone)]
pub struct DeliveryDetails {
    pub summary: DeliverySummary,
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

/// The current target of a webhook, read again when an attempt waited for its turn.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: WebhookSecret,
    pub previous_secret: Option<WebhookSecret>,
}

/// The textual values of `data[key]`: a scalar, or each scalar of an array.
fn data_values(data: &serde_json::Value, key: &str) -> Vec<String> {
    fn text(value: &serde_json::Value) -> Option<String> {
        match value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match data.get(key) {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(value) => text(value).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Text as both backends can store it: Postgres refuses NUL characters in `text`, so they become
/// U+FFFD on every backend alike.
pub(super) fn storable(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|t| t.replace('\0', "\u{FFFD}"))
}

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Api,
    Dashboard,
    Admin,
    Cli,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Dashboard => "dashboard",
            Channel::Admin => "admin",
            Channel::Cli => "cli",
        }
    }
}

/// Who made a change: an API key, or the operator through the admin API or CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub key: Option<ApiKeyId>,
    pub channel: Channel,
}

impl Actor {
    pub fn admin(channel: Channel) -> Self {
        Self { key: None, channel }
    }

    pub(super) fn kind(&self) -> &'static str {
        if self.key.is_some() {
            "api_key"
        } else {
            "admin"
        }
    }

    /// The id a webhook's `lastModifiedBy` shows: the key's id, or `admin`.
    pub(super) fn id(&self) -> String {
        self.key
            .map_or_else(|| "admin".to_owned(), |k| k.to_string())
    }
}

/// One change, as the audit log records it within the change's own transaction.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: &'static str,
    pub target_id: String,
    /// What changed; never a secret.
    pub changes: serde_json::Value,
    pub at: DateTime<Utc>,
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

/// An audit row as both backends read it: (id, at, actor type, actor id, channel, action,
/// target, changes as JSON text).
pub(super) type AuditRow = (
    uuid::Uuid,
    DateTime<Utc>,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
);

pub(super) fn audit_record(row: AuditRow) -> StoreResult<AuditRecord> {
    let (id, at, actor_type, actor_id, channel, action, target_id, changes) = row;
    Ok(AuditRecord {
        id,
        at,
        actor_type,
        actor_id,
        channel,
        action,
        target_id,
        changes: serde_json::from_str(&changes)
            .map_err(|e| StoreError::corrupt(format!("stored audit changes: {e}")))?,
    })
}

/// The candidate webhooks whose filters accept the event's data.
pub(super) fn matching_webhooks(
    candidates: Vec<TargetCandidate>,
    data: &serde_json::Value,
) -> StoreResult<Vec<TargetRow>> {
    let mut targets = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let (target, filters) = candidate.into_parts();
        if filters_from_json(&filters)?.matches(|key| data_values(data, key)) {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// A webhook subscribed to one (project, event type) pair of a batch of events.
#[derive(sqlx::FromRow)]
pub(super) struct BatchCandidate {
    #[sqlx(flatten)]
    pub candidate: TargetCandidate,
    pub project_id: Uuid,
    pub event_type: String,
}

/// The webhooks each event of a batch goes to, from the candidates of the batch's (project,
/// event type) pairs.
pub(super) fn batch_targets(
    events: &[NewEvent],
    candidates: Vec<BatchCandidate>,
) -> StoreResult<Vec<Vec<TargetRow>>> {
    let mut by_pair: HashMap<(Uuid, String), Vec<TargetCandidate>> = HashMap::new();
    for found in candidates {
        by_pair
            .entry((found.project_id, found.event_type))
            .or_default()
            .push(found.candidate);
    }
    events
        .iter()
        .map(|event| {
            let pair = (event.project_id.as_uuid(), event.event_type.clone());
            let candidates = by_pair.get(&pair).cloned().unwrap_or_default();
            matching_webhooks(candidates, &event.data)
        })
        .collect()
}

/// The (project, event type) pairs of a batch, once each.
pub(super) fn subscription_pairs(events: &[NewEvent]) -> Vec<(Uuid, String)> {
    let mut pairs: Vec<(Uuid, String)> = events
        .iter()
        .map(|e| (e.project_id.as_uuid(), e.event_type.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// New deliveries as the columns of one insert.
#[derive(Default)]
pub(super) struct DeliveryRows {
    pub ids: Vec<Uuid>,
    pub project_ids: Vec<Uuid>,
    pub webhook_ids: Vec<Uuid>,
    pub event_ids: Vec<Uuid>,
    pub created_at: Vec<DateTime<Utc>>,
    pub lease_until: Vec<Option<DateTime<Utc>>>,
    pub lease_tokens: Vec<Option<Uuid>>,
}

impl DeliveryRows {
    /// True when a row is queued for any worker rather than leased to this instance's.
    pub(super) fn any_unleased(&self) -> bool {
        self.lease_tokens.iter().any(Option::is_none)
    }
}

/// One delivery per target of each event, as rows to insert and as the accepted events (with
/// their claims when leased).
pub(super) fn queue_deliveries(
    cipher: &SecretCipher,
    events: &[NewEvent],
    targets: Vec<Vec<TargetRow>>,
) -> StoreResult<(DeliveryRows, Vec<AcceptedEvent>)> {
    let mut rows = DeliveryRows::default();
    let mut accepted = Vec::with_capacity(events.len());
    for (event, targets) in events.iter().zip(targets) {
        let delivery_ids: Vec<DeliveryId> =
            targets.iter().map(|_| DeliveryId::generate()).collect();
        for (target, id) in targets.iter().zip(&delivery_ids) {
            rows.ids.push(id.as_uuid());
            rows.project_ids.push(event.project_id.as_uuid());
            rows.webhook_ids.push(target.id);
            rows.event_ids.push(event.id.as_uuid());
            rows.created_at.push(event.created_at);
            rows.lease_until.push(event.lease.map(|l| l.until));
            rows.lease_tokens.push(event.lease.map(|l| l.token));
        }
        let claims = match event.lease {
            Some(lease) => targets
                .into_iter()
                .zip(&delivery_ids)
                .map(|(target, id)| target.into_claim(cipher, event, id.as_uuid(), lease))
                .collect::<StoreResult<Vec<_>>>()?,
            None => Vec::new(),
        };
        accepted.push(AcceptedEvent {
            id: event.id,
            event_type: event.event_type.clone(),
            delivery_ids,
            replayed: false,
            claims,
        });
    }
    Ok((rows, accepted))
}

/// A webhook an event may be queued for, with its stored filters, as both backends read it.
#[derive(sqlx::FromRow, Clone)]
pub(super) struct TargetCandidate {
    id: Uuid,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    filters: String,
}

impl TargetCandidate {
    /// The webhook whatever its filters say, for events sent to it alone.
    pub(super) fn into_target(self) -> TargetRow {
        self.into_parts().0
    }

    fn into_parts(self) -> (TargetRow, String) {
        let target = TargetRow {
            id: self.id,
            url: self.url,
            secret: self.secret,
            previous_secret: self.previous_secret,
        };
        (target, self.filters)
    }
}

/// A webhook an event is queued for.
#[derive(Debug, Clone)]
pub(super) struct TargetRow {
    pub id: Uuid,
    pub url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
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
            attempt_count: 0,
        }
        .into_claim(cipher, lease.token)
    }
}

/// A webhook's failure run: how many attempts failed in a row, and since when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FailureRun {
    pub consecutive: i64,
    pub since: Option<DateTime<Utc>>,
}

/// What a batch of attempts changes on one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WebhookTally {
    pub webhook_id: WebhookId,
    pub total: i64,
    pub succeeded: i64,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// The failure run after the batch.
    pub run: FailureRun,
    /// Set when the batch disables the webhook, at the first attempt that crossed the policy.
    pub disable: Option<Disable>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Disable {
    /// The attempt that disabled the webhook, and when it finished.
    pub delivery_id: DeliveryId,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// Folds recorded attempts, in the order they finished, into one change per webhook, starting
/// from each webhook's failure run before the batch; attempt by attempt it decides exactly what
/// recording them one at a time would have.
pub(super) fn tally_attempts(
    records: &[&AttemptRecord],
    runs_before: &std::collections::HashMap<WebhookId, FailureRun>,
) -> Vec<WebhookTally> {
    let mut tallies: Vec<WebhookTally> = Vec::new();
    for record in records {
        let index = match tallies
            .iter()
            .position(|t| t.webhook_id == record.webhook_id)
        {
            Some(index) => index,
            None => {
                tallies.push(WebhookTally {
                    webhook_id: record.webhook_id,
                    total: 0,
                    succeeded: 0,
                    last_success_at: None,
                    last_failure_at: None,
                    run: runs_before
                        .get(&record.webhook_id)
                        .copied()
                        .unwrap_or_default(),
                    disable: None,
                });
                tallies.len() - 1
            }
        };
        let tally = &mut tallies[index];
        tally.total += 1;
        if record.result == AttemptResult::Succeeded {
            tally.succeeded += 1;
            tally.last_success_at = Some(record.finished_at);
            tally.run = FailureRun::default();
        } else {
            tally.last_failure_at = Some(record.finished_at);
            tally.run.consecutive += 1;
            tally.run.since = tally.run.since.or(Some(record.finished_at));
            if tally.disable.is_none() {
                tally.disable = record
                    .disable_reason(tally.run.consecutive, tally.run.since)
                    .map(|reason| Disable {
                        delivery_id: record.delivery_id,
                        at: record.finished_at,
                        reason,
                    });
            }
        }
    }
    tallies
}

/// What recording each of `records` did, given which of them still held their lease.
pub(super) fn recorded_outcomes(
    records: &[AttemptRecord],
    held: &std::collections::HashSet<DeliveryId>,
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

impl AttemptRecord {
    /// The delivery's status and next due time after this attempt.
    pub(super) fn next_state(&self) -> (DeliveryStatus, Option<DateTime<Utc>>) {
        match self.result {
            AttemptResult::Succeeded => (DeliveryStatus::Succeeded, None),
            AttemptResult::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
            AttemptResult::Failed => (DeliveryStatus::Failed, None),
        }
    }

    /// Why this failure disables the endpoint, given the webhook's failure run after it.
    pub(super) fn disable_reason(
        &self,
        consecutive_failures: i64,
        failing_since: Option<DateTime<Utc>>,
    ) -> Option<String> {
        if self.result == AttemptResult::Succeeded {
            return None;
        }
        self.disable_policy.reason(
            self.response_status == Some(410),
            consecutive_failures,
            failing_since,
            self.finished_at,
        )
    }
}

/// A claimed row as both backends read it, before its secrets are opened.
pub(super) struct ClaimRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: String,
    pub url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub attempt_count: i64,
}

impl ClaimRow {
    pub(super) fn into_claim(
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
            attempt_number: u32::try_from(self.attempt_count).unwrap_or_default() + 1,
            lease_token: token,
        })
    }
}
