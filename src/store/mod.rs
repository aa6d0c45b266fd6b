//! The storage interface: tenant-scoped use cases cut along their seams (tenancy, webhooks,
//! event acceptance, the delivery queue, the delivery log), a Postgres and a SQLite backend.

mod accept;
pub mod cipher;
mod decode;
mod error;
mod postgres;
mod records;
pub mod retention;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{ApiKeyId, AuditEntry, DeliveryId, ProjectId, WebhookId, WebhookKind};

use cipher::SecretCipher;
pub use error::{Entity, Reason, StoreError, StoreResult};
pub use postgres::PostgresStore;
pub use records::{
    Accepted, AcceptedEvent, Accepting, ApiKeyInfo, ApiKeyRecord, Attempt, AttemptRecord,
    AuditRecord, BootstrapTenant, ClaimedDelivery, DeliveryDetails, DeliveryQuery, DeliverySummary,
    Disabled, EventTarget, FlowChange, HeldPull, Lease, NewAccount, NewApiKey, NewEvent,
    NewProject, NewWebhook, ProjectNames, PullQueue, QueueDepth, QueuedNotice, Recorded,
    RecordedBatch, RecoverFilter, Recovery, SecretRotation, Webhook, WebhookChanges, WebhookLabels,
    WebhookLimits, WebhookStats, WebhookTarget,
};
pub use sqlite::SqliteStore;

/// Tenancy and the store's own lifecycle. `Store` is the whole interface: this plus the
/// webhook, event, queue, pull and delivery log use cases.
#[async_trait]
pub trait Store:
    WebhookStore + EventStore + QueueStore + PullStore + DeliveryLogStore + Send + Sync + 'static
{
    /// Applies the embedded migrations of this backend.
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    async fn close(&self);
    /// The connection pools' use right now, summed over the backend's pools.
    fn pool_usage(&self) -> PoolUsage;

    async fn create_account(&self, new: NewAccount) -> StoreResult<()>;
    /// Fails with `NotFound` when the account does not exist.
    async fn create_project(&self, new: NewProject) -> StoreResult<()>;
    /// Fails with `NotFound` when the project does not exist.
    async fn create_api_key(&self, new: NewApiKey, audit: AuditEntry) -> StoreResult<()>;
    /// Fails with `NotFound` when the key does not exist or is already revoked.
    async fn revoke_api_key(&self, id: ApiKeyId, audit: AuditEntry) -> StoreResult<()>;
    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKeyRecord>>;
    /// Records when keys were last used, many at once; a later time never moves backwards.
    async fn touch_api_keys(&self, used: &[(ApiKeyId, DateTime<Utc>)]) -> StoreResult<()>;
    /// Fails with `NotFound` when the project does not exist.
    async fn list_api_keys(&self, project: ProjectId) -> StoreResult<Vec<ApiKeyInfo>>;
    /// Fails with `NotFound` when the project does not exist.
    async fn project_names(&self, project: ProjectId) -> StoreResult<ProjectNames>;
    /// Creates the tenant only when no account exists and no bootstrap ran before; true if it did.
    async fn bootstrap(&self, tenant: BootstrapTenant) -> StoreResult<bool>;
    /// Seals every stored signing secret with the current encryption key (or opens them all
    /// when encryption was turned off); returns how many webhooks changed.
    async fn reseal_secrets(&self) -> StoreResult<u64>;
}

/// Webhook subscriptions, always within one project. Alert endpoints are webhooks of another
/// kind: every read and change names the kind it addresses, and finds no row of the other.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Fails with `WebhookLimitReached` when the project already has `limit` active webhooks
    /// of the new one's kind.
    async fn create_webhook(
        &self,
        project: ProjectId,
        new: NewWebhook,
        limit: u32,
        audit: AuditEntry,
    ) -> StoreResult<Webhook>;
    async fn list_webhooks(
        &self,
        project: ProjectId,
        kind: WebhookKind,
        include_inactive: bool,
    ) -> StoreResult<Vec<Webhook>>;
    /// Finds active and deleted webhooks alike.
    async fn get_webhook(
        &self,
        project: ProjectId,
        kind: WebhookKind,
        id: WebhookId,
    ) -> StoreResult<Webhook>;
    /// Only active webhooks (of the webhook kind: alert endpoints are not updated) can change.
    async fn update_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        changes: WebhookChanges,
        audit: AuditEntry,
    ) -> StoreResult<Webhook>;
    /// Deactivates the webhook and cancels its pending deliveries.
    async fn delete_webhook(
        &self,
        project: ProjectId,
        kind: WebhookKind,
        id: WebhookId,
        audit: AuditEntry,
    ) -> StoreResult<()>;
    /// Only active webhooks can rotate; the new secret signs every later attempt, and the old
    /// one signs beside it until the rotation's grace period ends.
    async fn rotate_webhook_secret(
        &self,
        project: ProjectId,
        kind: WebhookKind,
        id: WebhookId,
        rotation: SecretRotation,
        audit: AuditEntry,
    ) -> StoreResult<()>;
    /// Records what was done outside any other change, e.g. a replay to another URL.
    async fn record_audit(&self, project: ProjectId, audit: AuditEntry) -> StoreResult<()>;
    /// The project's audit log, newest first, before the `before` entry when given.
    async fn list_audit(
        &self,
        project: ProjectId,
        before: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
}

/// Event acceptance: the durable write behind every 202.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Accepts many events, one result each, in order. Each event is written with one pending
    /// delivery per target atomically, claimed under its lease when it has one. With an
    /// idempotency key seen in the last 24 hours, that event answers instead and nothing is
    /// written. Fails with `NotFound` when an event's targeted webhook is not active.
    async fn accept_events(&self, events: Vec<Accepting>) -> Vec<StoreResult<Accepted>>;
}

/// The durable delivery queue: the deliveries table, leased to one worker at a time.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Leases up to `limit` due deliveries until `lease_until`, at most `per_webhook` of them
    /// for any one webhook, skipping the excluded webhooks and projects, webhooks a throttling
    /// receiver holds back, and rows other workers hold. A rate-limited webhook gives at most
    /// a second's worth, each with the send slot it may go at (`not_before`), slots shared by
    /// every instance.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_webhook: u32,
        exclude: &[WebhookId],
        exclude_projects: &[ProjectId],
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Extends a claim that is still held, for an attempt that waited for its turn, and returns
    /// the webhook's current URL and secret; `None` when the lease was lost or the webhook is
    /// no longer active.
    async fn renew_claim(
        &self,
        id: DeliveryId,
        lease_token: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Option<WebhookTarget>>;
    /// Records finished attempts, in the order they finished, with their deliveries' new states
    /// and their webhooks' stats, in one transaction of a fixed number of statements; disables
    /// a webhook when its policy says so. An attempt whose lease was lost meanwhile writes
    /// nothing. Returns what happened to each, in order, and each webhook's flow after them
    /// (its adapted concurrency and a throttling receiver's hold).
    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<RecordedBatch>;
    /// Makes leased deliveries due again at once, e.g. on shutdown.
    async fn release_claims(
        &self,
        claims: &[(DeliveryId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// When the earliest pending delivery a worker sends is due (or its lease ends).
    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Tells `heard` whatever another instance announces, until `shutdown`; after any gap in
    /// listening it hears `Work` and `AnyPull`, since announcements may have been missed.
    /// Backends without other instances return at once.
    async fn listen_for_work(&self, heard: Announcements, shutdown: CancellationToken);
}

/// What another instance announced when its commit queued deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// Deliveries for the workers.
    Work,
    /// Deliveries for this pull webhook's pollers.
    Pull(WebhookId),
    /// Deliveries any pull webhook's pollers may be waiting for.
    AnyPull,
}

/// Where a listener reports what it hears.
pub type Announcements = Arc<dyn Fn(Announcement) + Send + Sync>;

/// Pull webhooks' queues: their deliveries are leased to pollers over the API and come back as
/// the pollers' acknowledgements, which are recorded as attempts (`record_attempts`).
#[async_trait]
pub trait PullStore: Send + Sync {
    /// Checks that the project has this active pull webhook (`NotFound` when it has not,
    /// `Conflict(PushWebhook)` for a push webhook); true while endpoint health has it disabled.
    async fn pull_webhook(&self, project: ProjectId, webhook: WebhookId) -> StoreResult<bool>;
    /// Leases up to `limit` of the webhook's due deliveries until `lease_until` under a fresh
    /// token, skipping rows other pollers hold; none while the webhook is paused (its test
    /// events excepted) or a throttling hold lasts. Returned oldest first.
    async fn lease_pulled(
        &self,
        webhook: WebhookId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// When the webhook's earliest pending delivery is due, or a lease on one ends.
    async fn next_pull_due(&self, webhook: WebhookId) -> StoreResult<Option<DateTime<Utc>>>;
    /// The webhook's deliveries among `leases` still held under those tokens at `now`.
    async fn held_pulls(
        &self,
        webhook: WebhookId,
        leases: &[(DeliveryId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<HeldPull>>;
    /// The webhook's pending deliveries: due, scheduled for later, and leased.
    async fn pull_queue(&self, webhook: WebhookId, now: DateTime<Utc>) -> StoreResult<PullQueue>;
}

/// The delivery log: what was sent, and the controls a tenant has over it.
#[async_trait]
pub trait DeliveryLogStore: Send + Sync {
    /// Fails with `NotFound` when the project has no webhook of this kind and id.
    async fn list_deliveries(
        &self,
        project: ProjectId,
        kind: WebhookKind,
        webhook: WebhookId,
        query: DeliveryQuery,
    ) -> StoreResult<Vec<DeliverySummary>>;
    async fn get_delivery(
        &self,
        project: ProjectId,
        id: DeliveryId,
    ) -> StoreResult<DeliveryDetails>;
    /// Makes the delivery due now, whatever its state; `Conflict(WebhookDeleted)` when its
    /// webhook is deleted.
    async fn retry_delivery(
        &self,
        project: ProjectId,
        id: DeliveryId,
        audit: AuditEntry,
    ) -> StoreResult<DeliverySummary>;
    /// Makes the failed or cancelled deliveries `filter` matches pending again, due in the
    /// order they were created, with a fresh retry budget (unless `filter.dry_run`); only
    /// webhooks' deliveries, not alert endpoints'.
    async fn recover_deliveries(
        &self,
        project: ProjectId,
        filter: &RecoverFilter,
        audit: AuditEntry,
    ) -> StoreResult<Recovery>;
    /// The pending deliveries nobody holds, due by `now` and scheduled later.
    async fn queue_depth(&self, now: DateTime<Utc>) -> StoreResult<QueueDepth>;
    /// Deletes finished deliveries (with their attempts) and events last touched before `before`.
    async fn purge_finished(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// Pool settings shared by both backends.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

/// Opens the backend the URL's scheme names: `postgres://`/`postgresql://` or `sqlite:`.
pub async fn connect(
    url: &str,
    pool: &PoolSettings,
    cipher: SecretCipher,
) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url, pool, cipher).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, pool, cipher).await?))
    } else {
        Err(StoreError::Internal(
            format!(
                "unsupported database URL scheme in {:?}: use postgres://… or sqlite://…",
                url.split(':').next().unwrap_or_default()
            )
            .into(),
        ))
    }
}
