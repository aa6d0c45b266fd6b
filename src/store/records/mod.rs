//! The records the store takes and returns, and the row types both backends decode them from.

mod events;
mod health;
mod log;
mod pull;
mod queue;
mod tenants;
mod webhooks;

pub use events::{Accepted, AcceptedEvent, Accepting, EventTarget, Lease, NewEvent};
pub(crate) use log::recoverable;
pub use log::{
    Attempt, DeliveryDetails, DeliveryQuery, DeliverySummary, QueueDepth, RecoverFilter, Recovery,
};
pub use pull::{HeldPull, PullQueue};
pub use queue::{
    AttemptRecord, ClaimedDelivery, FlowChange, QueuedNotice, Recorded, RecordedBatch,
    WebhookTarget,
};
pub use tenants::{
    ApiKeyInfo, ApiKeyRecord, BootstrapTenant, NewAccount, NewApiKey, NewProject, ProjectNames,
};
pub use webhooks::{
    AuditRecord, Disabled, NewWebhook, SecretRotation, Webhook, WebhookChanges, WebhookLabels,
    WebhookLimits, WebhookStats,
};

pub(crate) use events::{
    BatchCandidate, DeliveryRows, TargetCandidate, TargetRow, batch_targets, queue_deliveries,
};
pub(crate) use health::{
    ALERT_ENDPOINTS_SELECT, AlertEndpointRow, NoticeRows, RUN_SELECT, RunRow, SUBJECT_SELECT,
    SubjectRow, Subjects, announcing, notice_rows, runs_before,
};
pub(crate) use log::{
    ATTEMPT_COLUMNS, AttemptRow, DEPTH_SELECT, DepthRow, DetailsRow, SUMMARY_COLUMNS, SummaryRow,
};
pub(crate) use pull::{HELD_PULL_COLUMNS, HeldPullRow, PULL_WEBHOOK_SELECT, pull_webhook_state};
pub(crate) use queue::{
    CLAIM_COLUMNS, ClaimRow, into_claims, rate_limited, recorded_outcomes, schedule_to_json,
    storable,
};
pub(crate) use tenants::{KeyInfoRow, KeyRecordRow};
pub(crate) use webhooks::{
    AuditRow, WebhookRow, filters_from_json, filters_to_json, listed_webhooks, stored_headers,
};
