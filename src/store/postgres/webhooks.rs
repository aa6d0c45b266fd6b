//! Webhook subscriptions on Postgres.

use async_trait::async_trait;
use sqlx::FromRow;
use uuid::Uuid;

use super::PostgresStore;
use super::{audit_insert, bind_audit, insert_audit};
use crate::domain::{AuditEntry, ProjectId, WebhookId, WebhookKind};
use crate::store::records::{
    AuditRow, WebhookRow, filters_to_json, listed_webhooks, schedule_to_json, stored_headers,
};
use crate::store::{
    AuditRecord, Entity, NewWebhook, SecretRotation, StoreError, StoreResult, Webhook,
    WebhookChanges, WebhookStore,
};

const WEBHOOK_COLUMNS: &str = "id, kind, mode, project_id, url, events, filters::text as filters, \
     secret, is_active, created_at, updated_at, deleted_at, total_deliveries, \
     successful_deliveries, failed_deliveries, last_success_at, last_failure_at, \
     consecutive_failures, disabled_at, disabled_reason, last_modified_by, last_modified_via, \
     retry_schedule, rate_limit, max_concurrency, throttled_until, effective_concurrency, paused_at, \
     description, metadata, custom_headers";

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(
        &self,
        project: ProjectId,
        new: NewWebhook,
        limit: u32,
        audit: AuditEntry,
    ) -> StoreResult<Webhook> {
        let mut tx = self.pool.begin().await?;
        // Locking the project row serialises concurrent creates, so the cap holds across
        // instances. `no key update` leaves the key-share locks of foreign-key checks free: the
        // project's publishes and audit rows do not wait for a create.
        sqlx::query("select id from projects where id = $1 for no key update")
            .bind(project.as_uuid())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound(Entity::Project))?;
        // Read after the lock, the count sees every create committed before this one.
        let sql = format!(
            "with active as (select count(*) as n from webhooks \
                 where project_id = $2 and kind = $16 and is_active), \
             created as (insert into webhooks (id, project_id, url, events, filters, secret, \
                 created_at, updated_at, last_modified_by, last_modified_via, retry_schedule, \
                 rate_limit, max_concurrency, description, metadata, custom_headers, kind, mode) \
                 select $1, $2, $3, $4, $5::jsonb, $6, $7, $7, $8, $9, $10, $11, $12, $13, $14, \
                     $15, $16, $17 from active where n < $18 \
                 returning {WEBHOOK_COLUMNS}), \
             audited as ({}) \
             select * from created",
            audit_insert(19, Some("created"))
        );
        let query = sqlx::query(&sql)
            .bind(new.id.as_uuid())
            .bind(project.as_uuid())
            .bind(new.destination.url().map_or("", |url| url.as_str()))
            .bind(new.events.to_strings())
            .bind(filters_to_json(&new.filters))
            .bind(self.cipher.seal(&new.secret))
            .bind(new.created_at)
            .bind(audit.actor.id())
            .bind(audit.actor.channel.as_str())
            .bind(new.limits.retry_schedule.as_ref().map(schedule_to_json))
            .bind(new.limits.rate_limit.map(i64::from))
            .bind(new.limits.max_concurrency.map(i64::from))
            .bind(&new.labels.description)
            .bind(new.labels.metadata.to_json())
            .bind(stored_headers(&self.cipher, &new.labels.headers))
            .bind(new.kind.as_str())
            .bind(new.destination.mode().as_str())
            .bind(i64::from(limit));
        let created = bind_audit(query, project, &audit)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::WebhookLimitReached {
                limit,
                kind: new.kind,
            })?;
        tx.commit().await?;
        WebhookRow::from_row(&created)?.into_webhook(&self.cipher)
    }

    async fn list_webhooks(
        &self,
        project: ProjectId,
        kind: WebhookKind,
        include_inactive: bool,
    ) -> StoreResult<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(&format!(
            "select {WEBHOOK_COLUMNS} from webhooks where project_id = $1 and kind = $2{} \
             order by created_at, id",
            listed_webhooks(include_inactive)
        ))
        .bind(project.as_uuid())
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| row.into_webhook(&self.cipher))
            .collect()
    }

    async fn get_webhook(
        &self,
        project: ProjectId,
        kind: WebhookKind,
        id: WebhookId,
    ) -> StoreResult<Webhook> {
        let row: Option<WebhookRow> = sqlx::query_as(&format!(
            "select {WEBHOOK_COLUMNS} from webhooks where id = $1 and project_id = $2 and kind = $3"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or(StoreError::NotFound(Entity::of(kind)))?
            .into_webhook(&self.cipher)
    }

    async fn update_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        changes: WebhookChanges,
        audit: AuditEntry,
    ) -> StoreResult<Webhook> {
        let sql = format!(
            "with updated as (update webhooks \
             set url = coalesce($3, url), events = coalesce($4, events), \
             filters = coalesce($5::jsonb, filters), updated_at = $6, \
             disabled_at = case when $15 then disabled_at end, \
             disabled_reason = case when $15 then disabled_reason end, \
             failing_since = case when $15 then failing_since end, last_modified_by = $7, \
             last_modified_via = $8, \
             retry_schedule = case when $9 then $10 else retry_schedule end, \
             rate_limit = case when $11 then $12 else rate_limit end, \
             max_concurrency = case when $13 then $14 else max_concurrency end, \
             effective_concurrency = case when $13 then null else effective_concurrency end, \
             paused_at = case when $15 is null then paused_at when $15 then coalesce(paused_at, $6) \
                         else null end, \
             description = case when $16 then $17 else description end, \
             metadata = coalesce($18, metadata), \
             custom_headers = case when $19 then $20 else custom_headers end \
             where id = $1 and project_id = $2 and kind = 'webhook' and is_active \
             returning {WEBHOOK_COLUMNS}), \
             audited as ({}) \
             select * from updated",
            audit_insert(21, Some("updated"))
        );
        let query = sqlx::query(&sql)
            .bind(id.as_uuid())
            .bind(project.as_uuid())
            .bind(changes.url.as_ref().map(|u| u.as_str()))
            .bind(changes.events.as_ref().map(|e| e.to_strings()))
            .bind(changes.filters.as_ref().map(filters_to_json))
            .bind(changes.updated_at)
            .bind(audit.actor.id())
            .bind(audit.actor.channel.as_str())
            .bind(changes.retry_schedule.is_some())
            .bind(
                changes
                    .retry_schedule
                    .as_ref()
                    .and_then(|s| s.as_ref().map(schedule_to_json)),
            )
            .bind(changes.rate_limit.is_some())
            .bind(changes.rate_limit.flatten().map(i64::from))
            .bind(changes.max_concurrency.is_some())
            .bind(changes.max_concurrency.flatten().map(i64::from))
            .bind(changes.paused)
            .bind(changes.description.is_some())
            .bind(changes.description.clone().flatten())
            .bind(changes.metadata.as_ref().map(|m| m.to_json()))
            .bind(changes.headers.is_some())
            .bind(
                changes
                    .headers
                    .as_ref()
                    .and_then(|h| stored_headers(&self.cipher, h)),
            );
        let row = bind_audit(query, project, &audit)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound(Entity::Webhook))?;
        WebhookRow::from_row(&row)?.into_webhook(&self.cipher)
    }

    async fn delete_webhook(
        &self,
        project: ProjectId,
        kind: WebhookKind,
        id: WebhookId,
        audit: AuditEntry,
    ) -> StoreResult<()> {
        let now = audit.at;
        let mut tx = self.pool.begin().await?;
        // A full row lock waits for events being published to this webhook (they hold a key
        // share), so the cancellation below sees every delivery they queue.
        sqlx::query(
            "select id from webhooks where id = $1 and project_id = $2 and kind = $3 for update",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(kind.as_str())
        .execute(&mut *tx)
        .await?;
        // A statement after the lock sees the deliveries of every publish it waited for.
        let sql = format!(
            "with deleted as (update webhooks set is_active = false, deleted_at = $3, \
                 updated_at = $3, last_modified_by = $4, last_modified_via = $5 \
                 where id = $1 and project_id = $2 and kind = $6 and is_active returning id), \
             cancelled as (update deliveries set status = 'cancelled', next_attempt_at = null, \
                 lease_until = null, lease_token = null, updated_at = $3 \
                 where webhook_id = (select id from deleted) and status = 'pending') \
             {}",
            audit_insert(7, Some("deleted"))
        );
        let query = sqlx::query(&sql)
            .bind(id.as_uuid())
            .bind(project.as_uuid())
            .bind(now)
            .bind(audit.actor.id())
            .bind(audit.actor.channel.as_str())
            .bind(kind.as_str());
        let deleted = bind_audit(query, project, &audit).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(Entity::of(kind)));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_webhook_secret(
        &self,
        project: ProjectId,
        kind: WebhookKind,
        id: WebhookId,
        rotation: SecretRotation,
        audit: AuditEntry,
    ) -> StoreResult<()> {
        let sql = format!(
            "with rotated as (update webhooks \
                 set previous_secret = case when $5 is null then null else secret end, \
                 previous_secret_until = $5, secret = $3, updated_at = $4, last_modified_by = $6, \
                 last_modified_via = $7 \
                 where id = $1 and project_id = $2 and kind = $8 and is_active returning id) \
             {}",
            audit_insert(9, Some("rotated"))
        );
        let query = sqlx::query(&sql)
            .bind(id.as_uuid())
            .bind(project.as_uuid())
            .bind(self.cipher.seal(&rotation.secret))
            .bind(rotation.at)
            .bind(rotation.previous_valid_until)
            .bind(audit.actor.id())
            .bind(audit.actor.channel.as_str())
            .bind(kind.as_str());
        let rotated = bind_audit(query, project, &audit)
            .execute(&self.pool)
            .await?;
        if rotated.rows_affected() == 0 {
            return Err(StoreError::NotFound(Entity::of(kind)));
        }
        Ok(())
    }

    async fn record_audit(&self, project: ProjectId, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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
        let rows: Vec<AuditRow> = sqlx::query_as(
            "select id, at, actor_type, actor_id, channel, action, target_id, \
                 changes::text as changes \
                 from audit_log where project_id = $1 and ($2::uuid is null or id < $2) \
                 order by id desc limit $3",
        )
        .bind(project.as_uuid())
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AuditRecord::try_from).collect()
    }
}
