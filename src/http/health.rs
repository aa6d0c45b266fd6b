//! Liveness and readiness probes, and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use super::AppState;
use super::errors::ApiError;

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

pub async fn get_open_api() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}
