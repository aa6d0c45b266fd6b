//! The delivery worker: claims due deliveries, signs and sends them, and records each outcome.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::header::HeaderMap;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::client::{DeliveryClient, headers};
use super::retry::RetryPolicy;
use super::signer::{devtune_signature, standard_signature};
use crate::clock::Clock;
use crate::domain::{DeliveryId, DisablePolicy, WebhookId};
use crate::instruments;
use crate::store::{AttemptRecord, AttemptResult, ClaimedDelivery, Lease, Recorded, Store};

pub const USER_AGENT: &str = "DevTune-Webhook/2.0";

/// Most attempt outcomes written by one transaction.
const RECORD_BATCH: usize = 512;

/// An attempt that waited longer than this for its endpoint's turn renews its claim first and
/// picks up a rotated secret or a deletion that happened meanwhile.
const RENEW_AFTER_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Most deliveries claimed by one query.
    pub batch_size: u32,
    /// Most attempts in flight at once, over all endpoints.
    pub max_in_flight: usize,
    /// Most attempts in flight to one webhook, so a slow endpoint cannot take every slot.
    pub per_endpoint: usize,
    /// How long a claim is held before another worker may take the delivery again.
    pub lease: Duration,
    pub retry: RetryPolicy,
    /// The longest the worker sleeps without looking for due work.
    pub poll_interval: Duration,
    /// How long attempts in flight may run on after shutdown begins.
    pub shutdown_grace: Duration,
    /// When failures disable an endpoint.
    pub disable_policy: DisablePolicy,
}

/// Claimed deliveries per webhook, and the permits that bound attempts to it.
#[derive(Default)]
struct Endpoints {
    by_webhook: HashMap<WebhookId, Endpoint>,
}

struct Endpoint {
    permits: Arc<Semaphore>,
    claimed: usize,
}

/// What attempts share: the store, the client and the claims not yet recorded.
struct Shared {
    store: Arc<dyn Store>,
    client: DeliveryClient,
    retry: RetryPolicy,
    lease: Duration,
    disable_policy: DisablePolicy,
    clock: Clock,
    /// A uniform sample from [0, 1) for retry jitter.
    jitter: fn() -> f64,
    endpoints: Mutex<Endpoints>,
    held: Mutex<HashMap<DeliveryId, Uuid>>,
    per_endpoint: usize,
    /// The measure of `max_in_flight`: each endpoint's claims in hand, counted up to its own
    /// concurrency; claims waiting behind a busy endpoint do not take room from the others.
    load: Arc<AtomicUsize>,
}

pub struct Worker {
    shared: Arc<Shared>,
    settings: WorkerSettings,
    wake: Arc<Notify>,
    inbox: UnboundedReceiver<ClaimedDelivery>,
    handoff: Handoff,
}

/// The API's way to give freshly accepted deliveries straight to this instance's worker: the
/// rows are committed already claimed, so the worker sends them without a trip through the
/// queue, and if this process dies the lease runs out and any instance takes them.
#[derive(Clone)]
pub struct Handoff {
    inbox: UnboundedSender<ClaimedDelivery>,
    load: Arc<AtomicUsize>,
    capacity: usize,
    lease: Duration,
}

impl Handoff {
    /// A lease for a new event's deliveries while the worker has room; with `None` they wait
    /// in the queue for a claim instead.
    pub fn lease(&self, now: DateTime<Utc>) -> Option<Lease> {
        let room = self.load.load(Ordering::Relaxed) < self.capacity;
        (room && !self.inbox.is_closed()).then(|| Lease {
            token: Uuid::new_v4(),
            until: after(now, self.lease),
        })
    }

    /// Gives claims to the worker; hands them back once it has stopped.
    pub fn hand_over(&self, claims: Vec<ClaimedDelivery>) -> Result<(), Vec<ClaimedDelivery>> {
        let mut refused = Vec::new();
        for claim in claims {
            if let Err(returned) = self.inbox.send(claim) {
                refused.push(returned.0);
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(refused)
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn after(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX)
}

impl Worker {
    pub fn new(
        store: Arc<dyn Store>,
        client: DeliveryClient,
        settings: WorkerSettings,
        wake: Arc<Notify>,
    ) -> Self {
        let load = Arc::new(AtomicUsize::new(0));
        let (sender, inbox) = unbounded_channel();
        let handoff = Handoff {
            inbox: sender,
            load: load.clone(),
            capacity: settings.max_in_flight,
            lease: settings.lease,
        };
        let shared = Arc::new(Shared {
            store,
            client,
            retry: settings.retry,
            lease: settings.lease,
            disable_policy: settings.disable_policy,
            clock: Clock,
            jitter: rand::random::<f64>,
            endpoints: Mutex::new(Endpoints::default()),
            held: Mutex::new(HashMap::new()),
            per_endpoint: settings.per_endpoint,
            load,
        });
        Self {
            shared,
            settings,
            wake,
            inbox,
            handoff,
        }
    }

    pub fn handoff(&self) -> Handoff {
        self.handoff.clone()
    }

    /// Runs until `shutdown`, then lets attempts finish within the grace period and releases
    /// every claim it still holds.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let listener = {
            let store = self.shared.store.clone();
            let wake = self.wake.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move { store.listen_for_work(wake, stop).await })
        };
        let (outcomes, recorded) = unbounded_channel();
        let recorder = tokio::spawn(self.shared.clone().record_outcomes(recorded));
        let mut attempts = JoinSet::new();
        let mut failures = 0u32;
        let mut refused = Vec::new();
        // The queue is read only when it may hold work for us: at start, when woken, when the
        // next due time (or the poll interval) comes, and after an attempt ends while due work
        // was left behind for lack of room. Handed-over claims need no read.
        let mut read_queue = true;
        let mut left_behind = false;
        let mut next_read = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            while attempts.try_join_next().is_some() {
                read_queue |= left_behind;
            }
            while let Ok(claim) = self.inbox.try_recv() {
                refused.extend(self.start(claim, &mut attempts, &outcomes));
            }
            if !refused.is_empty() {
                self.give_back(&mut refused).await;
                left_behind = true;
            }
            if read_queue {
                let load = self.shared.load.load(Ordering::Relaxed);
                let free = self.settings.max_in_flight.saturating_sub(load);
                let wanted = u32::try_from(free)
                    .unwrap_or(u32::MAX)
                    .min(self.settings.batch_size);
                if wanted > 0 {
                    match self.claim(wanted, &mut attempts, &outcomes).await {
                        Ok(claimed) if claimed == wanted as usize => {
                            failures = 0;
                            continue;
                        }
                        Ok(_) => failures = 0,
                        Err(error) => {
                            failures += 1;
                            let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                            tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot claim deliveries");
                            tokio::select! {
                                () = shutdown.cancelled() => break,
                                () = tokio::time::sleep(backoff) => continue,
                            }
                        }
                    }
                }
                let (wait, due_now) = self.idle_wait().await;
                left_behind = due_now;
                next_read = tokio::time::Instant::now() + wait;
                read_queue = false;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => read_queue = true,
                () = tokio::time::sleep_until(next_read) => read_queue = true,
                Some(claim) = self.inbox.recv() => {
                    refused.extend(self.start(claim, &mut attempts, &outcomes));
                }
                Some(_) = attempts.join_next(), if !attempts.is_empty() => read_queue |= left_behind,
            }
        }
        self.give_back(&mut refused).await;
        // Claims handed over but not started are released with the rest.
        self.inbox.close();
        while let Ok(claim) = self.inbox.try_recv() {
            lock(&self.shared.held).insert(claim.id, claim.lease_token);
        }
        self.drain(attempts, outcomes, recorder).await;
        let _ = listener.await;
    }

    /// Claims up to `wanted` deliveries and starts an attempt for each; returns how many.
    async fn claim(
        &self,
        wanted: u32,
        attempts: &mut JoinSet<()>,
        outcomes: &UnboundedSender<AttemptRecord>,
    ) -> Result<usize, crate::store::StoreError> {
        let exclude: Vec<WebhookId> = lock(&self.shared.endpoints)
            .by_webhook
            .iter()
            .filter(|(_, e)| e.claimed >= self.settings.per_endpoint)
            .map(|(id, _)| *id)
            .collect();
        let now = self.shared.clock.now();
        let claims = self
            .shared
            .store
            .claim_due(
                now,
                after(now, self.settings.lease),
                wanted,
                self.claims_per_endpoint(),
                &exclude,
            )
            .await?;
        let count = claims.len();
        let mut refused = Vec::new();
        for claim in claims {
            refused.extend(self.start(claim, attempts, outcomes));
        }
        self.give_back(&mut refused).await;
        Ok(count)
    }

    /// Most deliveries of one endpoint a claim takes: enough to keep its slots busy while the
    /// next claim runs, not so many that they wait long for a slot.
    fn claims_per_endpoint(&self) -> u32 {
        u32::try_from(2 * self.settings.per_endpoint).unwrap_or(u32::MAX)
    }

    /// Starts the attempt of a claim, or refuses it when its
    /// endpoint already has four times its concurrency in hand: claims waiting behind a slow
    /// endpoint would otherwise fill the worker and starve everyone else.
    fn start(
        &self,
        claim: ClaimedDelivery,
        attempts: &mut JoinSet<()>,
        outcomes: &UnboundedSender<AttemptRecord>,
    ) -> Option<(DeliveryId, Uuid)> {
        let permits = {
            let mut endpoints = lock(&self.shared.endpoints);
            let endpoint = endpoints
                .by_webhook
                .entry(claim.webhook_id)
                .or_insert_with(|| Endpoint {
                    permits: Arc::new(Semaphore::new(self.settings.per_endpoint)),
                    claimed: 0,
                });
            if endpoint.claimed >= 4 * self.settings.per_endpoint {
                return Some((claim.id, claim.lease_token));
            }
            if endpoint.claimed < self.settings.per_endpoint {
                self.shared.load.fetch_add(1, Ordering::Relaxed);
            }
            endpoint.claimed += 1;
            endpoint.permits.clone()
        };
        lock(&self.shared.held).insert(claim.id, claim.lease_token);
        let span = tracing::info_span!(
            "attempt",
            delivery_id = %claim.id,
            webhook_id = %claim.webhook_id,
            project_id = %claim.project_id,
            attempt = claim.attempt_number,
        );
        let shared = self.shared.clone();
        let outcomes = outcomes.clone();
        attempts
            .spawn(async move { shared.attempt(claim, permits, outcomes).await }.instrument(span));
        None
    }

    /// Puts refused claims back in the queue, due now; a busy endpoint is left out of claims
    /// until it has room again.
    async fn give_back(&self, refused: &mut Vec<(DeliveryId, Uuid)>) {
        if refused.is_empty() {
            return;
        }
        let now = self.shared.clock.now();
        if let Err(error) = self.shared.store.release_claims(refused, now).await {
            tracing::warn!(%error, "cannot give claims back; they are retried when their leases end");
        }
        refused.clear();
    }

    /// How long to wait before reading the queue again unprompted (until the next due
    /// delivery, at most the poll interval), and whether due work is waiting that we had no
    /// room for: it belongs to busy endpoints, and a finishing attempt may make room.
    async fn idle_wait(&self) -> (Duration, bool) {
        let poll = self.settings.poll_interval;
        match self.shared.store.next_due_at().await {
            Ok(Some(due)) => {
                let until = (due - self.shared.clock.now()).to_std().unwrap_or_default();
                if until.is_zero() {
                    (poll, true)
                } else {
                    (until.min(poll), false)
                }
            }
            Ok(None) => (poll, false),
            Err(_) => (poll, true),
        }
    }

    async fn drain(
        &self,
        mut attempts: JoinSet<()>,
        outcomes: UnboundedSender<AttemptRecord>,
        recorder: tokio::task::JoinHandle<()>,
    ) {
        let in_flight = attempts.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "letting attempts in flight finish");
        }
        let finished = tokio::time::timeout(self.settings.shutdown_grace, async {
            while attempts.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                unfinished = attempts.len(),
                "grace period over; abandoning attempts (their deliveries are retried later)"
            );
            attempts.abort_all();
            while attempts.join_next().await.is_some() {}
        }
        // Every attempt has ended and dropped its sender: the recorder writes what is left.
        drop(outcomes);
        let _ = recorder.await;
        let held: Vec<(DeliveryId, Uuid)> = lock(&self.shared.held).drain().collect();
        if held.is_empty() {
            return;
        }
        let now = self.shared.clock.now();
        match self.shared.store.release_claims(&held, now).await {
            Ok(()) => tracing::info!(released = held.len(), "released unfinished claims"),
            Err(error) => {
                tracing::warn!(%error, "could not release claims; their leases will expire")
            }
        }
    }
}

impl Shared {
    async fn attempt(
        &self,
        mut claim: ClaimedDelivery,
        permits: Arc<Semaphore>,
        outcomes: UnboundedSender<AttemptRecord>,
    ) {
        if let Some(permit) = self.take_turn(&mut claim, permits).await {
            instruments::attempt_started();
            let started = Instant::now();
            let record = self.send(&claim).await;
            drop(permit);
            instruments::attempt_finished(record.result.label(), started.elapsed());
            tracing::info!(
                status = record.response_status,
                error = record.error.as_deref(),
                duration_ms = record.duration_ms,
                outcome = ?record.result,
                "delivery attempt"
            );
            // The claim stays held until its outcome is written, so a shutdown in between
            // releases it rather than losing it.
            let _ = outcomes.send(record);
        } else {
            self.release_hold(claim.id, claim.lease_token);
        }
        self.finish(&claim);
    }

    /// Writes attempt outcomes in batches: whatever finished while the previous batch was
    /// being written goes into the next one, so a busy worker writes fewer, larger batches and
    /// an idle one writes each outcome at once.
    async fn record_outcomes(self: Arc<Self>, mut recorded: UnboundedReceiver<AttemptRecord>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while recorded.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            match self.store.record_attempts(&batch).await {
                Ok(outcomes) => {
                    for (record, outcome) in batch.iter().zip(outcomes) {
                        match outcome {
                            Recorded::Recorded => {}
                            Recorded::Disabled(reason) => tracing::warn!(
                                webhook_id = %record.webhook_id,
                                %reason,
                                "webhook disabled; its pending deliveries are cancelled"
                            ),
                            Recorded::Stale => tracing::info!(
                                delivery_id = %record.delivery_id,
                                "the delivery changed hands meanwhile; outcome not recorded"
                            ),
                        }
                    }
                }
                Err(error) => tracing::warn!(
                    %error,
                    attempts = batch.len(),
                    "cannot record attempts; their deliveries are tried again when their leases end"
                ),
            }
            for record in batch.drain(..) {
                self.release_hold(record.delivery_id, record.lease_token);
            }
        }
    }

    /// Forgets a claim that needs no release at shutdown.
    fn release_hold(&self, id: DeliveryId, lease_token: Uuid) {
        let mut held = lock(&self.held);
        // A newer claim of the same delivery keeps its entry.
        if held.get(&id) == Some(&lease_token) {
            held.remove(&id);
        }
    }

    /// Waits for a slot of the endpoint. A long wait may outlast a rotation, a deletion or the
    /// lease itself, so after one the claim is renewed and the webhook read again; `None` when
    /// the delivery is no longer ours to send.
    async fn take_turn(
        &self,
        claim: &mut ClaimedDelivery,
        permits: Arc<Semaphore>,
    ) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        let waiting_since = Instant::now();
        let permit = permits.acquire_owned().await.ok()?;
        if waiting_since.elapsed() < RENEW_AFTER_WAIT.min(self.lease / 4) {
            return Some(permit);
        }
        let now = self.clock.now();
        match self
            .store
            .renew_claim(claim.id, claim.lease_token, now, after(now, self.lease))
            .await
        {
            Ok(Some(target)) => {
                claim.url = target.url;
                claim.secret = target.secret;
                claim.previous_secret = target.previous_secret;
                Some(permit)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "cannot renew the claim; the delivery is retried later");
                None
            }
        }
    }

    /// Signs and sends one attempt and decides what follows it.
    async fn send(&self, claim: &ClaimedDelivery) -> AttemptRecord {
        let started_at = self.clock.now();
        let body = claim.payload.as_bytes();
        let started = Instant::now();
        let outcome = self
            .client
            .send(
                &claim.url,
                signed_headers(claim, started_at.timestamp()),
                body.to_vec(),
            )
            .await;
        let duration_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let finished_at = self.clock.now();
        let result = if outcome.succeeded() {
            AttemptResult::Succeeded
        } else if outcome.status == Some(410) {
            // Gone is the receiver saying no later attempt will succeed either.
            AttemptResult::Failed
        } else {
            match self
                .retry
                .delay_after(claim.attempt_number, (self.jitter)())
            {
                Some(delay) => AttemptResult::RetryAt(after(finished_at, delay)),
                None => AttemptResult::Failed,
            }
        };
        AttemptRecord {
            delivery_id: claim.id,
            webhook_id: claim.webhook_id,
            lease_token: claim.lease_token,
            attempt_number: claim.attempt_number,
            started_at,
            duration_ms,
            response_status: outcome.status,
            response_body: outcome.body_excerpt,
            error: outcome.error,
            result,
            finished_at,
            disable_policy: self.disable_policy,
        }
    }

    fn finish(&self, claim: &ClaimedDelivery) {
        let mut endpoints = lock(&self.endpoints);
        if let Some(endpoint) = endpoints.by_webhook.get_mut(&claim.webhook_id) {
            if endpoint.claimed <= self.per_endpoint {
                self.load.fetch_sub(1, Ordering::Relaxed);
            }
            endpoint.claimed = endpoint.claimed.saturating_sub(1);
            if endpoint.claimed == 0 {
                endpoints.by_webhook.remove(&claim.webhook_id);
            }
        }
    }
}

/// The DevTune and Standard Webhooks headers of one attempt, signed at `timestamp`.
fn signed_headers(claim: &ClaimedDelivery, timestamp: i64) -> HeaderMap {
    let body = claim.payload.as_bytes();
    let key = claim.secret.expose().as_bytes();
    let message_id = claim.id.to_string();
    // During a rotation's grace period the old secret signs too, as Standard Webhooks allows;
    // X-DevTune-Signature has room for one signature, so it carries the new secret's.
    let mut standard_signatures = standard_signature(key, &message_id, timestamp, body);
    if let Some(previous) = &claim.previous_secret {
        standard_signatures.push(' ');
        standard_signatures.push_str(&standard_signature(
            previous.expose().as_bytes(),
            &message_id,
            timestamp,
            body,
        ));
    }
    headers(&[
        ("content-type", "application/json".to_owned()),
        ("user-agent", USER_AGENT.to_owned()),
        ("x-devtune-signature", devtune_signature(key, body)),
        ("x-devtune-event", claim.event_type.clone()),
        ("x-devtune-delivery", message_id.clone()),
        ("webhook-id", message_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", standard_signatures),
    ])
}
