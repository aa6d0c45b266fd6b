//! The delivery worker: takes claims (handed over at publish or claimed from the queue),
//! admits them within its limits, runs each attempt, and has the outcomes recorded.

mod admission;
mod attempt;
mod recorder;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::client::DeliveryClient;
use super::queue::{Handover, Holdings, Queue, handover};
use super::verdict::Verdicts;
use crate::domain::{DeliveryId, HealthPolicy, RetrySchedule};
use crate::store::{AttemptRecord, ClaimedDelivery, StoreError};
pub use admission::Admission;
use attempt::Attempts;

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
    /// The service's retry schedule, for webhooks without their own.
    pub retry: RetrySchedule,
    /// How long a delivery may be throttled before it fails.
    pub throttle_give_up: Duration,
    /// The longest the worker sleeps without looking for due work.
    pub poll_interval: Duration,
    /// How long attempts in flight may run on after shutdown begins.
    pub shutdown_grace: Duration,
    /// When failures disable an endpoint.
    pub health_policy: HealthPolicy,
}

/// The worker's knobs as the configuration gives them: plain numbers and units in their names.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub concurrency: usize,
    pub endpoint_concurrency: usize,
    pub lease_ms: u64,
    /// An explicit schedule wins; without one, a doubling schedule when either of the older
    /// settings is given; without any, the default schedule.
    pub retry_schedule: Option<RetrySchedule>,
    pub retry_max: Option<u32>,
    pub retry_base_ms: Option<u64>,
    pub throttle_give_up: Duration,
    pub poll_interval_ms: u64,
    pub shutdown_grace_ms: u64,
    pub disable_after_hours: u32,
    pub disable_min_failures: u32,
    pub failing_after: u32,
}

impl WorkerSettings {
    /// The rules a receiver's answers are judged by, pushed or pulled alike.
    pub fn verdicts(&self) -> Verdicts {
        Verdicts {
            retry: self.retry.clone(),
            throttle_give_up: self.throttle_give_up,
            per_endpoint: self.per_endpoint,
            health_policy: self.health_policy,
            jitter: rand::random::<f64>,
        }
    }
}

impl From<WorkerOptions> for WorkerSettings {
    fn from(options: WorkerOptions) -> Self {
        WorkerSettings {
            batch_size: 100,
            max_in_flight: options.concurrency,
            per_endpoint: options.endpoint_concurrency,
            lease: Duration::from_millis(options.lease_ms),
            retry: match (
                options.retry_schedule,
                options.retry_base_ms,
                options.retry_max,
            ) {
                (Some(schedule), _, _) => schedule,
                (None, None, None) => RetrySchedule::default(),
                (None, base, retries) => RetrySchedule::doubling(
                    Duration::from_millis(base.unwrap_or(30_000)),
                    retries.unwrap_or(3),
                ),
            },
            throttle_give_up: options.throttle_give_up,
            poll_interval: Duration::from_millis(options.poll_interval_ms.max(1)),
            shutdown_grace: Duration::from_millis(options.shutdown_grace_ms),
            health_policy: HealthPolicy {
                after: TimeDelta::hours(i64::from(options.disable_after_hours)),
                min_failures: i64::from(options.disable_min_failures),
                failing_after: i64::from(options.failing_after),
            },
        }
    }
}

pub struct Worker {
    queue: Arc<Queue>,
    settings: WorkerSettings,
    admission: Arc<Admission>,
    holdings: Arc<Holdings>,
    attempts: Arc<Attempts>,
    inbox: UnboundedReceiver<ClaimedDelivery>,
    handover: Handover,
}

/// When the worker reads the queue next. It reads only when the queue may hold work for it:
/// at start, when woken, when the next due time (or the poll interval) comes, and after an
/// attempt ends while due work was left behind for lack of room. Handed-over claims need no
/// read.
struct Reading {
    now: bool,
    left_behind: bool,
    /// The last read found nothing it could take: what is due belongs to full endpoints or
    /// projects at their share.
    came_back_empty: bool,
    /// The last look found no pending delivery at all, and nothing was queued, handed over or
    /// attempted since: an empty claim then needs no second statement to say when to look
    /// again, so an idle worker reads once per poll interval.
    idle: bool,
    next: tokio::time::Instant,
    failures: u32,
}

/// After a read that found nothing it could take, the next one waits at least this long
/// rather than following every attempt that ends: each read scans the due rows it skips.
const REREAD_PAUSE: Duration = Duration::from_millis(100);

impl Reading {
    fn attempt_ended(&mut self) {
        // Its outcome may schedule a retry the next look must see.
        self.idle = false;
        if !self.left_behind {
            return;
        }
        if self.came_back_empty {
            self.next = self.next.min(tokio::time::Instant::now() + REREAD_PAUSE);
        } else {
            self.now = true;
        }
    }

    /// Reads again after `wait`, or as soon as an attempt ends when due work was left behind.
    fn wait(&mut self, wait: Duration, left_behind: bool) {
        self.left_behind = left_behind;
        self.next = tokio::time::Instant::now() + wait;
        self.now = false;
    }

    /// Waits before reading again after a failed read, longer after each failure in a row.
    async fn back_off(&mut self, error: &StoreError) {
        self.failures += 1;
        let backoff = Duration::from_millis(100 * 2u64.pow(self.failures.min(6)));
        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot claim deliveries");
        tokio::time::sleep(backoff).await;
    }
}

/// What one read of the queue found.
enum Claimed {
    /// As many as asked for: more may be due.
    Full,
    Partial,
    Nothing,
}

impl Worker {
    pub fn new(queue: Arc<Queue>, client: DeliveryClient, settings: WorkerSettings) -> Self {
        let admission = Admission::new(settings.max_in_flight, settings.per_endpoint);
        let holdings = Arc::new(Holdings::default());
        let (handover, inbox) = handover();
        let attempts = Arc::new(Attempts {
            queue: queue.clone(),
            holdings: holdings.clone(),
            client,
            verdicts: settings.verdicts(),
            lease: settings.lease,
            clock: queue.clock().clone(),
        });
        Self {
            queue,
            settings,
            admission,
            holdings,
            attempts,
            inbox,
            handover,
        }
    }

    /// What a publisher needs to hand this worker fresh deliveries: its admission (to see
    /// whether it has room) and its inbox.
    pub fn handover(&self) -> (Arc<Admission>, Handover) {
        (self.admission.clone(), self.handover.clone())
    }

    /// Runs until `shutdown`, then lets attempts finish within the grace period and releases
    /// every claim it still holds.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (outcomes, finished) = unbounded_channel();
        let recorder = tokio::spawn(recorder::record_outcomes(
            self.queue.clone(),
            self.holdings.clone(),
            self.admission.clone(),
            finished,
        ));
        let mut attempts = JoinSet::new();
        let mut reading = Reading {
            now: true,
            left_behind: false,
            came_back_empty: false,
            idle: false,
            next: tokio::time::Instant::now(),
            failures: 0,
        };
        while !shutdown.is_cancelled() {
            self.start_what_arrived(&mut attempts, &outcomes, &mut reading)
                .await;
            if reading.now {
                match self.read_queue(&mut attempts, &outcomes).await {
                    Ok(Claimed::Full) => {
                        reading.failures = 0;
                        reading.came_back_empty = false;
                        continue;
                    }
                    Ok(found) => {
                        reading.failures = 0;
                        reading.came_back_empty = matches!(found, Claimed::Nothing);
                        reading.idle &= reading.came_back_empty && attempts.is_empty();
                    }
                    Err(error) => {
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = reading.back_off(&error) => continue,
                        }
                    }
                }
                let (wait, due_now) = if reading.idle {
                    (self.settings.poll_interval, false)
                } else {
                    let (wait, due_now, empty) = self.idle_wait().await;
                    reading.idle = empty && attempts.is_empty();
                    (wait, due_now)
                };
                reading.wait(wait, due_now);
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.queue.woken() => {
                    reading.now = true;
                    reading.idle = false;
                }
                () = tokio::time::sleep_until(reading.next) => reading.now = true,
                Some(claim) = self.inbox.recv() => {
                    reading.idle = false;
                    let mut refused: Vec<_> = self.start(claim, &mut attempts, &outcomes).into_iter().collect();
                    self.left_behind(&mut refused, &mut reading).await;
                }
                Some(_) = attempts.join_next(), if !attempts.is_empty() => reading.attempt_ended(),
            }
        }
        // Claims handed over but not started are released with the rest.
        self.inbox.close();
        while let Ok(claim) = self.inbox.try_recv() {
            self.holdings.hold(&claim);
        }
        self.drain(attempts, outcomes, recorder).await;
    }

    /// Notes the attempts that ended and starts the claims handed over meanwhile.
    async fn start_what_arrived(
        &mut self,
        attempts: &mut JoinSet<()>,
        outcomes: &UnboundedSender<AttemptRecord>,
        reading: &mut Reading,
    ) {
        while attempts.try_join_next().is_some() {
            reading.attempt_ended();
        }
        let mut refused = Vec::new();
        while let Ok(claim) = self.inbox.try_recv() {
            refused.extend(self.start(claim, attempts, outcomes));
        }
        self.left_behind(&mut refused, reading).await;
    }

    /// Gives back handed-over claims there was no room for; they are due now, so the queue is
    /// read again once an attempt ends.
    async fn left_behind(&self, refused: &mut Vec<(DeliveryId, Uuid)>, reading: &mut Reading) {
        if !refused.is_empty() {
            self.give_back(refused).await;
            reading.left_behind = true;
        }
    }

    /// Claims as many deliveries as there is room for and starts an attempt for each.
    async fn read_queue(
        &self,
        attempts: &mut JoinSet<()>,
        outcomes: &UnboundedSender<AttemptRecord>,
    ) -> Result<Claimed, StoreError> {
        let wanted = u32::try_from(self.admission.room())
            .unwrap_or(u32::MAX)
            .min(self.settings.batch_size);
        if wanted == 0 {
            return Ok(Claimed::Partial);
        }
        let claims = self
            .queue
            .claim(
                wanted,
                self.admission.claims_per_endpoint(),
                &self.admission.busy_endpoints(),
                &self.admission.busy_projects(),
            )
            .await?;
        let found = match claims.len() {
            0 => Claimed::Nothing,
            n if n == wanted as usize => Claimed::Full,
            _ => Claimed::Partial,
        };
        let mut refused = Vec::new();
        for claim in claims {
            refused.extend(self.start(claim, attempts, outcomes));
        }
        self.give_back(&mut refused).await;
        Ok(found)
    }

    /// Starts the attempt of a claim, or refuses it (to go back to the queue) when admission
    /// says its endpoint already holds as many claims as it may.
    fn start(
        &self,
        claim: ClaimedDelivery,
        attempts: &mut JoinSet<()>,
        outcomes: &UnboundedSender<AttemptRecord>,
    ) -> Option<(DeliveryId, Uuid)> {
        let limit = self.attempts.concurrency_of(&claim);
        let Some(ticket) = self
            .admission
            .admit(claim.webhook_id, claim.project_id, limit)
        else {
            return Some((claim.id, claim.lease_token));
        };
        self.holdings.hold(&claim);
        let span = tracing::info_span!(
            "attempt",
            otel.kind = "client",
            delivery_id = %claim.id,
            webhook_id = %claim.webhook_id,
            project_id = %claim.project_id,
            attempt = claim.attempt_number,
        );
        // The attempt continues the trace of the request that published its event.
        if let Some(traceparent) = &claim.trace_context {
            crate::telemetry::continue_stored_trace(&span, traceparent);
        }
        let (shared, outcomes) = (self.attempts.clone(), outcomes.clone());
        attempts.spawn(async move { shared.run(claim, ticket, outcomes).await }.instrument(span));
        None
    }

    /// Puts refused claims back in the queue, due now; a busy endpoint is left out of claims
    /// until it has room again.
    async fn give_back(&self, refused: &mut Vec<(DeliveryId, Uuid)>) {
        if let Err(error) = self.queue.release(refused).await {
            tracing::warn!(%error, "cannot give claims back; they are retried when their leases end");
        }
        refused.clear();
    }

    /// How long to wait before reading the queue again unprompted (until the next due
    /// delivery, at most the poll interval), whether due work is waiting that we had no room
    /// for (it belongs to busy endpoints, and a finishing attempt may make room), and whether
    /// nothing at all is pending.
    async fn idle_wait(&self) -> (Duration, bool, bool) {
        let poll = self.settings.poll_interval;
        match self.queue.next_due_in().await {
            Ok(Some(until)) if until.is_zero() => (poll, true, false),
            Ok(Some(until)) => (until.min(poll), false, false),
            Ok(None) => (poll, false, true),
            Err(_) => (poll, true, false),
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
        let held = self.holdings.take_all();
        if held.is_empty() {
            return;
        }
        match self.queue.release(&held).await {
            Ok(()) => tracing::info!(released = held.len(), "released unfinished claims"),
            Err(error) => {
                tracing::warn!(%error, "could not release claims; their leases will expire")
            }
        }
    }
}
