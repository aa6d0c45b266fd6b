//! Admission: the one owner of the worker's limits. It counts the claims each endpoint has in
//! hand and hands out a ticket per claim (released on drop); a ticket's turn holds one of its
//! endpoint's slots and one of the process-wide slots, so neither limit can be exceeded by any
//! path a claim arrives on.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::super::queue::lock;
use crate::domain::WebhookId;

/// An endpoint may hold this many times its concurrency in claims; the rest go back to the
/// queue, so claims waiting behind a slow endpoint cannot fill the worker.
const HELD_PER_SLOT: usize = 4;

/// One claim takes at most this many times an endpoint's concurrency from one webhook: enough
/// to keep its slots busy while the next claim runs, not so many that they wait long.
const CLAIMED_PER_SLOT: usize = 2;

pub struct Admission {
    max_in_flight: usize,
    per_endpoint: usize,
    /// Attempts sending at once, over all endpoints.
    sending: Arc<Semaphore>,
    endpoints: Mutex<Endpoints>,
}

#[derive(Default)]
struct Endpoints {
    by_webhook: HashMap<WebhookId, Endpoint>,
    /// Each endpoint's claims in hand, counted up to its own concurrency: the measure of the
    /// room left, so claims waiting behind a busy endpoint take no room from the others.
    load: usize,
}

struct Endpoint {
    slots: Arc<Semaphore>,
    claimed: usize,
}

/// One admitted claim; dropping it gives its place back.
pub struct Ticket {
    admission: Arc<Admission>,
    webhook: WebhookId,
    slots: Arc<Semaphore>,
}

/// The right to send one attempt now: an endpoint slot and a process-wide slot.
pub struct Turn {
    _endpoint: OwnedSemaphorePermit,
    _process: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(max_in_flight: usize, per_endpoint: usize) -> Arc<Self> {
        Arc::new(Self {
            max_in_flight,
            per_endpoint,
            sending: Arc::new(Semaphore::new(max_in_flight)),
            endpoints: Mutex::new(Endpoints::default()),
        })
    }

    /// How many more claims the worker can usefully take.
    pub fn room(&self) -> usize {
        self.max_in_flight
            .saturating_sub(lock(&self.endpoints).load)
    }

    pub fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// Most deliveries of one endpoint a claim should take.
    pub fn claims_per_endpoint(&self) -> u32 {
        u32::try_from(CLAIMED_PER_SLOT * self.per_endpoint).unwrap_or(u32::MAX)
    }

    /// Endpoints whose slots are all spoken for: a claim leaves them out.
    pub fn busy_endpoints(&self) -> Vec<WebhookId> {
        lock(&self.endpoints)
            .by_webhook
            .iter()
            .filter(|(_, e)| e.claimed >= self.per_endpoint)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A ticket for a claim on `webhook`, or `None` when that endpoint already holds as many
    /// claims as it may.
    pub fn admit(self: &Arc<Self>, webhook: WebhookId) -> Option<Ticket> {
        let mut endpoints = lock(&self.endpoints);
        let per_endpoint = self.per_endpoint;
        let endpoint = endpoints
            .by_webhook
            .entry(webhook)
            .or_insert_with(|| Endpoint {
                slots: Arc::new(Semaphore::new(per_endpoint)),
                claimed: 0,
            });
        if endpoint.claimed >= HELD_PER_SLOT * per_endpoint {
            return None;
        }
        let counts_as_load = endpoint.claimed < per_endpoint;
        endpoint.claimed += 1;
        let slots = endpoint.slots.clone();
        if counts_as_load {
            endpoints.load += 1;
        }
        Some(Ticket {
            admission: self.clone(),
            webhook,
            slots,
        })
    }

    fn release(&self, webhook: WebhookId) {
        let mut endpoints = lock(&self.endpoints);
        let Some(endpoint) = endpoints.by_webhook.get_mut(&webhook) else {
            return;
        };
        let counted_as_load = endpoint.claimed <= self.per_endpoint;
        endpoint.claimed = endpoint.claimed.saturating_sub(1);
        if endpoint.claimed == 0 {
            endpoints.by_webhook.remove(&webhook);
        }
        if counted_as_load {
            endpoints.load = endpoints.load.saturating_sub(1);
        }
    }
}

impl Ticket {
    /// Sends now if a slot of the endpoint and of the process are free.
    pub fn try_turn(&self) -> Option<Turn> {
        let endpoint = self.slots.clone().try_acquire_owned().ok()?;
        let process = self.admission.sending.clone().try_acquire_owned().ok()?;
        Some(Turn {
            _endpoint: endpoint,
            _process: process,
        })
    }

    /// Waits for a slot of the endpoint, then for a process-wide one: a claim waiting behind a
    /// busy endpoint holds no process-wide slot meanwhile.
    pub async fn turn(&self) -> Turn {
        let endpoint = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("admission never closes an endpoint's semaphore");
        let process = self
            .admission
            .sending
            .clone()
            .acquire_owned()
            .await
            .expect("admission never closes the process-wide semaphore");
        Turn {
            _endpoint: endpoint,
            _process: process,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.webhook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_never_exceed_the_process_wide_limit_across_endpoints() {
        let admission = Admission::new(3, 2);
        let tickets: Vec<Ticket> = (0..4)
            .flat_map(|_| {
                let webhook = WebhookId::generate();
                [admission.admit(webhook), admission.admit(webhook)]
            })
            .map(|t| t.expect("room for two claims per endpoint"))
            .collect();
        let turns: Vec<Turn> = tickets.iter().filter_map(Ticket::try_turn).collect();
        assert_eq!(
            turns.len(),
            3,
            "eight claims on four endpoints, three sending slots"
        );
        drop(turns);
        let again: Vec<Turn> = tickets.iter().filter_map(Ticket::try_turn).collect();
        assert_eq!(again.len(), 3, "ended turns give their slots back");
    }

    #[tokio::test]
    async fn an_endpoint_has_its_own_slots_and_a_cap_on_claims_held() {
        let admission = Admission::new(100, 2);
        let webhook = WebhookId::generate();
        let held: Vec<Ticket> = (0..8).map(|_| admission.admit(webhook).unwrap()).collect();
        assert!(
            admission.admit(webhook).is_none(),
            "four times its concurrency at most"
        );
        assert_eq!(admission.busy_endpoints(), [webhook]);
        let turns: Vec<Turn> = held.iter().filter_map(Ticket::try_turn).collect();
        assert_eq!(turns.len(), 2);
        assert_eq!(
            admission.room(),
            98,
            "claims beyond its concurrency take no room"
        );
        drop(turns);
        drop(held);
        assert_eq!(
            admission.room(),
            100,
            "dropped tickets give their places back"
        );
        assert!(admission.busy_endpoints().is_empty());
    }
}
