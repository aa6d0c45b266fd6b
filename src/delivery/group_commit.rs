//! Group commit for accepted events: requests that arrive while a transaction is being
//! written wait for the next one and share it, so a busy instance writes few large
//! transactions and an idle one writes each event at once.

use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{Mutex, oneshot};

use crate::store::{Accepted, Accepting, Store, StoreError, StoreResult};

/// Most events written by one transaction.
const MAX_BATCH: usize = 256;

/// Transactions written at once: one is being committed while the next fills up.
const WRITERS: usize = 2;

struct Pending {
    event: Accepting,
    reply: oneshot::Sender<StoreResult<Accepted>>,
}

#[derive(Clone)]
pub struct GroupCommit {
    queue: UnboundedSender<Pending>,
}

impl GroupCommit {
    /// Starts the writers; they stop once every handle is dropped and the queue is empty.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (queue, pending) = unbounded_channel();
        let pending = Arc::new(Mutex::new(pending));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(store.clone(), pending.clone()));
        }
        Self { queue }
    }

    /// Accepts the event with whatever else is waiting; the answer comes once it is committed.
    pub async fn accept(&self, event: Accepting) -> StoreResult<Accepted> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { event, reply })
            .map_err(|_| StoreError::Internal("the event writers have stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("an event writer stopped before answering".into()))?
    }
}

async fn write_batches(store: Arc<dyn Store>, pending: Arc<Mutex<UnboundedReceiver<Pending>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if pending.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let (events, replies): (Vec<Accepting>, Vec<_>) =
            batch.drain(..).map(|p| (p.event, p.reply)).unzip();
        let results = store.accept_events(events).await;
        for (reply, result) in replies.into_iter().zip(results) {
            // The request may have gone; its event is stored all the same.
            let _ = reply.send(result);
        }
    }
}
