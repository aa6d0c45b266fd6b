//! Replaying one delivery to another URL (staging, a laptop's tunnel): its exact body and
//! headers, signed afresh with its webhook's current secret, sent once. The delivery, its
//! attempts and its webhook's stats stay as they are.

use std::sync::Arc;
use std::time::Instant;

use super::client::{DeliveryClient, SendOutcome, headers_json};
use super::signer::{Message, signed_headers};
use crate::clock::Clock;
use crate::domain::{DeliveryId, EventId, ProjectId, WebhookKind};
use crate::store::cipher::SigningSecrets;
use crate::store::{Store, StoreError, StoreResult};

/// What a replay sent and got back.
pub struct Replayed {
    pub event_id: EventId,
    pub outcome: SendOutcome,
    pub duration_ms: u32,
    /// The headers sent, as the delivery log keeps them.
    pub request_headers: String,
}

/// A delivery read for a replay, ready to be signed and sent.
pub struct Replay {
    delivery: DeliveryId,
    event_id: EventId,
    event_type: String,
    payload: String,
    secrets: SigningSecrets,
}

#[derive(Clone)]
pub struct Replayer {
    store: Arc<dyn Store>,
    client: DeliveryClient,
    clock: Clock,
}

impl Replayer {
    pub fn new(store: Arc<dyn Store>, client: DeliveryClient, clock: Clock) -> Self {
        Self {
            store,
            client,
            clock,
        }
    }

    /// Reads the delivery and the current secret of its webhook (or alert endpoint); `NotFound`
    /// when the delivery is not the project's.
    pub async fn prepare(&self, project: ProjectId, delivery: DeliveryId) -> StoreResult<Replay> {
        let details = self.store.get_delivery(project, delivery).await?;
        let id = details.summary.webhook_id;
        let webhook = match self
            .store
            .get_webhook(project, WebhookKind::Webhook, id)
            .await
        {
            Err(StoreError::NotFound(_)) => {
                self.store
                    .get_webhook(project, WebhookKind::AlertEndpoint, id)
                    .await?
            }
            found => found?,
        };
        Ok(Replay {
            delivery,
            event_id: details.summary.event_id,
            event_type: details.summary.event_type,
            payload: details.payload,
            secrets: SigningSecrets {
                current: webhook.secret,
                previous: None,
                headers: webhook.labels.headers,
            },
        })
    }

    /// Signs the replay now and sends it to `url`, once.
    pub async fn send(&self, replay: Replay, url: &str) -> Replayed {
        let message = Message {
            id: replay.delivery,
            event_type: &replay.event_type,
            body: replay.payload.as_bytes(),
        };
        let headers = signed_headers(&message, &replay.secrets, self.clock.now().timestamp());
        let request_headers = headers_json(&headers, &replay.secrets.headers);
        let started = Instant::now();
        let outcome = self
            .client
            .send(url, headers, replay.payload.into_bytes())
            .await;
        Replayed {
            event_id: replay.event_id,
            outcome,
            duration_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
            request_headers,
        }
    }
}
