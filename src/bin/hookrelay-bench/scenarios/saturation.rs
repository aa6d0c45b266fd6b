//! Saturation: a closed loop of 16, 32 and 64 publishes in flight to one endpoint; accepted
//! events/s, deliveries/s and the latency of the 202.

use std::sync::Arc;

use serde_json::{Value, json};

use super::phase::{Measured, measure};
use super::{Bench, Stage, sleep_until};
use crate::BenchResult;
use crate::database::FreshDb;
use crate::load::{Stop, Target, closed_loop};
use crate::report::{Section, num, opt};

const LEVELS: [usize; 3] = [16, 32, 64];
const COLUMNS: [&str; 11] = [
    "in flight",
    "accepted events/s",
    "deliveries/s",
    "202 p50 ms",
    "202 p99 ms",
    "queued at end",
    "service CPU ms/delivery",
    "Postgres CPU ms/delivery",
    "Postgres commits/delivery",
    "WAL bytes/delivery",
    "refused",
];

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let stage = Stage::start(bench, db, "saturation", 1, 1, true).await?;
    let targets: Arc<[Target]> = vec![stage.target(0, &[0]).await?].into();
    let mut section = Section::new("saturation", db.backend.name(), &COLUMNS);
    let mut details = Vec::new();
    let mut peak: f64 = 0.0;
    for (run, in_flight) in (0u32..).zip(LEVELS) {
        let measured = level(bench, &stage, &targets, run, in_flight).await?;
        peak = peak.max(measured.accepted_per_sec());
        details.push(add_row(&mut section, bench, in_flight, measured));
    }
    bench.remember_peak(db.backend, peak);
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
    in_flight: usize,
) -> BenchResult<Measured> {
    let times = bench.phase_times();
    sleep_until(times.start).await;
    let load = closed_loop(
        stage.api.clone(),
        targets.clone(),
        run,
        in_flight,
        Stop::At(times.end),
        None,
    );
    let phase = format!("{in_flight} in flight");
    measure(stage, times, targets, &phase, load).await
}

/// Adds the level's row, notes and balance; returns its details for the JSON report.
fn add_row(section: &mut Section, bench: &Bench, in_flight: usize, measured: Measured) -> Value {
    let accepted_per_sec = measured.accepted_per_sec();
    let deliveries_per_sec = measured.deliveries_per_sec(&[0]);
    let answer = measured.answer_latency();
    let queued = measured.queued_at_end(&[0]);
    let cpu = measured.cpu(bench.ticks_per_second);
    let writes = measured.writes();
    section.rows.push(vec![
        in_flight.to_string(),
        num(accepted_per_sec),
        num(deliveries_per_sec),
        opt(answer.map(|a| a.p50_ms)),
        opt(answer.map(|a| a.p99_ms)),
        queued.to_string(),
        opt(cpu.service_ms_per_delivery),
        opt(cpu.postgres_ms_per_delivery),
        opt(writes.commits_per_delivery),
        opt(writes.wal_bytes_per_delivery),
        measured.settled.balance.refused.to_string(),
    ]);
    if let Some(error) = &measured.load.first_error {
        section
            .notes
            .push(format!("{in_flight} in flight, first refusal: {error}"));
    }
    section.balances.push(measured.settled.balance);
    json!({
        "in_flight": in_flight,
        "accepted_per_sec": accepted_per_sec,
        "deliveries_per_sec": deliveries_per_sec,
        "answer_202": answer,
        "queued_at_end": queued,
        "cpu": cpu,
        "writes": writes,
    })
}
