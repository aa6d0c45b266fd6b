//! One attempt: wait for its rate-limit slot and its turn (renewing the claim after a long
//! wait), sign and send, and decide what follows from the receiver's answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::admission::{Ticket, Turn};
use crate::clock::Clock;
use crate::delivery::client::{DeliveryClient, SendOutcome, headers_json};
use crate::delivery::queue::{Holdings, Queue};
use crate::delivery::signer::{Message, signed_headers};
use crate::delivery::verdict::{Attempted, Exchange, Verdicts};
use crate::instruments;
use crate::store::cipher::MissingKey;
use crate::store::{AttemptRecord, ClaimedDelivery};

/// An attempt that waited longer than this for its turn renews its claim first and picks up a
/// rotated secret or a deletion that happened meanwhile.
const RENEW_AFTER_WAIT: Duration = Duration::from_secs(1);

/// What every attempt shares.
pub(super) struct Attempts {
    pub queue: Arc<Queue>,
    pub holdings: Arc<Holdings>,
    pub client: DeliveryClient,
    pub verdicts: Verdicts,
    pub lease: Duration,
    pub clock: Clock,
}

impl Attempts {
    /// The attempts in flight a claim's webhook allows now: its maximum, adapted to its
    /// receiver.
    pub(super) fn concurrency_of(&self, claim: &ClaimedDelivery) -> usize {
        let max = self.verdicts.max_concurrency(claim.max_concurrency);
        let now = claim
            .effective_concurrency
            .unwrap_or(max)
            .clamp(1, max.max(1));
        usize::try_from(now).unwrap_or(usize::MAX)
    }

    /// Runs the attempt of an admitted claim and hands its outcome to the recorder; the claim
    /// stays held until that outcome is written, so a shutdown in between releases it rather
    /// than losing it.
    pub(super) async fn run(
        &self,
        mut claim: ClaimedDelivery,
        ticket: Ticket,
        outcomes: UnboundedSender<AttemptRecord>,
    ) {
        let Some(turn) = self.take_turn(&mut claim, &ticket).await else {
            self.holdings.let_go(claim.id, claim.lease_token);
            return;
        };
        instruments::attempt_started();
        let started = Instant::now();
        let (record, detail) = self.send(&claim).await;
        if let Some(hold) = record.hold {
            // Hold back the webhook's other attempts now, not only once this is recorded.
            let wait = (hold.until - record.finished_at)
                .to_std()
                .unwrap_or_default();
            ticket.hold(wait);
        }
        drop(turn);
        drop(ticket);
        instruments::attempt_finished(record.result.label(), started.elapsed());
        tracing::info!(
            status = record.response_status,
            error = record.error.as_deref(),
            detail = detail.as_deref(),
            duration_ms = record.duration_ms,
            outcome = record.result.label(),
            "delivery attempt"
        );
        let _ = outcomes.send(record);
    }

    /// Waits for the send slot a rate-limited webhook gave this delivery.
    async fn wait_for_slot(&self, claim: &ClaimedDelivery) {
        let Some(slot) = claim.not_before else {
            return;
        };
        if let Ok(wait) = (slot - self.clock.now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits for a turn. A long wait may outlast a rotation, a deletion or the lease itself,
    /// so after one the claim is renewed; `None` when the delivery is no longer ours to send.
    async fn take_turn(&self, claim: &mut ClaimedDelivery, ticket: &Ticket) -> Option<Turn> {
        let waiting_since = Instant::now();
        self.wait_for_slot(claim).await;
        let turn = match ticket.try_turn() {
            Some(turn) => turn,
            None => ticket.turn().await,
        };
        if waiting_since.elapsed() < RENEW_AFTER_WAIT.min(self.lease / 4) {
            return Some(turn);
        }
        match self.queue.renew(claim).await {
            Ok(true) => Some(turn),
            Ok(false) => None,
            Err(error) => {
                tracing::warn!(%error, "cannot renew the claim; the delivery is retried later");
                None
            }
        }
    }

    /// Signs and sends one attempt and decides what follows it; with the record, the full
    /// error chain for the log when the record carries only its kind.
    async fn send(&self, claim: &ClaimedDelivery) -> (AttemptRecord, Option<String>) {
        let started_at = self.clock.now();
        let started = Instant::now();
        let (outcome, request_headers): (SendOutcome, _) = match &claim.signing {
            Ok(secrets) => {
                let message = Message {
                    id: claim.id,
                    event_type: &claim.event_type,
                    body: claim.payload.as_bytes(),
                };
                let mut headers = signed_headers(&message, secrets, started_at.timestamp());
                crate::telemetry::propagate(&mut headers);
                let sent = headers_json(&headers, &secrets.headers);
                let outcome = self
                    .client
                    .send(&claim.url, headers, claim.payload.as_bytes().to_vec())
                    .await;
                (outcome, Some(sent))
            }
            Err(missing) => (unsigned(claim, missing), None),
        };
        let exchange = Exchange {
            started_at,
            finished_at: self.clock.now(),
            duration_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
            status: outcome.status,
            body_excerpt: outcome.body_excerpt,
            error: outcome.error,
            timed_out: outcome.timed_out,
            retry_after: outcome.retry_after,
            request_headers,
        };
        let record = self.verdicts.judge(&Attempted::claim(claim), exchange);
        (record, outcome.detail)
    }
}

/// An attempt that cannot be signed fails unsent; the operator, not the tenant, can fix it.
fn unsigned(claim: &ClaimedDelivery, missing: &MissingKey) -> SendOutcome {
    tracing::error!(
        webhook_id = %claim.webhook_id,
        delivery_id = %claim.id,
        key_id = %missing.key_id,
        "cannot sign a delivery: the webhook's signing secret is {missing}; add that key to \
         HOOKRELAY_ENCRYPTION_OLD_KEYS (or HOOKRELAY_ENCRYPTION_KEY)"
    );
    SendOutcome::failed(format!(
        "not sent: the webhook's signing secret is {missing}; the service's operator must \
         configure that key"
    ))
}
