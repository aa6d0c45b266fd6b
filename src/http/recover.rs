//! Recovering failed deliveries in bulk: one webhook's or a whole project's, narrowed by time,
//! status and event type, with a dry run that only counts.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use super::AppState;
use super::auth::{Authorized, WebhooksWrite};
use super::deliveries::TEST_EVENT;
use super::errors::ApiError;
use super::extract::{ApiJson, ApiPath, keep_field, present};
use super::webhooks::WebhookPath;
use super::wire::Envelope;
use crate::domain::{DeliveryStatus, EventType, FieldError, WebhookId};
use crate::store::{RecoverFilter, Recovery};

/// Most deliveries one call queues again; a truncated call is continued by repeating it.
pub const MAX_RECOVERED: u32 = 100_000;

/// Most webhooks one project-wide call may name.
const MAX_NAMED_WEBHOOKS: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverInput {
    #[serde(default, deserialize_with = "present")]
    since: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    until: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    statuses: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    events: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    dry_run: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    webhook_ids: Option<Value>,
}

#[derive(Serialize)]
pub struct RecoveryView {
    matched: u64,
    queued: u64,
    truncated: bool,
}

impl From<Recovery> for RecoveryView {
    fn from(recovery: Recovery) -> Self {
        Self {
            matched: recovery.matched,
            queued: recovery.queued,
            truncated: recovery.truncated,
        }
    }
}

type Checked<T> = Result<T, String>;

fn check_time(value: Option<&Value>) -> Checked<Option<DateTime<Utc>>> {
    match value {
        None => Ok(None),
        Some(Value::String(raw)) => DateTime::parse_from_rfc3339(raw)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| "must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z".into()),
        Some(_) => Err("must be an RFC 3339 time string".into()),
    }
}

fn string_list(value: &Value, what: &str) -> Checked<Vec<String>> {
    let shape = || format!("must be a non-empty array of {what}");
    let items = value
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(shape)?;
    items
        .iter()
        .map(|item| item.as_str().map(str::to_owned).ok_or_else(shape))
        .collect()
}

fn check_statuses(value: Option<&Value>) -> Checked<Vec<DeliveryStatus>> {
    let Some(value) = value else {
        return Ok(vec![DeliveryStatus::Failed]);
    };
    let mut statuses = Vec::new();
    for raw in string_list(value, "statuses (failed, cancelled)")? {
        match DeliveryStatus::parse(&raw) {
            Some(status @ (DeliveryStatus::Failed | DeliveryStatus::Cancelled)) => {
                if !statuses.contains(&status) {
                    statuses.push(status);
                }
            }
            _ => return Err(format!("{raw:?} is not one of failed, cancelled")),
        }
    }
    Ok(statuses)
}

fn check_events(value: Option<&Value>) -> Checked<Option<Vec<String>>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let types = string_list(value, "event types")?;
    for raw in &types {
        if EventType::parse(raw).is_none() && raw != TEST_EVENT {
            return Err(format!(
                "{raw:?} is not an event type; use {} or {TEST_EVENT}",
                EventType::known_list()
            ));
        }
    }
    Ok(Some(types))
}

fn check_webhook_ids(value: Option<&Value>) -> Checked<Option<Vec<WebhookId>>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let ids = string_list(value, "webhook ids")?;
    if ids.len() > MAX_NAMED_WEBHOOKS {
        return Err(format!("may name at most {MAX_NAMED_WEBHOOKS} webhooks"));
    }
    ids.iter()
        .map(|raw| {
            Uuid::parse_str(raw)
                .map(WebhookId::from)
                .map_err(|_| format!("{raw:?} is not a webhook id (a UUID)"))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Keeps a field's value, or records why it was refused.
fn keep<T: Default>(field: &str, checked: Checked<T>, errors: &mut Vec<FieldError>) -> T {
    keep_field(field, checked, errors).unwrap_or_default()
}

/// The filter of a call; `webhook` is the one the path names, if any.
fn check_input(
    state: &AppState,
    input: &RecoverInput,
    webhook: Option<WebhookId>,
) -> Result<RecoverFilter, ApiError> {
    let now = state.clock.now();
    let mut errors = Vec::new();
    let since = keep("since", check_time(input.since.as_ref()), &mut errors);
    if input.since.is_none() {
        errors.push(FieldError::new("since", "is required"));
    }
    let until = keep("until", check_time(input.until.as_ref()), &mut errors).unwrap_or(now);
    if let Some(since) = since {
        if since > until {
            errors.push(FieldError::new("until", "must not be before since"));
        }
        let retention = state.settings.retention_days;
        if retention > 0 && since < now - TimeDelta::days(i64::from(retention)) {
            errors.push(FieldError::new(
                "since",
                format!(
                    "is before the retention window: finished deliveries are kept {retention} days"
                ),
            ));
        }
    }
    let statuses = keep(
        "statuses",
        check_statuses(input.statuses.as_ref()),
        &mut errors,
    );
    let event_types = keep("events", check_events(input.events.as_ref()), &mut errors);
    let dry_run = match &input.dry_run {
        None => false,
        Some(Value::Bool(dry_run)) => *dry_run,
        Some(_) => {
            errors.push(FieldError::new("dryRun", "must be true or false"));
            false
        }
    };
    let webhooks = match webhook {
        Some(webhook) => {
            if input.webhook_ids.is_some() {
                errors.push(FieldError::new(
                    "webhookIds",
                    "is only accepted by POST /api/v2/projects/{projectId}/deliveries/recover",
                ));
            }
            Some(vec![webhook])
        }
        None => keep(
            "webhookIds",
            check_webhook_ids(input.webhook_ids.as_ref()),
            &mut errors,
        ),
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(RecoverFilter {
        webhooks,
        statuses,
        event_types,
        since: since.unwrap_or(now),
        until,
        limit: MAX_RECOVERED,
        dry_run,
    })
}

/// The audit entry's record of what was asked.
fn requested(filter: &RecoverFilter) -> Value {
    json!({
        "since": filter.since.to_rfc3339(),
        "until": filter.until.to_rfc3339(),
        "statuses": filter.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "events": filter.event_types,
        "webhookIds": filter.webhooks.as_ref().map(|ids| ids.iter().map(ToString::to_string).collect::<Vec<_>>()),
    })
}

async fn recover(
    state: &AppState,
    auth: &Authorized<WebhooksWrite>,
    filter: RecoverFilter,
    target: String,
) -> Result<Json<Envelope<RecoveryView>>, ApiError> {
    let now = state.clock.now();
    let audit = auth.audit("deliveries.recovered", target, requested(&filter), now);
    let recovery = state
        .publisher
        .recover(auth.project_id, &filter, audit)
        .await?;
    tracing::info!(
        matched = recovery.matched,
        queued = recovery.queued,
        dry_run = filter.dry_run,
        "deliveries recovered"
    );
    Ok(Json(Envelope::new(recovery.into(), auth.project_id, now)))
}

#[instrument(skip_all, fields(project_id = %auth.project_id, webhook_id = %path.webhook_id))]
pub async fn recover_webhook_deliveries(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<WebhookPath>,
    ApiJson(input): ApiJson<RecoverInput>,
) -> Result<Json<Envelope<RecoveryView>>, ApiError> {
    let filter = check_input(&state, &input, Some(path.webhook_id.into()))?;
    recover(&state, &auth, filter, path.webhook_id.to_string()).await
}

#[instrument(skip_all, fields(project_id = %auth.project_id))]
pub async fn recover_project_deliveries(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiJson(input): ApiJson<RecoverInput>,
) -> Result<Json<Envelope<RecoveryView>>, ApiError> {
    let filter = check_input(&state, &input, None)?;
    let target = auth.project_id.to_string();
    recover(&state, &auth, filter, target).await
}
