//! The webhook subscription resource: create, list, get, update, delete, rotate the secret.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use super::AppState;
use super::auth::{Authorized, WebhooksRead, WebhooksWrite};
use super::errors::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalApiJson, present};
use super::wire::{ApiTime, Envelope};
use crate::delivery::net::refuse_private_resolution;
use crate::domain::{EndpointUrl, EventTypes, FieldError, Filters, WebhookId, WebhookSecret};
use crate::store::{NewWebhook, SecretRotation, Webhook, WebhookChanges, WebhookStats};

/// The create and update body. Fields stay loose JSON so every bad field is reported at once.
#[derive(Deserialize)]
pub struct WebhookInput {
    #[serde(default, deserialize_with = "present")]
    url: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    events: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    filters: Option<Value>,
    /// Only on PATCH: `true` re-enables a webhook that endpoint health disabled.
    #[serde(default, deserialize_with = "present")]
    enabled: Option<Value>,
}

#[derive(Deserialize)]
pub struct WebhookPath {
    #[serde(rename = "webhookId")]
    pub webhook_id: Uuid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(default)]
    include_inactive: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    id: String,
    url: String,
    events: Vec<&'static str>,
    is_active: bool,
    created_at: ApiTime,
    updated_at: ApiTime,
}

impl From<&Webhook> for WebhookView {
    fn from(webhook: &Webhook) -> Self {
        Self {
            id: webhook.id.to_string(),
            url: webhook.url.clone(),
            events: webhook.events.iter().map(|e| e.as_str()).collect(),
            is_active: webhook.is_active,
            created_at: ApiTime(webhook.created_at),
            updated_at: ApiTime(webhook.updated_at),
        }
    }
}

#[derive(Serialize)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    webhook: WebhookView,
    secret: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDetails {
    #[serde(flatten)]
    webhook: WebhookView,
    filters: BTreeMap<String, String>,
    deleted_at: Option<ApiTime>,
    disabled_at: Option<ApiTime>,
    disabled_reason: Option<String>,
    last_modified_by: Option<String>,
    last_modified_via: Option<String>,
    secret_preview: String,
    stats: StatsView,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    total_deliveries: i64,
    successful_deliveries: i64,
    failed_deliveries: i64,
    last_success_at: Option<ApiTime>,
    last_failure_at: Option<ApiTime>,
    consecutive_failures: i64,
}

impl From<&WebhookStats> for StatsView {
    fn from(stats: &WebhookStats) -> Self {
        Self {
            total_deliveries: stats.total_deliveries,
            successful_deliveries: stats.successful_deliveries,
            failed_deliveries: stats.failed_deliveries,
            last_success_at: stats.last_success_at.map(ApiTime),
            last_failure_at: stats.last_failure_at.map(ApiTime),
            consecutive_failures: stats.consecutive_failures,
        }
    }
}

impl From<&Webhook> for WebhookDetails {
    fn from(webhook: &Webhook) -> Self {
        Self {
            webhook: webhook.into(),
            filters: webhook.filters.to_pairs().into_iter().collect(),
            deleted_at: webhook.deleted_at.map(ApiTime),
            disabled_at: webhook.disabled.as_ref().map(|d| ApiTime(d.at)),
            disabled_reason: webhook.disabled.as_ref().map(|d| d.reason.clone()),
            last_modified_by: webhook.last_modified_by.clone(),
            last_modified_via: webhook.last_modified_via.clone(),
            secret_preview: webhook.secret.preview(),
            stats: (&webhook.stats).into(),
        }
    }
}

#[derive(Serialize)]
pub struct WebhookList {
    webhooks: Vec<WebhookView>,
}

#[derive(Serialize)]
pub struct Deleted {
    deleted: bool,
}

#[derive(Serialize)]
pub struct RotatedSecret {
    secret: String,
}

/// What an update asks to change, for the audit log.
fn requested(checked: &CheckedInput, input: &WebhookInput) -> Value {
    let mut requested = serde_json::Map::new();
    if let Some(url) = &checked.url {
        requested.insert("url".into(), json!(url.as_str()));
    }
    if let Some(events) = &checked.events {
        requested.insert("events".into(), json!(events.to_strings()));
    }
    if let Some(filters) = &checked.filters {
        let filters: BTreeMap<_, _> = filters.to_pairs().into_iter().collect();
        requested.insert("filters".into(), json!(filters));
    }
    if input.enabled.is_some() {
        requested.insert("enabled".into(), json!(true));
    }
    requested.into()
}

/// The validated parts of a `WebhookInput`; absent fields stay `None`.
struct CheckedInput {
    url: Option<EndpointUrl>,
    events: Option<EventTypes>,
    filters: Option<Filters>,
}

/// Each field's check gives `Ok(None)` when the field is absent and allowed to be.
type FieldCheck<T> = Result<Option<T>, String>;

fn check_enabled(enabled: Option<&Value>, partial: bool) -> Result<(), String> {
    match (enabled, partial) {
        (None, _) | (Some(Value::Bool(true)), true) => Ok(()),
        (Some(_), true) => Err(
            "can only be true, to re-enable a disabled webhook; delete a webhook to stop it".into(),
        ),
        (Some(_), false) => Err("is only accepted when updating a webhook".into()),
    }
}

async fn check_url(
    state: &AppState,
    url: Option<&Value>,
    partial: bool,
) -> FieldCheck<EndpointUrl> {
    let url = match url {
        None if !partial => return Err("is required".into()),
        None => return Ok(None),
        Some(Value::String(raw)) => EndpointUrl::parse(raw, state.settings.url_policy)?,
        Some(_) => return Err("must be a string".into()),
    };
    resolve_check(state, &url).await?;
    Ok(Some(url))
}

fn check_events(events: Option<&Value>, partial: bool) -> FieldCheck<EventTypes> {
    const SHAPE: &str = "must be an array of event type strings";
    match events {
        None if !partial => Err("is required".into()),
        None => Ok(None),
        Some(Value::Array(items)) => {
            let names: Vec<&str> = items
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()
                .ok_or(SHAPE)?;
            EventTypes::parse(&names).map(Some)
        }
        Some(_) => Err(SHAPE.into()),
    }
}

fn check_filters(filters: Option<&Value>) -> FieldCheck<Filters> {
    match filters {
        None => Ok(None),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| value.as_str().map(|v| (key.as_str(), v)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| "values must be strings of comma-separated accepted values".to_owned())
            .and_then(Filters::parse)
            .map(Some),
        Some(_) => Err("must be an object mapping data keys to accepted values".into()),
    }
}

/// Keeps a field's value, or records why it was refused.
fn keep<T>(field: &str, checked: FieldCheck<T>, errors: &mut Vec<FieldError>) -> Option<T> {
    checked.unwrap_or_else(|message| {
        errors.push(FieldError::new(field, message));
        None
    })
}

/// Checks every field of a create (`partial == false`) or update body, reporting all at once.
async fn check_input(
    state: &AppState,
    input: &WebhookInput,
    partial: bool,
) -> Result<CheckedInput, ApiError> {
    let mut errors = Vec::new();
    let changes_nothing = input.url.is_none()
        && input.events.is_none()
        && input.filters.is_none()
        && input.enabled.is_none();
    if partial && changes_nothing {
        errors.push(FieldError::new(
            "body",
            "give url, events, filters or enabled to change",
        ));
    }
    if let Err(message) = check_enabled(input.enabled.as_ref(), partial) {
        errors.push(FieldError::new("enabled", message));
    }
    let url = check_url(state, input.url.as_ref(), partial).await;
    let checked = CheckedInput {
        url: keep("url", url, &mut errors),
        events: keep(
            "events",
            check_events(input.events.as_ref(), partial),
            &mut errors,
        ),
        filters: keep(
            "filters",
            check_filters(input.filters.as_ref()),
            &mut errors,
        ),
    };
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(ApiError::Validation(errors))
    }
}

async fn resolve_check(state: &AppState, url: &EndpointUrl) -> Result<(), String> {
    match url.domain() {
        Some(host) if !state.settings.url_policy.allow_private => {
            refuse_private_resolution(host, url.port_or_default()).await
        }
        _ => Ok(()),
    }
}

#[instrument(skip_all, fields(project_id = %auth.project_id))]
pub async fn create_webhook(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiJson(input): ApiJson<WebhookInput>,
) -> Result<(StatusCode, Json<Envelope<CreatedWebhook>>), ApiError> {
    let checked = check_input(&state, &input, false).await?;
    let (Some(url), Some(events)) = (checked.url, checked.events) else {
        return Err(ApiError::Internal(
            "validated input lost a required field".into(),
        ));
    };
    let now = state.clock.now();
    let new = NewWebhook {
        id: WebhookId::generate(),
        url,
        events,
        filters: checked.filters.unwrap_or_default(),
        secret: WebhookSecret::generate(),
        created_at: now,
    };
    let limit = state.settings.max_webhooks_per_project;
    let changes = json!({
        "url": new.url.as_str(),
        "events": new.events.to_strings(),
        "filters": new.filters.to_pairs().into_iter().collect::<BTreeMap<_, _>>(),
    });
    let audit = auth.audit("webhook.created", new.id, changes, now);
    let webhook = state
        .store
        .create_webhook(auth.project_id, new, limit, audit)
        .await?;
    tracing::info!(webhook_id = %webhook.id, "webhook created");
    let created = CreatedWebhook {
        webhook: (&webhook).into(),
        secret: webhook.secret.expose().to_owned(),
    };
    Ok((
        StatusCode::CREATED,
        Json(Envelope::new(created, auth.project_id, now)),
    ))
}

#[instrument(skip_all, fields(project_id = %auth.project_id))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Envelope<WebhookList>>, ApiError> {
    let webhooks = state
        .store
        .list_webhooks(auth.project_id, query.include_inactive)
        .await?;
    let list = WebhookList {
        webhooks: webhooks.iter().map(WebhookView::from).collect(),
    };
    Ok(Json(Envelope::new(
        list,
        auth.project_id,
        state.clock.now(),
    )))
}

#[instrument(skip_all, fields(project_id = %auth.project_id, webhook_id = %path.webhook_id))]
pub async fn get_webhook(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Envelope<WebhookDetails>>, ApiError> {
    let webhook = state
        .store
        .get_webhook(auth.project_id, path.webhook_id.into())
        .await?;
    Ok(Json(Envelope::new(
        (&webhook).into(),
        auth.project_id,
        state.clock.now(),
    )))
}

#[instrument(skip_all, fields(project_id = %auth.project_id, webhook_id = %path.webhook_id))]
pub async fn update_webhook(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<WebhookPath>,
    ApiJson(input): ApiJson<WebhookInput>,
) -> Result<Json<Envelope<WebhookDetails>>, ApiError> {
    let checked = check_input(&state, &input, true).await?;
    let now = state.clock.now();
    let audit = auth.audit(
        "webhook.updated",
        path.webhook_id,
        requested(&checked, &input),
        now,
    );
    let changes = WebhookChanges {
        url: checked.url,
        events: checked.events,
        filters: checked.filters,
        updated_at: now,
    };
    let webhook = state
        .store
        .update_webhook(auth.project_id, path.webhook_id.into(), changes, audit)
        .await?;
    tracing::info!("webhook updated");
    Ok(Json(Envelope::new((&webhook).into(), auth.project_id, now)))
}

#[instrument(skip_all, fields(project_id = %auth.project_id, webhook_id = %path.webhook_id))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Deleted>, ApiError> {
    state
        .store
        .delete_webhook(
            auth.project_id,
            path.webhook_id.into(),
            auth.audit(
                "webhook.deleted",
                path.webhook_id,
                json!({}),
                state.clock.now(),
            ),
        )
        .await?;
    tracing::info!("webhook deleted");
    Ok(Json(Deleted { deleted: true }))
}

/// The optional rotate body: how long the old secret keeps signing beside the new one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateInput {
    #[serde(default, deserialize_with = "present")]
    grace_seconds: Option<Value>,
}

/// The longest grace period a rotation may ask for: one week.
const MAX_GRACE_SECONDS: u64 = 7 * 24 * 3600;

fn grace(input: Option<RotateInput>) -> Result<Option<TimeDelta>, ApiError> {
    let Some(value) = input.and_then(|i| i.grace_seconds) else {
        return Ok(None);
    };
    match value.as_u64() {
        Some(0) => Ok(None),
        Some(seconds) if seconds <= MAX_GRACE_SECONDS => {
            Ok(Some(TimeDelta::seconds(seconds as i64)))
        }
        _ => Err(ApiError::Validation(vec![FieldError::new(
            "graceSeconds",
            format!("must be a whole number of seconds from 0 to {MAX_GRACE_SECONDS}"),
        )])),
    }
}

#[instrument(skip_all, fields(project_id = %auth.project_id, webhook_id = %path.webhook_id))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<WebhookPath>,
    OptionalApiJson(input): OptionalApiJson<RotateInput>,
) -> Result<Json<Envelope<RotatedSecret>>, ApiError> {
    let grace = grace(input)?;
    let secret = WebhookSecret::generate();
    let now = state.clock.now();
    let rotation = SecretRotation {
        secret: secret.clone(),
        previous_valid_until: grace.map(|g| now + g),
        at: now,
    };
    state
        .store
        .rotate_webhook_secret(
            auth.project_id,
            path.webhook_id.into(),
            rotation,
            auth.audit(
                "webhook.secret_rotated",
                path.webhook_id,
                json!({ "graceSeconds": grace.map_or(0, |g| g.num_seconds()) }),
                now,
            ),
        )
        .await?;
    tracing::info!(
        grace_seconds = grace.map(|g| g.num_seconds()),
        "webhook secret rotated"
    );
    let rotated = RotatedSecret {
        secret: secret.expose().to_owned(),
    };
    Ok(Json(Envelope::new(rotated, auth.project_id, now)))
}
