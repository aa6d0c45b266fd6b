//! The Postgres backend: the production store, shared safely by several service instances.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{FromRow, Postgres, Transaction};
use uuid::Uuid;

use super::{
    ApiKeyRecord, BootstrapTenant, NewAccount, NewApiKey, NewProject, NewWebhook, PoolSettings,
    Store, StoreError, StoreResult, Webhook, WebhookChanges, WebhookRow, WebhookStats,
    parse_scopes, scope_strings,
};
use crate::domain::{ApiKeyId, ProjectId, WebhookId, WebhookSecret};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

const WEBHOOK_COLUMNS: &str = "id, project_id, url, events, secret, is_active, created_at, \
     updated_at, deleted_at, total_deliveries, successful_deliveries, failed_deliveries, \
     last_success_at, last_failure_at, consecutive_failures";

pub struct PostgresStore {
    pool: PgPool,
}

#[derive(FromRow)]
struct PgWebhook {
    id: Uuid,
    project_id: Uuid,
    url: String,
    events: Vec<String>,
    secret: String,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    total_deliveries: i64,
    successful_deliveries: i64,
    failed_deliveries: i64,
    last_success_at: Option<DateTime<Utc>>,
    last_failure_at: Option<DateTime<Utc>>,
    consecutive_failures: i64,
}

impl TryFrom<PgWebhook> for Webhook {
    type Error = StoreError;

    fn try_from(row: PgWebhook) -> Result<Self, Self::Error> {
        WebhookRow {
            id: row.id,
            project_id: row.project_id,
            url: row.url,
            events: row.events,
            secret: row.secret,
            is_active: row.is_active,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
            stats: WebhookStats {
                total_deliveries: row.total_deliveries,
                successful_deliveries: row.successful_deliveries,
                failed_deliveries: row.failed_deliveries,
                last_success_at: row.last_success_at,
                last_failure_at: row.last_failure_at,
                consecutive_failures: row.consecutive_failures,
            },
        }
        .try_into()
    }
}

#[derive(FromRow)]
struct PgApiKey {
    id: Uuid,
    project_id: Uuid,
    scopes: Vec<String>,
    revoked_at: Option<DateTime<Utc>>,
}

impl PostgresStore {
    pub async fn connect(url: &str, settings: &PoolSettings) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("hookrelay");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    async fn insert_account(
        tx: &mut Transaction<'_, Postgres>,
        new: &NewAccount,
    ) -> StoreResult<()> {
        sqlx::query("insert into accounts (id, name, created_at) values ($1, $2, $3)")
            .bind(new.id.as_uuid())
            .bind(new.name.as_str())
            .bind(new.created_at)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn insert_project(
        tx: &mut Transaction<'_, Postgres>,
        new: &NewProject,
    ) -> StoreResult<()> {
        sqlx::query(
            "insert into projects (id, account_id, name, created_at) values ($1, $2, $3, $4)",
        )
        .bind(new.id.as_uuid())
        .bind(new.account_id.as_uuid())
        .bind(new.name.as_str())
        .bind(new.created_at)
        .execute(&mut **tx)
        .await
        .map_err(|e| not_found_on_fk(e, "account"))?;
        Ok(())
    }

    async fn insert_api_key(
        tx: &mut Transaction<'_, Postgres>,
        new: &NewApiKey,
    ) -> StoreResult<()> {
        sqlx::query(
            "insert into api_keys (id, project_id, key_hash, display_prefix, scopes, created_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new.id.as_uuid())
        .bind(new.project_id.as_uuid())
        .bind(&new.key_hash[..])
        .bind(&new.display_prefix)
        .bind(scope_strings(&new.scopes))
        .bind(new.created_at)
        .execute(&mut **tx)
        .await
        .map_err(|e| not_found_on_fk(e, "project"))?;
        Ok(())
    }
}

fn not_found_on_fk(error: sqlx::Error, what: &'static str) -> StoreError {
    match StoreError::from(error) {
        StoreError::NotFound(_) => StoreError::NotFound(what),
        other => other,
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_account(&self, new: NewAccount) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        Self::insert_account(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_project(&self, new: NewProject) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        Self::insert_project(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_api_key(&self, new: NewApiKey) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        Self::insert_api_key(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_api_key(&self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<()> {
        let updated =
            sqlx::query("update api_keys set revoked_at = $2 where id = $1 and revoked_at is null")
                .bind(id.as_uuid())
                .bind(now)
                .execute(&self.pool)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("API key"));
        }
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKeyRecord>> {
        let row: Option<PgApiKey> = sqlx::query_as(
            "select id, project_id, scopes, revoked_at from api_keys where key_hash = $1",
        )
        .bind(&key_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ApiKeyRecord {
                id: row.id.into(),
                project_id: row.project_id.into(),
                scopes: parse_scopes(&row.scopes)?,
                revoked: row.revoked_at.is_some(),
            })
        })
        .transpose()
    }

    async fn bootstrap(&self, tenant: BootstrapTenant) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // The marker row's primary key makes concurrent first starts agree on one winner.
        let claimed = sqlx::query(
            "insert into bootstrap_marker (id, created_at) values (1, $1) on conflict do nothing",
        )
        .bind(tenant.account.created_at)
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
        let mut tx = self.pool.begin().await?;
        // Locking the project row serialises concurrent creates, so the cap holds across instances.
        sqlx::query("select id from projects where id = $1 for update")
            .bind(project.as_uuid())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("project"))?;
        let (active,): (i64,) =
            sqlx::query_as("select count(*) from webhooks where project_id = $1 and is_active")
                .bind(project.as_uuid())
                .fetch_one(&mut *tx)
                .await?;
        if active >= i64::from(limit) {
            return Err(StoreError::WebhookLimitReached { limit });
        }
        let row: PgWebhook = sqlx::query_as(&format!(
            "insert into webhooks (id, project_id, url, events, secret, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $6) returning {WEBHOOK_COLUMNS}"
        ))
        .bind(new.id.as_uuid())
        .bind(project.as_uuid())
        .bind(new.url.as_str())
        .bind(new.events.to_strings())
        .bind(new.secret.expose())
        .bind(new.created_at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn list_webhooks(
        &self,
        project: ProjectId,
        include_inactive: bool,
    ) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<PgWebhook> = sqlx::query_as(&format!(
            "select {WEBHOOK_COLUMNS} from webhooks \
             where project_id = $1 and (is_active or $2) order by created_at, id"
        ))
        .bind(project.as_uuid())
        .bind(include_inactive)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Webhook::try_from).collect()
    }

    async fn get_webhook(&self, project: ProjectId, id: WebhookId) -> StoreResult<Webhook> {
        let row: Option<PgWebhook> = sqlx::query_as(&format!(
            "select {WEBHOOK_COLUMNS} from webhooks where id = $1 and project_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or(StoreError::NotFound("webhook"))?.try_into()
    }

    async fn update_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        changes: WebhookChanges,
    ) -> StoreResult<Webhook> {
        let row: Option<PgWebhook> = sqlx::query_as(&format!(
            "update webhooks set url = coalesce($3, url), events = coalesce($4, events), \
             updated_at = $5 where id = $1 and project_id = $2 and is_active \
             returning {WEBHOOK_COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(changes.url.as_ref().map(|u| u.as_str()))
        .bind(changes.events.as_ref().map(|e| e.to_strings()))
        .bind(changes.updated_at)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or(StoreError::NotFound("webhook"))?.try_into()
    }

    async fn delete_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "update webhooks set is_active = false, deleted_at = $3, updated_at = $3 \
             where id = $1 and project_id = $2 and is_active",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(now)
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
        .bind(now)
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
        .bind(now)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("webhook"));
        }
        Ok(())
    }
}
