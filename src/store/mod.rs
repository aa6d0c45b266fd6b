//! The storage interface: one trait of tenant-scoped use cases, a Postgres and a SQLite backend.

mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    AccountId, ApiKeyId, EndpointUrl, EventType, EventTypes, Name, ProjectId, Scope, Scopes,
    WebhookId, WebhookSecret,
};

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
    fn corrupt(what: impl Into<String>) -> Self {
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
                // Postgres classes 08 (connection) and 57 (operator intervention, e.g. shutdown).
                _ if db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57")) =>
                {
                    StoreError::Unavailable(error)
                }
                _ => StoreError::Internal(Box::new(error)),
            },
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
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

/// What authentication needs to know about a presented key.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub project_id: ProjectId,
    pub scopes: Scopes,
    pub revoked: bool,
}

pub struct NewWebhook {
    pub id: WebhookId,
    pub url: EndpointUrl,
    pub events: EventTypes,
    pub secret: WebhookSecret,
    pub created_at: DateTime<Utc>,
}

/// A partial update; `None` leaves the field as it is.
pub struct WebhookChanges {
    pub url: Option<EndpointUrl>,
    pub events: Option<EventTypes>,
    pub updated_at: DateTime<Utc>,
}

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
    pub secret: WebhookSecret,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub stats: WebhookStats,
}

/// A webhook row as both backends read it, before its stored strings are checked.
struct WebhookRow {
    id: uuid::Uuid,
    project_id: uuid::Uuid,
    url: String,
    events: Vec<String>,
    secret: String,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    stats: WebhookStats,
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = StoreError;

    fn try_from(row: WebhookRow) -> Result<Self, Self::Error> {
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
            secret: WebhookSecret::from_stored(row.secret),
            is_active: row.is_active,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
            stats: row.stats,
        })
    }
}

fn parse_scopes(stored: &[String]) -> StoreResult<Scopes> {
    Scopes::parse(stored).map_err(|e| StoreError::corrupt(format!("stored scopes: {e}")))
}

fn scope_strings(scopes: &Scopes) -> Vec<String> {
    scopes
        .as_slice()
        .iter()
        .map(|s: &Scope| s.as_str().to_owned())
        .collect()
}

/// The service's persistent state. Every method is one use case and one transaction at most.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies the embedded migrations of this backend.
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    async fn close(&self);

    async fn create_account(&self, new: NewAccount) -> StoreResult<()>;
    /// Fails with `NotFound` when the account does not exist.
    async fn create_project(&self, new: NewProject) -> StoreResult<()>;
    /// Fails with `NotFound` when the project does not exist.
    async fn create_api_key(&self, new: NewApiKey) -> StoreResult<()>;
    /// Fails with `NotFound` when the key does not exist or is already revoked.
    async fn revoke_api_key(&self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<()>;
    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKeyRecord>>;
    /// Creates the tenant only when no account exists and no bootstrap ran before; true if it did.
    async fn bootstrap(&self, tenant: BootstrapTenant) -> StoreResult<bool>;

    /// Fails with `WebhookLimitReached` when the project already has `limit` active webhooks.
    async fn create_webhook(
        &self,
        project: ProjectId,
        new: NewWebhook,
        limit: u32,
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
    ) -> StoreResult<Webhook>;
    /// Deactivates the webhook and cancels its pending deliveries.
    async fn delete_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Only active webhooks can rotate; the new secret applies to every later attempt.
    async fn rotate_webhook_secret(
        &self,
        project: ProjectId,
        id: WebhookId,
        secret: WebhookSecret,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

/// Pool settings shared by both backends.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

/// Opens the backend the URL's scheme names: `postgres://`/`postgresql://` or `sqlite:`.
pub async fn connect(url: &str, pool: &PoolSettings) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url, pool).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, pool).await?))
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
