//! The store's one error type, with typed kinds the API turns into sentences; the only
//! conversion from sqlx's errors.

use sqlx::error::ErrorKind;

use super::{postgres, sqlite};
use crate::domain::WebhookKind;

pub type StoreResult<T> = Result<T, StoreError>;

/// What a missing or conflicting row was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Account,
    Project,
    ApiKey,
    Webhook,
    AlertEndpoint,
    Delivery,
    /// A row the statement referred to, when the database does not say which.
    Referenced,
}

impl Entity {
    /// What a webhook row of this kind is called.
    pub fn of(kind: WebhookKind) -> Self {
        match kind {
            WebhookKind::Webhook => Entity::Webhook,
            WebhookKind::AlertEndpoint => Entity::AlertEndpoint,
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::Account => "account",
            Entity::Project => "project",
            Entity::ApiKey => "API key",
            Entity::Webhook => "webhook",
            Entity::AlertEndpoint => "alert endpoint",
            Entity::Delivery => "delivery",
            Entity::Referenced => "referenced record",
        })
    }
}

/// Why a change could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The delivery's webhook is deleted, so it cannot be retried.
    WebhookDeleted,
    /// Another request with the same idempotency key is being accepted.
    IdempotencyKeyInUse,
    /// The idempotency key was used, in the last 24 hours, for another event.
    IdempotencyKeyReused,
    /// A row with the same unique value exists.
    AlreadyExists,
    /// The webhook is paused; resume it first.
    WebhookPaused,
    /// Endpoint health disabled the webhook; re-enable it first.
    WebhookDisabled,
    /// The webhook pushes its deliveries, so it has no queue to poll.
    PushWebhook,
}

/// What can go wrong in storage, in terms the API can answer with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(Entity),
    #[error("conflict: {0:?}")]
    Conflict(Reason),
    #[error("the project already has {limit} active {}s, the most allowed", Entity::of(*kind))]
    WebhookLimitReached { limit: u32, kind: WebhookKind },
    #[error("a webhook signing secret is {0}")]
    MissingKey(#[from] super::cipher::MissingKey),
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A foreign-key violation means the parent row (`what`) does not exist.
    pub(crate) fn missing_parent(error: sqlx::Error, what: Entity) -> Self {
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
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound(Entity::Referenced),
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(Reason::AlreadyExists),
                ErrorKind::ForeignKeyViolation => StoreError::NotFound(Entity::Referenced),
                // Which codes mean "try again shortly" is each backend's own business.
                _ if postgres::is_transient(db.as_ref()) || sqlite::is_transient(db.as_ref()) => {
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
