//! The storage interface: one trait of tenant-scoped use cases, a Postgres and a SQLite backend.

pub mod batcher;
pub mod cipher;
mod model;
mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{ApiKeyId, DeliveryId, ProjectId, WebhookId};

use cipher::SecretCipher;
pub use model::*;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, StoreError>;

/// What can go wrong in storage, in terms the API can answer with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the project already has {limit} active webhooks, the most allowed")]
    WebhookLimitReached { limit: u32 },
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A foreign-key violation means the parent row (`what`) does not exist.
    fn missing_parent(error: sqlx::Error, what: &'static str) -> Self {
        match StoreError::from(error) {
            StoreError::NotFound(_) => StoreError::NotFound(what),
            other => other,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Internal(what.into().into())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound("record"),
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(format!(
                    "a record with the same unique value exists ({})",
                    db.constraint().unwrap_or("unique constraint")
                )),
                ErrorKind::ForeignKeyViolation => StoreError::NotFound("referenced record"),
                // Postgres classes 08 (connection), 40 (a deadlock or serialization failure,
                // gone on a retry), 53 (insufficient resources), 57 (operator intervention,
                // e.g. shutdown) and 3D000 (the database is gone).
                _ if db.code().is_some_and(|c| {
                    ["08", "40", "53", "57", "3D"]
                        .iter()
                        .any(|class| c.starts_with(class))
                }) =>
                {
                    StoreError::Unavailable(error)
                }
                _ => StoreError::Internal(Box::new(error)),
            },
            // A protocol error is a conversation cut short, e.g. by a server restarting.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
            _ => StoreError::Internal(Box::new(error)),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        match error {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => StoreError::Internal(Box::new(other)),
        }
    }
}

/// Tenancy and the store's own lifecycle. `Store` is the whole interface: this plus the
/// webhook and delivery use cases.
#[async_trait]
pub trait Store: WebhookStore + DeliveryStore + Send + Sync + 'static {
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
    /// Creates the tenant only when no account exists and no bootstrap ran before; true if it did.
    async fn bootstrap(&self, tenant: BootstrapTenant) -> StoreResult<bool>;
    /// Seals every stored signing secret with the current encryption key (or opens them all
    /// when encryption was turned off); returns how many webhooks changed.
    async fn reseal_secrets(&self) -> StoreResult<u64>;
}

/// Webhook subscriptions, always within one project.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Fails with `WebhookLimitReached` when the project already has `limit` active webhooks.
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
        include_inactive: bool,
    ) -> StoreResult<Vec<Webhook>>;
    /// Finds active and deleted webhooks alike.
    async fn get_webhook(&self, project: ProjectId, id: WebhookId) -> StoreResult<Webhook>;
    /// Only active webhooks can change.
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
        id: WebhookId,
        audit: AuditEntry,
    ) -> StoreResult<()>;
    /// Only active webhooks can rotate; the new secret signs every later attempt, and the old
    /// one signs beside it until the rotation's grace period ends.
    async fn rotate_webhook_secret(
        &self,
        project: ProjectId,
        id: WebhookId,
        rotation: SecretRotation,
        audit: AuditEntry,
    ) -> StoreResult<()>;
    /// The project's audit log, newest first, before the `before` entry when given.
    async fn list_audit(
        &self,
        project: ProjectId,
        before: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
}

/// Events, the durable delivery queue and the delivery log.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Writes the event and one pending delivery per target in one transaction, claimed under
    /// the event's lease when it has one. With an idempotency key seen in the last 24 hours,
    /// returns that event instead and writes nothing. Fails with `NotFound` when a targeted
    /// webhook is not active in the project.
    async fn accept_event(&self, event: NewEvent) -> StoreResult<AcceptedEvent>;
    /// Writes batchable events (see `NewEvent::batchable`) and their deliveries in one
    /// transaction of a fixed number of statements.
    async fn accept_together(&self, events: &[NewEvent]) -> StoreResult<Vec<AcceptedEvent>>;
    /// Accepts many events, one result each, in order: the batchable ones together, the others
    /// one at a time. Should the shared transaction fail, its events are tried one at a time,
    /// so each gets its own answer.
    async fn accept_events(&self, events: Vec<NewEvent>) -> Vec<StoreResult<AcceptedEvent>> {
        let (together, alone): (Vec<_>, Vec<_>) = events
            .into_iter()
            .enumerate()
            .partition(|(_, e)| e.batchable());
        let mut results: Vec<Option<StoreResult<AcceptedEvent>>> =
            (0..together.len() + alone.len()).map(|_| None).collect();
        let (positions, batch): (Vec<usize>, Vec<NewEvent>) = together.into_iter().unzip();
        let mut retry = Vec::new();
        if !batch.is_empty() {
            match self.accept_together(&batch).await {
                Ok(accepted) => {
                    for (position, event) in positions.into_iter().zip(accepted) {
                        results[position] = Some(Ok(event));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, events = batch.len(), "a batch of events failed; accepting them one by one");
                    retry = positions.into_iter().zip(batch).collect();
                }
            }
        }
        for (position, event) in retry.into_iter().chain(alone) {
            results[position] = Some(self.accept_event(event).await);
        }
        results
            .into_iter()
            .map(|r| r.expect("every event has a result"))
            .collect()
    }
    /// Leases up to `limit` due deliveries until `lease_until`, at most `per_webhook` of them
    /// for any one webhook, skipping the excluded webhooks and rows other workers hold.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_webhook: u32,
        exclude: &[WebhookId],
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records finished attempts, in the order they finished, with their deliveries' new states
    /// and their webhooks' stats, in one transaction of a fixed number of statements; disables
    /// a webhook when its policy says so. An attempt whose lease was lost meanwhile writes
    /// nothing. Returns what happened to each, in order.
    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<Recorded>>;
    /// Makes leased deliveries due again at once, e.g. on shutdown.
    async fn release_claims(
        &self,
        claims: &[(DeliveryId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// When the earliest pending delivery is due (or its lease ends).
    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// The pending deliveries nobody holds, due by `now` and scheduled later.
    async fn queue_depth(&self, now: DateTime<Utc>) -> StoreResult<QueueDepth>;
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
    /// Wakes `wake` whenever another instance queues work, until `shutdown`. Backends without
    /// other instances return at once.
    async fn listen_for_work(&self, wake: Arc<Notify>, shutdown: CancellationToken);

    /// Fails with `NotFound` when the webhook is not in the project.
    async fn list_deliveries(
        &self,
        project: ProjectId,
        webhook: WebhookId,
        query: DeliveryQuery,
    ) -> StoreResult<Vec<DeliverySummary>>;
    async fn get_delivery(
        &self,
        project: ProjectId,
        id: DeliveryId,
    ) -> StoreResult<DeliveryDetails>;
    /// Makes the delivery due now, whatever its state; `Conflict` when its webhook is deleted.
    async fn retry_delivery(
        &self,
        project: ProjectId,
        id: DeliveryId,
        audit: AuditEntry,
    ) -> StoreResult<DeliverySummary>;
    /// Deletes finished deliveries (with their attempts) and events last touched before `before`.
    async fn purge_finished(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    pub due: u64,
    pub scheduled: u64,
    pub oldest_due_at: Option<DateTime<Utc>>,
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
