//! Extractors whose rejections are `ApiError`s, so malformed requests get the documented body.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::errors::ApiError;
use super::serve::BodyDeadline;
use crate::domain::FieldError;
use crate::store::{Entity, StoreError};

/// A checked field's value, or `None` with the refusal recorded under the field's name, so a
/// body's every bad field is reported at once.
pub fn keep_field<T>(
    field: &str,
    checked: Result<T, String>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    checked
        .map_err(|message| errors.push(FieldError::new(field, message)))
        .ok()
}

/// A non-negative integer, including a float with no fraction: JSON Schema counts `10.0` as
/// an integer, so a client may send it.
pub fn whole_number(value: &serde_json::Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    })
}

/// Largest body the management API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body: `application/json` (or `+json`), at most `MAX_BODY_BYTES`, a JSON object.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        json_body(req, MAX_BODY_BYTES).await.map(ApiJson)
    }
}

/// Reads a JSON object body of at most `limit` bytes, for routes with their own limit.
pub async fn json_body<T: DeserializeOwned>(req: Request, limit: usize) -> Result<T, ApiError> {
    if !has_json_content_type(&req) {
        return Err(wrong_content_type());
    }
    let bytes = read_body(req, limit).await?;
    parse_json(&bytes)
}

/// A JSON body that may be absent: an empty body gives `None`.
pub struct OptionalApiJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_json = has_json_content_type(&req);
        let bytes = read_body(req, MAX_BODY_BYTES).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalApiJson(None));
        }
        if !is_json {
            return Err(wrong_content_type());
        }
        parse_json(&bytes).map(|value| OptionalApiJson(Some(value)))
    }
}

fn wrong_content_type() -> ApiError {
    ApiError::BadRequest(
        "send the body as JSON with the header Content-Type: application/json".into(),
    )
}

async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit_bytes: limit };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large);
    }
    let deadline = req.extensions().get::<BodyDeadline>().copied();
    let reading = axum::body::to_bytes(req.into_body(), limit);
    let read = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.at, reading)
            .await
            .map_err(|_| ApiError::RequestTimeout {
                allowed: deadline.allowed,
            })?,
        None => reading.await,
    };
    read.map_err(|error| {
        let source = std::error::Error::source(&error);
        if source.is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            too_large
        } else {
            ApiError::BadRequest(format!("could not read the request body: {error}"))
        }
    })
}

fn has_json_content_type(req: &Request) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let starts_an_object = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if !starts_an_object && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::BadRequest(format!("the request body must be a JSON object ({e})"))
        }
        _ => ApiError::BadRequest(format!("the request body is not valid JSON ({e})")),
    })
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option<Value>` field: an absent
/// field stays `None`, while an explicit `null` becomes `Some(Value::Null)`, so validation can
/// refuse a null where the contract wants a value instead of reading it as "not given".
pub fn present<'de, D>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// Path parameters. A resource id that is not a UUID names no resource, so it is that
/// resource's 404, as DevTune answers a bad `webhookId`; any other value that does not parse
/// is a 400 naming it.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(path_error)
    }
}

/// The resource a path parameter names, when it names one.
fn resource(key: &str) -> Option<Entity> {
    match key {
        "webhookId" => Some(Entity::Webhook),
        "alertEndpointId" => Some(Entity::AlertEndpoint),
        "deliveryId" => Some(Entity::Delivery),
        _ => None,
    }
}

fn path_error(rejection: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    match rejection {
        PathRejection::FailedToDeserializePathParams(inner) => match inner.kind() {
            ErrorKind::ParseErrorAtKey { key, value, .. }
            | ErrorKind::DeserializeError { key, value, .. } => match resource(key) {
                Some(entity) => StoreError::NotFound(entity).into(),
                None => ApiError::BadRequest(format!(
                    "path parameter {key} must be a UUID, got \"{value}\""
                )),
            },
            ErrorKind::InvalidUtf8InPathParam { key } => match resource(key) {
                Some(entity) => StoreError::NotFound(entity).into(),
                None => ApiError::BadRequest(format!("path parameter {key} is not valid UTF-8")),
            },
            _ => ApiError::BadRequest(format!("invalid path parameter: {}", inner.body_text())),
        },
        other => ApiError::Internal(Box::new(other)),
    }
}

/// Query parameters; a value of the wrong type is a 400 naming it.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::BadRequest(format!("invalid query string: {}", rejection.body_text()))
            })
    }
}
