//! The API's one error type and the one place it becomes the documented Error body.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::FieldError;
use crate::report::error_chain;
use crate::store::cipher::MissingKey;
use crate::store::{Entity, Reason, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    WebhookLimitReached(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    #[error("the request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error(
        "the request body did not arrive within {} ms of its headers",
        allowed.as_millis()
    )]
    RequestTimeout { allowed: std::time::Duration },
    #[error("too many requests; retry after {retry_after_secs} seconds")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    IdempotencyKeyReused(String),
    #[error(
        "a webhook signing secret in this project is {0}; the service's operator must add \
         that key to HOOKRELAY_ENCRYPTION_OLD_KEYS"
    )]
    SecretUnreadable(MissingKey),
    #[error("the service cannot reach its database; try again shortly")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Vec<DetailBody<'a>>>,
}

#[derive(Serialize)]
struct DetailBody<'a> {
    field: &'a str,
    message: &'a str,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Validation(_) => (StatusCode::BAD_REQUEST, "validation_error"),
            ApiError::WebhookLimitReached(_) => (StatusCode::BAD_REQUEST, "webhook_limit_reached"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::RequestTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::IdempotencyKeyReused(_) => (StatusCode::CONFLICT, "idempotency_key_reused"),
            ApiError::Unavailable(_) | ApiError::SecretUnreadable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Validation(details) => {
                let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
                format!("Invalid request: check {}.", fields.join(", "))
            }
            ApiError::Internal(_) => {
                "The service hit an unexpected error; it has been logged.".to_owned()
            }
            other => sentence(&other.to_string()),
        }
    }
}

/// Capitalised and ending with a period, so every message reads as a sentence.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Internal(_) => {
                tracing::error!(error = %error_chain(&self), "request failed")
            }
            ApiError::Unavailable(_) => {
                tracing::warn!(error = %error_chain(&self), "database unavailable")
            }
            ApiError::SecretUnreadable(missing) => tracing::error!(
                key_id = %missing.key_id,
                "cannot read a webhook's signing secret: it is {missing}; add that key to \
                 HOOKRELAY_ENCRYPTION_OLD_KEYS (or HOOKRELAY_ENCRYPTION_KEY)"
            ),
            _ => {}
        }
        let details = match &self {
            ApiError::Validation(details) => Some(
                details
                    .iter()
                    .map(|d| DetailBody {
                        field: &d.field,
                        message: &d.message,
                    })
                    .collect(),
            ),
            _ => None,
        };
        let body = ErrorBody {
            error: code,
            message: self.message(),
            status: status.as_u16(),
            details,
        };
        let mut response = (status, Json(body)).into_response();
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            // RFC 9110: a 401 names the scheme that would be accepted.
            ApiError::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// What a user reads when a row is missing.
fn not_found(entity: Entity) -> &'static str {
    match entity {
        Entity::Account => "account not found",
        Entity::Project => "project not found",
        Entity::ApiKey => "API key not found, or already revoked",
        Entity::Webhook => "webhook not found in this project (it may have been deleted)",
        Entity::AlertEndpoint => {
            "alert endpoint not found in this project (it may have been deleted)"
        }
        Entity::Delivery => "delivery not found in this project",
        Entity::Referenced => "a record this request refers to was not found",
    }
}

/// What a user reads when a change conflicts with the current state.
fn conflict(reason: Reason) -> &'static str {
    match reason {
        Reason::WebhookDeleted => "the delivery's webhook is deleted, so it cannot be retried",
        Reason::IdempotencyKeyInUse => {
            "another request with this Idempotency-Key is being accepted; retry it shortly"
        }
        Reason::IdempotencyKeyReused => {
            "this Idempotency-Key was used in the last 24 hours for a different event (another \
             type or data); use a new key for a new event"
        }
        Reason::AlreadyExists => "a record with the same unique value exists",
        Reason::WebhookPaused => {
            "the webhook is paused, so nothing would be sent; resume it (PATCH with \
             {\"enabled\": true}) first"
        }
        Reason::WebhookDisabled => {
            "the webhook was disabled by its endpoint's health; fix the endpoint, then \
             re-enable it (PATCH with {\"enabled\": true})"
        }
        Reason::PushWebhook => {
            "the webhook pushes its deliveries to its URL, so it has no queue to poll; create \
             one with {\"mode\": \"pull\"} to poll for deliveries"
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(entity) => ApiError::NotFound(not_found(entity).into()),
            StoreError::Conflict(Reason::IdempotencyKeyReused) => {
                ApiError::IdempotencyKeyReused(conflict(Reason::IdempotencyKeyReused).into())
            }
            StoreError::Conflict(reason) => ApiError::Conflict(conflict(reason).into()),
            StoreError::WebhookLimitReached { limit, kind } => {
                ApiError::WebhookLimitReached(format!(
                    "this project already has {limit} active {}s, the most allowed; delete one \
                     before creating another",
                    Entity::of(kind)
                ))
            }
            StoreError::MissingKey(missing) => ApiError::SecretUnreadable(missing),
            error @ StoreError::Unavailable(_) => ApiError::Unavailable(error),
            error @ StoreError::Internal(_) => ApiError::Internal(Box::new(error)),
        }
    }
}

impl From<Vec<FieldError>> for ApiError {
    fn from(details: Vec<FieldError>) -> Self {
        ApiError::Validation(details)
    }
}

pub async fn route_not_found() -> ApiError {
    ApiError::NotFound("no route matches this path; see /openapi.yaml for the API".into())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
