//! How both backends accept many events: the batchable ones in one shared transaction, the
//! others one at a time, and a failed shared transaction retried event by event so each
//! request gets its own answer.

use async_trait::async_trait;

use super::{Accepted, Accepting, StoreResult};

/// The two ways a backend writes events.
#[async_trait]
pub(crate) trait AcceptWays: Send + Sync {
    /// Writes batchable events (see `NewEvent::batchable`) and their deliveries together, in a
    /// fixed number of statements.
    async fn accept_together(&self, events: &[&Accepting]) -> StoreResult<Vec<Accepted>>;
    /// Writes one event of any kind in its own transaction.
    async fn accept_alone(&self, event: &Accepting) -> StoreResult<Accepted>;
}

pub(crate) async fn accept_events<S: AcceptWays + ?Sized>(
    store: &S,
    events: Vec<Accepting>,
) -> Vec<StoreResult<Accepted>> {
    let (together, alone): (Vec<usize>, Vec<usize>) =
        (0..events.len()).partition(|&n| events[n].event.batchable());
    let mut results: Vec<Option<StoreResult<Accepted>>> = events.iter().map(|_| None).collect();
    let mut one_by_one = alone;
    if !together.is_empty() {
        let batch: Vec<&Accepting> = together.iter().map(|&n| &events[n]).collect();
        match store.accept_together(&batch).await {
            Ok(accepted) => {
                for (&position, event) in together.iter().zip(accepted) {
                    results[position] = Some(Ok(event));
                }
            }
            Err(error) => {
                tracing::warn!(%error, events = batch.len(), "a batch of events failed; accepting them one by one");
                one_by_one.extend(together);
            }
        }
    }
    one_by_one.sort_unstable();
    for position in one_by_one {
        results[position] = Some(store.accept_alone(&events[position]).await);
    }
    results
        .into_iter()
        .map(|r| r.expect("every event is accepted together or alone"))
        .collect()
}
