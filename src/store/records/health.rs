//! A webhook's health as recording a batch reads it, and the notices the batch raises, as the
//! event and delivery rows that carry them to the project's alert endpoints.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use super::events::{DeliveryRows, EventTarget, NewEvent};
use super::queue::{AttemptRecord, QueuedNotice};
use crate::domain::{
    AccountId, DeliveryId, EventId, EventType, FailureRun, HealthBefore, Notice, NoticeSubject,
    ProjectId, WebhookId, WebhookKind, WebhookTally, render_payload,
};
use crate::store::decode::{Int, TextList, Time};
use crate::store::{StoreError, StoreResult};

/// What `RunRow` reads from `webhooks`; each backend adds its `where` (and Postgres its row
/// lock).
pub(crate) const RUN_SELECT: &str = "select id, consecutive_failures, failing_since, \
     failure_announced, disabled_at is not null as disabled, effective_concurrency, \
     throttle_backoff_ms, kind from webhooks";

/// A webhook's health and flow as both backends read it before recording a batch.
#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    id: Uuid,
    consecutive_failures: Int,
    failing_since: Option<Time>,
    failure_announced: bool,
    disabled: bool,
    effective_concurrency: Option<Int>,
    throttle_backoff_ms: Option<Int>,
    kind: String,
}

/// Each webhook's health and flow, as the tally starts from them.
pub(crate) fn runs_before(rows: Vec<RunRow>) -> StoreResult<HashMap<WebhookId, HealthBefore>> {
    rows.into_iter()
        .map(|row| {
            let kind = WebhookKind::parse(&row.kind).ok_or_else(|| {
                StoreError::corrupt(format!("stored webhook kind {:?}", row.kind))
            })?;
            let before = HealthBefore {
                run: FailureRun {
                    consecutive: row.consecutive_failures.0,
                    since: row.failing_since.map(|t| t.0),
                    announced: row.failure_announced,
                },
                raises_notices: kind.raises_notices(),
                disabled: row.disabled,
                concurrency: row.effective_concurrency.map(Int::to),
                backoff: row
                    .throttle_backoff_ms
                    .map(|ms| Duration::from_millis(ms.to())),
            };
            Ok((WebhookId::from(row.id), before))
        })
        .collect()
}

/// The webhooks whose tallies raised a notice, in id order; most batches have none, and then
/// nothing more is read.
pub(crate) fn announcing(tallies: &[WebhookTally]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = tallies
        .iter()
        .filter(|t| !t.notices.is_empty())
        .map(|t| t.webhook_id.as_uuid())
        .collect();
    ids.sort_unstable();
    ids
}

/// Selects who the webhooks bound as `$1` belong to and where they point (a pull webhook points
/// nowhere); each backend adds how it binds the list.
pub(crate) const SUBJECT_SELECT: &str = "select w.id, case when w.mode = 'push' then w.url end \
     as url, w.project_id, p.account_id from webhooks w join projects p on p.id = w.project_id \
     where w.id";

/// Who a webhook belongs to and where it points, as its notices name it.
#[derive(sqlx::FromRow)]
pub(crate) struct SubjectRow {
    id: Uuid,
    url: Option<String>,
    project_id: Uuid,
    account_id: Uuid,
}

/// The subjects of a batch's notices, by webhook.
pub(crate) struct Subjects(HashMap<WebhookId, SubjectRow>);

impl Subjects {
    pub(crate) fn read(rows: Vec<SubjectRow>) -> Self {
        Self(
            rows.into_iter()
                .map(|r| (WebhookId::from(r.id), r))
                .collect(),
        )
    }

    /// The projects whose alert endpoints the notices go to.
    pub(crate) fn projects(&self) -> Vec<Uuid> {
        let mut projects: Vec<Uuid> = self.0.values().map(|s| s.project_id).collect();
        projects.sort_unstable();
        projects.dedup();
        projects
    }
}

/// Selects the alert endpoints a notice can go to, of the projects bound as `$1`; each backend
/// adds how it binds the list.
pub(crate) const ALERT_ENDPOINTS_SELECT: &str = "select id, project_id, events from webhooks \
     where kind = 'alert_endpoint' and is_active and disabled_at is null and project_id";

/// An alert endpoint as both backends read it when notices are queued.
#[derive(sqlx::FromRow)]
pub(crate) struct AlertEndpointRow {
    id: Uuid,
    project_id: Uuid,
    events: TextList,
}

impl AlertEndpointRow {
    fn wants(&self, project: ProjectId, event: EventType) -> bool {
        self.project_id == project.as_uuid() && self.events.0.iter().any(|e| e == event.as_str())
    }
}

/// The rows that carry a batch's notices: one event each (with the alert endpoint envelope
/// rendered) and one delivery per alert endpoint subscribed to it.
#[derive(Default)]
pub(crate) struct NoticeRows {
    pub events: Vec<NewEvent>,
    pub deliveries: DeliveryRows,
    pub queued: Vec<QueuedNotice>,
}

/// What went wrong with an attempt, in the words its delivery log uses.
fn attempt_error(record: &AttemptRecord) -> Option<String> {
    record.error.clone().or_else(|| {
        record
            .response_status
            .filter(|status| !(200..300).contains(status))
            .map(|status| format!("the endpoint answered HTTP {status}"))
    })
}

/// The notices of `tallies` as rows, for the alert endpoints subscribed to each; a notice no
/// alert endpoint wants writes nothing.
pub(crate) fn notice_rows(
    tallies: &[WebhookTally],
    subjects: &Subjects,
    kept: &[&AttemptRecord],
    endpoints: &[AlertEndpointRow],
) -> NoticeRows {
    let mut rows = NoticeRows::default();
    for tally in tallies {
        let Some(subject) = subjects.0.get(&tally.webhook_id) else {
            continue;
        };
        let project = ProjectId::from(subject.project_id);
        for notice in &tally.notices {
            let targets: Vec<&AlertEndpointRow> = endpoints
                .iter()
                .filter(|e| e.wants(project, notice.event))
                .collect();
            if targets.is_empty() {
                continue;
            }
            let event = notice_event(tally.webhook_id, notice, subject, kept);
            for target in &targets {
                rows.deliveries.push_unleased(
                    DeliveryId::generate().as_uuid(),
                    subject.project_id,
                    target.id,
                    event.id.as_uuid(),
                    notice.at,
                );
            }
            rows.queued.push(QueuedNotice {
                webhook_id: tally.webhook_id,
                event: notice.event,
                deliveries: targets.len(),
            });
            rows.events.push(event);
        }
    }
    rows
}

fn notice_event(
    webhook_id: WebhookId,
    notice: &Notice,
    subject: &SubjectRow,
    kept: &[&AttemptRecord],
) -> NewEvent {
    let last_error = kept
        .iter()
        .find(|r| r.delivery_id == notice.delivery_id)
        .and_then(|r| attempt_error(r))
        .filter(|_| notice.event != EventType::WebhookRecovered);
    let data = notice.data(&NoticeSubject {
        webhook_id,
        url: subject.url.as_deref(),
        last_error,
    });
    let project = ProjectId::from(subject.project_id);
    NewEvent {
        id: EventId::generate(),
        project_id: project,
        event_type: notice.event.as_str().to_owned(),
        payload: render_payload(
            notice.event.as_str(),
            project,
            AccountId::from(subject.account_id),
            notice.at,
            &data,
        ),
        data,
        idempotency_key: None,
        created_at: notice.at,
        trace_context: None,
        target: EventTarget::Subscribers,
        audit: None,
    }
}
