//! The calling key itself: which project it acts on and what it may do.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::Serialize;

use super::AppState;
use super::auth::Principal;
use super::errors::ApiError;
use super::wire::Envelope;

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::Internal("route is not behind the authentication layer".into())
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentKey {
    key_id: String,
    project_id: String,
    project_name: String,
    account_id: String,
    account_name: String,
    scopes: Vec<String>,
}

/// Lets a client that holds only a key (the dashboard, a script) find its project.
pub async fn get_current_key(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Envelope<CurrentKey>>, ApiError> {
    let names = state.store.project_names(principal.project_id).await?;
    let key = CurrentKey {
        key_id: principal.key_id.to_string(),
        project_id: principal.project_id.to_string(),
        project_name: names.project,
        account_id: principal.account_id.to_string(),
        account_name: names.account,
        scopes: principal.scopes.to_strings(),
    };
    Ok(Json(Envelope::new(
        key,
        principal.project_id,
        state.clock.now(),
    )))
}
