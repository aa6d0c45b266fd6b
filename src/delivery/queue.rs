//! The queue protocol in one place: leases are minted, handed over, claimed, renewed,
//! recorded and released here, and workers are woken and listen here. Callers hold a `Queue`
//! and never build a lease or a claim query themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{DeliveryId, ProjectId, WebhookId, after};
use crate::store::{
    Announcement, Announcements, AttemptRecord, ClaimedDelivery, Lease, QueuedNotice,
    RecordedBatch, Store, StoreResult,
};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The durable queue as this instance sees it: the store's deliveries table, the lease period,
/// the wake-up that tells the local worker work may be due, and those of the pollers waiting
/// on pull webhooks.
pub struct Queue {
    store: Arc<dyn Store>,
    lease: Duration,
    clock: Clock,
    wake: Arc<Notify>,
    pollers: Arc<Pollers>,
}

impl Queue {
    pub fn new(store: Arc<dyn Store>, lease: Duration, clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            store,
            lease,
            clock,
            wake: Arc::new(Notify::new()),
            pollers: Arc::new(Pollers::default()),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Mint: a fresh lease for deliveries this instance will send itself, from `now`.
    pub fn mint_lease(&self, now: DateTime<Utc>) -> Lease {
        Lease {
            token: Uuid::new_v4(),
            until: after(now, self.lease),
        }
    }

    /// Claim: leases up to `limit` due deliveries, at most `per_webhook` for any one webhook,
    /// none of `exclude`'s.
    pub async fn claim(
        &self,
        limit: u32,
        per_webhook: u32,
        exclude: &[WebhookId],
        exclude_projects: &[ProjectId],
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let now = self.clock.now();
        let lease_until = after(now, self.lease);
        self.store
            .claim_due(
                now,
                lease_until,
                limit,
                per_webhook,
                exclude,
                exclude_projects,
            )
            .await
    }

    /// Renew: extends a claim that waited for its turn and picks up the webhook's current URL
    /// and secrets; false when the delivery is no longer this claim's to send.
    pub async fn renew(&self, claim: &mut ClaimedDelivery) -> StoreResult<bool> {
        let now = self.clock.now();
        let target = self
            .store
            .renew_claim(claim.id, claim.lease_token, now, after(now, self.lease))
            .await?;
        Ok(match target {
            Some(target) => {
                claim.url = target.url;
                claim.signing = target.signing;
                true
            }
            None => false,
        })
    }

    /// Record: writes finished attempts and what follows them.
    pub async fn record(&self, records: &[AttemptRecord]) -> StoreResult<RecordedBatch> {
        self.store.record_attempts(records).await
    }

    /// Release: makes held deliveries due again at once.
    pub async fn release(&self, claims: &[(DeliveryId, Uuid)]) -> StoreResult<()> {
        if claims.is_empty() {
            return Ok(());
        }
        self.store.release_claims(claims, self.clock.now()).await
    }

    /// How long until the earliest pending delivery is due, if any is.
    pub async fn next_due_in(&self) -> StoreResult<Option<Duration>> {
        let due = self.store.next_due_at().await?;
        Ok(due.map(|due| (due - self.clock.now()).to_std().unwrap_or_default()))
    }

    /// Logs the notices a recorded batch queued and wakes the worker for them, since they were
    /// written unleased.
    pub fn announce_notices(&self, notices: &[QueuedNotice]) {
        for notice in notices {
            tracing::info!(
                webhook_id = %notice.webhook_id,
                notice = notice.event.as_str(),
                alert_endpoints = notice.deliveries,
                "notice queued for the project's alert endpoints"
            );
        }
        if !notices.is_empty() {
            self.wake();
        }
    }

    /// Wake: tells the local worker that work may be due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when someone calls `wake` (or another instance announced work).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// What wakes the pollers of `webhook`: they take it before looking at the queue, so a
    /// wake that comes while they look is not lost.
    pub fn poller_wake(&self, webhook: WebhookId) -> Arc<Notify> {
        self.pollers.wake_for(webhook)
    }

    /// Wakes the local pollers of these pull webhooks.
    pub fn wake_pollers(&self, webhooks: &[WebhookId]) {
        for webhook in webhooks {
            self.pollers.wake(*webhook);
        }
    }

    /// Wakes every local poller, for deliveries made due again whose webhooks are not known.
    pub fn wake_every_poller(&self) {
        self.pollers.wake_all();
    }

    /// Listen: wakes the local worker and pollers whenever another instance queues work for
    /// them, until `shutdown`.
    pub fn listen(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let (store, wake, pollers) = (self.store.clone(), self.wake.clone(), self.pollers.clone());
        let heard: Announcements = Arc::new(move |announced| match announced {
            Announcement::Work => wake.notify_one(),
            Announcement::Pull(webhook) => pollers.wake(webhook),
            Announcement::AnyPull => pollers.wake_all(),
        });
        tokio::spawn(async move { store.listen_for_work(heard, shutdown).await })
    }
}

/// The wake-ups of the pull webhooks that pollers of this instance are waiting on; an entry
/// lives as long as one of its pollers holds it.
#[derive(Default)]
struct Pollers(Mutex<HashMap<WebhookId, Weak<Notify>>>);

impl Pollers {
    fn wake_for(&self, webhook: WebhookId) -> Arc<Notify> {
        let mut waiting = lock(&self.0);
        if let Some(wake) = waiting.get(&webhook).and_then(Weak::upgrade) {
            return wake;
        }
        waiting.retain(|_, wake| wake.strong_count() > 0);
        let wake = Arc::new(Notify::new());
        waiting.insert(webhook, Arc::downgrade(&wake));
        wake
    }

    fn wake(&self, webhook: WebhookId) {
        let wake = lock(&self.0).get(&webhook).and_then(Weak::upgrade);
        if let Some(wake) = wake {
            wake.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let waiting: Vec<Arc<Notify>> = lock(&self.0).values().filter_map(Weak::upgrade).collect();
        for wake in waiting {
            wake.notify_waiters();
        }
    }
}

/// Hand over: the way freshly accepted, already leased deliveries reach the local worker
/// without a trip through the queue.
pub fn handover() -> (Handover, UnboundedReceiver<ClaimedDelivery>) {
    let (sender, inbox) = unbounded_channel();
    (Handover(sender), inbox)
}

#[derive(Clone)]
pub struct Handover(UnboundedSender<ClaimedDelivery>);

impl Handover {
    pub fn is_open(&self) -> bool {
        !self.0.is_closed()
    }

    /// Gives claims to the worker; the ones it can no longer take come back as (id, token).
    pub fn give(&self, claims: Vec<ClaimedDelivery>) -> Vec<(DeliveryId, Uuid)> {
        claims
            .into_iter()
            .filter_map(|claim| self.0.send(claim).err())
            .map(|refused| (refused.0.id, refused.0.lease_token))
            .collect()
    }
}

/// The claims this worker holds and has not yet recorded or released: what a shutdown must
/// give back.
#[derive(Default)]
pub struct Holdings(Mutex<HashMap<DeliveryId, Uuid>>);

impl Holdings {
    pub fn hold(&self, claim: &ClaimedDelivery) {
        lock(&self.0).insert(claim.id, claim.lease_token);
    }

    /// Forgets a claim that was recorded or released; a newer claim of the same delivery
    /// keeps its entry.
    pub fn let_go(&self, id: DeliveryId, lease_token: Uuid) {
        let mut held = lock(&self.0);
        if held.get(&id) == Some(&lease_token) {
            held.remove(&id);
        }
    }

    pub fn take_all(&self) -> Vec<(DeliveryId, Uuid)> {
        lock(&self.0).drain().collect()
    }
}
