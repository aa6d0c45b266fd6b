//! The webhook resource's wire types: what create, list, get, update and rotate answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{WebhookSecret, redact_query};
use crate::http::wire::ApiTime;
use crate::store::{PullQueue, Webhook, WebhookStats};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    id: String,
    mode: &'static str,
    /// Left out for a pull webhook, which has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    events: Vec<&'static str>,
    is_active: bool,
    created_at: ApiTime,
    updated_at: ApiTime,
    description: Option<String>,
    metadata: BTreeMap<String, String>,
}

impl WebhookView {
    /// The view as a key sees it: one that may only read gets the URL's query values hidden,
    /// since query strings may carry credentials.
    pub fn for_reader(mut self, writes_webhooks: bool) -> Self {
        if !writes_webhooks {
            self.url = self.url.as_deref().map(redact_query);
        }
        self
    }
}

impl From<&Webhook> for WebhookView {
    fn from(webhook: &Webhook) -> Self {
        Self {
            id: webhook.id.to_string(),
            mode: webhook.mode.as_str(),
            url: webhook.url.clone(),
            events: webhook.events.iter().map(|e| e.as_str()).collect(),
            is_active: webhook.is_active,
            created_at: ApiTime(webhook.created_at),
            updated_at: ApiTime(webhook.updated_at),
            description: webhook.labels.description.clone(),
            metadata: webhook.labels.metadata.entries().clone(),
        }
    }
}

/// Whether attempts are made: not while the tenant paused the webhook or its health disabled
/// it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    enabled: bool,
    paused_at: Option<ApiTime>,
}

impl From<&Webhook> for Running {
    fn from(webhook: &Webhook) -> Self {
        Self {
            enabled: webhook.is_active && webhook.paused_at.is_none() && webhook.disabled.is_none(),
            paused_at: webhook.paused_at.map(ApiTime),
        }
    }
}

/// A pull webhook's pending deliveries.
#[derive(Serialize)]
pub struct QueueView {
    due: u64,
    scheduled: u64,
    leased: u64,
}

impl From<PullQueue> for QueueView {
    fn from(queue: PullQueue) -> Self {
        Self {
            due: queue.due,
            scheduled: queue.scheduled,
            leased: queue.leased,
        }
    }
}

/// One webhook of a list.
#[derive(Serialize)]
pub struct ListedWebhook {
    #[serde(flatten)]
    webhook: WebhookView,
    #[serde(flatten)]
    running: Running,
    /// A pull webhook's queue; left out for push webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<QueueView>,
}

impl ListedWebhook {
    pub fn new(webhook: &Webhook, queue: Option<PullQueue>) -> Self {
        Self {
            webhook: webhook.into(),
            running: webhook.into(),
            queue: queue.map(QueueView::from),
        }
    }

    /// The entry as a key sees it (see `WebhookView::for_reader`).
    pub fn for_reader(mut self, writes_webhooks: bool) -> Self {
        self.webhook = self.webhook.for_reader(writes_webhooks);
        self
    }
}

/// A new webhook, with its secret: the only answer that shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhook {
    #[serde(flatten)]
    webhook: WebhookView,
    #[serde(flatten)]
    secret: SecretForms,
}

impl CreatedWebhook {
    pub fn new(webhook: &Webhook) -> Self {
        Self {
            webhook: webhook.into(),
            secret: SecretForms::of(&webhook.secret),
        }
    }
}

/// A secret as DevTune shows it (64 hex characters) and as Standard Webhooks libraries take it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretForms {
    secret: String,
    standard_webhooks_secret: String,
}

impl SecretForms {
    pub fn of(secret: &WebhookSecret) -> Self {
        Self {
            secret: secret.expose().to_owned(),
            standard_webhooks_secret: secret.standard_webhooks_form(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDetails {
    #[serde(flatten)]
    webhook: WebhookView,
    #[serde(flatten)]
    running: Running,
    filters: BTreeMap<String, String>,
    deleted_at: Option<ApiTime>,
    disabled_at: Option<ApiTime>,
    disabled_reason: Option<String>,
    last_modified_by: Option<String>,
    last_modified_via: Option<String>,
    secret_preview: String,
    /// The custom headers, each value masked to its last 4 characters.
    headers: BTreeMap<String, String>,
    stats: StatsView,
    /// The webhook's own schedule in seconds; null means the service's.
    retry_schedule: Option<Vec<u64>>,
    rate_limit: Option<u32>,
    /// The webhook's own most attempts in flight; null means the service's.
    max_concurrency: Option<u32>,
    /// How many attempts may be in flight now, as adapted to the receiver.
    effective_concurrency: u32,
    /// Until when a throttling receiver holds back every attempt; null when none does.
    throttled_until: Option<ApiTime>,
    /// A pull webhook's queue; left out for push webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<QueueView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    total_deliveries: i64,
    successful_deliveries: i64,
    failed_deliveries: i64,
    last_success_at: Option<ApiTime>,
    last_failure_at: Option<ApiTime>,
    consecutive_failures: i64,
}

impl From<&WebhookStats> for StatsView {
    fn from(stats: &WebhookStats) -> Self {
        Self {
            total_deliveries: stats.total_deliveries,
            successful_deliveries: stats.successful_deliveries,
            failed_deliveries: stats.failed_deliveries,
            last_success_at: stats.last_success_at.map(ApiTime),
            last_failure_at: stats.last_failure_at.map(ApiTime),
            consecutive_failures: stats.consecutive_failures,
        }
    }
}

impl WebhookDetails {
    /// The details as a key sees them (see `WebhookView::for_reader`).
    pub fn for_reader(mut self, writes_webhooks: bool) -> Self {
        self.webhook = self.webhook.for_reader(writes_webhooks);
        self
    }

    /// The webhook as read at `now`, with `default_concurrency` where it sets none, and its
    /// queue when it is a pull webhook.
    pub fn new(
        webhook: &Webhook,
        default_concurrency: u32,
        now: DateTime<Utc>,
        queue: Option<PullQueue>,
    ) -> Self {
        let limits = &webhook.limits;
        let max = limits.max_concurrency.unwrap_or(default_concurrency);
        Self {
            webhook: webhook.into(),
            running: webhook.into(),
            filters: webhook.filters.to_pairs().into_iter().collect(),
            deleted_at: webhook.deleted_at.map(ApiTime),
            disabled_at: webhook.disabled.as_ref().map(|d| ApiTime(d.at)),
            disabled_reason: webhook.disabled.as_ref().map(|d| d.reason.clone()),
            last_modified_by: webhook.last_modified_by.clone(),
            last_modified_via: webhook.last_modified_via.clone(),
            secret_preview: webhook.secret.preview(),
            headers: webhook.labels.headers.masked(),
            stats: (&webhook.stats).into(),
            retry_schedule: limits.retry_schedule.as_ref().map(|s| s.to_seconds()),
            rate_limit: limits.rate_limit,
            max_concurrency: limits.max_concurrency,
            effective_concurrency: webhook.effective_concurrency.unwrap_or(max).clamp(1, max),
            throttled_until: webhook
                .throttled_until
                .filter(|until| *until > now)
                .map(ApiTime),
            queue: queue.map(QueueView::from),
        }
    }
}

#[derive(Serialize)]
pub struct WebhookList {
    pub(super) webhooks: Vec<ListedWebhook>,
}

#[derive(Serialize)]
pub struct Deleted {
    deleted: bool,
}

impl Deleted {
    pub fn confirmed() -> Self {
        Self { deleted: true }
    }
}

#[derive(Serialize)]
pub struct RotatedSecret {
    #[serde(flatten)]
    pub(super) secret: SecretForms,
}
