//! Replaying one delivery to another URL (staging, a laptop's tunnel): its exact body and
//! headers, signed afresh with its webhook's current secret, sent once. The delivery, its
//! attempts and its webhook's stats stay as they are.

use std::sync::Arc;
use std::time::Instant;

use super::client::{DeliveryClient, SendOutcome, headers_json};
use super::signer::{Message, signed_headers};
use crate::clock::Clock;
use crate::domain::{DeliveryId, EventId, ProjectId};
use crate::store::cipher::SigningSecrets;
use crate::store::{Store, StoreResult};

/// What a replay sent and got back.
pub struct Replayed {
    pub event_id: EventId,
    pub outcome: SendOutcome,
    pub duration_ms: u32,
    /// The headers sent, as the delivery log keeps them.
    pub request_headers: String,
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

    /// Sends the delivery's payload to `url`; `NotFound` when the delivery or its webhook is
    /// not the project's (a deleted webhook has no secret to sign with).
    pub async fn replay(
        &self,
        project: ProjectId,
        delivery: DeliveryId,
        url: &str,
    ) -> StoreResult<Replayed> {
        let details = self.store.get_delivery(project, delivery).await?;
        let webhook = self
            .store
            .get_webhook(project, details.summary.webhook_id)
            .await?;
        let secrets = SigningSecrets {
            current: webhook.secret,
            previous: None,
            headers: webhook.labels.headers,
        };
        let message = Message {
            id: delivery,
            event_type: &details.summary.event_type,
            body: details.payload.as_bytes(),
        };
        let headers = signed_headers(&message, &secrets, self.clock.now().timestamp());
        let request_headers = headers_json(&headers, &secrets.headers);
        let started = Instant::now();
        let outcome = self
            .client
            .send(url, headers, details.payload.into_bytes())
            .await;
        Ok(Replayed {
            event_id: details.summary.event_id,
            outcome,
            duration_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
            request_headers,
        })
    }
}
