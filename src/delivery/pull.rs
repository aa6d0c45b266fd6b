//! Pull delivery: a poller leases a pull webhook's due deliveries, each signed exactly as a
//! push would send it, and acknowledges each with what its own receiver answered; an
//! acknowledgement is judged and recorded as the attempt a push would have made, so retries,
//! endpoint health, notices and the delivery log work as they do for push.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::client::KEPT_BYTES;
use super::queue::Queue;
use super::signer::{Message, signed_headers};
use super::verdict::{Attempted, Exchange, Verdicts};
use crate::domain::{AttemptResult, DeliveryId, EventId, ProjectId, WebhookId, after};
use crate::instruments;
use crate::store::{ClaimedDelivery, Reason, Recorded, StoreError, StoreResult};

/// A poll that finds due deliveries it may not lease (its webhook is paused or held back by a
/// throttling answer) looks again after this long rather than at once.
const RECHECK: Duration = Duration::from_secs(1);

/// What one poll asks for.
#[derive(Debug, Clone, Copy)]
pub struct PollRequest {
    pub project: ProjectId,
    pub webhook: WebhookId,
    /// Most deliveries to lease.
    pub limit: u32,
    /// How long to wait for a delivery to become due when none is.
    pub wait: Duration,
    /// How long the poller holds what it leases.
    pub lease: Duration,
}

/// One leased delivery: the request a push would send, and the lease to acknowledge it under.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub event_type: String,
    pub attempt: u32,
    pub lease_token: Uuid,
    pub lease_until: DateTime<Utc>,
    /// The body exactly as a push sends and signs it.
    pub body: String,
    /// The headers a push sends, signatures and the webhook's own headers included.
    pub headers: Vec<(String, String)>,
}

/// What a poller's receiver made of one delivery.
#[derive(Debug, Clone)]
pub struct Ack {
    pub delivery_id: DeliveryId,
    pub lease_token: Uuid,
    pub duration_ms: u32,
    pub answer: AckAnswer,
}

#[derive(Debug, Clone)]
pub enum AckAnswer {
    /// The receiver answered with this status.
    Status {
        status: u16,
        excerpt: Option<String>,
        retry_after: Option<String>,
    },
    /// The receiver could not be reached or did not answer.
    Error(String),
}

/// What became of one acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// Recorded as an attempt, with what follows it.
    Recorded(AttemptResult),
    /// The caller no longer holds the lease (it ended, another poll took the delivery, or it
    /// never existed): nothing was recorded.
    NotHeld,
}

pub struct Puller {
    queue: Arc<Queue>,
    verdicts: Verdicts,
    /// Cancelled when the service stops: waiting polls answer at once, empty.
    stopping: CancellationToken,
}

impl Puller {
    pub fn new(queue: Arc<Queue>, verdicts: Verdicts, stopping: CancellationToken) -> Self {
        Self {
            queue,
            verdicts,
            stopping,
        }
    }

    /// Leases up to `limit` due deliveries, waiting up to `wait` for one when none is due.
    /// Fails with `NotFound` for a missing webhook, `Conflict` for a push webhook or one that
    /// endpoint health disabled, and `MissingKey` when its secret cannot be opened to sign.
    pub async fn poll(&self, request: PollRequest) -> StoreResult<Vec<Pulled>> {
        let store = self.queue.store();
        if store.pull_webhook(request.project, request.webhook).await? {
            return Err(StoreError::Conflict(Reason::WebhookDisabled));
        }
        let deadline = tokio::time::Instant::now() + request.wait;
        let wake = self.queue.poller_wake(request.webhook);
        loop {
            // Taken before the queue is read, so a publish committed meanwhile still wakes us.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = self.queue.clock().now();
            let lease_until = after(now, request.lease);
            let claims = store
                .lease_pulled(request.webhook, now, lease_until, request.limit)
                .await?;
            if !claims.is_empty() {
                return self.sign(claims, now, lease_until).await;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.stopping.is_cancelled() {
                return Ok(Vec::new());
            }
            let until_due = store.next_pull_due(request.webhook).await?.map(|due| {
                (due - self.queue.clock().now())
                    .to_std()
                    .unwrap_or_default()
            });
            let nap = match until_due {
                // Due, yet nothing could be leased: the webhook is paused or held back.
                Some(wait) if wait.is_zero() => RECHECK,
                Some(wait) => wait,
                None => left,
            };
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(nap.min(left)) => {}
                () = self.stopping.cancelled() => return Ok(Vec::new()),
            }
        }
    }

    /// Signs leased deliveries as a push would at `now`. Should any secret be unreadable, the
    /// whole lease is given back and the poll fails: the operator must configure its key.
    async fn sign(
        &self,
        claims: Vec<ClaimedDelivery>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<Pulled>> {
        if let Some(Err(missing)) = claims.iter().map(|c| &c.signing).find(|s| s.is_err()) {
            let missing = missing.clone();
            let leased: Vec<_> = claims.iter().map(|c| (c.id, c.lease_token)).collect();
            self.queue.release(&leased).await?;
            return Err(StoreError::MissingKey(missing));
        }
        instruments::deliveries_pulled(claims.len());
        Ok(claims
            .into_iter()
            .filter_map(|claim| {
                let secrets = claim.signing.as_ref().ok()?;
                let message = Message {
                    id: claim.id,
                    event_type: &claim.event_type,
                    body: claim.payload.as_bytes(),
                };
                let headers = signed_headers(&message, secrets, now.timestamp())
                    .iter()
                    .filter_map(|(name, value)| {
                        Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                    })
                    .collect();
                Some(Pulled {
                    delivery_id: claim.id,
                    event_id: claim.event_id,
                    event_type: claim.event_type,
                    attempt: claim.attempt_number,
                    lease_token: claim.lease_token,
                    lease_until,
                    body: claim.payload,
                    headers,
                })
            })
            .collect())
    }

    /// Records each acknowledgement still held under its lease as an attempt, judged as a
    /// push attempt with the same answer would be; the others change nothing. One result per
    /// acknowledgement, in order.
    pub async fn ack(
        &self,
        project: ProjectId,
        webhook: WebhookId,
        acks: &[Ack],
    ) -> StoreResult<Vec<Acked>> {
        let store = self.queue.store();
        store.pull_webhook(project, webhook).await?;
        let now = self.queue.clock().now();
        let leases: Vec<(DeliveryId, Uuid)> = acks
            .iter()
            .map(|a| (a.delivery_id, a.lease_token))
            .collect();
        let held: HashMap<DeliveryId, _> = store
            .held_pulls(webhook, &leases, now)
            .await?
            .into_iter()
            .map(|held| (held.id, held))
            .collect();
        let records: Vec<_> = acks
            .iter()
            .filter_map(|ack| {
                let held = held.get(&ack.delivery_id)?;
                Some(
                    self.verdicts
                        .judge(&Attempted::pulled(held, webhook), exchange(ack, now)),
                )
            })
            .collect();
        let recorded = self.queue.record(&records).await?;
        let mut outcome: HashMap<DeliveryId, Acked> = HashMap::new();
        for (record, result) in records.iter().zip(&recorded.outcomes) {
            if let Recorded::Disabled(reason) = result {
                tracing::warn!(%webhook, %reason, "webhook disabled; its pending deliveries are cancelled");
            }
            if *result != Recorded::Stale {
                instruments::attempt_acknowledged(record.result.label());
                outcome.insert(record.delivery_id, Acked::Recorded(record.result));
            }
        }
        self.queue.announce_notices(&recorded.notices);
        Ok(acks
            .iter()
            .map(|ack| {
                outcome
                    .get(&ack.delivery_id)
                    .copied()
                    .unwrap_or(Acked::NotHeld)
            })
            .collect())
    }
}

/// The exchange an acknowledgement reports, as having ended at `now`.
fn exchange(ack: &Ack, now: DateTime<Utc>) -> Exchange {
    let started_at = now - TimeDelta::milliseconds(i64::from(ack.duration_ms));
    let mut exchange = Exchange {
        started_at,
        finished_at: now,
        duration_ms: ack.duration_ms,
        ..Exchange::default()
    };
    match &ack.answer {
        AckAnswer::Status {
            status,
            excerpt,
            retry_after,
        } => {
            exchange.status = Some(*status);
            exchange.body_excerpt = excerpt.as_deref().map(|text| kept(text).to_owned());
            exchange.retry_after = retry_after.clone();
        }
        AckAnswer::Error(error) => exchange.error = Some(error.clone()),
    }
    exchange
}

/// The start of a receiver's answer that the delivery log keeps, as a push attempt keeps it.
fn kept(text: &str) -> &str {
    let mut end = text.len().min(KEPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_cut_where_a_push_would_cut_it_and_never_inside_a_character() {
        let long = "é".repeat(KEPT_BYTES);
        let cut = kept(&long);
        assert!(cut.len() <= KEPT_BYTES && cut.len() >= KEPT_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(kept("ok"), "ok");
    }
}
