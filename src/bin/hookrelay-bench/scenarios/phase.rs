//! One measured phase: load runs through a warm-up and a measured window, CPU is read at the
//! window's edges, then every delivery owed is waited for and counted.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::{Stage, sleep_until};
use crate::BenchResult;
use crate::balance::{Settled, settle};
use crate::cpu::{CpuCost, CpuSpent};
use crate::load::{Load, Published, Target};
use crate::stats::{Percentiles, micros, percentiles, rate_within};
use crate::writes::{WriteCost, WritesSpent};

#[derive(Debug, Clone, Copy)]
pub struct PhaseTimes {
    pub start: Instant,
    pub measured_from: Instant,
    pub end: Instant,
}

impl PhaseTimes {
    fn window(&self) -> std::ops::Range<Instant> {
        self.measured_from..self.end
    }
}

pub struct Measured {
    pub times: PhaseTimes,
    pub load: Load,
    pub settled: Settled,
    spent: CpuSpent,
    writes: Option<WritesSpent>,
}

/// Runs `load` (which must follow `times`), measures it and settles its accounting.
pub async fn measure<F>(
    stage: &Stage,
    times: PhaseTimes,
    targets: &Arc<[Target]>,
    phase: &str,
    load: F,
) -> BenchResult<Measured>
where
    F: Future<Output = Load> + Send + 'static,
{
    let load = tokio::spawn(load);
    // Halfway through the warm-up the tables hold rows: statistics for them, as autovacuum
    // keeps on an established database, so the server's cached plans are made again for
    // tables of this size rather than the empty ones of a fresh database.
    sleep_until(times.start + (times.measured_from - times.start) / 2).await;
    stage.analyze().await?;
    sleep_until(times.measured_from).await;
    let meter = stage.cpu_meter();
    let write_meter = stage.write_meter().await?;
    sleep_until(times.end).await;
    let spent = meter.stop();
    let writes = match write_meter {
        Some(meter) => Some(meter.stop().await?),
        None => None,
    };
    let load = load.await?;
    let settled = settle(stage.receiver.ledger(), targets, &load, phase).await;
    Ok(Measured {
        times,
        load,
        settled,
        spent,
        writes,
    })
}

impl Measured {
    /// Accepted publishes sent (or, in the open loop, due) inside the window.
    fn measured_publishes(&self) -> impl Iterator<Item = &Published> {
        self.load
            .records
            .iter()
            .filter(|p| p.accepted && self.times.window().contains(&p.scheduled))
    }

    pub fn accepted_per_sec(&self) -> f64 {
        let sent = self.measured_publishes().map(|p| p.scheduled);
        rate_within(sent, self.times.measured_from, self.times.end)
    }

    /// Latency of the 202 answers to publishes inside the window.
    pub fn answer_latency(&self) -> Option<Percentiles> {
        percentiles(
            self.measured_publishes()
                .map(|p| micros(p.answered_in))
                .collect(),
        )
    }

    /// Arrivals at `hooks` per second inside the window.
    pub fn deliveries_per_sec(&self, hooks: &[u32]) -> f64 {
        let arrivals = self.settled.arrivals.iter();
        let at = arrivals.filter(|a| hooks.contains(&a.hook)).map(|a| a.at);
        rate_within(at, self.times.measured_from, self.times.end)
    }

    /// From each measured event's scheduled send time to its arrival at each of `hooks`.
    pub fn delivery_latency(&self, hooks: &[u32]) -> Option<Percentiles> {
        let records = &self.load.records;
        let sample = self.settled.arrivals.iter().filter_map(|a| {
            let published = records.get(a.seq as usize)?;
            let measured = published.accepted
                && hooks.contains(&a.hook)
                && self.times.window().contains(&published.scheduled);
            measured.then(|| micros(a.at.saturating_duration_since(published.scheduled)))
        });
        percentiles(sample.collect())
    }

    /// Deliveries to `hooks` (all the phase owes) still owed when publishing stopped.
    pub fn queued_at_end(&self, hooks: &[u32]) -> u64 {
        let owed: u64 = self.settled.balance.expected;
        let arrivals = self.settled.arrivals.iter();
        let arrived = arrivals.filter(|a| a.at < self.times.end && hooks.contains(&a.hook));
        owed.saturating_sub(arrived.count() as u64)
    }

    /// Arrivals inside the window, whichever hook.
    fn delivered_in_window(&self) -> u64 {
        let arrivals = self.settled.arrivals.iter();
        arrivals
            .filter(|a| self.times.window().contains(&a.at))
            .count() as u64
    }

    /// CPU over the window divided by every arrival in it, whichever hook.
    pub fn cpu(&self, ticks_per_second: u64) -> CpuCost {
        self.spent
            .per_delivery(self.delivered_in_window(), ticks_per_second)
    }

    /// Postgres commits and WAL bytes over the window per arrival in it; empty on SQLite.
    pub fn writes(&self) -> WriteCost {
        self.writes
            .as_ref()
            .map(|w| w.per_delivery(self.delivered_in_window()))
            .unwrap_or_default()
    }
}
