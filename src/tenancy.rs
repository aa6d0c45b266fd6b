//! Provisioning tenants: accounts, projects and API keys, for the CLI, the admin API and bootstrap.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{AccountId, ApiKey, ApiKeyId, Name, ProjectId, Scopes};
use serde_json::json;

use crate::domain::{Actor, AuditEntry};
use crate::store::{BootstrapTenant, NewAccount, NewApiKey, NewProject, Store, StoreResult};

/// A key as issued: the plaintext exists only here, to be shown once.
#[derive(Debug)]
pub struct IssuedKey {
    pub id: ApiKeyId,
    pub key: ApiKey,
}

/// The tenant created on the first start of an empty database.
#[derive(Debug)]
pub struct Bootstrapped {
    pub account_id: AccountId,
    pub project_id: ProjectId,
    pub key: IssuedKey,
}

pub async fn create_account(
    store: &dyn Store,
    name: Name,
    now: DateTime<Utc>,
) -> StoreResult<AccountId> {
    let id = AccountId::generate();
    store
        .create_account(NewAccount {
            id,
            name,
            created_at: now,
        })
        .await?;
    Ok(id)
}

pub async fn create_project(
    store: &dyn Store,
    account_id: AccountId,
    name: Name,
    now: DateTime<Utc>,
) -> StoreResult<ProjectId> {
    let id = ProjectId::generate();
    store
        .create_project(NewProject {
            id,
            account_id,
            name,
            created_at: now,
        })
        .await?;
    Ok(id)
}

fn new_key(project_id: ProjectId, scopes: Scopes, now: DateTime<Utc>) -> (IssuedKey, NewApiKey) {
    let key = ApiKey::generate();
    let id = ApiKeyId::generate();
    let record = NewApiKey {
        id,
        project_id,
        key_hash: key.hash(),
        display_prefix: key.display_prefix(),
        scopes,
        created_at: now,
    };
    (IssuedKey { id, key }, record)
}

pub async fn create_key(
    store: &dyn Store,
    project_id: ProjectId,
    scopes: Scopes,
    actor: Actor,
    now: DateTime<Utc>,
) -> StoreResult<IssuedKey> {
    let changes = json!({ "scopes": scopes.to_strings() });
    let (issued, record) = new_key(project_id, scopes, now);
    let audit = AuditEntry {
        actor,
        action: "api_key.created",
        target_id: issued.id.to_string(),
        changes,
        at: now,
    };
    store.create_api_key(record, audit).await?;
    Ok(issued)
}

/// How long an instance may act on a key it has read as live without reading it again
/// (`http::key_cache`). A revoke waits this long after committing, so that it has taken effect
/// on every instance by the time it answers.
pub const KEY_TRUST: Duration = Duration::from_secs(1);

/// Revokes a key; once this returns, no instance accepts it any more. The audit log of its
/// project records who did.
pub async fn revoke_key(
    store: &dyn Store,
    id: ApiKeyId,
    actor: Actor,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let audit = AuditEntry {
        actor,
        action: "api_key.revoked",
        target_id: id.to_string(),
        changes: json!({}),
        at: now,
    };
    store.revoke_api_key(id, audit).await?;
    tokio::time::sleep(KEY_TRUST).await;
    Ok(())
}

/// Creates a "default" account and project with an all-scope key, once, on an empty database.
pub async fn bootstrap(store: &dyn Store, now: DateTime<Utc>) -> StoreResult<Option<Bootstrapped>> {
    let name = Name::parse("default").expect("\"default\" is a valid name");
    let account_id = AccountId::generate();
    let project_id = ProjectId::generate();
    let (key, key_record) = new_key(project_id, Scopes::all(), now);
    let tenant = BootstrapTenant {
        account: NewAccount {
            id: account_id,
            name: name.clone(),
            created_at: now,
        },
        project: NewProject {
            id: project_id,
            account_id,
            name,
            created_at: now,
        },
        key: key_record,
    };
    let created = store.bootstrap(tenant).await?;
    Ok(created.then_some(Bootstrapped {
        account_id,
        project_id,
        key,
    }))
}
