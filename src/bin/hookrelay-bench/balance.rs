//! The accounting: every event answered 202, times the hooks it must reach, is either
//! delivered (once, however often it arrives) or missing when the deadline passes.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ledger::{Arrival, Ledger};
use crate::load::{Load, Target};

const POLL: Duration = Duration::from_millis(20);

/// Generous on purpose: a slow server is a result, a deadline that cuts it short is not.
/// One minute plus 5 ms per delivery still owed (200 deliveries/s).
pub fn drain_deadline(owed: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(owed.saturating_mul(5))
}

#[derive(Debug, Clone, Serialize)]
pub struct Balance {
    pub phase: String,
    pub published: u64,
    /// Answered 202.
    pub accepted: u64,
    /// Any other answer or no answer; these events are owed nothing.
    pub refused: u64,
    /// Accepted events times the hooks each must reach.
    pub expected: u64,
    /// Distinct (event, hook) pairs among the expected that arrived.
    pub delivered: u64,
    pub missing: u64,
    /// Repeated delivery ids, plus second delivery ids for an (event, hook) already seen.
    pub duplicates: u64,
    /// Arrivals for events that were not answered 202 (sent, but the answer was lost).
    pub unexpected: u64,
    /// From the end of publishing until everything expected had arrived (or the deadline).
    pub waited_secs: f64,
}

/// A settled run: its balance and every first arrival of it.
pub struct Settled {
    pub balance: Balance,
    pub arrivals: Vec<Arrival>,
}

impl Balance {
    pub fn balanced(&self) -> bool {
        self.missing == 0
    }
}

/// Waits (up to the drain deadline) until every delivery the load is owed has arrived, then
/// counts exactly.
pub async fn settle(ledger: &Ledger, targets: &[Target], load: &Load, phase: &str) -> Settled {
    let hooks: Vec<u32> = targets.iter().flat_map(|t| t.hooks.clone()).collect();
    let accepted: Vec<&_> = load.records.iter().filter(|p| p.accepted).collect();
    let expected: u64 = accepted
        .iter()
        .map(|p| targets[p.target].hooks.len() as u64)
        .sum();
    let started = Instant::now();
    let owed = expected.saturating_sub(ledger.unique(load.run, &hooks));
    let deadline = started + drain_deadline(owed);
    loop {
        while ledger.unique(load.run, &hooks) < expected && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        let arrivals = ledger.arrivals(load.run);
        let count = count(&arrivals, targets, load);
        // Unexpected arrivals can fill the tally early: only the exact count says done.
        if count.delivered >= expected || Instant::now() >= deadline {
            let balance = Balance {
                phase: phase.to_owned(),
                published: load.records.len() as u64,
                accepted: accepted.len() as u64,
                refused: (load.records.len() - accepted.len()) as u64,
                expected,
                delivered: count.delivered,
                missing: expected.saturating_sub(count.delivered),
                duplicates: ledger.duplicates(load.run, &hooks) + count.second_ids,
                unexpected: count.unexpected,
                waited_secs: started.elapsed().as_secs_f64(),
            };
            return Settled { balance, arrivals };
        }
        tokio::time::sleep(POLL).await;
    }
}

struct Count {
    delivered: u64,
    second_ids: u64,
    unexpected: u64,
}

fn count(arrivals: &[Arrival], targets: &[Target], load: &Load) -> Count {
    let mut pairs = Vec::with_capacity(arrivals.len());
    let mut unexpected = 0;
    for arrival in arrivals {
        let Some(published) = load.records.get(arrival.seq as usize) else {
            unexpected += 1;
            continue;
        };
        // Hooks outside the target's list (a slow one, say) owe nothing and count nothing.
        if !targets[published.target].hooks.contains(&arrival.hook) {
            continue;
        }
        if published.accepted {
            pairs.push((arrival.seq, arrival.hook));
        } else {
            unexpected += 1;
        }
    }
    let first_ids = pairs.len() as u64;
    pairs.sort_unstable();
    pairs.dedup();
    Count {
        delivered: pairs.len() as u64,
        second_ids: first_ids - pairs.len() as u64,
        unexpected,
    }
}
