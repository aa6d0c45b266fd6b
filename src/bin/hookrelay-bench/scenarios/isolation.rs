//! Isolation: healthy endpoints beside one that answers after 5 s and one that refuses
//! connections, in the same project and in another; their deliveries/s and p99 against a
//! baseline under the same load without the bad endpoints.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::phase::{Measured, measure};
use super::{Bench, Stage};
use crate::BenchResult;
use crate::cpu::CpuCost;
use crate::database::FreshDb;
use crate::load::{Target, open_loop};
use crate::report::{Section, num, opt};
use crate::server::free_port;

// Receiver hooks. Projects 0 and 1 carry the baseline, 2 and 3 the phase with bad endpoints.
const BASELINE_SAME: u32 = 0;
const BASELINE_OTHER: u32 = 1;
const SAME: u32 = 2;
const OTHER: u32 = 3;
const SLOW: u32 = 4;
const HOOKS: usize = 5;
const COLUMNS: [&str; 7] = [
    "phase",
    "same-project healthy deliveries/s",
    "same-project healthy p99 ms",
    "other-project healthy deliveries/s",
    "other-project healthy p99 ms",
    "service CPU ms/delivery",
    "Postgres CPU ms/delivery",
];

/// The healthy endpoints' view of one phase.
#[derive(Serialize)]
struct Healthy {
    same_per_sec: f64,
    same_p99_ms: Option<f64>,
    other_per_sec: f64,
    other_p99_ms: Option<f64>,
    cpu: CpuCost,
}

fn healthy(bench: &Bench, measured: &Measured, same: u32, other: u32) -> Healthy {
    let p99 = |hook| measured.delivery_latency(&[hook]).map(|l| l.p99_ms);
    Healthy {
        same_per_sec: measured.deliveries_per_sec(&[same]),
        same_p99_ms: p99(same),
        other_per_sec: measured.deliveries_per_sec(&[other]),
        other_p99_ms: p99(other),
        cpu: measured.cpu(bench.ticks_per_second),
    }
}

fn ratio(with_bad: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    with_bad
        .zip(baseline.filter(|b| *b > 0.0))
        .map(|(w, b)| w / b)
}

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let stage = Stage::start(bench, db, "isolation", HOOKS, 4, true).await?;
    let mut section = Section::new("isolation", db.backend.name(), &COLUMNS);
    let baseline: Arc<[Target]> = vec![
        stage.target(0, &[BASELINE_SAME]).await?,
        stage.target(1, &[BASELINE_OTHER]).await?,
    ]
    .into();
    let base = run_phase(bench, &stage, &baseline, 0, "baseline").await?;
    let with_bad = with_bad_endpoints(&stage).await?;
    let bad = run_phase(bench, &stage, &with_bad, 1, "slow + dead endpoints").await?;

    let b = healthy(bench, &base, BASELINE_SAME, BASELINE_OTHER);
    let w = healthy(bench, &bad, SAME, OTHER);
    let ratios = add_rows(&mut section, &b, &w);
    let slow_seen = stage.receiver.ledger().unique(1, &[SLOW]);
    section.notes.push(format!(
        "{} events/s offered to each project; the slow endpoint received {slow_seen} of the \
         {} events its project was sent; the dead one's attempts fail at connect (30 s backoff)",
        bench.args.isolation_rate,
        bad.settled.balance.published.div_ceil(2)
    ));
    section.details = json!({
        "offered_per_project_per_sec": bench.args.isolation_rate,
        "baseline": b,
        "with_bad": w,
        "ratios": ratios,
        "slow_endpoint_deliveries": slow_seen,
    });
    section.balances.push(base.settled.balance);
    section.balances.push(bad.settled.balance);
    stage.record_rejects(&mut section);
    stage.stop().await?;
    Ok(section)
}

/// Project 2 gets a healthy, a slow and a dead endpoint, project 3 a healthy one; only the
/// healthy ones are owed deliveries.
async fn with_bad_endpoints(stage: &Stage) -> BenchResult<Arc<[Target]>> {
    let targets = vec![
        stage.target(2, &[SAME]).await?,
        stage.target(3, &[OTHER]).await?,
    ];
    let bad_project = &stage.projects[2];
    stage
        .subscribe(bad_project, SLOW, &stage.receiver.slow_url(SLOW))
        .await?;
    let dead_url = format!("http://127.0.0.1:{}/dead", free_port()?);
    stage.api.create_webhook(bad_project, &dead_url).await?;
    Ok(targets.into())
}

/// Events alternate between the two targets, so each project gets the configured rate.
async fn run_phase(
    bench: &Bench,
    stage: &Stage,
    targets: &Arc<[Target]>,
    run: u32,
    phase: &str,
) -> BenchResult<Measured> {
    let rate = f64::from(bench.args.isolation_rate) * targets.len() as f64;
    let times = bench.phase_times();
    let load = open_loop(
        stage.api.clone(),
        targets.clone(),
        run,
        rate,
        times.start,
        times.end,
    );
    measure(stage, times, targets, phase, load).await
}

/// Adds a row per phase and the ratio row; returns the ratios for the JSON report.
fn add_rows(section: &mut Section, base: &Healthy, bad: &Healthy) -> serde_json::Value {
    for (phase, h) in [("baseline", base), ("slow + dead endpoints", bad)] {
        section.rows.push(vec![
            phase.to_owned(),
            num(h.same_per_sec),
            opt(h.same_p99_ms),
            num(h.other_per_sec),
            opt(h.other_p99_ms),
            opt(h.cpu.service_ms_per_delivery),
            opt(h.cpu.postgres_ms_per_delivery),
        ]);
    }
    let same = ratio(Some(bad.same_per_sec), Some(base.same_per_sec));
    let same_p99 = ratio(bad.same_p99_ms, base.same_p99_ms);
    let other = ratio(Some(bad.other_per_sec), Some(base.other_per_sec));
    let other_p99 = ratio(bad.other_p99_ms, base.other_p99_ms);
    section.rows.push(vec![
        "ratio (with bad / baseline)".to_owned(),
        opt(same),
        opt(same_p99),
        opt(other),
        opt(other_p99),
        String::new(),
        String::new(),
    ]);
    json!({"same_throughput": same, "same_p99": same_p99,
           "other_throughput": other, "other_p99": other_p99})
}
