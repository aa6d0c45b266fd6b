//! Fan-out: each event goes to 10, then 100 endpoints of one project; deliveries/s.

use std::sync::Arc;

use serde_json::{Value, json};

use super::phase::{Measured, measure};
use super::{Bench, Stage, sleep_until};
use crate::BenchResult;
use crate::database::FreshDb;
use crate::load::{Stop, Target, Throttle, closed_loop};
use crate::report::{Section, num, opt};

const FANOUTS: [u32; 2] = [10, 100];
const PUBLISHERS: usize = 16;
/// Enough queued deliveries to keep every delivery slot of the server busy, few enough to
/// drain in seconds once publishing stops.
const MAX_QUEUED: u64 = 2_000;
const COLUMNS: [&str; 7] = [
    "endpoints per event",
    "deliveries/s",
    "accepted events/s",
    "service CPU ms/delivery",
    "Postgres CPU ms/delivery",
    "Postgres commits/delivery",
    "WAL bytes/delivery",
];

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let hooks = FANOUTS.iter().sum::<u32>() as usize;
    let stage = Stage::start(bench, db, "fanout", hooks, FANOUTS.len(), true).await?;
    let mut section = Section::new("fanout", db.backend.name(), &COLUMNS);
    let mut details = Vec::new();
    let mut first_hook = 0;
    for (run, fanout) in (0u32..).zip(FANOUTS) {
        let hooks: Vec<u32> = (first_hook..first_hook + fanout).collect();
        first_hook += fanout;
        let targets: Arc<[Target]> = vec![stage.target(run as usize, &hooks).await?].into();
        let measured = level(bench, &stage, &targets, run, fanout).await?;
        details.push(add_row(&mut section, bench, &hooks, measured));
    }
    section.details = json!(details);
    stage.record_rejects(&mut section);
    stage.stop().await?;
    Ok(section)
}

async fn level(
    bench: &Bench,
    stage: &Stage,
    targets: &Arc<[Target]>,
    run: u32,
    fanout: u32,
) -> BenchResult<Measured> {
    let times = bench.phase_times();
    sleep_until(times.start).await;
    let throttle = Throttle {
        ledger: stage.receiver.ledger().clone(),
        max_queued: MAX_QUEUED,
    };
    let load = closed_loop(
        stage.api.clone(),
        targets.clone(),
        run,
        PUBLISHERS,
        Stop::At(times.end),
        Some(throttle),
    );
    let phase = format!("{fanout} endpoints");
    measure(stage, times, targets, &phase, load).await
}

/// Adds the level's row, notes and balance; returns its details for the JSON report.
fn add_row(section: &mut Section, bench: &Bench, hooks: &[u32], measured: Measured) -> Value {
    let fanout = hooks.len();
    let deliveries_per_sec = measured.deliveries_per_sec(hooks);
    let accepted_per_sec = measured.accepted_per_sec();
    let cpu = measured.cpu(bench.ticks_per_second);
    let writes = measured.writes();
    section.rows.push(vec![
        fanout.to_string(),
        num(deliveries_per_sec),
        num(accepted_per_sec),
        opt(cpu.service_ms_per_delivery),
        opt(cpu.postgres_ms_per_delivery),
        opt(writes.commits_per_delivery),
        opt(writes.wal_bytes_per_delivery),
    ]);
    if let Some(error) = &measured.load.first_error {
        section
            .notes
            .push(format!("{fanout} endpoints, first refusal: {error}"));
    }
    section.balances.push(measured.settled.balance);
    json!({
        "endpoints": fanout,
        "deliveries_per_sec": deliveries_per_sec,
        "accepted_per_sec": accepted_per_sec,
        "cpu": cpu,
        "writes": writes,
    })
}
