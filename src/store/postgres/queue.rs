//! The delivery queue on Postgres: `for update skip locked` leases let several instances share
//! it, and LISTEN wakes a worker when another instance queues work.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{PULL_CHANNEL, PostgresStore, WORK_CHANNEL};
use crate::domain::{DeliveryId, ProjectId, RATE_LOOKAHEAD, WebhookId, rate_slots};
use crate::store::records::{CLAIM_COLUMNS, ClaimRow, into_claims, rate_limited};
use crate::store::{
    Announcement, Announcements, AttemptRecord, ClaimedDelivery, QueueStore, RecordedBatch,
    StoreResult, WebhookTarget,
};

impl PostgresStore {
    /// Gives each claimed delivery of a rate-limited webhook its send slot, taking the slots
    /// from the webhook's row so that every instance hands out the same sequence.
    async fn take_rate_slots(
        &self,
        rows: &[ClaimRow],
        now: DateTime<Utc>,
    ) -> StoreResult<HashMap<Uuid, DateTime<Utc>>> {
        let by_webhook = rate_limited(rows);
        let mut slots = HashMap::new();
        if by_webhook.is_empty() {
            return Ok(slots);
        }
        let mut tx = self.pool.begin().await?;
        let ids: Vec<Uuid> = by_webhook.keys().copied().collect();
        let free: Vec<(Uuid, Option<DateTime<Utc>>)> = sqlx::query_as(
            "select id, rate_next_at from webhooks where id = any($1) order by id for no key update",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let (mut updated, mut next_free) = (Vec::new(), Vec::new());
        for (webhook, next) in free {
            let Some((rate, deliveries)) = by_webhook.get(&webhook) else {
                continue;
            };
            let (given, next) = rate_slots(next, now, *rate, deliveries.len());
            slots.extend(deliveries.iter().copied().zip(given));
            updated.push(webhook);
            next_free.push(next);
        }
        sqlx::query(
            "update webhooks w set rate_next_at = t.next \
             from unnest($1::uuid[], $2::timestamptz[]) as t(id, next) where w.id = t.id",
        )
        .bind(&updated)
        .bind(&next_free)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(slots)
    }
}

/// What a notification on one of our channels announces.
fn announcement(channel: &str, payload: &str) -> Announcement {
    if channel != PULL_CHANNEL {
        return Announcement::Work;
    }
    payload
        .parse::<Uuid>()
        .map_or(Announcement::AnyPull, |webhook| {
            Announcement::Pull(webhook.into())
        })
}

#[async_trait]
impl QueueStore for PostgresStore {
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
        let excluded: Vec<Uuid> = exclude.iter().map(|w| w.as_uuid()).collect();
        let excluded_projects: Vec<Uuid> = exclude_projects.iter().map(|p| p.as_uuid()).collect();
        let rows: Vec<ClaimRow> = sqlx::query_as(&format!(
            "update deliveries d set lease_until = $2, next_attempt_at = $2, lease_token = $3 \
             from (select id from \
                     (select id, rate_limit, row_number() over (partition by webhook_id \
                                                    order by next_attempt_at) as nth \
                      from (select q.id, q.webhook_id, q.next_attempt_at, h.rate_limit \
                            from deliveries q join webhooks h on h.id = q.webhook_id \
                            where q.status = 'pending' and not q.pull and q.next_attempt_at <= $1 \
                            and not (q.webhook_id = any($5)) and not (q.project_id = any($7)) \
                            and (h.throttled_until is null or h.throttled_until <= $1) \
                            and (h.paused_at is null or q.ignores_pause) \
                            and (h.rate_next_at is null or h.rate_next_at <= $8) \
                            order by q.next_attempt_at \
                            limit $4 for update of q skip locked) as oldest) as ranked \
                   where nth <= least($6, coalesce(rate_limit, $6))) c, events e, webhooks w \
             where d.id = c.id and e.id = d.event_id and w.id = d.webhook_id \
             returning {CLAIM_COLUMNS}"
        ))
        .bind(now)
        .bind(lease_until)
        .bind(token)
        .bind(i64::from(limit))
        .bind(&excluded)
        .bind(i64::from(per_webhook))
        .bind(&excluded_projects)
        .bind(now + RATE_LOOKAHEAD)
        .fetch_all(&self.pool)
        .await?;
        let slots = self.take_rate_slots(&rows, now).await?;
        into_claims(rows, &self.cipher, token, &slots)
    }

    async fn renew_claim(
        &self,
        id: DeliveryId,
        lease_token: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Option<WebhookTarget>> {
        let row: Option<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
            "update deliveries d set lease_until = $3, next_attempt_at = $3 from webhooks w \
             where d.id = $1 and d.lease_token = $2 and d.status = 'pending' \
             and w.id = d.webhook_id and w.is_active returning w.url, w.secret, \
             case when w.previous_secret_until > $4 then w.previous_secret end, w.custom_headers",
        )
        .bind(id.as_uuid())
        .bind(lease_token)
        .bind(lease_until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(url, secret, previous, headers)| {
            WebhookTarget::opened(
                &self.cipher,
                url,
                &secret,
                previous.as_deref(),
                headers.as_deref(),
            )
        })
        .transpose()
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<RecordedBatch> {
        self.record_outcomes(records).await
    }

    async fn release_claims(
        &self,
        claims: &[(DeliveryId, Uuid)],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let ids: Vec<Uuid> = claims.iter().map(|(id, _)| id.as_uuid()).collect();
        let tokens: Vec<Uuid> = claims.iter().map(|(_, token)| *token).collect();
        sqlx::query(
            "update deliveries d set next_attempt_at = $3, lease_until = null, lease_token = null \
             from unnest($1::uuid[], $2::uuid[]) as t(id, token) \
             where d.id = t.id and d.lease_token = t.token and d.status = 'pending'",
        )
        .bind(&ids)
        .bind(&tokens)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let (next,): (Option<DateTime<Utc>>,) = sqlx::query_as(
            "select min(next_attempt_at) from deliveries where status = 'pending' and not pull",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(next)
    }

    async fn listen_for_work(&self, heard: Announcements, shutdown: CancellationToken) {
        let mut retry_in = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let listener = async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener.listen_all([WORK_CHANNEL, PULL_CHANNEL]).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            match listener.await {
                Ok(mut listener) => {
                    retry_in = Duration::from_millis(100);
                    // Work may have been queued while we were not listening.
                    heard(Announcement::Work);
                    heard(Announcement::AnyPull);
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            received = listener.recv() => match received {
                                Ok(notification) => heard(announcement(
                                    notification.channel(),
                                    notification.payload(),
                                )),
                                Err(error) => {
                                    tracing::warn!(%error, "lost the LISTEN connection; reconnecting");
                                    break;
                                }
                            },
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot LISTEN for new deliveries; polling meanwhile");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(retry_in) => {}
                    }
                    retry_in = (retry_in * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
