//! The webhook subscription resource: create, list, get, update, delete, rotate the secret; and
//! the reads and changes alert endpoints share with webhooks.

pub(crate) mod input;
mod limits;
mod views;

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::TimeDelta;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use super::AppState;
use super::auth::{Authorized, WebhooksRead, WebhooksWrite};
use super::errors::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalApiJson, present, whole_number};
use super::wire::Envelope;
use crate::domain::{
    DeliveryMode, Destination, FieldError, WebhookId, WebhookKind, WebhookSecret, redact_query,
};
use crate::store::{NewWebhook, PullQueue, SecretRotation, Webhook, WebhookChanges, WebhookLabels};
pub use input::WebhookInput;
pub(super) use input::{check_events, check_url};
use input::{check_input, requested};
pub use views::{
    CreatedWebhook, Deleted, ListedWebhook, RotatedSecret, SecretForms, WebhookDetails,
    WebhookList, WebhookView,
};

/// A webhook as GET and PATCH answer with it.
async fn details(state: &AppState, webhook: &Webhook) -> Result<WebhookDetails, ApiError> {
    let default_concurrency =
        u32::try_from(state.settings.endpoint_concurrency).unwrap_or(u32::MAX);
    let now = state.clock.now();
    let queue = pull_queue(state, webhook).await?;
    Ok(WebhookDetails::new(
        webhook,
        default_concurrency,
        now,
        queue,
    ))
}

/// The queue of an active pull webhook, which reads show; push webhooks have none to show.
async fn pull_queue(state: &AppState, webhook: &Webhook) -> Result<Option<PullQueue>, ApiError> {
    if webhook.mode != DeliveryMode::Pull || !webhook.is_active {
        return Ok(None);
    }
    Ok(Some(
        state
            .store
            .pull_queue(webhook.id, state.clock.now())
            .await?,
    ))
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

#[instrument(skip_all, fields(project_id = %auth.project_id))]
pub async fn create_webhook(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiJson(input): ApiJson<WebhookInput>,
) -> Result<(StatusCode, Json<Envelope<CreatedWebhook>>), ApiError> {
    let checked = check_input(&state, &input, false, DeliveryMode::Push).await?;
    let destination = match (checked.mode, checked.url) {
        (DeliveryMode::Push, Some(url)) => Some(Destination::Push(url)),
        (DeliveryMode::Pull, None) => Some(Destination::Pull),
        _ => None,
    };
    let (Some(destination), Some(events)) = (destination, checked.events) else {
        return Err(ApiError::Internal(
            "validated input lost a required field".into(),
        ));
    };
    let now = state.clock.now();
    let new = NewWebhook {
        id: WebhookId::generate(),
        kind: WebhookKind::Webhook,
        destination,
        events,
        filters: checked.filters.unwrap_or_default(),
        secret: WebhookSecret::generate(),
        created_at: now,
        limits: checked.limits.for_new_webhook(),
        labels: WebhookLabels {
            description: checked.labels.description.clone().flatten(),
            metadata: checked.labels.metadata.clone().unwrap_or_default(),
            headers: checked.labels.headers.clone().unwrap_or_default(),
        },
    };
    let mut changes = json!({
        "filters": new.filters.to_pairs().into_iter().collect::<BTreeMap<_, _>>(),
    });
    if let Some(changes) = changes.as_object_mut() {
        checked.limits.describe(changes);
        checked.labels.describe(changes);
    }
    let limit = state.settings.max_webhooks_per_project;
    register(&state, &auth, new, limit, changes).await
}

/// Creates a webhook of `new.kind` within the project's `limit` of that kind, its audit entry
/// holding the URL, the events and `changes`; answers with its secret, shown this once.
pub(super) async fn register(
    state: &AppState,
    auth: &Authorized<WebhooksWrite>,
    new: NewWebhook,
    limit: u32,
    mut changes: Value,
) -> Result<(StatusCode, Json<Envelope<CreatedWebhook>>), ApiError> {
    if let Some(changes) = changes.as_object_mut() {
        match &new.destination {
            Destination::Push(url) => {
                changes.insert("url".into(), json!(redact_query(url.as_str())))
            }
            Destination::Pull => changes.insert("mode".into(), json!(DeliveryMode::Pull.as_str())),
        };
        changes.insert("events".into(), json!(new.events.to_strings()));
    }
    let now = new.created_at;
    let audit = auth.audit(action(new.kind, Change::Created), new.id, changes, now);
    let webhook = state
        .store
        .create_webhook(auth.project_id, new, limit, audit)
        .await?;
    tracing::info!(webhook_id = %webhook.id, kind = webhook.kind.as_str(), "created");
    Ok((
        StatusCode::CREATED,
        Json(Envelope::new(
            CreatedWebhook::new(&webhook),
            auth.project_id,
            now,
        )),
    ))
}

#[instrument(skip_all, fields(project_id = %auth.project_id))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Envelope<WebhookList>>, ApiError> {
    let list = WebhookList {
        webhooks: listed(&state, &auth, WebhookKind::Webhook, query.include_inactive).await?,
    };
    Ok(Json(Envelope::new(
        list,
        auth.project_id,
        state.clock.now(),
    )))
}

/// The project's webhooks of `kind`, as a list shows them to this key.
pub(super) async fn listed(
    state: &AppState,
    auth: &Authorized<WebhooksRead>,
    kind: WebhookKind,
    include_inactive: bool,
) -> Result<Vec<ListedWebhook>, ApiError> {
    let webhooks = state
        .store
        .list_webhooks(auth.project_id, kind, include_inactive)
        .await?;
    let mut listed = Vec::with_capacity(webhooks.len());
    for webhook in &webhooks {
        let queue = pull_queue(state, webhook).await?;
        listed.push(ListedWebhook::new(webhook, queue).for_reader(auth.writes_webhooks));
    }
    Ok(listed)
}

#[instrument(skip_all, fields(project_id = %auth.project_id, webhook_id = %path.webhook_id))]
pub async fn get_webhook(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Envelope<WebhookDetails>>, ApiError> {
    read_one(&state, &auth, WebhookKind::Webhook, path.webhook_id.into()).await
}

/// One webhook of `kind`, with its stats and health, as this key may see it.
pub(super) async fn read_one(
    state: &AppState,
    auth: &Authorized<WebhooksRead>,
    kind: WebhookKind,
    id: WebhookId,
) -> Result<Json<Envelope<WebhookDetails>>, ApiError> {
    let webhook = state.store.get_webhook(auth.project_id, kind, id).await?;
    let details = details(state, &webhook)
        .await?
        .for_reader(auth.writes_webhooks);
    Ok(Json(Envelope::new(
        details,
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
    let id = WebhookId::from(path.webhook_id);
    // Only a body that sets a push webhook's own fields needs to know which mode this one has.
    let mode = if input.sets_push_fields() {
        let webhook = state
            .store
            .get_webhook(auth.project_id, WebhookKind::Webhook, id)
            .await?;
        webhook.mode
    } else {
        DeliveryMode::Push
    };
    let checked = check_input(&state, &input, true, mode).await?;
    let now = state.clock.now();
    let audit = auth.audit("webhook.updated", path.webhook_id, requested(&checked), now);
    let changes = WebhookChanges {
        url: checked.url,
        events: checked.events,
        filters: checked.filters,
        retry_schedule: checked.limits.retry_schedule,
        rate_limit: checked.limits.rate_limit,
        max_concurrency: checked.limits.max_concurrency,
        paused: checked.enabled.map(|enabled| !enabled),
        description: checked.labels.description,
        metadata: checked.labels.metadata,
        headers: checked.labels.headers,
        updated_at: now,
    };
    let webhook = state
        .store
        .update_webhook(auth.project_id, id, changes, audit)
        .await?;
    tracing::info!("webhook updated");
    Ok(Json(Envelope::new(
        details(&state, &webhook).await?,
        auth.project_id,
        now,
    )))
}

#[instrument(skip_all, fields(project_id = %auth.project_id, webhook_id = %path.webhook_id))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<WebhookPath>,
) -> Result<Json<Deleted>, ApiError> {
    remove(&state, &auth, WebhookKind::Webhook, path.webhook_id.into()).await?;
    tracing::info!("webhook deleted");
    Ok(Json(Deleted::confirmed()))
}

/// The changes webhooks and alert endpoints share.
#[derive(Clone, Copy)]
enum Change {
    Created,
    Deleted,
    SecretRotated,
}

/// What the audit log calls a change to a webhook of `kind`.
fn action(kind: WebhookKind, change: Change) -> &'static str {
    match (kind, change) {
        (WebhookKind::Webhook, Change::Created) => "webhook.created",
        (WebhookKind::Webhook, Change::Deleted) => "webhook.deleted",
        (WebhookKind::Webhook, Change::SecretRotated) => "webhook.secret_rotated",
        (WebhookKind::AlertEndpoint, Change::Created) => "alert_endpoint.created",
        (WebhookKind::AlertEndpoint, Change::Deleted) => "alert_endpoint.deleted",
        (WebhookKind::AlertEndpoint, Change::SecretRotated) => "alert_endpoint.secret_rotated",
    }
}

/// Deletes a webhook of `kind`, cancelling its pending deliveries.
pub(super) async fn remove(
    state: &AppState,
    auth: &Authorized<WebhooksWrite>,
    kind: WebhookKind,
    id: WebhookId,
) -> Result<(), ApiError> {
    let audit = auth.audit(
        action(kind, Change::Deleted),
        id,
        json!({}),
        state.clock.now(),
    );
    state
        .store
        .delete_webhook(auth.project_id, kind, id, audit)
        .await?;
    Ok(())
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
    match whole_number(&value) {
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
    rotate(
        &state,
        &auth,
        WebhookKind::Webhook,
        path.webhook_id.into(),
        input,
    )
    .await
}

/// Gives a webhook of `kind` a new signing secret, the old one signing beside it for the grace
/// period asked for.
pub(super) async fn rotate(
    state: &AppState,
    auth: &Authorized<WebhooksWrite>,
    kind: WebhookKind,
    id: WebhookId,
    input: Option<RotateInput>,
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
            kind,
            id,
            rotation,
            auth.audit(
                action(kind, Change::SecretRotated),
                id,
                json!({ "graceSeconds": grace.map_or(0, |g| g.num_seconds()) }),
                now,
            ),
        )
        .await?;
    tracing::info!(
        kind = kind.as_str(),
        grace_seconds = grace.map(|g| g.num_seconds()),
        "secret rotated"
    );
    let rotated = RotatedSecret {
        secret: SecretForms::of(&secret),
    };
    Ok(Json(Envelope::new(rotated, auth.project_id, now)))
}
