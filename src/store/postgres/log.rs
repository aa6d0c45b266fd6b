//! The delivery log on Postgres: listing, reading, retrying by hand, queue depth and purging.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PostgresStore, announce_requeued, insert_audit};
use crate::domain::{AuditEntry, DeliveryId, DeliveryStatus, ProjectId, WebhookId, WebhookKind};
use crate::store::records::{
    ATTEMPT_COLUMNS, AttemptRow, DEPTH_SELECT, DepthRow, DetailsRow, SUMMARY_COLUMNS, SummaryRow,
    recoverable,
};
use crate::store::{
    Attempt, DeliveryDetails, DeliveryLogStore, DeliveryQuery, DeliverySummary, Entity, QueueDepth,
    Reason, RecoverFilter, Recovery, StoreError, StoreResult,
};

impl PostgresStore {
    async fn summary(&self, project: ProjectId, id: DeliveryId) -> StoreResult<DeliverySummary> {
        let row: Option<SummaryRow> = sqlx::query_as(&format!(
            "select {SUMMARY_COLUMNS} from deliveries d join events e on e.id = d.event_id \
             where d.id = $1 and d.project_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or(StoreError::NotFound(Entity::Delivery))?
            .try_into()
    }
}

#[async_trait]
impl DeliveryLogStore for PostgresStore {
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
        .fetch_optional(&self.pool)
        .await?;
        exists.ok_or(StoreError::NotFound(Entity::of(kind)))?;
        let rows: Vec<SummaryRow> = sqlx::query_as(&format!(
            "select {SUMMARY_COLUMNS} from deliveries d join events e on e.id = d.event_id \
             where d.webhook_id = $1 and ($2::text is null or d.status = $2) \
             and ($3::uuid is null or d.id < $3) order by d.id desc limit $4"
        ))
        .bind(webhook.as_uuid())
        .bind(query.status.map(DeliveryStatus::as_str))
        .bind(query.before.map(|id| id.as_uuid()))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
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
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or(StoreError::NotFound(Entity::Delivery))?;
        let attempts: Vec<AttemptRow> = sqlx::query_as(&format!(
            "select {ATTEMPT_COLUMNS} from delivery_attempts where delivery_id = $1 \
             order by attempt_number"
        ))
        .bind(id.as_uuid())
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        // The webhook is locked first, as deletes and outcome batches lock it before its
        // deliveries, so none of them can deadlock with another; the lock also keeps a
        // concurrent delete from slipping in between.
        let webhook: Option<(bool,)> = sqlx::query_as(
            "select w.is_active from webhooks w join deliveries d on d.webhook_id = w.id \
             where d.id = $1 and d.project_id = $2 for update of w",
        )
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let (webhook_active,) = webhook.ok_or(StoreError::NotFound(Entity::Delivery))?;
        let (in_flight,): (bool,) = sqlx::query_as(
            "select coalesce(status = 'pending' and lease_until > $2, false) from deliveries \
             where id = $1 for update",
        )
        .bind(id.as_uuid())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
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
        .bind(now)
        .execute(&mut *tx)
        .await?;
        announce_requeued(&mut *tx).await?;
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
        let mut tx = self.pool.begin().await?;
        // Webhooks are locked before their deliveries, as deletes and outcome batches do.
        let named: Option<Vec<Uuid>> = filter
            .webhooks
            .as_ref()
            .map(|ids| ids.iter().map(|id| id.as_uuid()).collect());
        let found: Vec<(Uuid, bool, bool, bool)> = sqlx::query_as(
            "select id, is_active, paused_at is not null, disabled_at is not null from webhooks \
             where project_id = $1 and kind = 'webhook' and ($2::uuid[] is null or id = any($2)) \
             order by id for update",
        )
        .bind(project.as_uuid())
        .bind(&named)
        .fetch_all(&mut *tx)
        .await?;
        let running = recoverable(filter.webhooks.as_deref(), &found)?;
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        const MATCHED: &str = "from deliveries d join events e on e.id = d.event_id \
             where d.webhook_id = any($1) and d.status = any($2) and d.created_at >= $3 \
             and d.created_at <= $4 and ($5::text[] is null or e.event_type = any($5))";
        let (matched,): (i64,) = sqlx::query_as(&format!("select count(*) {MATCHED}"))
            .bind(&running)
            .bind(&statuses)
            .bind(filter.since)
            .bind(filter.until)
            .bind(&filter.event_types)
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
        .bind(filter.since)
        .bind(filter.until)
        .bind(&filter.event_types)
        .bind(i64::from(filter.limit))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        announce_requeued(&mut *tx).await?;
        insert_audit(&mut tx, project, &recovery.audited(audit)).await?;
        tx.commit().await?;
        Ok(recovery)
    }

    async fn queue_depth(&self, now: DateTime<Utc>) -> StoreResult<QueueDepth> {
        let rows: Vec<DepthRow<DateTime<Utc>>> = sqlx::query_as(DEPTH_SELECT)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        let (throttled,): (i64,) =
            sqlx::query_as("select count(*) from webhooks where throttled_until > $1")
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
        Ok(QueueDepth::of(rows, throttled))
    }

    async fn purge_finished(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let deliveries =
            sqlx::query("delete from deliveries where status <> 'pending' and updated_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?;
        let events = sqlx::query(
            "delete from events e where created_at < $1 \
             and not exists (select 1 from deliveries d where d.event_id = e.id)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(deliveries.rows_affected() + events.rows_affected())
    }
}
