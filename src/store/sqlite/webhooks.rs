//! Webhook subscriptions on SQLite.

use async_trait::async_trait;
use sqlx::FromRow;
use uuid::Uuid;

use super::insert_audit;
use super::{SqliteStore, from_json_list, from_millis, millis, to_json_list};
use crate::domain::{ProjectId, WebhookId};
use crate::store::cipher::SecretCipher;
use crate::store::{
    AuditEntry, AuditRecord, NewWebhook, SecretRotation, StoreError, StoreResult, Webhook,
    WebhookChanges, WebhookRow, WebhookStats, WebhookStore, audit_record, filters_to_json,
};

const WEBHOOK_COLUMNS: &str = "id, project_id, url, events, filters, secret, is_active, \
     created_at, updated_at, deleted_at, total_deliveries, successful_deliveries, \
     failed_deliveries, last_success_at, last_failure_at, consecutive_failures, disabled_at, \
     disabled_reason, last_modified_by, last_modified_via";

#[derive(FromRow)]
struct LiteWebhook {
    id: Uuid,
    project_id: Uuid,
    url: String,
    events: String,
    filters: String,
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
    disabled_at: Option<i64>,
    disabled_reason: Option<String>,
    last_modified_by: Option<String>,
    last_modified_via: Option<String>,
}

impl LiteWebhook {
    fn into_webhook(self, cipher: &SecretCipher) -> StoreResult<Webhook> {
        let row = self;
        WebhookRow {
            id: row.id,
            project_id: row.project_id,
            url: row.url,
            events: from_json_list(&row.events)?,
            filters: row.filters,
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
            disabled_at: row.disabled_at.map(from_millis).transpose()?,
            disabled_reason: row.disabled_reason,
            last_modified_by: row.last_modified_by,
            last_modified_via: row.last_modified_via,
        }
        .into_webhook(cipher)
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(
        &self,
        project: ProjectId,
        new: NewWebhook,
        limit: u32,
        audit: AuditEntry,
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
            "insert into webhooks (id, project_id, url, events, filters, secret, created_at, \
             updated_at, last_modified_by, last_modified_via) \
             values ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9) returning {WEBHOOK_COLUMNS}"
        ))
        .bind(new.id.as_uuid())
        .bind(project.as_uuid())
        .bind(new.url.as_str())
        .bind(to_json_list(new.events.to_strings()))
        .bind(filters_to_json(&new.filters))
        .bind(self.cipher.seal(&new.secret))
        .bind(millis(new.created_at))
        .bind(audit.actor.id())
        .bind(audit.actor.channel.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::missing_parent(e, "project"))?;
        insert_audit(&mut tx, project, &audit).await?;
        tx.commit().await?;
        row.into_webhook(&self.cipher)
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
        rows.into_iter()
            .map(|row| row.into_webhook(&self.cipher))
            .collect()
    }

    async fn get_webhook(&self, project: ProjectId, id: WebhookId) -> StoreResult<Webhook> {
        let row: Option<LiteWebhook> = sqlx::query_as(&format!(
            "select {WEBHOOK_COLUMNS} from webhooks where id = $1 and project_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .fetch_optional(&self.reader)
        .await?;
        row.ok_or(StoreError::NotFound("webhook"))?
            .into_webhook(&self.cipher)
    }

    async fn update_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        changes: WebhookChanges,
        audit: AuditEntry,
    ) -> StoreResult<Webhook> {
        let mut tx = self.write_tx().await?;
        let row: Option<LiteWebhook> = sqlx::query_as(&format!(
            "update webhooks set url = coalesce($3, url), events = coalesce($4, events), \
             filters = coalesce($5, filters), updated_at = $6, disabled_at = null, \
             disabled_reason = null, failing_since = null, last_modified_by = $7, \
             last_modified_via = $8 \
             where id = $1 and project_id = $2 and is_active returning {WEBHOOK_COLUMNS}"
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
        .bind(changes.filters.as_ref().map(filters_to_json))
        .bind(millis(changes.updated_at))
        .bind(audit.actor.id())
        .bind(audit.actor.channel.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let webhook = row
            .ok_or(StoreError::NotFound("webhook"))?
            .into_webhook(&self.cipher)?;
        insert_audit(&mut tx, project, &audit).await?;
        tx.commit().await?;
        Ok(webhook)
    }

    async fn delete_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        audit: AuditEntry,
    ) -> StoreResult<()> {
        let now = audit.at;
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query(
            "update webhooks set is_active = 0, deleted_at = $3, updated_at = $3, \
             last_modified_by = $4, last_modified_via = $5 \
             where id = $1 and project_id = $2 and is_active",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(millis(now))
        .bind(audit.actor.id())
        .bind(audit.actor.channel.as_str())
        .execute(&mut *tx)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound("webhook"));
        }
        sqlx::query(
            "update deliveries set status = 'cancelled', next_attempt_at = null, \
             lease_until = null, lease_token = null, updated_at = $2 \
             where webhook_id = $1 and status = 'pending'",
        )
        .bind(id.as_uuid())
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, project, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_webhook_secret(
        &self,
        project: ProjectId,
        id: WebhookId,
        rotation: SecretRotation,
        audit: AuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "update webhooks set previous_secret = case when $5 is null then null else secret end, \
             previous_secret_until = $5, secret = $3, updated_at = $4, last_modified_by = $6, \
             last_modified_via = $7 \
             where id = $1 and project_id = $2 and is_active",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(self.cipher.seal(&rotation.secret))
        .bind(millis(rotation.at))
        .bind(rotation.previous_valid_until.map(millis))
        .bind(audit.actor.id())
        .bind(audit.actor.channel.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound("webhook"));
        }
        insert_audit(&mut tx, project, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        project: ProjectId,
        before: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let rows: Vec<(
            Uuid,
            i64,
            String,
            Option<String>,
            String,
            String,
            String,
            String,
        )> = sqlx::query_as(
            "select id, at, actor_type, actor_id, channel, action, target_id, changes \
                 from audit_log where project_id = $1 and ($2 is null or id < $2) \
                 order by id desc limit $3",
        )
        .bind(project.as_uuid())
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(
                |(id, at, actor_type, actor_id, channel, action, target_id, changes)| {
                    audit_record((
                        id,
                        from_millis(at)?,
                        actor_type,
                        actor_id,
                        channel,
                        action,
                        target_id,
                        changes,
                    ))
                },
            )
            .collect()
    }
}
