//! The outcome recorder: writes finished attempts in batches, whatever finished while the
//! previous batch was being written, or within `LINGER` of a batch's first outcome, going into
//! it, so that a worker writes fewer, larger batches at every rate.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::admission::Admission;
use crate::delivery::queue::{Holdings, Queue};
use crate::store::{AttemptRecord, FlowChange, Recorded};

/// Most attempt outcomes written by one transaction.
const RECORD_BATCH: usize = 512;

/// How long a batch waits after its first outcome for others to join it. At everyday rates
/// outcomes arrive one at a time, and every batch is a durable transaction of its own: waiting
/// a little shares one among several. The attempt has been made by then and its sending slot
/// freed, so only the delivery log (and a throttle's hold, which the attempt applied already)
/// sees the wait.
const LINGER: Duration = Duration::from_millis(10);

pub(super) async fn record_outcomes(
    queue: Arc<Queue>,
    holdings: Arc<Holdings>,
    admission: Arc<Admission>,
    mut finished: UnboundedReceiver<AttemptRecord>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while finished.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let deadline = Instant::now() + LINGER;
        while batch.len() < RECORD_BATCH {
            let room = RECORD_BATCH - batch.len();
            let joined = tokio::time::timeout_at(deadline, finished.recv_many(&mut batch, room));
            if !matches!(joined.await, Ok(n) if n > 0) {
                break;
            }
        }
        match queue.record(&batch).await {
            Ok(recorded) => {
                for (record, outcome) in batch.iter().zip(recorded.outcomes) {
                    log_outcome(record, outcome);
                }
                for flow in &recorded.flows {
                    follow(&admission, &queue, flow);
                }
                queue.announce_notices(&recorded.notices);
            }
            Err(error) => tracing::warn!(
                %error,
                attempts = batch.len(),
                "cannot record attempts; their deliveries are tried again when their leases end"
            ),
        }
        for record in batch.drain(..) {
            holdings.let_go(record.delivery_id, record.lease_token);
        }
    }
}

/// Admission follows each webhook's recorded flow: its adapted concurrency and any hold.
fn follow(admission: &Arc<Admission>, queue: &Queue, flow: &FlowChange) {
    let now = queue.clock().now();
    let held_for = flow
        .throttled_until
        .and_then(|until| (until - now).to_std().ok())
        .filter(|wait| !wait.is_zero());
    let limit = usize::try_from(flow.concurrency).unwrap_or(usize::MAX);
    admission.update_flow(flow.webhook_id, limit, held_for);
}

fn log_outcome(record: &AttemptRecord, outcome: Recorded) {
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
