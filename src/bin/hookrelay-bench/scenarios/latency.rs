//! Latency: an open loop at fixed offered rates (100/s, 350/s and half of saturation's
//! best accepted rate) to one endpoint; publish-to-arrival percentiles counted from each
//! event's scheduled send time.

use std::sync::Arc;

use serde_json::{Value, json};

use super::phase::{Measured, measure};
use super::{Bench, Stage, sleep_until};
use crate::BenchResult;
use crate::database::FreshDb;
use crate::load::{Stop, Target, closed_loop, open_loop};
use crate::report::{Section, num, opt};

const FIXED_RATES: [f64; 2] = [100.0, 350.0];
/// In-flight publishes of the probe that stands in for saturation when it did not run.
const PROBE_IN_FLIGHT: usize = 64;
const COLUMNS: [&str; 12] = [
    "offered events/s",
    "accepted events/s",
    "deliveries/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "service CPU ms/delivery",
    "Postgres CPU ms/delivery",
    "Postgres commits/delivery",
    "WAL bytes/delivery",
];

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let stage = Stage::start(bench, db, "latency", 1, 1, true).await?;
    let targets: Arc<[Target]> = vec![stage.target(0, &[0]).await?].into();
    let mut section = Section::new("latency", db.backend.name(), &COLUMNS);
    let peak = match bench.peak(db.backend) {
        Some(peak) => peak,
        None => probe(bench, &stage, &targets, &mut section).await?,
    };
    let rates = [FIXED_RATES[0], FIXED_RATES[1], (peak / 2.0).max(1.0)];
    let mut details = Vec::new();
    for (run, rate) in (0u32..).zip(rates) {
        let times = bench.phase_times();
        let load = open_loop(
            stage.api.clone(),
            targets.clone(),
            run,
            rate,
            times.start,
            times.end,
        );
        let phase = format!("{} events/s offered", num(rate));
        let measured = measure(&stage, times, &targets, &phase, load).await?;
        details.push(add_row(&mut section, bench, rate, measured));
    }
    section.details = json!(details);
    stage.record_rejects(&mut section);
    stage.stop().await?;
    Ok(section)
}

/// Adds the rate's row, notes and balance; returns its details for the JSON report.
fn add_row(section: &mut Section, bench: &Bench, rate: f64, measured: Measured) -> Value {
    let latency = measured.delivery_latency(&[0]);
    let accepted_per_sec = measured.accepted_per_sec();
    let deliveries_per_sec = measured.deliveries_per_sec(&[0]);
    let cpu = measured.cpu(bench.ticks_per_second);
    let writes = measured.writes();
    section.rows.push(vec![
        num(rate),
        num(accepted_per_sec),
        num(deliveries_per_sec),
        opt(latency.map(|l| l.p50_ms)),
        opt(latency.map(|l| l.p90_ms)),
        opt(latency.map(|l| l.p99_ms)),
        opt(latency.map(|l| l.p999_ms)),
        opt(latency.map(|l| l.max_ms)),
        opt(cpu.service_ms_per_delivery),
        opt(cpu.postgres_ms_per_delivery),
        opt(writes.commits_per_delivery),
        opt(writes.wal_bytes_per_delivery),
    ]);
    if let Some(error) = &measured.load.first_error {
        section
            .notes
            .push(format!("{} events/s, first refusal: {error}", num(rate)));
    }
    section.balances.push(measured.settled.balance);
    json!({
        "offered_per_sec": rate,
        "accepted_per_sec": accepted_per_sec,
        "deliveries_per_sec": deliveries_per_sec,
        "publish_to_arrival": latency,
        "cpu": cpu,
        "writes": writes,
    })
}

/// A short saturation run for the peak accepted rate, when saturation did not run first.
async fn probe(
    bench: &Bench,
    stage: &Stage,
    targets: &Arc<[Target]>,
    section: &mut Section,
) -> BenchResult<f64> {
    let times = bench.phase_times();
    sleep_until(times.start).await;
    let load = closed_loop(
        stage.api.clone(),
        targets.clone(),
        FIXED_RATES.len() as u32 + 1,
        PROBE_IN_FLIGHT,
        Stop::At(times.end),
        None,
    );
    let probe = measure(stage, times, targets, "probe for the peak rate", load).await?;
    let peak = probe.accepted_per_sec();
    section.notes.push(format!(
        "saturation did not run first: a {PROBE_IN_FLIGHT}-in-flight closed-loop probe \
         accepted {} events/s",
        num(peak)
    ));
    section.balances.push(probe.settled.balance);
    Ok(peak)
}
