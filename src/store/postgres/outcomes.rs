//! Recording attempt outcomes on Postgres: one transaction of a fixed number of statements per
//! batch, with each webhook's stats and the disable decision folded attempt by attempt.

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::events::{EventColumns, INSERT_DELIVERIES, deliveries_insert};
use super::{PostgresStore, announce_rows};
use crate::domain::{DeliveryId, WebhookId, WebhookTally, tally_attempts};
use crate::store::records::{
    ALERT_ENDPOINTS_SELECT, AlertEndpointRow, NoticeRows, RUN_SELECT, RunRow, SUBJECT_SELECT,
    SubjectRow, Subjects, announcing, notice_rows, recorded_outcomes, runs_before, storable,
};
use crate::store::{AttemptRecord, FlowChange, RecordedBatch, StoreResult};

fn clamp_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
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
    failed: Vec<i32>,
    throttled: Vec<bool>,
}

impl DeliveryColumns {
    fn push(&mut self, record: &AttemptRecord) {
        let (status, next_attempt_at) = record.result.next_state();
        self.ids.push(record.delivery_id.as_uuid());
        self.tokens.push(record.lease_token);
        self.statuses.push(status.as_str());
        self.next_attempt_at.push(next_attempt_at);
        self.response_status
            .push(record.response_status.map(i32::from));
        self.errors.push(storable(&record.error));
        self.finished_at.push(record.finished_at);
        self.failed.push(i32::from(record.counts_as_failure()));
        self.throttled.push(record.hold.is_some());
    }

    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.tokens)
            .bind(&self.statuses)
            .bind(&self.next_attempt_at)
            .bind(&self.response_status)
            .bind(&self.errors)
            .bind(&self.finished_at)
            .bind(&self.failed)
            .bind(&self.throttled)
    }
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// The deliveries whose leases still hold take their new states; parameters `$1` to `$9`.
const DELIVERIES_UPDATE: &str = "update deliveries d set status = t.status, \
     attempt_count = d.attempt_count + 1, next_attempt_at = t.next_attempt_at, \
     lease_until = null, lease_token = null, last_response_status = t.response_status, \
     last_error = t.error, updated_at = t.finished_at, failures = d.failures + t.failed, \
     throttled_since = case when t.throttled then coalesce(d.throttled_since, t.finished_at) end \
     from unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int4[], $6::text[], \
                 $7::timestamptz[], $8::int4[], $9::bool[]) \
          as t(id, token, status, next_attempt_at, response_status, error, finished_at, failed, \
               throttled) \
     where d.id = t.id and d.lease_token = t.token and d.status = 'pending' \
     returning d.id";

/// The attempt log's rows, to be narrowed by a `where` on `a.delivery_id`; parameters `$10`
/// to `$19`.
const ATTEMPTS_INSERT: &str = "insert into delivery_attempts (delivery_id, attempt_number, \
     started_at, duration_ms, response_status, response_body, error, throttled, retry_after, \
     request_headers) \
     select a.* from unnest($10::uuid[], $11::int4[], $12::timestamptz[], $13::int4[], \
                            $14::int4[], $15::text[], $16::text[], $17::bool[], $18::text[], \
                            $19::text[]) \
          as a(delivery_id, attempt_number, started_at, duration_ms, response_status, \
               response_body, error, throttled, retry_after, request_headers)";

/// The webhooks' stats from a batch's tallies, its eleven parameters from `$first` on; it
/// ends in a `where`, so a caller may add a condition with `and`.
fn stats_update(first: usize) -> String {
    let p = |n: usize| format!("${}", first + n);
    format!(
        "update webhooks w set total_deliveries = w.total_deliveries + t.total, \
         successful_deliveries = w.successful_deliveries + t.succeeded, \
         failed_deliveries = w.failed_deliveries + t.total - t.succeeded, \
         last_success_at = coalesce(t.last_success_at, w.last_success_at), \
         last_failure_at = coalesce(t.last_failure_at, w.last_failure_at), \
         consecutive_failures = t.consecutive, failing_since = t.failing_since, \
         failure_announced = t.announced, effective_concurrency = t.concurrency, \
         throttle_backoff_ms = t.backoff_ms, \
         throttled_until = greatest(t.throttled_until, w.throttled_until) \
         from unnest({}::uuid[], {}::int8[], {}::int8[], {}::timestamptz[], {}::timestamptz[], \
                     {}::int8[], {}::timestamptz[], {}::int4[], {}::timestamptz[], {}::int4[], \
                     {}::bool[]) \
              as t(id, total, succeeded, last_success_at, last_failure_at, consecutive, \
                   failing_since, concurrency, throttled_until, backoff_ms, announced) \
         where w.id = t.id",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
        p(7),
        p(8),
        p(9),
        p(10)
    )
}

/// A batch's deliveries, attempts and, when every lease held, stats: `write_outcomes`.
/// Composed once, not on every batch.
static WRITE_OUTCOMES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "with held as ({DELIVERIES_UPDATE}), \
         attempts as ({ATTEMPTS_INSERT} where a.delivery_id in (select id from held)), \
         stats as ({} and (select count(*) from held) = $31) \
         select id from held",
        stats_update(20)
    )
});

/// The stats of the held leases' webhooks, when some lease did not hold: `update_stats`.
static STATS_ALONE: LazyLock<String> = LazyLock::new(|| stats_update(1));

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
    throttled: Vec<bool>,
    retry_after: Vec<Option<String>>,
    request_headers: Vec<Option<String>>,
}

impl AttemptColumns {
    fn push(&mut self, record: &AttemptRecord) {
        self.ids.push(record.delivery_id.as_uuid());
        self.numbers.push(clamp_i32(record.attempt_number));
        self.started_at.push(record.started_at);
        self.duration_ms.push(clamp_i32(record.duration_ms));
        self.response_status
            .push(record.response_status.map(i32::from));
        self.response_body.push(storable(&record.response_body));
        self.error.push(storable(&record.error));
        self.throttled.push(record.hold.is_some());
        self.retry_after.push(storable(&record.retry_after));
        self.request_headers.push(storable(&record.request_headers));
    }

    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.numbers)
            .bind(&self.started_at)
            .bind(&self.duration_ms)
            .bind(&self.response_status)
            .bind(&self.response_body)
            .bind(&self.error)
            .bind(&self.throttled)
            .bind(&self.retry_after)
            .bind(&self.request_headers)
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
    announced: Vec<bool>,
    concurrency: Vec<i32>,
    throttled_until: Vec<Option<DateTime<Utc>>>,
    backoff_ms: Vec<Option<i32>>,
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
        self.announced.push(tally.run.announced);
        self.concurrency
            .push(i32::try_from(tally.concurrency).unwrap_or(i32::MAX));
        self.throttled_until.push(tally.throttled_until);
        self.backoff_ms.push(
            tally
                .backoff
                .map(|b| i32::try_from(b.as_millis()).unwrap_or(i32::MAX)),
        );
    }

    /// In `stats_update`'s order: `concurrency` before `throttled_until`, `announced` last.
    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.ids)
            .bind(&self.total)
            .bind(&self.succeeded)
            .bind(&self.last_success_at)
            .bind(&self.last_failure_at)
            .bind(&self.consecutive)
            .bind(&self.failing_since)
            .bind(&self.concurrency)
            .bind(&self.throttled_until)
            .bind(&self.backoff_ms)
            .bind(&self.announced)
    }
}

impl PostgresStore {
    pub(super) async fn record_outcomes(
        &self,
        records: &[AttemptRecord],
    ) -> StoreResult<RecordedBatch> {
        if records.is_empty() {
            return Ok(RecordedBatch::default());
        }
        let mut tx = self.pool.begin().await?;
        // Webhook rows are locked first and in id order, so concurrent batches and deletes queue
        // instead of deadlocking; the lock leaves publishing (a key share) alone.
        let mut webhook_ids: Vec<Uuid> = records.iter().map(|r| r.webhook_id.as_uuid()).collect();
        webhook_ids.sort_unstable();
        webhook_ids.dedup();
        let runs: Vec<RunRow> = sqlx::query_as(&format!(
            "{RUN_SELECT} where id = any($1) order by id for no key update"
        ))
        .bind(&webhook_ids)
        .fetch_all(&mut *tx)
        .await?;
        let runs_before = runs_before(runs)?;

        // Tallied as if every lease still held, which is nearly always so: then the stats are
        // written by the same statement as the deliveries and the attempts.
        let tallies = tally_attempts(records.iter().map(|r| r.facts()), &runs_before);
        let held = Self::write_outcomes(&mut tx, records, &tallies).await?;
        let kept: Vec<&AttemptRecord> = records
            .iter()
            .filter(|r| held.contains(&r.delivery_id))
            .collect();
        if kept.is_empty() {
            tx.rollback().await?;
            return Ok(RecordedBatch {
                outcomes: recorded_outcomes(records, &held, &[]),
                ..RecordedBatch::default()
            });
        }
        let tallies = if kept.len() == records.len() {
            tallies
        } else {
            let tallies = tally_attempts(kept.iter().map(|r| r.facts()), &runs_before);
            Self::update_stats(&mut tx, &tallies).await?;
            tallies
        };
        for tally in &tallies {
            if let Some(disable) = &tally.disable {
                Self::disable_webhook(&mut tx, tally.webhook_id, &disable.reason, disable.at)
                    .await?;
            }
        }
        let notices = Self::queue_notices(&mut tx, &tallies, &kept).await?;
        tx.commit().await?;
        // Committed already: a failed notify only leaves the other instances to their next
        // poll, and must not make the batch look unrecorded.
        if let Err(error) = announce_rows(&self.pool, &notices.deliveries).await {
            tracing::warn!(%error, "cannot announce queued notices to other instances");
        }
        Ok(RecordedBatch {
            outcomes: recorded_outcomes(records, &held, &tallies),
            flows: tallies.iter().map(FlowChange::from).collect(),
            notices: notices.queued,
        })
    }

    /// Queues the tallies' notices for the alert endpoints of their projects. The endpoints are
    /// read under a key share, so a delete waits and then cancels what this queued.
    async fn queue_notices(
        tx: &mut Transaction<'_, Postgres>,
        tallies: &[WebhookTally],
        kept: &[&AttemptRecord],
    ) -> StoreResult<NoticeRows> {
        let webhooks = announcing(tallies);
        if webhooks.is_empty() {
            return Ok(NoticeRows::default());
        }
        let subjects: Vec<SubjectRow> = sqlx::query_as(&format!("{SUBJECT_SELECT} = any($1)"))
            .bind(&webhooks)
            .fetch_all(&mut **tx)
            .await?;
        let subjects = Subjects::read(subjects);
        let projects = subjects.projects();
        let endpoints: Vec<AlertEndpointRow> = sqlx::query_as(&format!(
            "{ALERT_ENDPOINTS_SELECT} = any($1) order by id for key share"
        ))
        .bind(&projects)
        .fetch_all(&mut **tx)
        .await?;
        let rows = notice_rows(tallies, &subjects, kept, &endpoints);
        if rows.events.is_empty() {
            return Ok(rows);
        }
        let mut events = EventColumns::default();
        for event in &rows.events {
            events.push(event);
        }
        sqlx::query(
            "insert into events (id, project_id, event_type, payload, created_at) \
             select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], \
                                  $5::timestamptz[])",
        )
        .bind(&events.ids)
        .bind(&events.project_ids)
        .bind(&events.event_types)
        .bind(&events.payloads)
        .bind(&events.created_at)
        .execute(&mut **tx)
        .await?;
        let sql = format!("{INSERT_DELIVERIES} returning id");
        deliveries_insert(&sql, &rows.deliveries)
            .fetch_all(&mut **tx)
            .await?;
        Ok(rows)
    }

    /// Writes each delivery's new state where its lease still holds and logs those attempts,
    /// in one statement; when every lease held, the same statement writes `tallies` to the
    /// webhooks' stats. Returns the deliveries whose leases held.
    async fn write_outcomes(
        tx: &mut Transaction<'_, Postgres>,
        records: &[AttemptRecord],
        tallies: &[WebhookTally],
    ) -> StoreResult<HashSet<DeliveryId>> {
        let mut deliveries = DeliveryColumns::default();
        let mut attempts = AttemptColumns::default();
        for record in records {
            deliveries.push(record);
            attempts.push(record);
        }
        let mut stats = StatsColumns::default();
        for tally in tallies {
            stats.push(tally);
        }
        let query = attempts.bind(deliveries.bind(sqlx::query(&WRITE_OUTCOMES)));
        let held = stats
            .bind(query)
            .bind(i64::try_from(records.len()).unwrap_or(i64::MAX))
            .fetch_all(&mut **tx)
            .await?;
        held.iter()
            .map(|row| Ok(row.try_get::<Uuid, _>(0)?.into()))
            .collect()
    }

    /// The stats of the webhooks whose leases held, when some did not.
    async fn update_stats(
        tx: &mut Transaction<'_, Postgres>,
        tallies: &[WebhookTally],
    ) -> StoreResult<()> {
        let mut stats = StatsColumns::default();
        for tally in tallies {
            stats.push(tally);
        }
        stats
            .bind(sqlx::query(&STATS_ALONE))
            .execute(&mut **tx)
            .await?;
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
}
