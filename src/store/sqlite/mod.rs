//! The SQLite backend: the zero-setup store for a single instance, in one local file.

mod events;
mod log;
mod outcomes;
mod pull;
mod queue;
mod webhooks;

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::error::DatabaseError;
use sqlx::sqlite::SqliteError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::cipher::SecretCipher;
use super::records::{KeyInfoRow, KeyRecordRow};
use super::{
    ApiKeyInfo, ApiKeyRecord, BootstrapTenant, Entity, NewAccount, NewApiKey, NewProject,
    PoolSettings, PoolUsage, ProjectNames, Store, StoreError, StoreResult,
};
use crate::domain::{ApiKeyId, AuditEntry, ProjectId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Writes go through a single connection and reads through a small pool, so concurrent API
/// writes and worker updates queue in-process instead of failing with "database is locked".
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    cipher: SecretCipher,
}

/// SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes: another connection holds
/// the lock past the busy timeout, and the same statement may succeed shortly.
pub(super) fn is_transient(error: &(dyn DatabaseError + 'static)) -> bool {
    error
        .try_downcast_ref::<SqliteError>()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// Creates a missing database file readable by its owner alone; SQLite gives its WAL and
/// shared-memory files the same mode. An existing file keeps the mode it has.
fn create_private(path: &std::path::Path) -> StoreResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" || path.exists() {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::Internal(Box::new(error))),
    }
}

/// How `hex()` spells a stored id, and what `unhex()` reads back, for passing ids in JSON.
pub(super) fn hex_uuid(id: Uuid) -> String {
    id.simple().to_string().to_uppercase()
}

/// A batch as one JSON array parameter, which `json_each` turns back into rows, so a batch of
/// any size is one statement.
pub(super) fn json_rows<T: serde::Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("batch rows serialise to JSON")
}

pub(super) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(super) fn from_millis(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::corrupt(format!("stored timestamp {ms}")))
}

pub(super) fn to_json_list(items: Vec<String>) -> String {
    serde_json::Value::from(items).to_string()
}

/// Writes one audit entry inside the transaction that makes the change.
pub(super) async fn insert_audit(
    tx: &mut Transaction<'_, Sqlite>,
    project: ProjectId,
    entry: &AuditEntry,
) -> StoreResult<()> {
    sqlx::query(
        "insert into audit_log (id, project_id, at, actor_type, actor_id, channel, action, \
         target_id, changes) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(project.as_uuid())
    .bind(millis(entry.at))
    .bind(entry.actor.kind())
    .bind(entry.actor.key.map(|k| k.to_string()))
    .bind(entry.actor.channel.as_str())
    .bind(entry.action)
    .bind(&entry.target_id)
    .bind(entry.changes.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    pub async fn connect(
        url: &str,
        settings: &PoolSettings,
        cipher: SecretCipher,
    ) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // A lock held elsewhere is waited for as long as a connection would be.
            .busy_timeout(settings.acquire_timeout)
            .foreign_keys(true);
        create_private(options.get_filename())?;
        // An embedded database's connection cannot drop away: sqlx's ping before each use
        // (a hop to the connection's thread) buys nothing.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options.read_only(true));
        Ok(Self {
            writer,
            reader,
            cipher,
        })
    }

    /// Takes the write lock up front, so a transaction never fails half-way on lock upgrade.
    pub(super) async fn write_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("begin immediate").await?)
    }

    async fn insert_account(tx: &mut Transaction<'_, Sqlite>, new: &NewAccount) -> StoreResult<()> {
        sqlx::query("insert into accounts (id, name, created_at) values ($1, $2, $3)")
            .bind(new.id.as_uuid())
            .bind(new.name.as_str())
            .bind(millis(new.created_at))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn insert_project(tx: &mut Transaction<'_, Sqlite>, new: &NewProject) -> StoreResult<()> {
        sqlx::query(
            "insert into projects (id, account_id, name, created_at) values ($1, $2, $3, $4)",
        )
        .bind(new.id.as_uuid())
        .bind(new.account_id.as_uuid())
        .bind(new.name.as_str())
        .bind(millis(new.created_at))
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::missing_parent(e, Entity::Account))?;
        Ok(())
    }

    async fn insert_api_key(tx: &mut Transaction<'_, Sqlite>, new: &NewApiKey) -> StoreResult<()> {
        sqlx::query(
            "insert into api_keys (id, project_id, key_hash, display_prefix, scopes, created_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new.id.as_uuid())
        .bind(new.project_id.as_uuid())
        .bind(&new.key_hash[..])
        .bind(&new.display_prefix)
        .bind(to_json_list(new.scopes.to_strings()))
        .bind(millis(new.created_at))
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::missing_parent(e, Entity::Project))?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.reader).await?;
        Ok(())
    }

    fn pool_usage(&self) -> PoolUsage {
        let pools = [&self.writer, &self.reader];
        PoolUsage {
            open: pools.iter().map(|p| p.size()).sum(),
            idle: pools
                .iter()
                .map(|p| u32::try_from(p.num_idle()).unwrap_or(u32::MAX))
                .sum(),
            max: pools
                .iter()
                .map(|p| p.options().get_max_connections())
                .sum(),
        }
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn create_account(&self, new: NewAccount) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        Self::insert_account(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_project(&self, new: NewProject) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        Self::insert_project(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_api_key(&self, new: NewApiKey, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        Self::insert_api_key(&mut tx, &new).await?;
        insert_audit(&mut tx, new.project_id, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_api_key(&self, id: ApiKeyId, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let revoked: Option<(Uuid,)> = sqlx::query_as(
            "update api_keys set revoked_at = $2 where id = $1 and revoked_at is null \
             returning project_id",
        )
        .bind(id.as_uuid())
        .bind(millis(audit.at))
        .fetch_optional(&mut *tx)
        .await?;
        let (project,) = revoked.ok_or(StoreError::NotFound(Entity::ApiKey))?;
        insert_audit(&mut tx, project.into(), &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKeyRecord>> {
        let row: Option<KeyRecordRow> = sqlx::query_as(
            "select k.id, k.project_id, p.account_id, k.scopes, k.revoked_at \
             from api_keys k join projects p on p.id = k.project_id where k.key_hash = $1",
        )
        .bind(&key_hash[..])
        .fetch_optional(&self.reader)
        .await?;
        row.map(ApiKeyRecord::try_from).transpose()
    }

    async fn touch_api_keys(&self, used: &[(ApiKeyId, DateTime<Utc>)]) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        for (id, at) in used {
            sqlx::query("update api_keys set last_used_at = max(coalesce(last_used_at, $2), $2) where id = $1")
                .bind(id.as_uuid())
                .bind(millis(*at))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_api_keys(&self, project: ProjectId) -> StoreResult<Vec<ApiKeyInfo>> {
        let exists: Option<(Uuid,)> = sqlx::query_as("select id from projects where id = $1")
            .bind(project.as_uuid())
            .fetch_optional(&self.reader)
            .await?;
        exists.ok_or(StoreError::NotFound(Entity::Project))?;
        let rows: Vec<KeyInfoRow> = sqlx::query_as(
            "select id, display_prefix, scopes, created_at, last_used_at, revoked_at \
             from api_keys where project_id = $1 order by created_at, id",
        )
        .bind(project.as_uuid())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(ApiKeyInfo::try_from).collect()
    }

    async fn project_names(&self, project: ProjectId) -> StoreResult<ProjectNames> {
        let names: Option<ProjectNames> = sqlx::query_as(
            "select p.name as project, a.name as account from projects p \
             join accounts a on a.id = p.account_id where p.id = $1",
        )
        .bind(project.as_uuid())
        .fetch_optional(&self.reader)
        .await?;
        names.ok_or(StoreError::NotFound(Entity::Project))
    }

    async fn reseal_secrets(&self) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let rows: Vec<(Uuid, String, Option<String>)> =
            sqlx::query_as("select id, secret, previous_secret from webhooks")
                .fetch_all(&mut *tx)
                .await?;
        let mut changed = 0;
        for (id, secret, previous) in rows {
            let Some((secret, previous)) = self.cipher.reseal(&secret, previous.as_deref())? else {
                continue;
            };
            sqlx::query("update webhooks set secret = $2, previous_secret = $3 where id = $1")
                .bind(id)
                .bind(secret)
                .bind(previous)
                .execute(&mut *tx)
                .await?;
            changed += 1;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn bootstrap(&self, tenant: BootstrapTenant) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let claimed = sqlx::query(
            "insert into bootstrap_marker (id, created_at) values (1, $1) on conflict do nothing",
        )
        .bind(millis(tenant.account.created_at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let (accounts,): (i64,) = sqlx::query_as("select count(*) from accounts")
            .fetch_one(&mut *tx)
            .await?;
        if !claimed || accounts > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        Self::insert_account(&mut tx, &tenant.account).await?;
        Self::insert_project(&mut tx, &tenant.project).await?;
        Self::insert_api_key(&mut tx, &tenant.key).await?;
        tx.commit().await?;
        Ok(true)
    }
}
