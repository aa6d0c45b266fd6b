//! Publishing load: a closed loop (a fixed number of publishes in flight) and an open loop
//! (a fixed schedule of send times that is kept even when the server lags behind it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::api::{Api, Project};
use crate::ledger::Ledger;

/// The open loop's bound on publishes in flight: beyond it the generator waits, and the
/// wait shows up as latency since latency counts from the scheduled time.
const OPEN_LOOP_MAX_IN_FLIGHT: usize = 1024;
const THROTTLE_POLL: Duration = Duration::from_millis(2);

/// Where events go: a project, and the receiver hooks each of its events must reach.
pub struct Target {
    pub project: Project,
    pub hooks: Vec<u32>,
}

/// One publish.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub seq: u64,
    /// Index into the targets.
    pub target: usize,
    /// The open loop's planned send time; in the closed loop, the actual send time.
    pub scheduled: Instant,
    /// From sending the request to the end of the answer.
    pub answered_in: Duration,
    pub accepted: bool,
}

/// Every publish of one run, indexed by `seq`, and the first refusal's reason.
pub struct Load {
    pub run: u32,
    pub records: Vec<Published>,
    pub first_error: Option<String>,
}

/// When a closed loop stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    At(Instant),
    After(u64),
}

/// Pauses a closed loop while more than `max_queued` of its deliveries wait in the server,
/// so the queue stays full enough to keep delivery busy but drains in seconds afterwards.
pub struct Throttle {
    pub ledger: Arc<Ledger>,
    pub max_queued: u64,
}

/// Round-robin over the targets: event `seq` goes to target `seq % len`.
fn target_of(seq: u64, targets: &[Target]) -> usize {
    (seq % targets.len() as u64) as usize
}

struct Shared {
    api: Api,
    targets: Arc<[Target]>,
    run: u32,
    next_seq: AtomicU64,
    /// Deliveries owed for events accepted so far.
    owed: AtomicU64,
    first_error: OnceLock<String>,
}

impl Shared {
    async fn publish(&self, seq: u64, scheduled: Instant) -> Published {
        let target = target_of(seq, &self.targets);
        let sent = Instant::now();
        let result = self
            .api
            .publish(&self.targets[target].project, self.run, seq)
            .await;
        let answered_in = sent.elapsed();
        let accepted = match result {
            Ok(()) => {
                let fanout = self.targets[target].hooks.len() as u64;
                self.owed.fetch_add(fanout, Ordering::Relaxed);
                true
            }
            Err(error) => {
                let _ = self.first_error.set(error);
                false
            }
        };
        Published {
            seq,
            target,
            scheduled,
            answered_in,
            accepted,
        }
    }

    fn hooks(&self) -> Vec<u32> {
        self.targets.iter().flat_map(|t| t.hooks.clone()).collect()
    }

    fn into_load(self, mut records: Vec<Published>) -> Load {
        records.sort_by_key(|p| p.seq);
        Load {
            run: self.run,
            records,
            first_error: self.first_error.into_inner(),
        }
    }
}

fn shared(api: Api, targets: Arc<[Target]>, run: u32) -> Shared {
    Shared {
        api,
        targets,
        run,
        next_seq: AtomicU64::new(0),
        owed: AtomicU64::new(0),
        first_error: OnceLock::new(),
    }
}

/// `in_flight` publishers, each sending its next event as soon as the last is answered.
pub async fn closed_loop(
    api: Api,
    targets: Arc<[Target]>,
    run: u32,
    in_flight: usize,
    stop: Stop,
    throttle: Option<Throttle>,
) -> Load {
    let shared = Arc::new(shared(api, targets, run));
    let throttle = Arc::new(throttle);
    let hooks: Arc<[u32]> = shared.hooks().into();
    let mut publishers = JoinSet::new();
    for _ in 0..in_flight {
        let shared = shared.clone();
        let throttle = throttle.clone();
        let hooks = hooks.clone();
        publishers.spawn(async move {
            let mut done = Vec::new();
            loop {
                if let Some(throttle) = throttle.as_ref() {
                    wait_for_room(&shared, throttle, &hooks, stop).await;
                }
                if matches!(stop, Stop::At(end) if Instant::now() >= end) {
                    break;
                }
                let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
                if matches!(stop, Stop::After(count) if seq >= count) {
                    break;
                }
                done.push(shared.publish(seq, Instant::now()).await);
            }
            done
        });
    }
    let records = publishers.join_all().await.into_iter().flatten().collect();
    let shared = Arc::into_inner(shared).expect("every publisher has finished");
    shared.into_load(records)
}

async fn wait_for_room(shared: &Shared, throttle: &Throttle, hooks: &[u32], stop: Stop) {
    loop {
        let owed = shared.owed.load(Ordering::Relaxed);
        let delivered = throttle.ledger.unique(shared.run, hooks);
        let past_end = matches!(stop, Stop::At(end) if Instant::now() >= end);
        if owed.saturating_sub(delivered) <= throttle.max_queued || past_end {
            return;
        }
        tokio::time::sleep(THROTTLE_POLL).await;
    }
}

/// Event `i` is due at `start + i / rate` until `end`; each is sent at its time however
/// many earlier ones are still unanswered.
pub async fn open_loop(
    api: Api,
    targets: Arc<[Target]>,
    run: u32,
    rate: f64,
    start: Instant,
    end: Instant,
) -> Load {
    let shared = Arc::new(shared(api, targets, run));
    let permits = Arc::new(Semaphore::new(OPEN_LOOP_MAX_IN_FLIGHT));
    let mut publishes = JoinSet::new();
    for seq in 0u64.. {
        let scheduled = start + Duration::from_secs_f64(seq as f64 / rate);
        if scheduled >= end {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let shared = shared.clone();
        publishes.spawn(async move {
            let published = shared.publish(seq, scheduled).await;
            drop(permit);
            published
        });
    }
    let records = publishes.join_all().await;
    let shared = Arc::into_inner(shared).expect("every publish has finished");
    shared.into_load(records)
}
