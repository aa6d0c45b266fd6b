//! The delivery log and its controls: list a webhook's deliveries, read one with its attempts,
//! retry one now, and send a test event.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::instrument;
use uuid::Uuid;

use super::AppState;
use super::attempt_result::first_attempt;
use super::auth::{Authorized, WebhooksRead, WebhooksWrite};
use super::errors::ApiError;
use super::events::{AcceptedView, render_event};
use super::extract::{ApiPath, ApiQuery};
use super::webhooks::WebhookPath;
use super::wire::{ApiTime, Envelope, page_params};
use crate::domain::{DeliveryId, DeliveryStatus, WebhookId, WebhookKind};
use crate::store::{
    Attempt, DeliveryDetails, DeliveryQuery, DeliverySummary, EventTarget, NewEvent,
};

/// The event type of test events; never subscribable, sent only by `send_test_event`.
pub const TEST_EVENT: &str = "webhook.test";
const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

#[derive(Deserialize)]
pub struct DeliveryPath {
    #[serde(rename = "deliveryId")]
    delivery_id: Uuid,
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    status: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    id: String,
    webhook_id: String,
    event_id: String,
    event: String,
    status: &'static str,
    attempt_count: u32,
    next_attempt_at: Option<ApiTime>,
    last_response_status: Option<u16>,
    last_error: Option<String>,
    created_at: ApiTime,
    updated_at: ApiTime,
}

impl From<DeliverySummary> for DeliveryView {
    fn from(d: DeliverySummary) -> Self {
        Self {
            id: d.id.to_string(),
            webhook_id: d.webhook_id.to_string(),
            event_id: d.event_id.to_string(),
            event: d.event_type,
            status: d.status.as_str(),
            attempt_count: d.attempt_count,
            // A lease end is not a scheduled attempt: only pending rows have a next attempt.
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then_some(d.next_attempt_at)
                .flatten()
                .map(ApiTime),
            last_response_status: d.last_response_status,
            last_error: d.last_error,
            created_at: ApiTime(d.created_at),
            updated_at: ApiTime(d.updated_at),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    number: u32,
    started_at: ApiTime,
    duration_ms: u32,
    response_status: Option<u16>,
    response_body: Option<String>,
    error: Option<String>,
    throttled: bool,
    retry_after: Option<String>,
    /// The headers sent, signatures included; null when the attempt was not sent.
    request_headers: Option<serde_json::Map<String, serde_json::Value>>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            number: a.number,
            started_at: ApiTime(a.started_at),
            duration_ms: a.duration_ms,
            response_status: a.response_status,
            response_body: a.response_body,
            error: a.error,
            throttled: a.throttled,
            retry_after: a.retry_after,
            request_headers: a.request_headers,
        }
    }
}

#[derive(Serialize)]
pub struct DeliveryWithAttempts {
    #[serde(flatten)]
    delivery: DeliveryView,
    /// The body exactly as sent.
    payload: String,
    attempts: Vec<AttemptView>,
}

impl From<DeliveryDetails> for DeliveryWithAttempts {
    fn from(details: DeliveryDetails) -> Self {
        Self {
            delivery: details.summary.into(),
            payload: details.payload,
            attempts: details
                .attempts
                .into_iter()
                .map(AttemptView::from)
                .collect(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    deliveries: Vec<DeliveryView>,
    next_cursor: Option<String>,
}

fn parse_query(query: ListQuery) -> Result<DeliveryQuery, ApiError> {
    let (limit, before) =
        page_params::<DeliveryId>(query.limit, query.cursor.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let status = query
        .status
        .map(|s| {
            DeliveryStatus::parse(&s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "status must be one of: {}",
                    DeliveryStatus::ALL.map(DeliveryStatus::as_str).join(", ")
                ))
            })
        })
        .transpose()?;
    Ok(DeliveryQuery {
        status,
        before,
        limit,
    })
}

#[instrument(skip_all, fields(project_id = %auth.project_id))]
pub async fn list_webhook_deliveries(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiPath(path): ApiPath<WebhookPath>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Envelope<DeliveryPage>>, ApiError> {
    delivery_page(
        &state,
        &auth,
        WebhookKind::Webhook,
        path.webhook_id.into(),
        query,
    )
    .await
}

/// A page of the delivery log of a webhook of `kind`, newest first.
pub(super) async fn delivery_page(
    state: &AppState,
    auth: &Authorized<WebhooksRead>,
    kind: WebhookKind,
    webhook: WebhookId,
    query: ListQuery,
) -> Result<Json<Envelope<DeliveryPage>>, ApiError> {
    let mut query = parse_query(query)?;
    let page_size = query.limit as usize;
    // One more than asked tells whether another page follows.
    query.limit += 1;
    let mut rows = state
        .store
        .list_deliveries(auth.project_id, kind, webhook, query)
        .await?;
    let next_cursor = (rows.len() > page_size).then(|| rows[page_size - 1].id.to_string());
    rows.truncate(page_size);
    let page = DeliveryPage {
        deliveries: rows.into_iter().map(DeliveryView::from).collect(),
        next_cursor,
    };
    Ok(Json(Envelope::new(
        page,
        auth.project_id,
        state.clock.now(),
    )))
}

#[instrument(skip_all, fields(project_id = %auth.project_id, delivery_id = %path.delivery_id))]
pub async fn get_delivery(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiPath(path): ApiPath<DeliveryPath>,
) -> Result<Json<Envelope<DeliveryWithAttempts>>, ApiError> {
    let details = state
        .store
        .get_delivery(auth.project_id, path.delivery_id.into())
        .await?;
    Ok(Json(Envelope::new(
        details.into(),
        auth.project_id,
        state.clock.now(),
    )))
}

#[instrument(skip_all, fields(project_id = %auth.project_id, delivery_id = %path.delivery_id))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<DeliveryPath>,
) -> Result<(StatusCode, Json<Envelope<DeliveryView>>), ApiError> {
    let now = state.clock.now();
    let summary = state
        .publisher
        .retry(
            auth.project_id,
            path.delivery_id.into(),
            auth.audit("delivery.retried", path.delivery_id, json!({}), now),
        )
        .await?;
    tracing::info!("delivery queued again by hand");
    Ok((
        StatusCode::ACCEPTED,
        Json(Envelope::new(summary.into(), auth.project_id, now)),
    ))
}

#[derive(Deserialize)]
pub struct TestQuery {
    /// Answer once the attempt has finished, with how it went.
    #[serde(default)]
    wait: bool,
}

#[instrument(skip_all, fields(project_id = %auth.project_id, webhook_id = %path.webhook_id))]
pub async fn send_test_event(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<WebhookPath>,
    ApiQuery(query): ApiQuery<TestQuery>,
) -> Result<Response, ApiError> {
    test(
        &state,
        &auth,
        WebhookKind::Webhook,
        path.webhook_id.into(),
        query,
    )
    .await
}

/// Sends a test event to one webhook of `kind`, paused or not; with `wait`, answers with how
/// its first attempt went.
pub(super) async fn test(
    state: &AppState,
    auth: &Authorized<WebhooksWrite>,
    kind: WebhookKind,
    webhook: WebhookId,
    query: TestQuery,
) -> Result<Response, ApiError> {
    let data = json!({
        "webhookId": webhook.to_string(),
        "message": "A test event sent from hookrelay to check this endpoint.",
    });
    let rendered = render_event(state, TEST_EVENT, auth.project_id, auth.account_id, &data);
    let accepted = state
        .publisher
        .publish(NewEvent {
            id: rendered.id,
            project_id: auth.project_id,
            event_type: TEST_EVENT.to_owned(),
            payload: rendered.payload,
            data,
            idempotency_key: None,
            created_at: rendered.created_at,
            trace_context: crate::telemetry::current_traceparent(),
            target: EventTarget::Webhook(webhook, kind),
            audit: Some(auth.audit(
                match kind {
                    WebhookKind::Webhook => "webhook.test_sent",
                    WebhookKind::AlertEndpoint => "alert_endpoint.test_sent",
                },
                webhook,
                json!({ "eventId": rendered.id.to_string() }),
                rendered.created_at,
            )),
        })
        .await?;
    tracing::info!(event_id = %accepted.id, "test event queued");
    if let (true, Some(delivery)) = (query.wait, accepted.delivery_ids.first()) {
        let tested = first_attempt(state, auth.project_id, accepted.id, *delivery).await?;
        if let Some(tested) = tested {
            let body = Envelope::new(tested, auth.project_id, state.clock.now());
            return Ok((StatusCode::OK, Json(body)).into_response());
        }
    }
    let body = Envelope::new(
        AcceptedView::from(&accepted),
        auth.project_id,
        state.clock.now(),
    );
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
