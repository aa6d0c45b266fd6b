//! Events, the delivery queue and the delivery log on Postgres: `for update skip locked` leases
//! let several instances share the queue, and NOTIFY wakes them when work is committed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::{PgArguments, PgListener};
use sqlx::query::QueryAs;
use sqlx::{FromRow, Postgres, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{PostgresStore, WORK_CHANNEL, insert_audit};
use crate::domain::{DeliveryId, ProjectId, WebhookId};
use crate::store::{
    AcceptedEvent, Attempt, AttemptRecord, AuditEntry, BatchCandidate, ClaimRow, ClaimedDelivery,
    DeliveryDetails, DeliveryQuery, DeliveryRows, DeliveryStatus, DeliveryStore, DeliverySummary,
    EventTarget, FailureRun, NewEvent, QueueDepth, Recorded, StoreError, StoreResult,
    TargetCandidate, TargetRow, WebhookTally, WebhookTarget, batch_targets, matching_webhooks,
    queue_deliveries, recorded_outcomes, storable, subscription_pairs, tally_attempts,
};

/// An idempotency key answers with its first event for this long.
const IDEMPOTENCY_WINDOW: TimeDelta = TimeDelta::hours(24);

/// A leased delivery is being attempted: its next_attempt_at is a lease end, not a schedule.
const SUMMARY_COLUMNS: &str = "d.id, d.webhook_id, d.event_id, e.event_type, d.status, \
     d.attempt_count, case when d.lease_token is null then d.next_attempt_at end \
     as next_attempt_at, d.last_response_status, d.last_error, d.created_at, d.updated_at";

#[derive(FromRow)]
struct PgSummary {
    id: Uuid,
    webhook_id: Uuid,
    event_id: Uuid,
    event_type: String,
    status: String,
    attempt_count: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    last_response_status: Option<i32>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PgSummary> for DeliverySummary {
    type Error = StoreError;

    fn try_from(row: PgSummary) -> Result<Self, Self::Error> {
        Ok(DeliverySummary {
            id: row.id.into(),
            webhook_id: row.webhook_id.into(),
            event_id: row.event_id.into(),
            event_type: row.event_type,
            status: DeliveryStatus::from_stored(&row.status)?,
            attempt_count: u32::try_from(row.attempt_count).unwrap_or_default(),
            next_attempt_at: row.next_attempt_at,
            last_response_status: row.last_response_status.and_then(|s| u16::try_from(s).ok()),
            last_error: row.last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(FromRow)]
struct PgClaim {
    id: Uuid,
    project_id: Uuid,
    webhook_id: Uuid,
    event_id: Uuid,
    event_type: String,
    payload: String,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    attempt_count: i32,
}

#[derive(FromRow)]
struct PgAttempt {
    attempt_number: i32,
    started_at: DateTime<Utc>,
    duration_ms: i32,
    response_status: Option<i32>,
    response_body: Option<String>,
    error: Option<String>,
}

impl PostgresStore {
    /// The earlier event for this key if it is recent; an expired key is freed for reuse.
    async fn replay(
        tx: &mut Transaction<'_, Postgres>,
        project: ProjectId,
        key: &str,
        cutoff: DateTime<Utc>,
    ) -> StoreResult<Option<AcceptedEvent>> {
        let earlier: Option<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
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
        if created_at <= cutoff {
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
        tx: &mut Transaction<'_, Postgres>,
        event: &NewEvent,
    ) -> StoreResult<Vec<TargetRow>> {
        // The rotated-out secret still signs while its grace period lasts.
        const TARGET_COLUMNS: &str = "id, url, secret, case when previous_secret_until > $3 \
             then previous_secret end as previous_secret, filters::text as filters";
        let candidates: Vec<TargetCandidate> = match event.target {
            EventTarget::Webhook(webhook) => {
                let found: Option<TargetCandidate> = sqlx::query_as(&format!(
                    "select {TARGET_COLUMNS} from webhooks \
                     where id = $1 and project_id = $2 and is_active for key share"
                ))
                .bind(webhook.as_uuid())
                .bind(event.project_id.as_uuid())
                .bind(event.created_at)
                .fetch_optional(&mut **tx)
                .await?;
                let found = found.ok_or(StoreError::NotFound("webhook"))?;
                // A test event goes to its webhook whatever the filters say.
                return Ok(vec![found.into_target()]);
            }
            EventTarget::Subscribers => {
                sqlx::query_as(&format!(
                    // A delete waits for this lock, then cancels what this event queued; the
                    // stats updates of attempt outcomes do not, so publishing never queues
                    // behind them.
                    "select {TARGET_COLUMNS} from webhooks where project_id = $1 \
                     and is_active and disabled_at is null and $2 = any(events) order by id \
                     for key share"
                ))
                .bind(event.project_id.as_uuid())
                .bind(&event.event_type)
                .bind(event.created_at)
                .fetch_all(&mut **tx)
                .await?
            }
        };
        matching_webhooks(candidates, &event.data)
    }

    /// Inserts new deliveries in one statement; rows without a lease wake the other instances
    /// when the transaction commits, which is exactly when they can see them.
    async fn insert_deliveries(
        tx: &mut Transaction<'_, Postgres>,
        rows: &DeliveryRows,
    ) -> StoreResult<()> {
        if rows.ids.is_empty() {
            return Ok(());
        }
        deliveries_insert(&format!("{INSERT_DELIVERIES} returning id"), rows)
            .fetch_all(&mut **tx)
            .await?;
        if rows.any_unleased() {
            sqlx::query("select pg_notify($1, '')")
                .bind(WORK_CHANNEL)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Stops deliveries to a failing endpoint: marks it disabled and cancels what is pending.
    async fn disable_webhook(
        tx: &mut Transaction<'_, Postgres>,
        webhook: WebhookId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "update webhooks set disabled_at = $2, disabled_reason = $3 \
             where id = $1 and disabled_at is null",
        )
        .bind(webhook.as_uuid())
        .bind(now)
        .bind(reason)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "update deliveries set status = 'cancelled', next_attempt_at = null, \
             lease_until = null, lease_token = null, last_error = $3, updated_at = $2 \
             where webhook_id = $1 and status = 'pending'",
        )
        .bind(webhook.as_uuid())
        .bind(now)
        .bind(format!(
            "cancelled: the endpoint was disabled because {reason}"
        ))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn summary(&self, project: ProjectId, id: DeliveryId) -> StoreResult<DeliverySummary> {
        let row: Option<PgSummary> = sqlx::query_as(&format!(
            "select {SUMMARY_COLUMNS} from deliveries d join events e on e.id = d.event_id \
             where d.id = $1 and d.project_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(project.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or(StoreError::NotFound("delivery"))?.try_into()
    }
}

fn millis_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Inserts `DeliveryRows`, bound as `$1` to `$7`; callers add a filter and `returning id`.
const INSERT_DELIVERIES: &str = "insert into deliveries (id, project_id, webhook_id, event_id, status, \
             next_attempt_at, lease_until, lease_token, created_at, updated_at) \
             select t.id, t.project_id, t.webhook_id, t.event_id, 'pending', \
                    coalesce(t.lease_until, t.created_at), t.lease_until, t.lease_token, \
                    t.created_at, t.created_at \
             from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::timestamptz[], \
                         $6::timestamptz[], $7::uuid[]) \
                  as t(id, project_id, webhook_id, event_id, created_at, lease_until, lease_token)";

fn deliveries_insert<'q>(
    sql: &'q str,
    rows: &'q DeliveryRows,
) -> QueryAs<'q, Postgres, (Uuid,), PgArguments> {
    sqlx::query_as(sql)
        .bind(&rows.ids)
        .bind(&rows.project_ids)
        .bind(&rows.webhook_ids)
        .bind(&rows.event_ids)
        .bind(&rows.created_at)
        .bind(&rows.lease_until)
        .bind(&rows.lease_tokens)
}

/// A batch of events as the insert's `unnest` columns.
#[derive(Default)]
struct EventColumns {
    ids: Vec<Uuid>,
    project_ids: Vec<Uuid>,
    event_types: Vec<String>,
    payloads: Vec<String>,
    created_at: Vec<DateTime<Utc>>,
}

impl EventColumns {
    fn push(&mut self, event: &NewEvent) {
        self.ids.push(event.id.as_uuid());
        self.project_ids.push(event.project_id.as_uuid());
        self.event_types.push(event.event_type.clone());
        self.payloads.push(event.payload.clone());
        self.created_at.push(event.created_at);
    }
}

/// A batch of attempt outcomes as the delivery update's `unnest` columns.
#[derive(Default)]
struct DeliveryColumns {
    ids: Vec<Uuid>,
    tokens: Vec<Uuid>,
    statuses: Vec<&'static str>,
    next_attempt_at: Vec<Option<DateTime<Utc>>>,
    response_status: Vec<Option<i32>>,
    errors: Vec<Option<String>>,
    finished_at: Vec<DateTime<Utc>>,
}

impl DeliveryColumns {
    fn push(&mut self, record: &AttemptRecord) {
        let (status, next_attempt_at) = record.next_state();
        self.ids.push(record.delivery_id.as_uuid());
        self.tokens.push(record.lease_token);
        self.statuses.push(status.as_str());
        self.next_attempt_at.push(next_attempt_at);
        self.response_status
            .push(record.response_status.map(i32::from));
        self.errors.push(storable(&record.error));
        self.finished_at.push(record.finished_at);
    }
}

/// A batch of attempts as the attempt log insert's `unnest` columns.
#[derive(Default)]
struct AttemptColumns {
    ids: Vec<Uuid>,
    numbers: Vec<i32>,
    started_at: Vec<DateTime<Utc>>,
    duration_ms: Vec<i32>,
    response_status: Vec<Option<i32>>,
    response_body: Vec<Option<String>>,
    error: Vec<Option<String>>,
}

impl AttemptColumns {
    fn push(&mut self, record: &AttemptRecord) {
        self.ids.push(record.delivery_id.as_uuid());
        self.numbers.push(millis_i32(record.attempt_number));
        self.started_at.push(record.started_at);
        self.duration_ms.push(millis_i32(record.duration_ms));
        self.response_status
            .push(record.response_status.map(i32::from));
        self.response_body.push(storable(&record.response_body));
        self.error.push(storable(&record.error));
    }
}

/// Per-webhook changes of a batch as the stats update's `unnest` columns.
#[derive(Default)]
struct StatsColumns {
    ids: Vec<Uuid>,
    total: Vec<i64>,
    succeeded: Vec<i64>,
    last_success_at: Vec<Option<DateTime<Utc>>>,
    last_failure_at: Vec<Option<DateTime<Utc>>>,
    consecutive: Vec<i64>,
    failing_since: Vec<Option<DateTime<Utc>>>,
}

impl StatsColumns {
    fn push(&mut self, tally: &WebhookTally) {
        self.ids.push(tally.webhook_id.as_uuid());
        self.total.push(tally.total);
        self.succeeded.push(tally.succeeded);
        self.last_success_at.push(tally.last_success_at);
        self.last_failure_at.push(tally.last_failure_at);
        self.consecutive.push(tally.run.consecutive);
        self.failing_since.push(tally.run.since);
    }
}

#[async_trait]
impl DeliveryStore for PostgresStore {
    async fn accept_event(&self, event: NewEvent) -> StoreResult<AcceptedEvent> {
        if event.batchable() {
            let mut accepted = self.accept_together(std::slice::from_ref(&event)).await?;
            return Ok(accepted.remove(0));
        }
        let mut tx = self.pool.begin().await?;
        let cutoff = event.created_at - IDEMPOTENCY_WINDOW;
        if let Some(key) = &event.idempotency_key {
            if let Some(earlier) = Self::replay(&mut tx, event.project_id, key, cutoff).await? {
                tx.commit().await?;
                return Ok(earlier);
            }
        }
        let inserted = sqlx::query(
            "insert into events (id, project_id, event_type, payload, idempotency_key, created_at) \
             values ($1, $2, $3, $4, $5, $6) on conflict (project_id, idempotency_key) do nothing",
        )
        .bind(event.id.as_uuid())
        .bind(event.project_id.as_uuid())
        .bind(&event.event_type)
        .bind(&event.payload)
        .bind(&event.idempotency_key)
        .bind(event.created_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // A concurrent request with the same key committed first: answer with its event.
            let key = event.idempotency_key.as_deref().unwrap_or_default();
            let earlier = Self::replay(&mut tx, event.project_id, key, cutoff).await?;
            tx.commit().await?;
            return earlier.ok_or_else(|| StoreError::Conflict("idempotency key in use".into()));
        }
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
        // Which webhooks each event goes to is read first, without locks; the write below locks
        // those webhooks and leaves out any that stopped being active in between, so the whole
        // batch is one read and one self-committing statement.
        let (projects, types): (Vec<Uuid>, Vec<String>) =
            subscription_pairs(events).into_iter().unzip();
        let candidates: Vec<BatchCandidate> = sqlx::query_as(
            "select w.id, w.url, w.secret, case when w.previous_secret_until > $3 \
             then w.previous_secret end as previous_secret, w.filters::text as filters, \
             p.project_id, p.event_type from webhooks w \
             join unnest($1::uuid[], $2::text[]) as p(project_id, event_type) \
             on w.project_id = p.project_id and p.event_type = any(w.events) \
             where w.is_active and w.disabled_at is null order by w.id",
        )
        .bind(&projects)
        .bind(&types)
        .bind(events[0].created_at)
        .fetch_all(&self.pool)
        .await?;
        let targets = batch_targets(events, candidates)?;
        let (rows, accepted) = queue_deliveries(&self.cipher, events, targets)?;
        let mut columns = EventColumns::default();
        for event in events {
            columns.push(event);
        }
        let mut webhooks = rows.webhook_ids.clone();
        webhooks.sort_unstable();
        webhooks.dedup();
        // A delete waits for the key share, then cancels what these events queued; outcome stats
        // updates do not conflict with it, so publishing never queues behind them.
        let sql = format!(
            "with live as (select id from webhooks where id = any($13) and is_active \
                           and disabled_at is null order by id for key share), \
             new_events as (insert into events (id, project_id, event_type, payload, created_at) \
                            select * from unnest($8::uuid[], $9::uuid[], $10::text[], \
                                                 $11::text[], $12::timestamptz[])) \
             {INSERT_DELIVERIES} where t.webhook_id in (select id from live) returning id"
        );
        let inserted: Vec<(Uuid,)> = deliveries_insert(&sql, &rows)
            .bind(&columns.ids)
            .bind(&columns.project_ids)
            .bind(&columns.event_types)
            .bind(&columns.payloads)
            .bind(&columns.created_at)
            .bind(&webhooks)
            .fetch_all(&self.pool)
            .await?;
        if rows.any_unleased() && !inserted.is_empty() {
            // Committed already, so other workers can see the rows when they wake.
            sqlx::query("select pg_notify($1, '')")
                .bind(WORK_CHANNEL)
                .execute(&self.pool)
                .await?;
        }
        if inserted.len() == rows.ids.len() {
            return Ok(accepted);
        }
        let inserted: HashSet<DeliveryId> = inserted.into_iter().map(|(id,)| id.into()).collect();
        Ok(accepted
            .into_iter()
            .map(|event| event.keeping(&inserted))
            .collect())
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
        let excluded: Vec<Uuid> = exclude.iter().map(|w| w.as_uuid()).collect();
        let rows: Vec<PgClaim> = sqlx::query_as(
            "update deliveries d set lease_until = $2, next_attempt_at = $2, lease_token = $3 \
             from (select id from \
                     (select id, row_number() over (partition by webhook_id \
                                                    order by next_attempt_at) as nth \
                      from (select id, webhook_id, next_attempt_at from deliveries \
                            where status = 'pending' and next_attempt_at <= $1 \
                            and not (webhook_id = any($5)) order by next_attempt_at \
                            limit $4 for update skip locked) as oldest) as ranked \
                   where nth <= $6) c, events e, webhooks w \
             where d.id = c.id and e.id = d.event_id and w.id = d.webhook_id \
             returning d.id, d.project_id, d.webhook_id, d.event_id, e.event_type, e.payload, \
                       w.url, w.secret, d.attempt_count, case when w.previous_secret_until > $1 \
                       then w.previous_secret end as previous_secret",
        )
        .bind(now)
        .bind(lease_until)
        .bind(token)
        .bind(i64::from(limit))
        .bind(&excluded)
        .bind(i64::from(per_webhook))
        .fetch_all(&self.pool)
        .await?;
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
                    attempt_count: i64::from(row.attempt_count),
                }
                .into_claim(&self.cipher, token)
            })
            .collect()
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<Recorded>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        // Webhook rows are locked first and in id order, so concurrent batches and deletes queue
        // instead of deadlocking; the lock leaves publishing (a key share) alone.
        let mut webhook_ids: Vec<Uuid> = records.iter().map(|r| r.webhook_id.as_uuid()).collect();
        webhook_ids.sort_unstable();
        webhook_ids.dedup();
        let runs: Vec<(Uuid, i64, Option<DateTime<Utc>>)> = sqlx::query_as(
            "select id, consecutive_failures, failing_since from webhooks \
             where id = any($1) order by id for no key update",
        )
        .bind(&webhook_ids)
        .fetch_all(&mut *tx)
        .await?;
        let runs_before: HashMap<WebhookId, FailureRun> = runs
            .into_iter()
            .map(|(id, consecutive, since)| {
                let run = FailureRun { consecutive, since };
                (WebhookId::from(id), run)
            })
            .collect();

        let mut columns = DeliveryColumns::default();
        for record in records {
            columns.push(record);
        }
        let held: Vec<(Uuid,)> = sqlx::query_as(
            "update deliveries d set status = t.status, attempt_count = d.attempt_count + 1, \
             next_attempt_at = t.next_attempt_at, lease_until = null, lease_token = null, \
             last_response_status = t.response_status, last_error = t.error, \
             updated_at = t.finished_at \
             from unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int4[], \
                         $6::text[], $7::timestamptz[]) \
                  as t(id, token, status, next_attempt_at, response_status, error, finished_at) \
             where d.id = t.id and d.lease_token = t.token and d.status = 'pending' \
             returning d.id",
        )
        .bind(&columns.ids)
        .bind(&columns.tokens)
        .bind(&columns.statuses)
        .bind(&columns.next_attempt_at)
        .bind(&columns.response_status)
        .bind(&columns.errors)
        .bind(&columns.finished_at)
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

        let mut attempts = AttemptColumns::default();
        for record in &kept {
            attempts.push(record);
        }
        sqlx::query(
            "insert into delivery_attempts (delivery_id, attempt_number, started_at, duration_ms, \
             response_status, response_body, error) \
             select * from unnest($1::uuid[], $2::int4[], $3::timestamptz[], $4::int4[], \
                                  $5::int4[], $6::text[], $7::text[])",
        )
        .bind(&attempts.ids)
        .bind(&attempts.numbers)
        .bind(&attempts.started_at)
        .bind(&attempts.duration_ms)
        .bind(&attempts.response_status)
        .bind(&attempts.response_body)
        .bind(&attempts.error)
        .execute(&mut *tx)
        .await?;

        let tallies = tally_attempts(&kept, &runs_before);
        let mut stats = StatsColumns::default();
        for tally in &tallies {
            stats.push(tally);
        }
        sqlx::query(
            "update webhooks w set total_deliveries = w.total_deliveries + t.total, \
             successful_deliveries = w.successful_deliveries + t.succeeded, \
             failed_deliveries = w.failed_deliveries + t.total - t.succeeded, \
             last_success_at = coalesce(t.last_success_at, w.last_success_at), \
             last_failure_at = coalesce(t.last_failure_at, w.last_failure_at), \
             consecutive_failures = t.consecutive, failing_since = t.failing_since \
             from unnest($1::uuid[], $2::int8[], $3::int8[], $4::timestamptz[], \
                         $5::timestamptz[], $6::int8[], $7::timestamptz[]) \
                  as t(id, total, succeeded, last_success_at, last_failure_at, consecutive, \
                       failing_since) \
             where w.id = t.id",
        )
        .bind(&stats.ids)
        .bind(&stats.total)
        .bind(&stats.succeeded)
        .bind(&stats.last_success_at)
        .bind(&stats.last_failure_at)
        .bind(&stats.consecutive)
        .bind(&stats.failing_since)
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
        let (next,): (Option<DateTime<Utc>>,) =
            sqlx::query_as("select min(next_attempt_at) from deliveries where status = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok(next)
    }

    async fn queue_depth(&self, now: DateTime<Utc>) -> StoreResult<QueueDepth> {
        let (due, scheduled, oldest): (i64, i64, Option<DateTime<Utc>>) = sqlx::query_as(
            // A live lease is an attempt in flight, not queued work; an expired one is due.
            "select count(*) filter (where next_attempt_at <= $1), \
             count(*) filter (where next_attempt_at > $1 and lease_token is null), \
             min(next_attempt_at) filter (where next_attempt_at <= $1) \
             from deliveries where status = 'pending'",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueDepth {
            due: u64::try_from(due).unwrap_or_default(),
            scheduled: u64::try_from(scheduled).unwrap_or_default(),
            oldest_due_at: oldest,
        })
    }

    async fn renew_claim(
        &self,
        id: DeliveryId,
        lease_token: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Option<WebhookTarget>> {
        let row: Option<(String, String, Option<String>)> = sqlx::query_as(
            "update deliveries d set lease_until = $3, next_attempt_at = $3 from webhooks w \
             where d.id = $1 and d.lease_token = $2 and d.status = 'pending' \
             and w.id = d.webhook_id and w.is_active returning w.url, w.secret, \
             case when w.previous_secret_until > $4 then w.previous_secret end",
        )
        .bind(id.as_uuid())
        .bind(lease_token)
        .bind(lease_until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(url, secret, previous)| {
            Ok(WebhookTarget {
                url,
                secret: self.cipher.open(&secret)?,
                previous_secret: previous.map(|p| self.cipher.open(&p)).transpose()?,
            })
        })
        .transpose()
    }

    async fn listen_for_work(&self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let mut retry_in = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let listener = async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener.listen(WORK_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            match listener.await {
                Ok(mut listener) => {
                    retry_in = Duration::from_millis(100);
                    // Work may have been queued while we were not listening.
                    wake.notify_one();
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            received = listener.recv() => match received {
                                Ok(_) => wake.notify_one(),
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
                .fetch_optional(&self.pool)
                .await?;
        exists.ok_or(StoreError::NotFound("webhook"))?;
        let rows: Vec<PgSummary> = sqlx::query_as(&format!(
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
        let summary = self.summary(project, id).await?;
        let attempts: Vec<PgAttempt> = sqlx::query_as(
            "select attempt_number, started_at, duration_ms, response_status, response_body, \
             error from delivery_attempts where delivery_id = $1 order by attempt_number",
        )
        .bind(id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        Ok(DeliveryDetails {
            summary,
            attempts: attempts
                .into_iter()
                .map(|a| Attempt {
                    number: u32::try_from(a.attempt_number).unwrap_or_default(),
                    started_at: a.started_at,
                    duration_ms: u32::try_from(a.duration_ms).unwrap_or_default(),
                    response_status: a.response_status.and_then(|s| u16::try_from(s).ok()),
                    response_body: a.response_body,
                    error: a.error,
                })
                .collect(),
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
        let (webhook_active,) = webhook.ok_or(StoreError::NotFound("delivery"))?;
        let (in_flight,): (bool,) = sqlx::query_as(
            "select coalesce(status = 'pending' and lease_until > $2, false) from deliveries \
             where id = $1 for update",
        )
        .bind(id.as_uuid())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
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
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("select pg_notify($1, '')")
            .bind(WORK_CHANNEL)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, project, &audit).await?;
        tx.commit().await?;
        self.summary(project, id).await
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
