//! Replaying a delivery to another URL, answered with how the exchange went.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::instrument;
use uuid::Uuid;

use super::AppState;
use super::attempt_result::{AttemptResultView, TestedView};
use super::auth::{Authorized, WebhooksWrite};
use super::errors::ApiError;
use super::extract::{ApiJson, ApiPath, present};
use super::webhooks::input::check_url;
use super::wire::Envelope;
use crate::domain::{DeliveryId, FieldError, redact_query};

#[derive(Deserialize)]
pub struct ReplayPath {
    #[serde(rename = "deliveryId")]
    delivery_id: Uuid,
}

#[derive(Deserialize)]
pub struct ReplayInput {
    #[serde(default, deserialize_with = "present")]
    url: Option<Value>,
}

#[instrument(skip_all, fields(project_id = %auth.project_id, delivery_id = %path.delivery_id))]
pub async fn replay_delivery(
    State(state): State<AppState>,
    auth: Authorized<WebhooksWrite>,
    ApiPath(path): ApiPath<ReplayPath>,
    ApiJson(input): ApiJson<ReplayInput>,
) -> Result<Json<Envelope<TestedView>>, ApiError> {
    let delivery = DeliveryId::from(path.delivery_id);
    // An unknown delivery is answered before the URL's name is looked up.
    let replay = state.replayer.prepare(auth.project_id, delivery).await?;
    // The same address policy as a webhook's URL, checked here and again at send time.
    let url = check_url(&state, input.url.as_ref(), false)
        .await
        .map_err(|message| ApiError::Validation(vec![FieldError::new("url", message)]))?
        .ok_or_else(|| ApiError::Validation(vec![FieldError::new("url", "is required")]))?;
    let replayed = state.replayer.send(replay, url.as_str()).await;
    let event = replayed.event_id;
    let result = AttemptResultView::replayed(replayed);
    let now = state.clock.now();
    let audit = auth.audit(
        "delivery.replayed",
        delivery,
        json!({ "url": redact_query(url.as_str()), "outcome": result.outcome() }),
        now,
    );
    state.store.record_audit(auth.project_id, audit).await?;
    tracing::info!(
        outcome = result.outcome(),
        "delivery replayed to another URL"
    );
    Ok(Json(Envelope::new(
        TestedView::new(delivery, event, result),
        auth.project_id,
        now,
    )))
}
