//! The delivery queue on SQLite: one instance, one writer, so a claim is an `update …` inside
//! an immediate transaction, and the worker is woken in-process by whoever queued the work.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Sqlite, Transaction};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{SqliteStore, from_millis, hex_uuid, millis};
use crate::domain::{DeliveryId, ProjectId, RATE_LOOKAHEAD, WebhookId, rate_slots};
use crate::store::records::{CLAIM_COLUMNS, ClaimRow, into_claims, rate_limited};
use crate::store::{
    Announcements, AttemptRecord, ClaimedDelivery, QueueStore, RecordedBatch, StoreResult,
    WebhookTarget,
};

impl SqliteStore {
    /// Gives each claimed delivery of a rate-limited webhook its send slot, taking the slots
    /// from the webhook's row within the claim's transaction.
    async fn take_rate_slots(
        tx: &mut Transaction<'_, Sqlite>,
        rows: &[ClaimRow],
        now: DateTime<Utc>,
    ) -> StoreResult<HashMap<Uuid, DateTime<Utc>>> {
        let by_webhook = rate_limited(rows);
        let mut slots = HashMap::new();
        for (webhook, (rate, deliveries)) in by_webhook {
            let (next,): (Option<i64>,) =
                sqlx::query_as("select rate_next_at from webhooks where id = $1")
                    .bind(webhook)
                    .fetch_one(&mut **tx)
                    .await?;
            let next = next.map(from_millis).transpose()?;
            let (given, next) = rate_slots(next, now, rate, deliveries.len());
            slots.extend(deliveries.into_iter().zip(given));
            sqlx::query("update webhooks set rate_next_at = $2 where id = $1")
                .bind(webhook)
                .bind(millis(next))
                .execute(&mut **tx)
                .await?;
        }
        Ok(slots)
    }
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
        per_webhook: u32,
        exclude: &[WebhookId],
        exclude_projects: &[ProjectId],
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let token = Uuid::new_v4();
        let hex_list = |ids: Vec<Uuid>| {
            serde_json::Value::from(ids.into_iter().map(hex_uuid).collect::<Vec<_>>()).to_string()
        };
        let excluded = hex_list(exclude.iter().map(|id| id.as_uuid()).collect());
        let excluded_projects = hex_list(exclude_projects.iter().map(|id| id.as_uuid()).collect());
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "update deliveries set lease_until = $2, next_attempt_at = $2, lease_token = $3 \
             where id in (select id from \
                            (select id, rate_limit, row_number() over (partition by webhook_id \
                                                           order by next_attempt_at) as nth \
                             from (select q.id, q.webhook_id, q.next_attempt_at, h.rate_limit \
                                   from deliveries q join webhooks h on h.id = q.webhook_id \
                                   where q.status = 'pending' and q.pull = 0 and q.next_attempt_at <= $1 \
                                   and hex(q.webhook_id) not in (select value from json_each($5)) \
                                   and hex(q.project_id) not in (select value from json_each($7)) \
                                   and (h.throttled_until is null or h.throttled_until <= $1) \
                                   and (h.paused_at is null or q.ignores_pause) \
                                   and (h.rate_next_at is null or h.rate_next_at <= $8) \
                                   order by q.next_attempt_at limit $4)) \
                          where nth <= min($6, coalesce(rate_limit, $6)))",
        )
        .bind(millis(now))
        .bind(millis(lease_until))
        .bind(token)
        .bind(i64::from(limit))
        .bind(excluded)
        .bind(i64::from(per_webhook))
        .bind(excluded_projects)
        .bind(millis(now + RATE_LOOKAHEAD))
        .execute(&mut *tx)
        .await?;
        let rows: Vec<ClaimRow> = sqlx::query_as(&format!(
            "select {CLAIM_COLUMNS} from deliveries d \
             join events e on e.id = d.event_id join webhooks w on w.id = d.webhook_id \
             where d.lease_token = $2 order by d.next_attempt_at, d.id"
        ))
        .bind(millis(now))
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        let slots = Self::take_rate_slots(&mut tx, &rows, now).await?;
        tx.commit().await?;
        into_claims(rows, &self.cipher, token, &slots)
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
                let (url, secret, previous, headers): (
                    String,
                    String,
                    Option<String>,
                    Option<String>,
                ) = sqlx::query_as(
                    "select url, secret, case when previous_secret_until > $2 \
                     then previous_secret end, custom_headers from webhooks where id = $1",
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
                    headers.as_deref(),
                )?)
            }
            None => None,
        };
        tx.commit().await?;
        Ok(target)
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<RecordedBatch> {
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
        let (next,): (Option<i64>,) = sqlx::query_as(
            "select min(next_attempt_at) from deliveries where status = 'pending' and pull = 0",
        )
        .fetch_one(&self.reader)
        .await?;
        next.map(from_millis).transpose()
    }

    async fn listen_for_work(&self, _heard: Announcements, _shutdown: CancellationToken) {
        // One instance per file: workers and pollers are woken in-process by whoever queued
        // the work.
    }
}
