//! Accounts, projects and API keys as the store takes and returns them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{AccountId, ApiKeyId, Name, ProjectId, Scopes};
use crate::store::decode::{TextList, Time};
use crate::store::{StoreError, StoreResult};

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

/// A project's name and its account's, as people know them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProjectNames {
    pub project: String,
    pub account: String,
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

fn parse_scopes(stored: &[String]) -> StoreResult<Scopes> {
    Scopes::parse(stored).map_err(|e| StoreError::corrupt(format!("stored scopes: {e}")))
}

/// An `api_keys` row as both backends read it for listing.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyInfoRow {
    id: Uuid,
    display_prefix: String,
    scopes: TextList,
    created_at: Time,
    last_used_at: Option<Time>,
    revoked_at: Option<Time>,
}

impl TryFrom<KeyInfoRow> for ApiKeyInfo {
    type Error = StoreError;

    fn try_from(row: KeyInfoRow) -> StoreResult<Self> {
        Ok(ApiKeyInfo {
            id: row.id.into(),
            display_prefix: row.display_prefix,
            scopes: parse_scopes(&row.scopes.0)?,
            created_at: row.created_at.0,
            last_used_at: row.last_used_at.map(|t| t.0),
            revoked_at: row.revoked_at.map(|t| t.0),
        })
    }
}

/// A key with its project's account, as both backends read it for authentication.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyRecordRow {
    id: Uuid,
    project_id: Uuid,
    account_id: Uuid,
    scopes: TextList,
    revoked_at: Option<Time>,
}

impl TryFrom<KeyRecordRow> for ApiKeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRecordRow) -> StoreResult<Self> {
        Ok(ApiKeyRecord {
            id: row.id.into(),
            project_id: row.project_id.into(),
            account_id: row.account_id.into(),
            scopes: parse_scopes(&row.scopes.0)?,
            revoked: row.revoked_at.is_some(),
        })
    }
}
