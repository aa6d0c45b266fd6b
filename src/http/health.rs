//! Liveness and readiness probes, and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use super::AppState;
use super::errors::ApiError;
use crate::instruments;

/// The contract, compiled in so the served spec is always the one this build implements.
pub const OPENAPI_YAML: &str = include_str!("../../openapi/openapi.yaml");

#[derive(Serialize)]
pub struct Status {
    status: &'static str,
}

pub async fn get_health() -> Json<Status> {
    Json(Status { status: "ok" })
}

pub async fn get_readiness(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    state.store.ping().await?;
    Ok(Json(Status { status: "ready" }))
}

/// Prometheus text format; the queue gauges are read from the database at each scrape.
pub async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let now = state.clock.now();
    let queue = match state.store.queue_depth(now).await {
        Ok(depth) => Some(depth),
        Err(error) => {
            tracing::warn!(%error, "cannot read the queue depth for /metrics");
            None
        }
    };
    instruments::scraped(queue, state.store.pool_usage(), now);
    let mut body = state.metrics.render();
    body.push_str(&crate::process_metrics::render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

pub async fn get_open_api() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}
