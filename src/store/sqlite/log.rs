//! The delivery log on SQLite: listing, reading, retrying by hand, queue depth and purging.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SqliteStore, from_millis, hex_uuid, insert_audit, millis};
use crate::domain::{AuditEntry, DeliveryId, DeliveryStatus, ProjectId, WebhookId, WebhookKind};
use crate::store::records::{
    ATTEMPT_COLUMNS, AttemptRow, DEPTH_SELECT, DepthRow, DetailsRow, SUMMARY_COLUMNS, SummaryRow,
    recoverable,
};
use crate::store::{
    Attempt, DeliveryDetails, DeliveryLogStore, DeliveryQuery, DeliverySummary, Entity, QueueDepth,
    Reason, RecoverFilter, Recovery, StoreError, StoreResult,
};

impl SqliteStore {
    async fn summary(&self, project: ProjectId, id: DeliveryId) -> StoreResult<DeliverySummary> {
        let row: Option<SummaryRow> = sqlx::query_as(&format!(
            "select {SUMMARY_COLUMNS} from deliveries d join events e on e.id = d.event_id \
             where d.id = $1 and d.project_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .fetch_optional(&self.reader)
        .await?;
        row.ok_or(StoreError::NotFound(Entity::Delivery))?
            .try_into()
    }
}

#[async_trait]
impl DeliveryLogStore for SqliteStore {
    async fn list_deliveries(
        &self,
        project: ProjectId,
        kind: WebhookKind,
        webhook: WebhookId,
        query: DeliveryQuery,
    ) -> StoreResult<Vec<DeliverySummary>> {
        let exists: Option<(Uuid,)> = sqlx::query_as(
            "select id from webhooks where id = $1 and project_id = $2 and kind = $3",
        )
        .bind(webhook.as_uuid())
        .bind(project.as_uuid())
        .bind(kind.as_str())
        .fetch_optional(&self.reader)
        .await?;
        exists.ok_or(StoreError::NotFound(Entity::of(kind)))?;
        let rows: Vec<SummaryRow> = sqlx::query_as(&format!(
            "select {SUMMARY_COLUMNS} from deliveries d join events e on e.id = d.event_id \
             where d.webhook_id = $1 and ($2 is null or d.status = $2) \
             and ($3 is null or d.id < $3) order by d.id desc limit $4"
        ))
        .bind(webhook.as_uuid())
        .bind(query.status.map(DeliveryStatus::as_str))
        .bind(query.before.map(|id| id.as_uuid()))
        .bind(i64::from(query.limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(DeliverySummary::try_from).collect()
    }

    async fn get_delivery(
        &self,
        project: ProjectId,
        id: DeliveryId,
    ) -> StoreResult<DeliveryDetails> {
        let row: Option<DetailsRow> = sqlx::query_as(&format!(
            "select {SUMMARY_COLUMNS}, e.payload from deliveries d \
             join events e on e.id = d.event_id where d.id = $1 and d.project_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .fetch_optional(&self.reader)
        .await?;
        let row = row.ok_or(StoreError::NotFound(Entity::Delivery))?;
        let attempts: Vec<AttemptRow> = sqlx::query_as(&format!(
            "select {ATTEMPT_COLUMNS} from delivery_attempts where delivery_id = $1 \
             order by attempt_number"
        ))
        .bind(id.as_uuid())
        .fetch_all(&self.reader)
        .await?;
        Ok(DeliveryDetails {
            summary: row.summary.try_into()?,
            payload: row.payload,
            attempts: attempts.into_iter().map(Attempt::from).collect(),
        })
    }

    async fn retry_delivery(
        &self,
        project: ProjectId,
        id: DeliveryId,
        audit: AuditEntry,
    ) -> StoreResult<DeliverySummary> {
        let now = audit.at;
        let mut tx = self.write_tx().await?;
        let found: Option<(bool, bool)> = sqlx::query_as(
            "select w.is_active, d.status = 'pending' and coalesce(d.lease_until > $3, 0) \
             from deliveries d join webhooks w on w.id = d.webhook_id \
             where d.id = $1 and d.project_id = $2",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .bind(millis(now))
        .fetch_optional(&mut *tx)
        .await?;
        let (webhook_active, in_flight) = found.ok_or(StoreError::NotFound(Entity::Delivery))?;
        if !webhook_active {
            return Err(StoreError::Conflict(Reason::WebhookDeleted));
        }
        if in_flight {
            // An attempt is under way; its outcome decides what happens next.
            tx.commit().await?;
            return self.summary(project, id).await;
        }
        sqlx::query(
            "update deliveries set status = 'pending', next_attempt_at = $2, lease_until = null, \
             lease_token = null, throttled_since = null, updated_at = $2 where id = $1",
        )
        .bind(id.as_uuid())
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, project, &audit).await?;
        tx.commit().await?;
        self.summary(project, id).await
    }

    async fn recover_deliveries(
        &self,
        project: ProjectId,
        filter: &RecoverFilter,
        audit: AuditEntry,
    ) -> StoreResult<Recovery> {
        let now = audit.at;
        let mut tx = self.write_tx().await?;
        let found: Vec<(Uuid, bool, bool, bool)> = sqlx::query_as(
            "select id, is_active, paused_at is not null, disabled_at is not null from webhooks \
             where project_id = $1 and kind = 'webhook'",
        )
        .bind(project.as_uuid())
        .fetch_all(&mut *tx)
        .await?;
        let running: Vec<String> = recoverable(filter.webhooks.as_deref(), &found)?
            .into_iter()
            .map(hex_uuid)
            .collect();
        let running = serde_json::Value::from(running).to_string();
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        let statuses = serde_json::Value::from(statuses).to_string();
        let types = filter
            .event_types
            .as_ref()
            .map(|types| serde_json::Value::from(types.clone()).to_string());
        const MATCHED: &str = "from deliveries d join events e on e.id = d.event_id \
             where hex(d.webhook_id) in (select value from json_each($1)) \
             and d.status in (select value from json_each($2)) and d.created_at >= $3 \
             and d.created_at <= $4 \
             and ($5 is null or e.event_type in (select value from json_each($5)))";
        let (matched,): (i64,) = sqlx::query_as(&format!("select count(*) {MATCHED}"))
            .bind(&running)
            .bind(&statuses)
            .bind(millis(filter.since))
            .bind(millis(filter.until))
            .bind(&types)
            .fetch_one(&mut *tx)
            .await?;
        let recovery = Recovery::of(u64::try_from(matched).unwrap_or_default(), filter);
        if filter.dry_run {
            tx.commit().await?;
            return Ok(recovery);
        }
        // Due at their creation time, so the oldest go first among everything due.
        sqlx::query(&format!(
            "update deliveries set status = 'pending', next_attempt_at = created_at, failures = 0, \
             throttled_since = null, lease_until = null, lease_token = null, updated_at = $7 \
             where id in (select d.id {MATCHED} order by d.created_at, d.id limit $6)"
        ))
        .bind(&running)
        .bind(&statuses)
        .bind(millis(filter.since))
        .bind(millis(filter.until))
        .bind(&types)
        .bind(i64::from(filter.limit))
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, project, &recovery.audited(audit)).await?;
        tx.commit().await?;
        Ok(recovery)
    }

    async fn queue_depth(&self, now: DateTime<Utc>) -> StoreResult<QueueDepth> {
        let rows: Vec<DepthRow<i64>> = sqlx::query_as(DEPTH_SELECT)
            .bind(millis(now))
            .fetch_all(&self.reader)
            .await?;
        let rows = rows
            .into_iter()
            .map(|(pull, due, scheduled, oldest)| {
                Ok((pull, due, scheduled, oldest.map(from_millis).transpose()?))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let (throttled,): (i64,) =
            sqlx::query_as("select count(*) from webhooks where throttled_until > $1")
                .bind(millis(now))
                .fetch_one(&self.reader)
                .await?;
        Ok(QueueDepth::of(rows, throttled))
    }

    async fn purge_finished(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let deliveries =
            sqlx::query("delete from deliveries where status <> 'pending' and updated_at < $1")
                .bind(millis(before))
                .execute(&mut *tx)
                .await?;
        let events = sqlx::query(
            "delete from events where created_at < $1 \
             and not exists (select 1 from deliveries d where d.event_id = events.id)",
        )
        .bind(millis(before))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deliveries.rows_affected() + events.rows_affected())
    }
}
