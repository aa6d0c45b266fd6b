//! The admin API for provisioning tenants from CI pipelines; mounted only with an admin token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use super::errors::ApiError;
use super::extract::{ApiJson, ApiPath, OptionalApiJson, present};
use super::wire::Data;
use crate::domain::{AccountId, FieldError, Name, Scopes};
use crate::domain::{Actor, Channel};
use crate::tenancy;

#[derive(Deserialize)]
pub struct AccountInput {
    #[serde(default, deserialize_with = "present")]
    name: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectInput {
    #[serde(default, deserialize_with = "present")]
    account_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    name: Option<Value>,
}

#[derive(Deserialize)]
pub struct KeyInput {
    #[serde(default, deserialize_with = "present")]
    scopes: Option<Value>,
}

#[derive(Deserialize)]
pub struct ProjectPath {
    #[serde(rename = "projectId")]
    project_id: Uuid,
}

#[derive(Deserialize)]
pub struct KeyPath {
    #[serde(rename = "keyId")]
    key_id: Uuid,
}

#[derive(Serialize)]
pub struct Created {
    id: String,
}

#[derive(Serialize)]
pub struct CreatedKey {
    id: String,
    key: String,
}

#[derive(Serialize)]
pub struct RevokedKey {
    id: String,
    revoked: bool,
}

fn name_field(value: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<Name> {
    let parsed = match value {
        None => Err("is required".to_owned()),
        Some(Value::String(raw)) => Name::parse(raw),
        Some(_) => Err("must be a string".to_owned()),
    };
    parsed
        .map_err(|message| errors.push(FieldError::new("name", message)))
        .ok()
}

pub async fn create_account(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<AccountInput>,
) -> Result<(StatusCode, Json<Data<Created>>), ApiError> {
    let mut errors = Vec::new();
    let Some(name) = name_field(input.name.as_ref(), &mut errors) else {
        return Err(errors.into());
    };
    let id = tenancy::create_account(state.store.as_ref(), name, state.clock.now()).await?;
    tracing::info!(account_id = %id, "account created");
    let data = Created { id: id.to_string() };
    Ok((StatusCode::CREATED, Json(Data { data })))
}

pub async fn create_project(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ProjectInput>,
) -> Result<(StatusCode, Json<Data<Created>>), ApiError> {
    let mut errors = Vec::new();
    let account_id = match input.account_id.as_ref() {
        Some(Value::String(raw)) => raw.parse::<AccountId>().ok(),
        _ => None,
    };
    if account_id.is_none() {
        errors.push(FieldError::new(
            "accountId",
            "must be an account id (a UUID)",
        ));
    }
    let name = name_field(input.name.as_ref(), &mut errors);
    let (Some(account_id), Some(name)) = (account_id, name) else {
        return Err(errors.into());
    };
    let id =
        tenancy::create_project(state.store.as_ref(), account_id, name, state.clock.now()).await?;
    tracing::info!(project_id = %id, %account_id, "project created");
    let data = Created { id: id.to_string() };
    Ok((StatusCode::CREATED, Json(Data { data })))
}

pub async fn create_api_key(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ProjectPath>,
    OptionalApiJson(input): OptionalApiJson<KeyInput>,
) -> Result<(StatusCode, Json<Data<CreatedKey>>), ApiError> {
    let scopes = match input.and_then(|i| i.scopes) {
        None => Scopes::all(),
        Some(Value::Array(items)) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| "must be an array of scope strings".to_owned())
            .and_then(|names| Scopes::parse(&names))
            .map_err(|message| ApiError::from(vec![FieldError::new("scopes", message)]))?,
        Some(_) => {
            return Err(vec![FieldError::new(
                "scopes",
                "must be an array of scope strings",
            )]
            .into());
        }
    };
    let project_id = path.project_id.into();
    let issued = tenancy::create_key(
        state.store.as_ref(),
        project_id,
        scopes,
        Actor::admin(Channel::Admin),
        state.clock.now(),
    )
    .await?;
    tracing::info!(key_id = %issued.id, %project_id, "API key created");
    let data = CreatedKey {
        id: issued.id.to_string(),
        key: issued.key.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(Data { data })))
}

pub async fn revoke_api_key(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<KeyPath>,
) -> Result<Json<Data<RevokedKey>>, ApiError> {
    let actor = Actor::admin(Channel::Admin);
    tenancy::revoke_key(
        state.store.as_ref(),
        path.key_id.into(),
        actor,
        state.clock.now(),
    )
    .await?;
    tracing::info!(key_id = %path.key_id, "API key revoked");
    let data = RevokedKey {
        id: path.key_id.to_string(),
        revoked: true,
    };
    Ok(Json(Data { data }))
}
