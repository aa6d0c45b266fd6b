//! The SQLite backend: the zero-setup store for a single instance, in one local file.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, Sqlite, Transaction};
use uuid::Uuid;

use super::{
    ApiKeyRecord, BootstrapTenant, NewAccount, NewApiKey, NewProject, NewWebhook, PoolSettings,
    Store, StoreError, StoreResult, Webhook, WebhookChanges, WebhookRow, WebhookStats,
    parse_scopes, scope_strings,
};
use crate::domain::{ApiKeyId, ProjectId, WebhookId, WebhookSecret};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

const WEBHOOK_COLUMNS: &str = "id, project_id, url, events, secret, is_active, created_at, \
     updated_at, deleted_at, total_deliveries, successful_deliveries, failed_deliveries, \
     last_success_at, last_failure_at, consecutive_failures";

/// Writes go through a single connection and reads through a small pool, so concurrent API
/// writes and worker updates queue in-process instead of failing with "database is locked".
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

#[derive(FromRow)]
struct LiteWebhook {
    id: Uuid,
    project_id: Uuid,
    url: String,
    events: String,
    secret: String,
    is_active: bool,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    total_deliveries: i64,
    successful_deliveries: i64,
    failed_deliveries: i64,
    last_success_at: Option<i64>,
    last_failure_at: Option<i64>,
    consecutive_failures: i64,
}

impl TryFrom<LiteWebhook> for Webhook {
    type Error = StoreError;

    fn try_from(row: LiteWebhook) -> Result<Self, Self::Error> {
        WebhookRow {
            id: row.id,
            project_id: row.project_id,
            url: row.url,
            events: from_json_list(&row.events)?,
            secret: row.secret,
            is_active: row.is_active,
            created_at: from_millis(row.created_at)?,
            updated_at: from_millis(row.updated_at)?,
            deleted_at: row.deleted_at.map(from_millis).transpose()?,
            stats: WebhookStats {
                total_deliveries: row.total_deliveries,
                successful_deliveries: row.successful_deliveries,
                failed_deliveries: row.failed_deliveries,
                last_success_at: row.last_success_at.map(from_millis).transpose()?,
                last_failure_at: row.last_failure_at.map(from_millis).transpose()?,
                consecutive_failures: row.consecutive_failures,
            },
        }
        .try_into()
    }
}

#[derive(FromRow)]
struct LiteApiKey {
    id: Uuid,
    project_id: Uuid,
    scopes: String,
    revoked_at: Option<i64>,
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_millis(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::corrupt(format!("stored timestamp {ms}")))
}

fn to_json_list(items: Vec<String>) -> String {
    serde_json::Value::from(items).to_string()
}

fn from_json_list(stored: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(stored).map_err(|e| StoreError::corrupt(format!("stored list: {e}")))
}

fn not_found_on_fk(error: sqlx::Error, what: &'static str) -> StoreError {
    match StoreError::from(error) {
        StoreError::NotFound(_) => StoreError::NotFound(what),
        other => other,
    }
}

impl SqliteStore {
    pub async fn connect(url: &str, settings: &PoolSettings) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options.read_only(true));
        Ok(Self { writer, reader })
    }

    /// Takes the write lock up front, so a transaction never fails half-way on lock upgrade.
    async fn write_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
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
        .map_err(|e| not_found_on_fk(e, "account"))?;
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
        .bind(to_json_list(scope_strings(&new.scopes)))
        .bind(millis(new.created_at))
        .execute(&mut **tx)
        .await
        .map_err(|e| not_found_on_fk(e, "project"))?;
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

    async fn create_api_key(&self, new: NewApiKey) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        Self::insert_api_key(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_api_key(&self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<()> {
        let updated =
            sqlx::query("update api_keys set revoked_at = $2 where id = $1 and revoked_at is null")
                .bind(id.as_uuid())
                .bind(millis(now))
                .execute(&self.writer)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("API key"));
        }
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKeyRecord>> {
        let row: Option<LiteApiKey> = sqlx::query_as(
            "select id, project_id, scopes, revoked_at from api_keys where key_hash = $1",
        )
        .bind(&key_hash[..])
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(ApiKeyRecord {
                id: row.id.into(),
                project_id: row.project_id.into(),
                scopes: parse_scopes(&from_json_list(&row.scopes)?)?,
                revoked: row.revoked_at.is_some(),
            })
        })
        .transpose()
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

    async fn create_webhook(
        &self,
        project: ProjectId,
        new: NewWebhook,
        limit: u32,
    ) -> StoreResult<Webhook> {
        let mut tx = self.write_tx().await?;
        let (active,): (i64,) =
            sqlx::query_as("select count(*) from webhooks where project_id = $1 and is_active")
                .bind(project.as_uuid())
                .fetch_one(&mut *tx)
                .await?;
        if active >= i64::from(limit) {
            return Err(StoreError::WebhookLimitReached { limit });
        }
        let row: LiteWebhook = sqlx::query_as(&format!(
            "insert into webhooks (id, project_id, url, events, secret, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $6) returning {WEBHOOK_COLUMNS}"
        ))
        .bind(new.id.as_uuid())
        .bind(project.as_uuid())
        .bind(new.url.as_str())
        .bind(to_json_list(new.events.to_strings()))
        .bind(new.secret.expose())
        .bind(millis(new.created_at))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| not_found_on_fk(e, "project"))?;
        tx.commit().await?;
        row.try_into()
    }

    async fn list_webhooks(
        &self,
        project: ProjectId,
        include_inactive: bool,
    ) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<LiteWebhook> = sqlx::query_as(&format!(
            "select {WEBHOOK_COLUMNS} from webhooks \
             where project_id = $1 and (is_active or $2) order by created_at, id"
        ))
        .bind(project.as_uuid())
        .bind(include_inactive)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(Webhook::try_from).collect()
    }

    async fn get_webhook(&self, project: ProjectId, id: WebhookId) -> StoreResult<Webhook> {
        let row: Option<LiteWebhook> = sqlx::query_as(&format!(
            "select {WEBHOOK_COLUMNS} from webhooks where id = $1 and project_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .fetch_optional(&self.reader)
        .await?;
        row.ok_or(StoreError::NotFound("webhook"))?.try_into()
    }

    async fn update_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        changes: WebhookChanges,
    ) -> StoreResult<Webhook> {
        let row: Option<LiteWebhook> = sqlx::query_as(&format!(
            "update webhooks set url = coalesce($3, url), events = coalesce($4, events), \
             updated_at = $5 where id = $1 and project_id = $2 and is_active \
             returning {WEBHOOK_COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(changes.url.as_ref().map(|u| u.as_str()))
        .bind(
            changes
                .events
                .as_ref()
                .map(|e| to_json_list(e.to_strings())),
        )
        .bind(millis(changes.updated_at))
        .fetch_optional(&self.writer)
        .await?;
        row.ok_or(StoreError::NotFound("webhook"))?.try_into()
    }

    async fn delete_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query(
            "update webhooks set is_active = 0, deleted_at = $3, updated_at = $3 \
             where id = $1 and project_id = $2 and is_active",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("webhook"));
        }
        sqlx::query(
            "update deliveries set status = 'cancelled', next_attempt_at = null, \
             lease_until = null, updated_at = $2 where webhook_id = $1 and status = 'pending'",
        )
        .bind(id.as_uuid())
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_webhook_secret(
        &self,
        project: ProjectId,
        id: WebhookId,
        secret: WebhookSecret,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let updated = sqlx::query(
            "update webhooks set secret = $3, updated_at = $4 \
             where id = $1 and project_id = $2 and is_active",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(secret.expose())
        .bind(millis(now))
        .execute(&self.writer)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("webhook"));
        }
        Ok(())
    }
}
