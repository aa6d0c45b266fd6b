//! Accepting events on SQLite: a batch is one immediate transaction of `json_each` statements;
//! an event alone is one transaction. One instance per file, so no one else needs waking.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::{SqliteStore, hex_uuid, insert_audit, json_rows, millis};
use crate::domain::subscription_pairs;
use crate::store::accept::{AcceptWays, accept_events};
use crate::store::records::{
    BatchCandidate, DeliveryRows, TargetCandidate, TargetRow, batch_targets, queue_deliveries,
};
use crate::store::{
    Accepted, Accepting, Entity, EventStore, EventTarget, NewEvent, Reason, StoreError, StoreResult,
};

/// An idempotency key answers with its first event for this long.
const IDEMPOTENCY_WINDOW: TimeDelta = TimeDelta::hours(24);

/// The columns `TargetCandidate` reads from `webhooks` as `w`, with `at` the placeholder of the
/// event's time: the rotated-out secret still signs while its grace period lasts, and a
/// throttled or rate-limited webhook's deliveries wait in the queue.
fn target_columns(at: &str) -> String {
    format!(
        "w.id, w.url, w.secret, case when w.previous_secret_until > {at} \
         then w.previous_secret end as previous_secret, w.custom_headers, w.filters, \
         w.rate_limit is null and (w.throttled_until is null or w.throttled_until <= {at}) \
         as direct, w.paused_at is not null as paused, w.mode = 'pull' as pull, \
         w.throttle_backoff_ms, w.retry_schedule, w.max_concurrency, w.effective_concurrency"
    )
}

impl SqliteStore {
    /// The earlier event for this event's key if it is recent; an expired key is freed for
    /// reuse. A recent key used for another event is a conflict.
    async fn replay(
        tx: &mut Transaction<'_, Sqlite>,
        event: &NewEvent,
        key: &str,
        cutoff: DateTime<Utc>,
    ) -> StoreResult<Option<Accepted>> {
        let earlier: Option<(Uuid, String, i64, Option<String>)> = sqlx::query_as(
            "select id, event_type, created_at, request_hash from events \
             where project_id = $1 and idempotency_key = $2",
        )
        .bind(event.project_id.as_uuid())
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((id, event_type, created_at, fingerprint)) = earlier else {
            return Ok(None);
        };
        if created_at <= millis(cutoff) {
            sqlx::query("update events set idempotency_key = null where id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
            return Ok(None);
        }
        if fingerprint.is_some_and(|f| f != event.fingerprint()) {
            return Err(StoreError::Conflict(Reason::IdempotencyKeyReused));
        }
        let delivery_ids: Vec<(Uuid,)> =
            sqlx::query_as("select id from deliveries where event_id = $1 order by id")
                .bind(id)
                .fetch_all(&mut **tx)
                .await?;
        let delivery_ids = delivery_ids.into_iter().map(|(d,)| d).collect();
        Ok(Some(Accepted::replayed(id, event_type, delivery_ids)))
    }

    async fn targets(
        tx: &mut Transaction<'_, Sqlite>,
        accepting: &Accepting,
    ) -> StoreResult<Vec<TargetRow>> {
        let event = &accepting.event;
        let candidates: Vec<TargetCandidate> = match event.target {
            EventTarget::Webhook(webhook, kind) => {
                let found: Option<TargetCandidate> = sqlx::query_as(&format!(
                    "select {} from webhooks w \
                     where id = $1 and project_id = $2 and kind = $4 and is_active",
                    target_columns("$3")
                ))
                .bind(webhook.as_uuid())
                .bind(event.project_id.as_uuid())
                .bind(millis(event.created_at))
                .bind(kind.as_str())
                .fetch_optional(&mut **tx)
                .await?;
                let found = found.ok_or(StoreError::NotFound(Entity::of(kind)))?;
                // A test event goes to its webhook whatever the filters say.
                return Ok(vec![found.into_target()]);
            }
            EventTarget::Subscribers => {
                sqlx::query_as(&format!(
                    "select {} from webhooks w where project_id = $1 and is_active \
                     and disabled_at is null \
                     and exists (select 1 from json_each(w.events) where value = $2) \
                     order by id",
                    target_columns("$3")
                ))
                .bind(event.project_id.as_uuid())
                .bind(&event.event_type)
                .bind(millis(event.created_at))
                .fetch_all(&mut **tx)
                .await?
            }
        };
        let candidates = candidates
            .into_iter()
            .map(|c| BatchCandidate::of(event, c))
            .collect();
        Ok(batch_targets(&[accepting], candidates)?.remove(0))
    }

    /// Inserts events without an idempotency key, as one statement.
    pub(super) async fn insert_events(
        tx: &mut Transaction<'_, Sqlite>,
        events: impl Iterator<Item = &NewEvent>,
    ) -> StoreResult<()> {
        let rows: Vec<serde_json::Value> = events
            .map(|event| {
                serde_json::json!([
                    hex_uuid(event.id.as_uuid()),
                    hex_uuid(event.project_id.as_uuid()),
                    event.event_type,
                    event.payload,
                    millis(event.created_at),
                    event.trace_context,
                ])
            })
            .collect();
        sqlx::query(
            "insert into events (id, project_id, event_type, payload, created_at, trace_context) \
             select unhex(value ->> 0), unhex(value ->> 1), value ->> 2, value ->> 3, \
                    value ->> 4, value ->> 5 from json_each($1)",
        )
        .bind(json_rows(&rows))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Inserts new deliveries in one statement.
    pub(super) async fn insert_deliveries(
        tx: &mut Transaction<'_, Sqlite>,
        rows: &DeliveryRows,
    ) -> StoreResult<()> {
        if rows.ids.is_empty() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = (0..rows.ids.len())
            .map(|n| {
                serde_json::json!([
                    hex_uuid(rows.ids[n]),
                    hex_uuid(rows.project_ids[n]),
                    hex_uuid(rows.webhook_ids[n]),
                    hex_uuid(rows.event_ids[n]),
                    millis(rows.created_at[n]),
                    rows.lease_until[n].map(millis),
                    rows.lease_tokens[n].map(hex_uuid),
                    rows.pull[n],
                ])
            })
            .collect();
        sqlx::query(
            "insert into deliveries (id, project_id, webhook_id, event_id, status, \
             next_attempt_at, lease_until, lease_token, created_at, updated_at, pull) \
             select unhex(value ->> 0), unhex(value ->> 1), unhex(value ->> 2), \
                    unhex(value ->> 3), 'pending', coalesce(value ->> 5, value ->> 4), \
                    value ->> 5, unhex(value ->> 6), value ->> 4, value ->> 4, value ->> 7 \
             from json_each($1)",
        )
        .bind(json_rows(&rows))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl AcceptWays for SqliteStore {
    async fn accept_alone(&self, accepting: &Accepting) -> StoreResult<Accepted> {
        let event = &accepting.event;
        if event.batchable() {
            let mut accepted = self.accept_together(&[accepting]).await?;
            return Ok(accepted.remove(0));
        }
        let mut tx = self.write_tx().await?;
        if let Some(key) = &event.idempotency_key {
            let cutoff = event.created_at - IDEMPOTENCY_WINDOW;
            if let Some(earlier) = Self::replay(&mut tx, event, key, cutoff).await? {
                tx.commit().await?;
                return Ok(earlier);
            }
        }
        sqlx::query(
            "insert into events (id, project_id, event_type, payload, idempotency_key, created_at, \
             request_hash, trace_context) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(event.id.as_uuid())
        .bind(event.project_id.as_uuid())
        .bind(&event.event_type)
        .bind(&event.payload)
        .bind(&event.idempotency_key)
        .bind(millis(event.created_at))
        .bind(event.idempotency_key.as_ref().map(|_| event.fingerprint()))
        .bind(&event.trace_context)
        .execute(&mut *tx)
        .await?;
        let targets = Self::targets(&mut tx, accepting).await?;
        let (rows, mut accepted) = queue_deliveries(&self.cipher, &[accepting], vec![targets])?;
        Self::insert_deliveries(&mut tx, &rows).await?;
        if let EventTarget::Webhook(..) = event.target {
            sqlx::query("update deliveries set ignores_pause = 1 where event_id = $1")
                .bind(event.id.as_uuid())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(audit) = &event.audit {
            insert_audit(&mut tx, event.project_id, audit).await?;
        }
        tx.commit().await?;
        Ok(accepted.remove(0))
    }

    async fn accept_together(&self, events: &[&Accepting]) -> StoreResult<Vec<Accepted>> {
        let Some(first) = events.first() else {
            return Ok(Vec::new());
        };
        let published: Vec<_> = events.iter().map(|a| a.event.published()).collect();
        let pairs: Vec<(String, String)> = subscription_pairs(&published)
            .into_iter()
            .map(|(project, event_type)| (hex_uuid(project.as_uuid()), event_type))
            .collect();
        let mut tx = self.write_tx().await?;
        Self::insert_events(&mut tx, events.iter().map(|a| &a.event)).await?;
        let candidates: Vec<BatchCandidate> = sqlx::query_as(&format!(
            "select {}, w.project_id, p.value ->> 1 as event_type \
             from json_each($1) as p join webhooks w on w.project_id = unhex(p.value ->> 0) \
             where w.is_active and w.disabled_at is null \
             and exists (select 1 from json_each(w.events) where value = p.value ->> 1) \
             order by w.id",
            target_columns("$2")
        ))
        .bind(json_rows(&pairs))
        .bind(millis(first.event.created_at))
        .fetch_all(&mut *tx)
        .await?;
        let targets = batch_targets(events, candidates)?;
        let (rows, accepted) = queue_deliveries(&self.cipher, events, targets)?;
        Self::insert_deliveries(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(accepted)
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn accept_events(&self, events: Vec<Accepting>) -> Vec<StoreResult<Accepted>> {
        accept_events(self, events).await
    }
}
