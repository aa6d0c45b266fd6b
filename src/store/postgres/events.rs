//! Accepting events on Postgres: a batch is one unlocked read of the target webhooks and one
//! self-committing statement; an event alone is one transaction. NOTIFY wakes the other
//! instances when unleased deliveries are committed.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{PostgresStore, announce_rows, insert_audit};
use crate::domain::{DeliveryId, subscription_pairs};
use crate::store::accept::{AcceptWays, accept_events};
use crate::store::records::{
    BatchCandidate, DeliveryRows, TargetCandidate, TargetRow, batch_targets, queue_deliveries,
};
use crate::store::{
    Accepted, Accepting, Entity, EventStore, EventTarget, NewEvent, Reason, StoreError, StoreResult,
};

/// An idempotency key answers with its first event for this long.
const IDEMPOTENCY_WINDOW: TimeDelta = TimeDelta::hours(24);

/// The columns `TargetCandidate` reads from `webhooks` as `w`; the rotated-out secret still
/// signs while its grace period lasts, and a throttled or rate-limited webhook's deliveries
/// wait in the queue (`$3` is the event's time).
const TARGET_COLUMNS: &str = "w.id, w.url, w.secret, case when w.previous_secret_until > $3 \
     then w.previous_secret end as previous_secret, w.custom_headers, w.filters::text as filters, \
     w.rate_limit is null and (w.throttled_until is null or w.throttled_until <= $3) as direct, \
     w.paused_at is not null as paused, w.mode = 'pull' as pull, w.throttle_backoff_ms, \
     w.retry_schedule, w.max_concurrency, w.effective_concurrency";

/// Inserts `DeliveryRows`, bound as `$1` to `$8`; callers add a filter and `returning id`.
pub(super) const INSERT_DELIVERIES: &str = "insert into deliveries (id, project_id, webhook_id, event_id, status, \
             next_attempt_at, lease_until, lease_token, created_at, updated_at, pull) \
             select t.id, t.project_id, t.webhook_id, t.event_id, 'pending', \
                    coalesce(t.lease_until, t.created_at), t.lease_until, t.lease_token, \
                    t.created_at, t.created_at, t.pull \
             from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::timestamptz[], \
                         $6::timestamptz[], $7::uuid[], $8::bool[]) \
                  as t(id, project_id, webhook_id, event_id, created_at, lease_until, lease_token, \
                       pull)";

pub(super) fn deliveries_insert<'q>(
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
        .bind(&rows.pull)
}

/// A batch of events as the insert's `unnest` columns.
#[derive(Default)]
pub(super) struct EventColumns {
    pub ids: Vec<Uuid>,
    pub project_ids: Vec<Uuid>,
    pub event_types: Vec<String>,
    pub payloads: Vec<String>,
    pub created_at: Vec<DateTime<Utc>>,
    pub trace_contexts: Vec<Option<String>>,
}

impl EventColumns {
    pub(super) fn push(&mut self, event: &NewEvent) {
        self.ids.push(event.id.as_uuid());
        self.project_ids.push(event.project_id.as_uuid());
        self.event_types.push(event.event_type.clone());
        self.payloads.push(event.payload.clone());
        self.created_at.push(event.created_at);
        self.trace_contexts.push(event.trace_context.clone());
    }
}

impl PostgresStore {
    /// The earlier event for this event's key if it is recent; an expired key is freed for
    /// reuse. A recent key used for another event is a conflict.
    async fn replay(
        tx: &mut Transaction<'_, Postgres>,
        event: &NewEvent,
        key: &str,
        cutoff: DateTime<Utc>,
    ) -> StoreResult<Option<Accepted>> {
        let earlier: Option<(Uuid, String, DateTime<Utc>, Option<String>)> = sqlx::query_as(
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
        if created_at <= cutoff {
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
        tx: &mut Transaction<'_, Postgres>,
        accepting: &Accepting,
    ) -> StoreResult<Vec<TargetRow>> {
        let event = &accepting.event;
        let candidates: Vec<TargetCandidate> = match event.target {
            EventTarget::Webhook(webhook, kind) => {
                let found: Option<TargetCandidate> = sqlx::query_as(&format!(
                    "select {TARGET_COLUMNS} from webhooks w \
                     where id = $1 and project_id = $2 and kind = $4 and is_active for key share"
                ))
                .bind(webhook.as_uuid())
                .bind(event.project_id.as_uuid())
                .bind(event.created_at)
                .bind(kind.as_str())
                .fetch_optional(&mut **tx)
                .await?;
                let found = found.ok_or(StoreError::NotFound(Entity::of(kind)))?;
                // A test event goes to its webhook whatever the filters say.
                return Ok(vec![found.into_target()]);
            }
            EventTarget::Subscribers => {
                sqlx::query_as(&format!(
                    // A delete waits for this lock, then cancels what this event queued; the
                    // stats updates of attempt outcomes do not, so publishing never queues
                    // behind them.
                    "select {TARGET_COLUMNS} from webhooks w where project_id = $1 \
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
        let candidates = candidates
            .into_iter()
            .map(|c| BatchCandidate::of(event, c))
            .collect();
        Ok(batch_targets(&[accepting], candidates)?.remove(0))
    }

    /// Inserts new deliveries in one statement; rows without a lease wake the other instances'
    /// workers or pollers when the transaction commits, which is exactly when they can see them.
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
        announce_rows(&mut **tx, rows).await
    }
}

#[async_trait]
impl AcceptWays for PostgresStore {
    async fn accept_alone(&self, accepting: &Accepting) -> StoreResult<Accepted> {
        let event = &accepting.event;
        if event.batchable() {
            let mut accepted = self.accept_together(&[accepting]).await?;
            return Ok(accepted.remove(0));
        }
        let mut tx = self.pool.begin().await?;
        let cutoff = event.created_at - IDEMPOTENCY_WINDOW;
        if let Some(key) = &event.idempotency_key {
            if let Some(earlier) = Self::replay(&mut tx, event, key, cutoff).await? {
                tx.commit().await?;
                return Ok(earlier);
            }
        }
        let inserted = sqlx::query(
            "insert into events (id, project_id, event_type, payload, idempotency_key, created_at, \
             request_hash, trace_context) values ($1, $2, $3, $4, $5, $6, $7, $8) \
             on conflict (project_id, idempotency_key) do nothing",
        )
        .bind(event.id.as_uuid())
        .bind(event.project_id.as_uuid())
        .bind(&event.event_type)
        .bind(&event.payload)
        .bind(&event.idempotency_key)
        .bind(event.created_at)
        .bind(event.idempotency_key.as_ref().map(|_| event.fingerprint()))
        .bind(&event.trace_context)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // A concurrent request with the same key committed first: answer with its event.
            let key = event.idempotency_key.as_deref().unwrap_or_default();
            let earlier = Self::replay(&mut tx, event, key, cutoff).await?;
            tx.commit().await?;
            return earlier.ok_or(StoreError::Conflict(Reason::IdempotencyKeyInUse));
        }
        let targets = Self::targets(&mut tx, accepting).await?;
        let (rows, mut accepted) = queue_deliveries(&self.cipher, &[accepting], vec![targets])?;
        Self::insert_deliveries(&mut tx, &rows).await?;
        if let EventTarget::Webhook(..) = event.target {
            sqlx::query("update deliveries set ignores_pause = true where event_id = $1")
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
        // Which webhooks each event goes to is read first, without locks; the write below locks
        // those webhooks and leaves out any that stopped being active in between, so the whole
        // batch is one read and one self-committing statement.
        let published: Vec<_> = events.iter().map(|a| a.event.published()).collect();
        let (projects, types): (Vec<Uuid>, Vec<String>) = subscription_pairs(&published)
            .into_iter()
            .map(|(project, event_type)| (project.as_uuid(), event_type))
            .unzip();
        let candidates: Vec<BatchCandidate> = sqlx::query_as(&format!(
            "select {TARGET_COLUMNS}, p.project_id, p.event_type from webhooks w \
             join unnest($1::uuid[], $2::text[]) as p(project_id, event_type) \
             on w.project_id = p.project_id and p.event_type = any(w.events) \
             where w.is_active and w.disabled_at is null order by w.id"
        ))
        .bind(&projects)
        .bind(&types)
        .bind(first.event.created_at)
        .fetch_all(&self.pool)
        .await?;
        let targets = batch_targets(events, candidates)?;
        let (rows, accepted) = queue_deliveries(&self.cipher, events, targets)?;
        let mut columns = EventColumns::default();
        for accepting in events {
            columns.push(&accepting.event);
        }
        let mut webhooks = rows.webhook_ids.clone();
        webhooks.sort_unstable();
        webhooks.dedup();
        // A delete waits for the key share, then cancels what these events queued; outcome stats
        // updates do not conflict with it, so publishing never queues behind them.
        let sql = format!(
            "with live as (select id from webhooks where id = any($14) and is_active \
                           and disabled_at is null order by id for key share), \
             new_events as (insert into events (id, project_id, event_type, payload, created_at, \
                                                trace_context) \
                            select * from unnest($9::uuid[], $10::uuid[], $11::text[], \
                                                 $12::text[], $13::timestamptz[], $15::text[])) \
             {INSERT_DELIVERIES} where t.webhook_id in (select id from live) returning id"
        );
        let inserted: Vec<(Uuid,)> = deliveries_insert(&sql, &rows)
            .bind(&columns.ids)
            .bind(&columns.project_ids)
            .bind(&columns.event_types)
            .bind(&columns.payloads)
            .bind(&columns.created_at)
            .bind(&webhooks)
            .bind(&columns.trace_contexts)
            .fetch_all(&self.pool)
            .await?;
        if !inserted.is_empty() {
            // Committed already, so other workers and pollers can see the rows when they wake.
            announce_rows(&self.pool, &rows).await?;
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
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn accept_events(&self, events: Vec<Accepting>) -> Vec<StoreResult<Accepted>> {
        accept_events(self, events).await
    }
}
