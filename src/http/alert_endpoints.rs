//! Alert endpoints: where a project's notices about its webhooks go (`webhook.failing`,
//! `webhook.disabled`, `webhook.recovered`). They are webhooks of another kind, created, read,
//! deleted, rotated, tested and logged through the same code as webhooks, on routes of their
//! own so the DevTune webhook routes stay DevTune's.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use super::AppState;
use super::auth::{Authorized, WebhooksRead, WebhooksWrite};
use super::deliveries::{self, DeliveryPage, ListQuery, TestQuery};
use super::errors::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalApiJson, keep_field, present};
use super::webhooks::{
    self, CreatedWebhook, Deleted, ListedWebhook, RotateInput, RotatedSecret, WebhookDetails,
};
use super::wire::Envelope;
use crate::domain::{Destination, EventTypes, FieldError, WebhookId, WebhookKind, WebhookSecret};
use crate::store::{NewWebhook, WebhookLabels, WebhookLimits};

const KIND: WebhookKind = WebhookKind::AlertEndpoint;

#[derive(Deserialize)]
pub struct AlertEndpointPath {
    #[serde(rename = "alertEndpointId")]
    alert_endpoint_id: Uuid,
}

impl AlertEndpointPath {
    fn id(&self) -> WebhookId {
        self.alert_endpoint_id.into()
    }
}

#[derive(Deserialize)]
pub struct AlertEndpointInput {
    #[serde(default, deserialize_with = "present")]
    url: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    events: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertEndpointList {
    alert_endpoints: Vec<ListedWebhook>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAlertEndpointsQuery {
    #[serde(default)]
    include_inactive: bool,
}

#[instrument(skip_all, fields(project_id = %auth.project_id))]
pub async fn create_alert_endpoint(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiJson(input): ApiJson<AlertEndpointInput>,
) -> Result<(StatusCode, Json<Envelope<CreatedWebhook>>), ApiError> {
    let mut errors: Vec<FieldError> = Vec::new();
    let url = webhooks::check_url(&state, input.url.as_ref(), false).await;
    let url = keep_field("url", url, &mut errors).flatten();
    let events = webhooks::check_events(input.events.as_ref(), false, |names| {
        EventTypes::parse_notices(names)
    });
    let events = keep_field("events", events, &mut errors).flatten();
    let (Some(url), Some(events)) = (url, events) else {
        return Err(ApiError::Validation(errors));
    };
    let new = NewWebhook {
        id: WebhookId::generate(),
        kind: KIND,
        destination: Destination::Push(url),
        events,
        filters: Default::default(),
        secret: WebhookSecret::generate(),
        created_at: state.clock.now(),
        limits: WebhookLimits::default(),
        labels: WebhookLabels::default(),
    };
    let limit = state.settings.max_alert_endpoints_per_project;
    webhooks::register(&state, &auth, new, limit, json!({})).await
}

#[instrument(skip_all, fields(project_id = %auth.project_id))]
pub async fn list_alert_endpoints(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiQuery(query): ApiQuery<ListAlertEndpointsQuery>,
) -> Result<Json<Envelope<AlertEndpointList>>, ApiError> {
    let list = AlertEndpointList {
        alert_endpoints: webhooks::listed(&state, &auth, KIND, query.include_inactive).await?,
    };
    Ok(Json(Envelope::new(
        list,
        auth.project_id,
        state.clock.now(),
    )))
}

#[instrument(skip_all, fields(project_id = %auth.project_id, alert_endpoint_id = %path.alert_endpoint_id))]
pub async fn get_alert_endpoint(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiPath(path): ApiPath<AlertEndpointPath>,
) -> Result<Json<Envelope<WebhookDetails>>, ApiError> {
    webhooks::read_one(&state, &auth, KIND, path.id()).await
}

#[instrument(skip_all, fields(project_id = %auth.project_id, alert_endpoint_id = %path.alert_endpoint_id))]
pub async fn delete_alert_endpoint(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<AlertEndpointPath>,
) -> Result<Json<Deleted>, ApiError> {
    webhooks::remove(&state, &auth, KIND, path.id()).await?;
    tracing::info!("alert endpoint deleted");
    Ok(Json(Deleted::confirmed()))
}

#[instrument(skip_all, fields(project_id = %auth.project_id, alert_endpoint_id = %path.alert_endpoint_id))]
pub async fn rotate_alert_endpoint_secret(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<AlertEndpointPath>,
    OptionalApiJson(input): OptionalApiJson<RotateInput>,
) -> Result<Json<Envelope<RotatedSecret>>, ApiError> {
    webhooks::rotate(&state, &auth, KIND, path.id(), input).await
}

#[instrument(skip_all, fields(project_id = %auth.project_id, alert_endpoint_id = %path.alert_endpoint_id))]
pub async fn list_alert_endpoint_deliveries(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiPath(path): ApiPath<AlertEndpointPath>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Envelope<DeliveryPage>>, ApiError> {
    deliveries::delivery_page(&state, &auth, KIND, path.id(), query).await
}

#[instrument(skip_all, fields(project_id = %auth.project_id, alert_endpoint_id = %path.alert_endpoint_id))]
pub async fn send_alert_endpoint_test(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<AlertEndpointPath>,
    ApiQuery(query): ApiQuery<TestQuery>,
) -> Result<Response, ApiError> {
    deliveries::test(&state, &auth, KIND, path.id(), query).await
}
