//! Pull webhooks' routes: a long poll that leases due deliveries, each as a push would send it,
//! and the acknowledgement that reports what the poller's receiver answered.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::instrument;
use uuid::Uuid;

use super::AppState;
use super::auth::{Authorized, WebhooksRead, WebhooksWrite};
use super::errors::ApiError;
use super::extract::{ApiPath, ApiQuery, json_body, keep_field, whole_number};
use super::webhooks::WebhookPath;
use super::wire::{ApiTime, Envelope};
use crate::delivery::pull::{Ack, AckAnswer, Acked, PollRequest, Pulled};
use crate::domain::{AttemptResult, DeliveryId, FieldError};

/// Most deliveries one poll leases, and the default.
const MAX_LIMIT: u64 = 100;
const DEFAULT_LIMIT: u64 = 20;
/// Longest a poll waits for a delivery.
const MAX_WAIT_SECS: u64 = 30;
/// Longest and default lease a poll may ask for.
const MAX_LEASE_SECS: u64 = 600;
const DEFAULT_LEASE_SECS: u64 = 30;
/// Most results one acknowledgement carries.
const MAX_RESULTS: usize = 1000;
/// An acknowledgement carries up to `MAX_RESULTS` excerpts, so it may be larger than other
/// bodies.
const ACK_BODY_BYTES: usize = 2 * 1024 * 1024;
const MAX_ERROR_CHARS: usize = 1000;
const MAX_RETRY_AFTER_CHARS: usize = 100;
/// An attempt the poller reports as longer than a day is a mistake, not a measurement.
const MAX_DURATION_MS: u64 = 86_400_000;

#[derive(Deserialize)]
pub struct PollQuery {
    limit: Option<String>,
    wait: Option<String>,
    lease: Option<String>,
}

/// A whole number query parameter within `low..=high`, or `default` when absent.
fn bounded(
    name: &str,
    raw: Option<&str>,
    (low, high): (u64, u64),
    default: u64,
    unit: &str,
    errors: &mut Vec<FieldError>,
) -> u64 {
    let Some(raw) = raw else {
        return default;
    };
    let parsed = raw
        .parse::<u64>()
        .ok()
        .filter(|n| (low..=high).contains(n))
        .ok_or_else(|| format!("must be a whole number{unit} from {low} to {high}"));
    keep_field(name, parsed, errors).unwrap_or(default)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PulledView {
    delivery_id: String,
    event_id: String,
    event_type: String,
    attempt: u32,
    lease_id: String,
    lease_expires_at: ApiTime,
    /// The body exactly as a push sends and signs it.
    body: String,
    headers: serde_json::Map<String, Value>,
}

impl From<Pulled> for PulledView {
    fn from(pulled: Pulled) -> Self {
        Self {
            delivery_id: pulled.delivery_id.to_string(),
            event_id: pulled.event_id.to_string(),
            event_type: pulled.event_type,
            attempt: pulled.attempt,
            lease_id: pulled.lease_token.to_string(),
            lease_expires_at: ApiTime(pulled.lease_until),
            body: pulled.body,
            headers: pulled
                .headers
                .into_iter()
                .map(|(name, value)| (name, Value::String(value)))
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct PolledDeliveries {
    deliveries: Vec<PulledView>,
}

#[instrument(skip_all, fields(project_id = %auth.project_id, webhook_id = %path.webhook_id))]
pub async fn poll_webhook(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiPath(path): ApiPath<WebhookPath>,
    ApiQuery(query): ApiQuery<PollQuery>,
) -> Result<Json<Envelope<PolledDeliveries>>, ApiError> {
    let mut errors = Vec::new();
    let limit = bounded(
        "limit",
        query.limit.as_deref(),
        (1, MAX_LIMIT),
        DEFAULT_LIMIT,
        "",
        &mut errors,
    );
    let wait = bounded(
        "wait",
        query.wait.as_deref(),
        (0, MAX_WAIT_SECS),
        0,
        " of seconds",
        &mut errors,
    );
    let lease = bounded(
        "lease",
        query.lease.as_deref(),
        (1, MAX_LEASE_SECS),
        DEFAULT_LEASE_SECS,
        " of seconds",
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let pulled = state
        .puller
        .poll(PollRequest {
            project: auth.project_id,
            webhook: path.webhook_id.into(),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            wait: Duration::from_secs(wait),
            lease: Duration::from_secs(lease),
        })
        .await?;
    if !pulled.is_empty() {
        tracing::info!(
            leased = pulled.len(),
            lease_seconds = lease,
            "deliveries leased"
        );
    }
    let deliveries = pulled.into_iter().map(PulledView::from).collect();
    Ok(Json(Envelope::new(
        PolledDeliveries { deliveries },
        auth.project_id,
        state.clock.now(),
    )))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AckResultView {
    delivery_id: String,
    recorded: bool,
    /// What follows the attempt: `succeeded`, `retrying`, `throttled` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<ApiTime>,
    /// Why nothing was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl AckResultView {
    fn new(delivery_id: DeliveryId, acked: Acked) -> Self {
        let view = Self {
            delivery_id: delivery_id.to_string(),
            recorded: false,
            outcome: None,
            next_attempt_at: None,
            reason: None,
        };
        match acked {
            Acked::Recorded(result) => Self {
                recorded: true,
                outcome: Some(result.label()),
                next_attempt_at: match result {
                    AttemptResult::RetryAt(at) | AttemptResult::Throttled(at) => Some(ApiTime(at)),
                    AttemptResult::Succeeded | AttemptResult::Failed => None,
                },
                ..view
            },
            Acked::NotHeld => Self {
                reason: Some("lease_not_held"),
                ..view
            },
        }
    }

    /// A later result for a delivery the same body already answered for.
    fn repeated(delivery_id: DeliveryId) -> Self {
        Self {
            delivery_id: delivery_id.to_string(),
            recorded: false,
            outcome: None,
            next_attempt_at: None,
            reason: Some("repeated"),
        }
    }
}

#[derive(Serialize)]
pub struct AckResults {
    recorded: usize,
    ignored: usize,
    results: Vec<AckResultView>,
}

#[instrument(skip_all, fields(project_id = %auth.project_id, webhook_id = %path.webhook_id))]
pub async fn ack_webhook_deliveries(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<WebhookPath>,
    request: Request,
) -> Result<Json<Envelope<AckResults>>, ApiError> {
    let body: Value = json_body(request, ACK_BODY_BYTES).await?;
    let checked = check_acks(&body)?;
    let firsts: Vec<Ack> = checked
        .iter()
        .filter(|c| !c.repeated)
        .map(|c| c.ack.clone())
        .collect();
    let mut acked = state
        .puller
        .ack(auth.project_id, path.webhook_id.into(), &firsts)
        .await?
        .into_iter();
    let results: Vec<AckResultView> = checked
        .iter()
        .map(|c| match c.repeated {
            true => AckResultView::repeated(c.ack.delivery_id),
            false => AckResultView::new(c.ack.delivery_id, acked.next().unwrap_or(Acked::NotHeld)),
        })
        .collect();
    let recorded = results.iter().filter(|r| r.recorded).count();
    tracing::info!(
        recorded,
        ignored = results.len() - recorded,
        "acknowledgements"
    );
    Ok(Json(Envelope::new(
        AckResults {
            recorded,
            ignored: results.len() - recorded,
            results,
        },
        auth.project_id,
        state.clock.now(),
    )))
}

/// One checked result of a body; a delivery's later results in the same body are `repeated`:
/// its first one alone is recorded.
struct Checked {
    ack: Ack,
    repeated: bool,
}

/// The acknowledgements of a body, every bad field reported at once.
fn check_acks(body: &Value) -> Result<Vec<Checked>, ApiError> {
    let Some(items) = body.get("results").and_then(Value::as_array) else {
        return Err(ApiError::Validation(vec![FieldError::new(
            "results",
            "is required: an array of {deliveryId, leaseId, status or error}",
        )]));
    };
    if items.is_empty() || items.len() > MAX_RESULTS {
        return Err(ApiError::Validation(vec![FieldError::new(
            "results",
            format!("must hold from 1 to {MAX_RESULTS} results"),
        )]));
    }
    let mut errors = Vec::new();
    let mut acks = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for (n, item) in items.iter().enumerate() {
        let field = |name: &str| format!("results[{n}].{name}");
        let Some(item) = item.as_object() else {
            errors.push(FieldError::new(
                format!("results[{n}]"),
                "must be an object",
            ));
            continue;
        };
        let uuid = |name: &str, errors: &mut Vec<FieldError>| {
            let parsed = item
                .get(name)
                .and_then(Value::as_str)
                .and_then(|raw| raw.parse::<Uuid>().ok())
                .ok_or_else(|| "must be the id a poll gave, as a string".to_owned());
            keep_field(&field(name), parsed, errors)
        };
        let delivery_id = uuid("deliveryId", &mut errors);
        let lease_token = uuid("leaseId", &mut errors);
        let duration = match item.get("durationMs") {
            None => Ok(0),
            Some(value) => whole_number(value)
                .filter(|ms| *ms <= MAX_DURATION_MS)
                .ok_or_else(|| {
                    format!("must be a whole number of milliseconds up to {MAX_DURATION_MS}")
                }),
        };
        let duration_ms = keep_field(&field("durationMs"), duration, &mut errors);
        let answer = keep_answer(item, &field, &mut errors);
        if let (Some(delivery_id), Some(lease_token), Some(duration_ms), Some(answer)) =
            (delivery_id, lease_token, duration_ms, answer)
        {
            acks.push(Checked {
                ack: Ack {
                    delivery_id: delivery_id.into(),
                    lease_token,
                    duration_ms: u32::try_from(duration_ms).unwrap_or(u32::MAX),
                    answer,
                },
                repeated: !seen.insert(delivery_id),
            });
        }
    }
    if errors.is_empty() {
        Ok(acks)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// An optional string of at most `max` characters.
fn short_text(value: Option<&Value>, max: usize) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= max => Ok(Some(text.clone())),
        Some(_) => Err(format!("must be a string of at most {max} characters")),
    }
}

/// What the poller's receiver answered: a `status` (with an optional `responseExcerpt` and
/// `retryAfter`), or an `error`, never both.
fn keep_answer(
    item: &serde_json::Map<String, Value>,
    field: &dyn Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) -> Option<AckAnswer> {
    match (item.get("status"), item.get("error")) {
        (Some(status), None) => {
            let status = whole_number(status)
                .filter(|s| (100..=599).contains(s))
                .and_then(|s| u16::try_from(s).ok())
                .ok_or_else(|| "must be an HTTP status code from 100 to 599".to_owned());
            let status = keep_field(&field("status"), status, errors);
            // Kept as a push keeps a receiver's answer: its first kilobyte.
            let excerpt = match item.get("responseExcerpt") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err("must be a string".to_owned()),
            };
            let excerpt = keep_field(&field("responseExcerpt"), excerpt, errors);
            let retry_after = keep_field(
                &field("retryAfter"),
                short_text(item.get("retryAfter"), MAX_RETRY_AFTER_CHARS),
                errors,
            );
            Some(AckAnswer::Status {
                status: status?,
                excerpt: excerpt?,
                retry_after: retry_after?,
            })
        }
        (None, Some(error)) => {
            let error = match error {
                Value::String(text) if !text.trim().is_empty() => {
                    short_text(Some(error), MAX_ERROR_CHARS).map(|e| e.unwrap_or_default())
                }
                _ => Err(format!(
                    "must be a non-empty string of at most {MAX_ERROR_CHARS} characters"
                )),
            };
            keep_field(&field("error"), error, errors).map(AckAnswer::Error)
        }
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                field("error"),
                "give status (the receiver answered) or error (it did not), not both",
            ));
            None
        }
        (None, None) => {
            errors.push(FieldError::new(
                field("status"),
                "is required unless error says why the receiver did not answer",
            ));
            None
        }
    }
}
