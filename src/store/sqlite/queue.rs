//! The delivery queue on SQLite: one instance, one writer, so a claim is an `update …` inside
//! an immediate transaction, and the worker is woken in-process by whoever queued the work.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{SqliteStore, from_millis, hex_uuid, millis};
use crate::domain::{DeliveryId, WebhookId};
use crate::store::records::ClaimRow;
use crate::store::{
    AttemptRecord, ClaimedDelivery, QueueStore, Recorded, StoreResult, WebhookTarget,
};

#[async_trait]
impl QueueStore for SqliteStore {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_webhook: u32,
        exclude: &[WebhookId],
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let token = Uuid::new_v4();
        let excluded = serde_json::Value::from(
            exclude
                .iter()
                .map(|id| hex_uuid(id.as_uuid()))
                .collect::<Vec<_>>(),
        );
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "update deliveries set lease_until = $2, next_attempt_at = $2, lease_token = $3 \
             where id in (select id from \
                            (select id, row_number() over (partition by webhook_id \
                                                           order by next_attempt_at) as nth \
                             from (select id, webhook_id, next_attempt_at from deliveries \
                                   where status = 'pending' and next_attempt_at <= $1 \
                                   and hex(webhook_id) not in (select value from json_each($5)) \
                                   order by next_attempt_at limit $4)) \
                          where nth <= $6)",
        )
        .bind(millis(now))
        .bind(millis(lease_until))
        .bind(token)
        .bind(i64::from(limit))
        .bind(excluded.to_string())
        .bind(i64::from(per_webhook))
        .execute(&mut *tx)
        .await?;
        let rows: Vec<ClaimRow> = sqlx::query_as(
            "select d.id, d.project_id, d.webhook_id, d.event_id, e.event_type, e.payload, \
             w.url, w.secret, d.attempt_count, case when w.previous_secret_until > $2 \
             then w.previous_secret end as previous_secret from deliveries d \
             join events e on e.id = d.event_id join webhooks w on w.id = d.webhook_id \
             where d.lease_token = $1 order by d.next_attempt_at, d.id",
        )
        .bind(token)
        .bind(millis(now))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|row| row.into_claim(&self.cipher, token))
            .collect()
    }

    async fn renew_claim(
        &self,
        id: DeliveryId,
        lease_token: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Option<WebhookTarget>> {
        let mut tx = self.write_tx().await?;
        let renewed: Option<(Uuid,)> = sqlx::query_as(
            "update deliveries set lease_until = $3, next_attempt_at = $3 \
             where id = $1 and lease_token = $2 and status = 'pending' \
             and exists (select 1 from webhooks w where w.id = deliveries.webhook_id \
                         and w.is_active) returning webhook_id",
        )
        .bind(id.as_uuid())
        .bind(lease_token)
        .bind(millis(lease_until))
        .fetch_optional(&mut *tx)
        .await?;
        let target = match renewed {
            Some((webhook,)) => {
                let (url, secret, previous): (String, String, Option<String>) = sqlx::query_as(
                    "select url, secret, case when previous_secret_until > $2 \
                     then previous_secret end from webhooks where id = $1",
                )
                .bind(webhook)
                .bind(millis(now))
                .fetch_one(&mut *tx)
                .await?;
                Some(WebhookTarget::opened(
                    &self.cipher,
                    url,
                    &secret,
                    previous.as_deref(),
                )?)
            }
            None => None,
        };
        tx.commit().await?;
        Ok(target)
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<Recorded>> {
        self.record_outcomes(records).await
    }

    async fn release_claims(
        &self,
        claims: &[(DeliveryId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        for (id, token) in claims {
            sqlx::query(
                "update deliveries set next_attempt_at = $3, lease_until = null, \
                 lease_token = null where id = $1 and lease_token = $2 and status = 'pending'",
            )
            .bind(id.as_uuid())
            .bind(token)
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let (next,): (Option<i64>,) =
            sqlx::query_as("select min(next_attempt_at) from deliveries where status = 'pending'")
                .fetch_one(&self.reader)
                .await?;
        next.map(from_millis).transpose()
    }

    async fn listen_for_work(&self, _wake: Arc<Notify>, _shutdown: CancellationToken) {
        // One instance per file: the worker is woken in-process by whoever queued the work.
    }
}
