//! Validated domain values (ids, names, event types, scopes, URLs and secrets) and the pure
//! rules of delivery (retries, the state after an attempt, endpoint health, fan-out), with no
//! I/O.

mod address;
mod api_key;
mod audit;
mod custom_headers;
mod delivery;
mod endpoint_health;
mod endpoint_url;
mod event_type;
mod fanout;
mod filters;
mod idempotency;
mod ids;
mod labels;
mod mode;
mod name;
mod notices;
mod payload;
mod rate;
mod retry;
mod scope;
mod secret;

pub use address::forbidden_reason;
pub use api_key::ApiKey;
pub use audit::{Actor, AuditEntry, Channel};
pub use custom_headers::{CustomHeaders, mask};
pub use delivery::{
    Answer, AttemptResult, Before, Decision, DeliveryStatus, Hold, Pressure, RetryAfter,
    adapt_concurrency, after, decide,
};
pub use endpoint_health::{
    AttemptFacts, Disable, FailureRun, HealthBefore, HealthPolicy, WebhookTally, tally_attempts,
};
pub use endpoint_url::{EndpointUrl, UrlPolicy, redact_query};
pub use event_type::{EventType, EventTypes};
pub use fanout::{Published, Subscriber, filters_accept, plan_fanout, subscription_pairs};
pub use filters::Filters;
pub use idempotency::event_fingerprint;
pub use ids::{AccountId, ApiKeyId, DeliveryId, EventId, ProjectId, WebhookId};
pub use labels::{Metadata, check_description};
pub use mode::{DeliveryMode, Destination};
pub use name::Name;
pub use notices::{Notice, NoticeSubject, WebhookKind};
pub use payload::render_payload;
pub use rate::{RATE_LOOKAHEAD, rate_slots};
pub use retry::{
    MAX_WEBHOOK_DELAY_SECS, MAX_WEBHOOK_RETRIES, MAX_WEBHOOK_SCHEDULE_SECS, RetrySchedule,
    parse_duration,
};
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
