//! Events, the delivery queue and the delivery log on SQLite: one instance, one writer, so a
//! claim is an `update … returning` inside an immediate transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{FromRow, Sqlite, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{SqliteStore, from_millis, insert_audit, millis};
use crate::domain::{DeliveryId, ProjectId, WebhookId};
use crate::store::{
    AcceptedEvent, Attempt, AttemptRecord, AuditEntry, ClaimRow, ClaimedDelivery, DeliveryDetails,
    DeliveryQuery, DeliveryStatus, DeliveryStore, DeliverySummary, EventTarget, FailureRun,
    NewEvent, QueueDepth, Recorded, StoreError, StoreResult, TargetCandidate, TargetRow,
    WebhookTarget, batch_targets, matching_webhooks, queue_deliveries, recorded_outcomes, storable,
    subscription_pairs, tally_attempts,
};
use crate::store::{BatchCandidate, DeliveryRows};

/// An idempotency key answers with its first event for this long.
const IDEMPOTENCY_WINDOW: TimeDelta = TimeDelta::hours(24);

/// A leased delivery is being attempted: its next_attempt_at is a lease end, not a schedule.
const SUMMARY_COLUMNS: &str = "d.id, d.webhook_id, d.event_id, e.event_type, d.status, \
     d.attempt_count, case when d.lease_token is null then d.next_attempt_at end \
     as next_attempt_at, d.last_response_status, d.last_error, d.created_at, d.updated_at";

#[derive(FromRow)]
struct LiteSummary {
    id: Uuid,
    webhook_id: Uuid,
    event_id: Uuid,
    event_type: String,
    status: String,
    attempt_count: i64,
    next_attempt_at: Option<i64>,
    last_response_status: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<LiteSummary> for DeliverySummary {
    type Error = StoreError;

    fn try_from(row: LiteSummary) -> Result<Self, Self::Error> {
        Ok(DeliverySummary {
            id: row.id.into(),
            webhook_id: row.webhook_id.into(),
            event_id: row.event_id.into(),
            event_type: row.event_type,
            status: DeliveryStatus::from_stored(&row.status)?,
            attempt_count: u32::try_from(row.attempt_count).unwrap_or_default(),
            next_attempt_at: row.next_attempt_at.map(from_millis).transpose()?,
            last_response_status: row.last_response_status.and_then(|s| u16::try_from(s).ok()),
            last_error: row.last_error,
            created_at: from_millis(row.created_at)?,
            updated_at: from_millis(row.updated_at)?,
        })
    }
}

#[derive(FromRow)]
struct LiteClaim {
    id: Uuid,
    project_id: Uuid,
    webhook_id: Uuid,
    event_id: Uuid,
    event_type: String,
    payload: String,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    attempt_count: i64,
}

#[derive(FromRow)]
struct LiteAttempt {
    attempt_number: i64,
    started_at: i64,
    duration_ms: i64,
    response_status: Option<i64>,
    response_body: Option<String>,
    error: Option<String>,
}

/// How `hex()` spells a stored id, and what `unhex()` reads back, for passing ids in JSON.
fn hex_uuid(id: Uuid) -> String {
    id.simple().to_string().to_uppercase()
}

/// A batch as one JSON array parameter, which `json_each` turns back into rows, so a batch of
/// any size is one statement.
fn json_rows<T: serde::Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("batch rows serialise to JSON")
}

impl SqliteStore {
    /// The earlier event for this key if it is recent; an expired key is freed for reuse.
    async fn replay(
        tx: &mut Transaction<'_, Sqlite>,
        project: ProjectId,
        key: &str,
        cutoff: DateTime<Utc>,
    ) -> StoreResult<Option<AcceptedEvent>> {
        let earlier: Option<(Uuid, String, i64)> = sqlx::query_as(
            "select id, event_type, created_at from events \
             where project_id = $1 and idempotency_key = $2",
        )
        .bind(project.as_uuid())
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
        let Some((id, event_type, created_at)) = earlier else {
            return Ok(None);
        };
        if created_at <= millis(cutoff) {
            sqlx::query("update events set idempotency_key = null where id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
            return Ok(None);
        }
        let delivery_ids: Vec<(Uuid,)> =
            sqlx::query_as("select id from deliveries where event_id = $1 order by id")
                .bind(id)
                .fetch_all(&mut **tx)
                .await?;
        Ok(Some(AcceptedEvent {
            id: id.into(),
            event_type,
            delivery_ids: delivery_ids.into_iter().map(|(d,)| d.into()).collect(),
            replayed: true,
            claims: Vec::new(),
        }))
    }

    async fn targets(
        tx: &mut Transaction<'_, Sqlite>,
        event: &NewEvent,
    ) -> StoreResult<Vec<TargetRow>> {
        // The rotated-out secret still signs while its grace period lasts.
        const TARGET_COLUMNS: &str = "id, url, secret, case when previous_secret_until > $3 \
             then previous_secret end as previous_secret, filters";
        let candidates: Vec<TargetCandidate> = match event.target {
            EventTarget::Webhook(webhook) => {
                let found: Option<TargetCandidate> = sqlx::query_as(&format!(
                    "select {TARGET_COLUMNS} from webhooks \
                     where id = $1 and project_id = $2 and is_active"
                ))
                .bind(webhook.as_uuid())
                .bind(event.project_id.as_uuid())
                .bind(millis(event.created_at))
                .fetch_optional(&mut **tx)
                .await?;
                let found = found.ok_or(StoreError::NotFound("webhook"))?;
                // A test event goes to its webhook whatever the filters say.
                return Ok(vec![found.into_target()]);
            }
            EventTarget::Subscribers => {
                sqlx::query_as(&format!(
                    "select {TARGET_COLUMNS} from webhooks where project_id = $1 and is_active \
                     and disabled_at is null \
                     and exists (select 1 from json_each(webhooks.events) where value = $2) \
                     order by id"
                ))
                .bind(event.project_id.as_uuid())
                .bind(&event.event_type)
                .bind(millis(event.created_at))
                .fetch_all(&mut **tx)
                .await?
            }
        };
        matching_webhooks(candidates, &event.data)
    }

    /// Inserts new deliveries in one statement.
    async fn insert_deliveries(
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
                ])
            })
            .collect();
        sqlx::query(
            "insert into deliveries (id, project_id, webhook_id, event_id, status, \
             next_attempt_at, lease_until, lease_token, created_at, updated_at) \
             select unhex(value ->> 0), unhex(value ->> 1), unhex(value ->> 2), \
                    unhex(value ->> 3), 'pending', coalesce(value ->> 5, value ->> 4), \
                    value ->> 5, unhex(value ->> 6), value ->> 4, value ->> 4 \
             from json_each($1)",
        )
        .bind(json_rows(&rows))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Stops deliveries to a failing endpoint: marks it disabled and cancels what is pending.
    async fn disable_webhook(
        tx: &mut Transaction<'_, Sqlite>,
        webhook: WebhookId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "update webhooks set disabled_at = $2, disabled_reason = $3 \
             where id = $1 and disabled_at is null",
        )
        .bind(webhook.as_uuid())
        .bind(millis(now))
        .bind(reason)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "update deliveries set status = 'cancelled', next_attempt_at = null, \
             lease_until = null, lease_token = null, last_error = $3, updated_at = $2 \
             where webhook_id = $1 and status = 'pending'",
        )
        .bind(webhook.as_uuid())
        .bind(millis(now))
        .bind(format!(
            "cancelled: the endpoint was disabled because {reason}"
        ))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn summary(&self, project: ProjectId, id: DeliveryId) -> StoreResult<DeliverySummary> {
        let row: Option<LiteSummary> = sqlx::query_as(&format!(
            "select {SUMMARY_COLUMNS} from deliveries d join events e on e.id = d.event_id \
             where d.id = $1 and d.project_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .fetch_optional(&self.reader)
        .await?;
        row.ok_or(StoreError::NotFound("delivery"))?.try_into()
    }
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn accept_event(&self, event: NewEvent) -> StoreResult<AcceptedEvent> {
        if event.batchable() {
            let mut accepted = self.accept_together(std::slice::from_ref(&event)).await?;
            return Ok(accepted.remove(0));
        }
        let mut tx = self.write_tx().await?;
        if let Some(key) = &event.idempotency_key {
            let cutoff = event.created_at - IDEMPOTENCY_WINDOW;
            if let Some(earlier) = Self::replay(&mut tx, event.project_id, key, cutoff).await? {
                tx.commit().await?;
                return Ok(earlier);
            }
        }
        sqlx::query(
            "insert into events (id, project_id, event_type, payload, idempotency_key, created_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(event.id.as_uuid())
        .bind(event.project_id.as_uuid())
        .bind(&event.event_type)
        .bind(&event.payload)
        .bind(&event.idempotency_key)
        .bind(millis(event.created_at))
        .execute(&mut *tx)
        .await?;
        let targets = Self::targets(&mut tx, &event).await?;
        let (rows, mut accepted) =
            queue_deliveries(&self.cipher, std::slice::from_ref(&event), vec![targets])?;
        Self::insert_deliveries(&mut tx, &rows).await?;
        if let Some(audit) = &event.audit {
            insert_audit(&mut tx, event.project_id, audit).await?;
        }
        tx.commit().await?;
        Ok(accepted.remove(0))
    }

    async fn accept_together(&self, events: &[NewEvent]) -> StoreResult<Vec<AcceptedEvent>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<serde_json::Value> = events
            .iter()
            .map(|event| {
                serde_json::json!([
                    hex_uuid(event.id.as_uuid()),
                    hex_uuid(event.project_id.as_uuid()),
                    event.event_type,
                    event.payload,
                    millis(event.created_at),
                ])
            })
            .collect();
        let pairs: Vec<(String, String)> = subscription_pairs(events)
            .into_iter()
            .map(|(project, event_type)| (hex_uuid(project), event_type))
            .collect();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "insert into events (id, project_id, event_type, payload, created_at) \
             select unhex(value ->> 0), unhex(value ->> 1), value ->> 2, value ->> 3, \
                    value ->> 4 from json_each($1)",
        )
        .bind(json_rows(&rows))
        .execute(&mut *tx)
        .await?;
        let candidates: Vec<BatchCandidate> = sqlx::query_as(
            "select w.id, w.url, w.secret, case when w.previous_secret_until > $2 \
             then w.previous_secret end as previous_secret, w.filters, \
             w.project_id, p.value ->> 1 as event_type \
             from json_each($1) as p join webhooks w on w.project_id = unhex(p.value ->> 0) \
             where w.is_active and w.disabled_at is null \
             and exists (select 1 from json_each(w.events) where value = p.value ->> 1) \
             order by w.id",
        )
        .bind(json_rows(&pairs))
        .bind(millis(events[0].created_at))
        .fetch_all(&mut *tx)
        .await?;
        let targets = batch_targets(events, candidates)?;
        let (rows, accepted) = queue_deliveries(&self.cipher, events, targets)?;
        Self::insert_deliveries(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(accepted)
    }

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
        let rows: Vec<LiteClaim> = sqlx::query_as(
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
            .map(|row| {
                ClaimRow {
                    id: row.id,
                    project_id: row.project_id,
                    webhook_id: row.webhook_id,
                    event_id: row.event_id,
                    event_type: row.event_type,
                    payload: row.payload,
                    url: row.url,
                    secret: row.secret,
                    previous_secret: row.previous_secret,
                    attempt_count: row.attempt_count,
                }
                .into_claim(&self.cipher, token)
            })
            .collect()
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<Recorded>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes: Vec<serde_json::Value> = records
            .iter()
            .map(|record| {
                let (status, next_attempt_at) = record.next_state();
                serde_json::json!({
                    "id": hex_uuid(record.delivery_id.as_uuid()),
                    "token": hex_uuid(record.lease_token),
                    "status": status.as_str(),
                    "next": next_attempt_at.map(millis),
                    "code": record.response_status,
                    "error": storable(&record.error),
                    "at": millis(record.finished_at),
                })
            })
            .collect();
        let mut tx = self.write_tx().await?;
        let held: Vec<(Uuid,)> = sqlx::query_as(
            "update deliveries set status = t.value ->> 'status', \
             attempt_count = attempt_count + 1, next_attempt_at = t.value ->> 'next', \
             lease_until = null, lease_token = null, \
             last_response_status = t.value ->> 'code', last_error = t.value ->> 'error', \
             updated_at = t.value ->> 'at' \
             from json_each($1) as t \
             where deliveries.id = unhex(t.value ->> 'id') \
             and deliveries.lease_token = unhex(t.value ->> 'token') \
             and deliveries.status = 'pending' returning deliveries.id",
        )
        .bind(json_rows(&outcomes))
        .fetch_all(&mut *tx)
        .await?;
        let held: HashSet<DeliveryId> = held.into_iter().map(|(id,)| id.into()).collect();
        let kept: Vec<&AttemptRecord> = records
            .iter()
            .filter(|r| held.contains(&r.delivery_id))
            .collect();
        if kept.is_empty() {
            tx.rollback().await?;
            return Ok(recorded_outcomes(records, &held, &[]));
        }

        let attempts: Vec<serde_json::Value> = kept
            .iter()
            .map(|record| {
                serde_json::json!([
                    hex_uuid(record.delivery_id.as_uuid()),
                    record.attempt_number,
                    millis(record.started_at),
                    record.duration_ms,
                    record.response_status,
                    storable(&record.response_body),
                    storable(&record.error),
                ])
            })
            .collect();
        sqlx::query(
            "insert into delivery_attempts (delivery_id, attempt_number, started_at, duration_ms, \
             response_status, response_body, error) \
             select unhex(value ->> 0), value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                    value ->> 5, value ->> 6 from json_each($1)",
        )
        .bind(json_rows(&attempts))
        .execute(&mut *tx)
        .await?;

        let webhook_ids: Vec<String> = kept
            .iter()
            .map(|r| hex_uuid(r.webhook_id.as_uuid()))
            .collect();
        let runs: Vec<(Uuid, i64, Option<i64>)> = sqlx::query_as(
            "select id, consecutive_failures, failing_since from webhooks \
             where id in (select unhex(value) from json_each($1))",
        )
        .bind(json_rows(&webhook_ids))
        .fetch_all(&mut *tx)
        .await?;
        let mut runs_before = HashMap::with_capacity(runs.len());
        for (id, consecutive, since) in runs {
            let since = since.map(from_millis).transpose()?;
            runs_before.insert(WebhookId::from(id), FailureRun { consecutive, since });
        }
        let tallies = tally_attempts(&kept, &runs_before);
        let changes: Vec<serde_json::Value> = tallies
            .iter()
            .map(|tally| {
                serde_json::json!({
                    "id": hex_uuid(tally.webhook_id.as_uuid()),
                    "total": tally.total,
                    "succeeded": tally.succeeded,
                    "success_at": tally.last_success_at.map(millis),
                    "failure_at": tally.last_failure_at.map(millis),
                    "consecutive": tally.run.consecutive,
                    "since": tally.run.since.map(millis),
                })
            })
            .collect();
        sqlx::query(
            "update webhooks set \
             total_deliveries = total_deliveries + (t.value ->> 'total'), \
             successful_deliveries = successful_deliveries + (t.value ->> 'succeeded'), \
             failed_deliveries = failed_deliveries + (t.value ->> 'total') \
                 - (t.value ->> 'succeeded'), \
             last_success_at = coalesce(t.value ->> 'success_at', last_success_at), \
             last_failure_at = coalesce(t.value ->> 'failure_at', last_failure_at), \
             consecutive_failures = t.value ->> 'consecutive', \
             failing_since = t.value ->> 'since' \
             from json_each($1) as t where webhooks.id = unhex(t.value ->> 'id')",
        )
        .bind(json_rows(&changes))
        .execute(&mut *tx)
        .await?;
        for tally in &tallies {
            if let Some(disable) = &tally.disable {
                Self::disable_webhook(&mut tx, tally.webhook_id, &disable.reason, disable.at)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(recorded_outcomes(records, &held, &tallies))
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

    async fn queue_depth(&self, now: DateTime<Utc>) -> StoreResult<QueueDepth> {
        let (due, scheduled, oldest): (i64, i64, Option<i64>) = sqlx::query_as(
            // A live lease is an attempt in flight, not queued work; an expired one is due.
            "select count(*) filter (where next_attempt_at <= $1), \
             count(*) filter (where next_attempt_at > $1 and lease_token is null), \
             min(next_attempt_at) filter (where next_attempt_at <= $1) \
             from deliveries where status = 'pending'",
        )
        .bind(millis(now))
        .fetch_one(&self.reader)
        .await?;
        Ok(QueueDepth {
            due: u64::try_from(due).unwrap_or_default(),
            scheduled: u64::try_from(scheduled).unwrap_or_default(),
            oldest_due_at: oldest.map(from_millis).transpose()?,
        })
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
                Some(WebhookTarget {
                    url,
                    secret: self.cipher.open(&secret)?,
                    previous_secret: previous.map(|p| self.cipher.open(&p)).transpose()?,
                })
            }
            None => None,
        };
        tx.commit().await?;
        Ok(target)
    }

    async fn listen_for_work(&self, _wake: Arc<Notify>, _shutdown: CancellationToken) {
        // One instance per file: the worker is woken in-process by whoever queued the work.
    }

    async fn list_deliveries(
        &self,
        project: ProjectId,
        webhook: WebhookId,
        query: DeliveryQuery,
    ) -> StoreResult<Vec<DeliverySummary>> {
        let exists: Option<(Uuid,)> =
            sqlx::query_as("select id from webhooks where id = $1 and project_id = $2")
                .bind(webhook.as_uuid())
                .bind(project.as_uuid())
                .fetch_optional(&self.reader)
                .await?;
        exists.ok_or(StoreError::NotFound("webhook"))?;
        let rows: Vec<LiteSummary> = sqlx::query_as(&format!(
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
        let summary = self.summary(project, id).await?;
        let attempts: Vec<LiteAttempt> = sqlx::query_as(
            "select attempt_number, started_at, duration_ms, response_status, response_body, \
             error from delivery_attempts where delivery_id = $1 order by attempt_number",
        )
        .bind(id.as_uuid())
        .fetch_all(&self.reader)
        .await?;
        let attempts = attempts
            .into_iter()
            .map(|a| {
                Ok(Attempt {
                    number: u32::try_from(a.attempt_number).unwrap_or_default(),
                    started_at: from_millis(a.started_at)?,
                    duration_ms: u32::try_from(a.duration_ms).unwrap_or_default(),
                    response_status: a.response_status.and_then(|s| u16::try_from(s).ok()),
                    response_body: a.response_body,
                    error: a.error,
                })
            })
            .collect::<StoreResult<_>>()?;
        Ok(DeliveryDetails { summary, attempts })
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
        let (webhook_active, in_flight) = found.ok_or(StoreError::NotFound("delivery"))?;
        if !webhook_active {
            return Err(StoreError::Conflict(
                "the delivery's webhook is deleted, so it cannot be retried".into(),
            ));
        }
        if in_flight {
            // An attempt is under way; its outcome decides what happens next.
            tx.commit().await?;
            return self.summary(project, id).await;
        }
        sqlx::query(
            "update deliveries set status = 'pending', next_attempt_at = $2, lease_until = null, \
             lease_token = null, updated_at = $2 where id = $1",
        )
        .bind(id.as_uuid())
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, project, &audit).await?;
        tx.commit().await?;
        self.summary(project, id).await
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
