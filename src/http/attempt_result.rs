//! The synchronous answer of a test event: waiting for its delivery's first attempt and
//! describing how it went.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::AppState;
use super::errors::ApiError;
use crate::delivery::replay::Replayed;
use crate::domain::{DeliveryId, EventId, ProjectId};
use crate::store::Attempt;

/// How often the log is read while waiting for the attempt, which may run on any instance.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Beyond the attempt's own timeout, time for it to be claimed and recorded.
const WAIT_SLACK: Duration = Duration::from_secs(1);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptResultView {
    outcome: &'static str,
    response_status: Option<u16>,
    duration_ms: u32,
    response_excerpt: Option<String>,
    error: Option<String>,
    request_headers: Option<serde_json::Map<String, serde_json::Value>>,
}

impl AttemptResultView {
    pub fn outcome(&self) -> &'static str {
        self.outcome
    }

    /// A replay's result, as an attempt's is shown.
    pub fn replayed(replayed: Replayed) -> Self {
        let outcome = replayed.outcome;
        Self {
            outcome: if outcome.succeeded() {
                "succeeded"
            } else {
                "failed"
            },
            response_status: outcome.status,
            duration_ms: replayed.duration_ms,
            response_excerpt: outcome.body_excerpt,
            error: outcome.error,
            request_headers: serde_json::from_str(&replayed.request_headers).ok(),
        }
    }
}

impl From<Attempt> for AttemptResultView {
    fn from(attempt: Attempt) -> Self {
        let succeeded = attempt.error.is_none()
            && attempt
                .response_status
                .is_some_and(|s| (200..300).contains(&s));
        Self {
            outcome: if succeeded { "succeeded" } else { "failed" },
            response_status: attempt.response_status,
            duration_ms: attempt.duration_ms,
            response_excerpt: attempt.response_body,
            error: attempt.error,
            request_headers: attempt.request_headers,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestedView {
    delivery_id: String,
    event_id: String,
    result: AttemptResultView,
}

impl TestedView {
    pub fn new(delivery: DeliveryId, event: EventId, result: AttemptResultView) -> Self {
        Self {
            delivery_id: delivery.to_string(),
            event_id: event.to_string(),
            result,
        }
    }
}

/// The delivery's first attempt once it is recorded, or `None` if none was within the
/// attempt timeout plus a second (a paused worker, a full queue).
pub async fn first_attempt(
    state: &AppState,
    project: ProjectId,
    event: EventId,
    delivery: DeliveryId,
) -> Result<Option<TestedView>, ApiError> {
    let deadline = Instant::now() + state.settings.attempt_timeout + WAIT_SLACK;
    loop {
        let details = state.store.get_delivery(project, delivery).await?;
        if let Some(first) = details.attempts.into_iter().next() {
            return Ok(Some(TestedView::new(delivery, event, first.into())));
        }
        if Instant::now() + POLL_EVERY > deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
