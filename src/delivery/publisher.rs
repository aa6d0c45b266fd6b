//! The one handle the API publishes through: it accepts events durably (in shared
//! transactions), gives their deliveries straight to this instance's worker when it has room,
//! and wakes a worker otherwise. The API never sees a lease, a claim or a secret.

use std::sync::Arc;

use super::group_commit::GroupCommit;
use super::queue::{Handover, Queue};
use super::worker::Admission;
use crate::domain::{AuditEntry, DeliveryId, ProjectId};
use crate::store::{
    AcceptedEvent, Accepting, DeliverySummary, NewEvent, RecoverFilter, Recovery, StoreResult,
};

/// This instance's worker, as the publisher sees it: whether it has room, and its inbox.
struct LocalWorker {
    admission: Arc<Admission>,
    handover: Handover,
}

#[derive(Clone)]
pub struct Publisher {
    queue: Arc<Queue>,
    events: GroupCommit,
    local: Option<Arc<LocalWorker>>,
}

impl Publisher {
    /// `local` is this instance's worker, when it runs one.
    pub fn new(queue: Arc<Queue>, local: Option<(Arc<Admission>, Handover)>) -> Self {
        Self {
            events: GroupCommit::start(queue.store().clone()),
            queue,
            local: local.map(|(admission, handover)| {
                Arc::new(LocalWorker {
                    admission,
                    handover,
                })
            }),
        }
    }

    /// Accepts the event durably; the answer comes once it is committed. Its deliveries are
    /// written leased to this instance's worker while it has room (if this process dies, the
    /// lease runs out and any instance takes them), otherwise queued for any worker.
    pub async fn publish(&self, event: NewEvent) -> StoreResult<AcceptedEvent> {
        let local = self
            .local
            .as_ref()
            .filter(|w| w.handover.is_open() && w.admission.has_room_for(event.project_id));
        let lease = local.map(|_| self.queue.mint_lease(event.created_at));
        let accepted = self.events.accept(Accepting { event, lease }).await?;
        let queued = accepted
            .event
            .delivery_ids
            .len()
            .saturating_sub(accepted.claims.len() + accepted.pulled.len());
        if let Some(worker) = local.filter(|_| !accepted.claims.is_empty()) {
            let refused = worker.handover.give(accepted.claims);
            // The worker is stopping: put the deliveries back in the queue for the next one.
            self.queue.release(&refused).await?;
        }
        // Some deliveries wait in the queue (no lease, or a rate-limited or throttled webhook).
        if !accepted.event.replayed && queued > 0 {
            self.queue.wake();
        }
        self.queue.wake_pollers(&accepted.pulled);
        Ok(accepted.event)
    }

    /// Queues again the finished deliveries `filter` matches, and wakes the worker and pollers
    /// for them.
    pub async fn recover(
        &self,
        project: ProjectId,
        filter: &RecoverFilter,
        audit: AuditEntry,
    ) -> StoreResult<Recovery> {
        let recovery = self
            .queue
            .store()
            .recover_deliveries(project, filter, audit)
            .await?;
        if recovery.queued > 0 {
            self.queue.wake();
            self.queue.wake_every_poller();
        }
        Ok(recovery)
    }

    /// Makes a delivery due now and wakes a worker (or its pollers) for it.
    pub async fn retry(
        &self,
        project: ProjectId,
        id: DeliveryId,
        audit: AuditEntry,
    ) -> StoreResult<DeliverySummary> {
        let summary = self
            .queue
            .store()
            .retry_delivery(project, id, audit)
            .await?;
        self.queue.wake();
        self.queue.wake_every_poller();
        Ok(summary)
    }
}
