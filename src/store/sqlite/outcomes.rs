//! Recording attempt outcomes on SQLite: one immediate transaction of `json_each` statements
//! per batch, with each webhook's stats and the disable decision folded attempt by attempt.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use super::{SqliteStore, hex_uuid, json_rows, millis};
use crate::domain::{DeliveryId, WebhookId, WebhookTally, tally_attempts};
use crate::store::records::{
    ALERT_ENDPOINTS_SELECT, AlertEndpointRow, NoticeRows, RUN_SELECT, RunRow, SUBJECT_SELECT,
    SubjectRow, Subjects, announcing, notice_rows, recorded_outcomes, runs_before, storable,
};
use crate::store::{AttemptRecord, FlowChange, RecordedBatch, StoreResult};

impl SqliteStore {
    pub(super) async fn record_outcomes(
        &self,
        records: &[AttemptRecord],
    ) -> StoreResult<RecordedBatch> {
        if records.is_empty() {
            return Ok(RecordedBatch::default());
        }
        let mut tx = self.write_tx().await?;
        let held = Self::update_deliveries(&mut tx, records).await?;
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
        Self::insert_attempts(&mut tx, &kept).await?;
        let webhook_ids: Vec<String> = kept
            .iter()
            .map(|r| hex_uuid(r.webhook_id.as_uuid()))
            .collect();
        let runs: Vec<RunRow> = sqlx::query_as(&format!(
            "{RUN_SELECT} where id in (select unhex(value) from json_each($1))"
        ))
        .bind(json_rows(&webhook_ids))
        .fetch_all(&mut *tx)
        .await?;
        let tallies = tally_attempts(kept.iter().map(|r| r.facts()), &runs_before(runs)?);
        Self::update_stats(&mut tx, &tallies).await?;
        for tally in &tallies {
            if let Some(disable) = &tally.disable {
                Self::disable_webhook(&mut tx, tally.webhook_id, &disable.reason, disable.at)
                    .await?;
            }
        }
        let notices = Self::queue_notices(&mut tx, &tallies, &kept).await?;
        tx.commit().await?;
        Ok(RecordedBatch {
            outcomes: recorded_outcomes(records, &held, &tallies),
            flows: tallies.iter().map(FlowChange::from).collect(),
            notices: notices.queued,
        })
    }

    /// Queues the tallies' notices for the alert endpoints of their projects.
    async fn queue_notices(
        tx: &mut Transaction<'_, Sqlite>,
        tallies: &[WebhookTally],
        kept: &[&AttemptRecord],
    ) -> StoreResult<NoticeRows> {
        let webhooks: Vec<String> = announcing(tallies).into_iter().map(hex_uuid).collect();
        if webhooks.is_empty() {
            return Ok(NoticeRows::default());
        }
        let subjects: Vec<SubjectRow> = sqlx::query_as(&format!(
            "{SUBJECT_SELECT} in (select unhex(value) from json_each($1))"
        ))
        .bind(json_rows(&webhooks))
        .fetch_all(&mut **tx)
        .await?;
        let subjects = Subjects::read(subjects);
        let projects: Vec<String> = subjects.projects().into_iter().map(hex_uuid).collect();
        let endpoints: Vec<AlertEndpointRow> = sqlx::query_as(&format!(
            "{ALERT_ENDPOINTS_SELECT} in (select unhex(value) from json_each($1))"
        ))
        .bind(json_rows(&projects))
        .fetch_all(&mut **tx)
        .await?;
        let rows = notice_rows(tallies, &subjects, kept, &endpoints);
        Self::insert_events(tx, rows.events.iter()).await?;
        Self::insert_deliveries(tx, &rows.deliveries).await?;
        Ok(rows)
    }

    /// Writes each delivery's new state where its lease still holds; returns those deliveries.
    async fn update_deliveries(
        tx: &mut Transaction<'_, Sqlite>,
        records: &[AttemptRecord],
    ) -> StoreResult<HashSet<DeliveryId>> {
        let outcomes: Vec<serde_json::Value> = records
            .iter()
            .map(|record| {
                let (status, next_attempt_at) = record.result.next_state();
                serde_json::json!({
                    "id": hex_uuid(record.delivery_id.as_uuid()),
                    "token": hex_uuid(record.lease_token),
                    "status": status.as_str(),
                    "next": next_attempt_at.map(millis),
                    "code": record.response_status,
                    "error": storable(&record.error),
                    "at": millis(record.finished_at),
                    "failed": i32::from(record.counts_as_failure()),
                    "throttled": record.hold.is_some(),
                })
            })
            .collect();
        let held: Vec<(Uuid,)> = sqlx::query_as(
            "update deliveries set status = t.value ->> 'status', \
             attempt_count = attempt_count + 1, next_attempt_at = t.value ->> 'next', \
             lease_until = null, lease_token = null, \
             last_response_status = t.value ->> 'code', last_error = t.value ->> 'error', \
             updated_at = t.value ->> 'at', failures = failures + (t.value ->> 'failed'), \
             throttled_since = case when t.value ->> 'throttled' \
                 then coalesce(throttled_since, t.value ->> 'at') end \
             from json_each($1) as t \
             where deliveries.id = unhex(t.value ->> 'id') \
             and deliveries.lease_token = unhex(t.value ->> 'token') \
             and deliveries.status = 'pending' returning deliveries.id",
        )
        .bind(json_rows(&outcomes))
        .fetch_all(&mut **tx)
        .await?;
        Ok(held.into_iter().map(|(id,)| id.into()).collect())
    }

    async fn insert_attempts(
        tx: &mut Transaction<'_, Sqlite>,
        kept: &[&AttemptRecord],
    ) -> StoreResult<()> {
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
                    record.hold.is_some(),
                    storable(&record.retry_after),
                    storable(&record.request_headers),
                ])
            })
            .collect();
        sqlx::query(
            "insert into delivery_attempts (delivery_id, attempt_number, started_at, duration_ms, \
             response_status, response_body, error, throttled, retry_after, request_headers) \
             select unhex(value ->> 0), value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
                    value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9 \
             from json_each($1)",
        )
        .bind(json_rows(&attempts))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn update_stats(
        tx: &mut Transaction<'_, Sqlite>,
        tallies: &[WebhookTally],
    ) -> StoreResult<()> {
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
                    "announced": tally.run.announced,
                    "concurrency": tally.concurrency,
                    "throttled_until": tally.throttled_until.map(millis),
                    "backoff_ms": tally.backoff.map(|b| b.as_millis() as u64),
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
             failing_since = t.value ->> 'since', \
             failure_announced = t.value ->> 'announced', \
             effective_concurrency = t.value ->> 'concurrency', \
             throttle_backoff_ms = t.value ->> 'backoff_ms', \
             throttled_until = max(coalesce(t.value ->> 'throttled_until', throttled_until), \
                                   coalesce(throttled_until, t.value ->> 'throttled_until')) \
             from json_each($1) as t where webhooks.id = unhex(t.value ->> 'id')",
        )
        .bind(json_rows(&changes))
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
}
