//! Pull webhooks' queues on SQLite: one writer, so a poll's lease is an `update …` inside an
//! immediate transaction and no two polls can take the same delivery.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SqliteStore, from_millis, hex_uuid, json_rows, millis};
use crate::domain::{DeliveryId, ProjectId, WebhookId};
use crate::store::records::{
    CLAIM_COLUMNS, ClaimRow, HELD_PULL_COLUMNS, HeldPullRow, PULL_WEBHOOK_SELECT, into_claims,
    pull_webhook_state,
};
use crate::store::{ClaimedDelivery, HeldPull, PullQueue, PullStore, StoreResult};

#[async_trait]
impl PullStore for SqliteStore {
    async fn pull_webhook(&self, project: ProjectId, webhook: WebhookId) -> StoreResult<bool> {
        let found: Option<(String, bool)> = sqlx::query_as(PULL_WEBHOOK_SELECT)
            .bind(webhook.as_uuid())
            .bind(project.as_uuid())
            .fetch_optional(&self.reader)
            .await?;
        pull_webhook_state(found)
    }

    async fn lease_pulled(
        &self,
        webhook: WebhookId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let token = Uuid::new_v4();
        let mut tx = self.write_tx().await?;
        let leased = sqlx::query(
            "update deliveries set lease_until = $3, next_attempt_at = $3, lease_token = $4 \
             where id in (select q.id from deliveries q join webhooks h on h.id = q.webhook_id \
                          where q.webhook_id = $2 and q.status = 'pending' and q.pull = 1 \
                          and q.next_attempt_at <= $1 and h.is_active and h.disabled_at is null \
                          and (h.paused_at is null or q.ignores_pause) \
                          and (h.throttled_until is null or h.throttled_until <= $1) \
                          order by q.next_attempt_at, q.id limit $5)",
        )
        .bind(millis(now))
        .bind(webhook.as_uuid())
        .bind(millis(lease_until))
        .bind(token)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?;
        if leased.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let rows: Vec<ClaimRow> = sqlx::query_as(&format!(
            "select {CLAIM_COLUMNS} from deliveries d \
             join events e on e.id = d.event_id join webhooks w on w.id = d.webhook_id \
             where d.lease_token = $2 order by d.id"
        ))
        .bind(millis(now))
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        into_claims(rows, &self.cipher, token, &Default::default())
    }

    async fn next_pull_due(&self, webhook: WebhookId) -> StoreResult<Option<DateTime<Utc>>> {
        let (next,): (Option<i64>,) = sqlx::query_as(
            "select min(next_attempt_at) from deliveries \
             where webhook_id = $1 and status = 'pending' and pull = 1",
        )
        .bind(webhook.as_uuid())
        .fetch_one(&self.reader)
        .await?;
        next.map(from_millis).transpose()
    }

    async fn held_pulls(
        &self,
        webhook: WebhookId,
        leases: &[(DeliveryId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<HeldPull>> {
        let pairs: Vec<serde_json::Value> = leases
            .iter()
            .map(|(id, token)| serde_json::json!([hex_uuid(id.as_uuid()), hex_uuid(*token)]))
            .collect();
        let rows: Vec<HeldPullRow> = sqlx::query_as(&format!(
            "select {HELD_PULL_COLUMNS} from json_each($2) as t \
             join deliveries d on d.id = unhex(t.value ->> 0) \
                              and d.lease_token = unhex(t.value ->> 1) \
             join webhooks w on w.id = d.webhook_id \
             where d.webhook_id = $1 and d.status = 'pending' and d.pull = 1 \
             and d.lease_until > $3"
        ))
        .bind(webhook.as_uuid())
        .bind(json_rows(&pairs))
        .bind(millis(now))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(HeldPullRow::into_held).collect()
    }

    async fn pull_queue(&self, webhook: WebhookId, now: DateTime<Utc>) -> StoreResult<PullQueue> {
        let counts: (i64, i64, i64) = sqlx::query_as(
            "select count(*) filter (where next_attempt_at <= $2), \
             count(*) filter (where next_attempt_at > $2 and lease_token is null), \
             count(*) filter (where next_attempt_at > $2 and lease_token is not null) \
             from deliveries where webhook_id = $1 and status = 'pending' and pull = 1",
        )
        .bind(webhook.as_uuid())
        .bind(millis(now))
        .fetch_one(&self.reader)
        .await?;
        Ok(PullQueue::of(counts))
    }
}
