//! Validated domain values: ids, names, event types, scopes, URLs and secrets, with no I/O.

mod address;
mod api_key;
mod endpoint_health;
mod endpoint_url;
mod event_type;
mod filters;
mod ids;
mod name;
mod scope;
mod secret;

pub use address::forbidden_reason;
pub use api_key::ApiKey;
pub use endpoint_health::DisablePolicy;
pub use endpoint_url::{EndpointUrl, UrlPolicy};
pub use event_type::{EventType, EventTypes};
pub use filters::Filters;
pub use ids::{AccountId, ApiKeyId, DeliveryId, EventId, ProjectId, WebhookId};
pub use name::Name;
pub use scope::{Scope, Scopes};
pub use secret::WebhookSecret;

/// One rejected input field and why, in words a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
