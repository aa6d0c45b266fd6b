//! Pull webhooks' queues as the store returns them: what an acknowledged lease needs for its
//! attempt to be recorded, and how many deliveries wait.

use uuid::Uuid;

use super::queue::FlowColumns;
use crate::domain::{Before, DeliveryId, RetrySchedule};
use crate::store::decode::Int;
use crate::store::{Entity, Reason, StoreError, StoreResult};

/// Reads a webhook's mode and whether health disabled it, for an active webhook (`$1`) of the
/// project (`$2`).
pub(crate) const PULL_WEBHOOK_SELECT: &str = "select mode, disabled_at is not null from webhooks \
     where id = $1 and project_id = $2 and kind = 'webhook' and is_active";

/// What `PULL_WEBHOOK_SELECT` found means for a poll: missing, a push webhook, or a pull webhook
/// and whether it is disabled.
pub(crate) fn pull_webhook_state(found: Option<(String, bool)>) -> StoreResult<bool> {
    match found {
        None => Err(StoreError::NotFound(Entity::Webhook)),
        Some((mode, _)) if mode != "pull" => Err(StoreError::Conflict(Reason::PushWebhook)),
        Some((_, disabled)) => Ok(disabled),
    }
}

/// A pulled delivery still held under the lease a poller acknowledges, with what judging the
/// poller's answer needs.
#[derive(Debug, Clone)]
pub struct HeldPull {
    pub id: DeliveryId,
    pub lease_token: Uuid,
    /// The number the acknowledged attempt carries (1 for the first).
    pub attempt_number: u32,
    pub before: Before,
    pub retry_schedule: Option<RetrySchedule>,
    pub max_concurrency: Option<u32>,
}

/// A held pull as both backends read it.
#[derive(sqlx::FromRow)]
pub(crate) struct HeldPullRow {
    id: Uuid,
    lease_token: Uuid,
    attempt_count: Int,
    #[sqlx(flatten)]
    flow: FlowColumns,
}

impl HeldPullRow {
    pub(crate) fn into_held(self) -> StoreResult<HeldPull> {
        Ok(HeldPull {
            id: self.id.into(),
            lease_token: self.lease_token,
            attempt_number: self.attempt_count.to::<u32>() + 1,
            before: self.flow.before(),
            retry_schedule: self.flow.retry_schedule()?,
            max_concurrency: self.flow.max_concurrency.map(Int::to),
        })
    }
}

/// The columns a `HeldPullRow` reads, from `deliveries d` joined to `webhooks w`.
pub(crate) const HELD_PULL_COLUMNS: &str = "d.id, d.lease_token, d.attempt_count, d.failures, \
     d.throttled_since, w.throttle_backoff_ms, w.retry_schedule, w.max_concurrency, \
     w.effective_concurrency";

/// A pull webhook's pending deliveries at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PullQueue {
    /// Due now: the next poll gets them.
    pub due: u64,
    /// Waiting for a later retry time.
    pub scheduled: u64,
    /// Leased to a poller that has not acknowledged them yet.
    pub leased: u64,
}

impl PullQueue {
    pub(crate) fn of(counts: (i64, i64, i64)) -> Self {
        let count = |n: i64| u64::try_from(n).unwrap_or_default();
        Self {
            due: count(counts.0),
            scheduled: count(counts.1),
            leased: count(counts.2),
        }
    }
}
