//! Publishing events: validated, serialised once as the DevTune payload, and queued durably
//! for every subscribed webhook before the 202.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::instrument;

use super::AppState;
use super::auth::{Authorized, EventsWrite};
use super::errors::ApiError;
use super::extract::json_body;
use super::extract::present;
use super::wire::Envelope;
use crate::domain::{AccountId, EventId, EventType, FieldError, ProjectId, render_payload};
use crate::instruments;
use crate::store::{AcceptedEvent, EventTarget, NewEvent};

const IDEMPOTENCY_KEY_MAX_CHARS: usize = 255;

#[derive(Deserialize)]
pub struct EventInput {
    #[serde(default, deserialize_with = "present")]
    event: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    data: Option<Value>,
}

/// A new event's id, time and serialised payload.
pub struct RenderedEvent {
    pub id: EventId,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub payload: String,
}

pub fn render_event(
    state: &AppState,
    event_type: &str,
    project_id: ProjectId,
    account_id: AccountId,
    data: &Value,
) -> RenderedEvent {
    let created_at = state.clock.now();
    RenderedEvent {
        id: EventId::generate(),
        created_at,
        payload: render_payload(event_type, project_id, account_id, created_at, data),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedView {
    id: String,
    event: String,
    deliveries: usize,
    delivery_ids: Vec<String>,
}

impl From<&AcceptedEvent> for AcceptedView {
    fn from(accepted: &AcceptedEvent) -> Self {
        Self {
            id: accepted.id.to_string(),
            event: accepted.event_type.clone(),
            deliveries: accepted.delivery_ids.len(),
            delivery_ids: accepted
                .delivery_ids
                .iter()
                .map(|d| d.to_string())
                .collect(),
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.chars().count() <= IDEMPOTENCY_KEY_MAX_CHARS);
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} visible ASCII characters"
        ))
    })
}

fn check_input(input: &EventInput) -> Result<(EventType, &Value), ApiError> {
    let mut errors = Vec::new();
    let event_type = match &input.event {
        Some(Value::String(name)) => EventType::parse(name).ok_or_else(|| {
            format!(
                "unknown event type \"{name}\"; expected one of: {}",
                EventType::known_list()
            )
        }),
        Some(_) => Err("must be a string".to_owned()),
        None => Err("is required".to_owned()),
    }
    .map_err(|message| errors.push(FieldError::new("event", message)))
    .ok();
    let data = match &input.data {
        Some(data @ Value::Object(_)) => Some(data),
        Some(_) => {
            errors.push(FieldError::new("data", "must be a JSON object"));
            None
        }
        None => {
            errors.push(FieldError::new("data", "is required"));
            None
        }
    };
    match (event_type, data) {
        (Some(event_type), Some(data)) if errors.is_empty() => Ok((event_type, data)),
        _ => Err(ApiError::Validation(errors)),
    }
}

#[instrument(skip_all, fields(project_id = %auth.project_id))]
pub async fn create_event(
    State(state): State<AppState>,
    auth: Authorized<EventsWrite>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let input: EventInput = json_body(request, state.settings.max_event_bytes).await?;
    let (event_type, data) = check_input(&input)?;
    let rendered = render_event(
        &state,
        event_type.as_str(),
        auth.project_id,
        auth.account_id,
        data,
    );
    let accepted = state
        .publisher
        .publish(NewEvent {
            id: rendered.id,
            project_id: auth.project_id,
            event_type: event_type.as_str().to_owned(),
            payload: rendered.payload,
            data: data.clone(),
            idempotency_key: key,
            created_at: rendered.created_at,
            trace_context: crate::telemetry::current_traceparent(),
            target: EventTarget::Subscribers,
            audit: None,
        })
        .await?;
    if !accepted.replayed {
        instruments::events_accepted();
    }
    tracing::info!(event_id = %accepted.id, deliveries = accepted.delivery_ids.len(), replayed = accepted.replayed, "event accepted");
    let body = Envelope::new(
        AcceptedView::from(&accepted),
        auth.project_id,
        state.clock.now(),
    );
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if accepted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
