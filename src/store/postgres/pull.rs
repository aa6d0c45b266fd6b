//! Pull webhooks' queues on Postgres: a poll leases with `for update skip locked`, so pollers
//! on every instance share a webhook's deliveries without taking the same one twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PostgresStore;
use crate::domain::{DeliveryId, ProjectId, WebhookId};
use crate::store::records::{
    CLAIM_COLUMNS, ClaimRow, HELD_PULL_COLUMNS, HeldPullRow, PULL_WEBHOOK_SELECT, into_claims,
    pull_webhook_state,
};
use crate::store::{ClaimedDelivery, HeldPull, PullQueue, PullStore, StoreResult};

#[async_trait]
impl PullStore for PostgresStore {
    async fn pull_webhook(&self, project: ProjectId, webhook: WebhookId) -> StoreResult<bool> {
        let found: Option<(String, bool)> = sqlx::query_as(PULL_WEBHOOK_SELECT)
            .bind(webhook.as_uuid())
            .bind(project.as_uuid())
            .fetch_optional(&self.pool)
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
        let rows: Vec<ClaimRow> = sqlx::query_as(&format!(
            "update deliveries d set lease_until = $3, next_attempt_at = $3, lease_token = $4 \
             from (select q.id from deliveries q join webhooks h on h.id = q.webhook_id \
                   where q.webhook_id = $2 and q.status = 'pending' and q.pull \
                   and q.next_attempt_at <= $1 and h.is_active and h.disabled_at is null \
                   and (h.paused_at is null or q.ignores_pause) \
                   and (h.throttled_until is null or h.throttled_until <= $1) \
                   order by q.next_attempt_at, q.id limit $5 for update of q skip locked) c, \
                  events e, webhooks w \
             where d.id = c.id and e.id = d.event_id and w.id = d.webhook_id \
             returning {CLAIM_COLUMNS}"
        ))
        .bind(now)
        .bind(webhook.as_uuid())
        .bind(lease_until)
        .bind(token)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut claims = into_claims(rows, &self.cipher, token, &Default::default())?;
        claims.sort_by_key(|claim| claim.id);
        Ok(claims)
    }

    async fn next_pull_due(&self, webhook: WebhookId) -> StoreResult<Option<DateTime<Utc>>> {
        let (next,): (Option<DateTime<Utc>>,) = sqlx::query_as(
            "select min(next_attempt_at) from deliveries \
             where webhook_id = $1 and status = 'pending' and pull",
        )
        .bind(webhook.as_uuid())
        .fetch_one(&self.pool)
        .await?;
        Ok(next)
    }

    async fn held_pulls(
        &self,
        webhook: WebhookId,
        leases: &[(DeliveryId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<HeldPull>> {
        let ids: Vec<Uuid> = leases.iter().map(|(id, _)| id.as_uuid()).collect();
        let tokens: Vec<Uuid> = leases.iter().map(|(_, token)| *token).collect();
        let rows: Vec<HeldPullRow> = sqlx::query_as(&format!(
            "select {HELD_PULL_COLUMNS} from deliveries d \
             join unnest($2::uuid[], $3::uuid[]) as t(id, token) \
               on d.id = t.id and d.lease_token = t.token \
             join webhooks w on w.id = d.webhook_id \
             where d.webhook_id = $1 and d.status = 'pending' and d.pull and d.lease_until > $4"
        ))
        .bind(webhook.as_uuid())
        .bind(&ids)
        .bind(&tokens)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(HeldPullRow::into_held).collect()
    }

    async fn pull_queue(&self, webhook: WebhookId, now: DateTime<Utc>) -> StoreResult<PullQueue> {
        let counts: (i64, i64, i64) = sqlx::query_as(
            "select count(*) filter (where next_attempt_at <= $2), \
             count(*) filter (where next_attempt_at > $2 and lease_token is null), \
             count(*) filter (where next_attempt_at > $2 and lease_token is not null) \
             from deliveries where webhook_id = $1 and status = 'pending' and pull",
        )
        .bind(webhook.as_uuid())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(PullQueue::of(counts))
    }
}
