//! Isolation: healthy endpoints beside one that answers after 5 s and one that refuses
//! connections, in the same project and in another; their deliveries/s and p99 against a
//! baseline under the same load without the bad endpoints.

use std::sync::Arc;

use serde_json::json;

use super::phase::{Measured, measure};
use super::{Bench, Stage};
use crate::BenchResult;
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

/// The healthy endpoints' view of one phase.
struct Healthy {
    same_per_sec: f64,
    same_p99_ms: Option<f64>,
    other_per_sec: f64,
    other_p99_ms: Option<f64>,
}

fn healthy(measured: &Measured, same: u32, other: u32) -> Healthy {
    let p99 = |hook| measured.delivery_latency(&[hook]).map(|l| l.p99_ms);
    Healthy {
        same_per_sec: measured.deliveries_per_sec(&[same]),
        same_p99_ms: p99(same),
        other_per_sec: measured.deliveries_per_sec(&[other]),
        other_p99_ms: p99(other),
    }
}

fn ratio(with_bad: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    with_bad
        .zip(baseline.filter(|b| *b > 0.0))
        .map(|(w, b)| w / b)
}

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let stage = Stage::start(bench, db, "isolation", HOOKS, 4, true).await?;
    let mut section = Section::new(
        "isolation",
        db.backend.name(),
        &[
            "phase",
            "same-project healthy deliveries/s",
            "same-project healthy p99 ms",
            "other-project healthy deliveries/s",
            "other-project healthy p99 ms",
            "service CPU ms/delivery",
            "Postgres CPU ms/delivery",
        ],
    );
    // Events alternate between the two projects, so each gets half the total rate.
    let rate = f64::from(bench.args.isolation_rate) * 2.0;

    let baseline: Arc<[Target]> = vec![
        stage.target(0, &[BASELINE_SAME]).await?,
        stage.target(1, &[BASELINE_OTHER]).await?,
    ]
    .into();
    let base = run_phase(bench, &stage, &baseline, 0, rate, "baseline").await?;

    let with_bad: Arc<[Target]> = vec![
        stage.target(2, &[SAME]).await?,
        stage.target(3, &[OTHER]).await?,
    ]
    .into();
    let bad_project = &stage.projects[2];
    stage
        .subscribe(bad_project, SLOW, &stage.receiver.slow_url(SLOW))
        .await?;
    let dead_url = format!("http://127.0.0.1:{}/dead", free_port()?);
    stage.api.create_webhook(bad_project, &dead_url).await?;
    let bad = run_phase(bench, &stage, &with_bad, 1, rate, "slow + dead endpoints").await?;

    let b = healthy(&base, BASELINE_SAME, BASELINE_OTHER);
    let w = healthy(&bad, SAME, OTHER);
    let base_cpu = base.cpu(bench.ticks_per_second);
    let bad_cpu = bad.cpu(bench.ticks_per_second);
    let rows = [
        ("baseline", &b, base_cpu),
        ("slow + dead endpoints", &w, bad_cpu),
    ];
    for (phase, h, cpu) in rows {
        section.rows.push(vec![
            phase.to_owned(),
            num(h.same_per_sec),
            opt(h.same_p99_ms),
            num(h.other_per_sec),
            opt(h.other_p99_ms),
            opt(cpu.service_ms_per_delivery),
            opt(cpu.postgres_ms_per_delivery),
        ]);
    }
    let same_ratio = ratio(Some(w.same_per_sec), Some(b.same_per_sec));
    let other_ratio = ratio(Some(w.other_per_sec), Some(b.other_per_sec));
    let same_p99_ratio = ratio(w.same_p99_ms, b.same_p99_ms);
    let other_p99_ratio = ratio(w.other_p99_ms, b.other_p99_ms);
    section.rows.push(vec![
        "ratio (with bad / baseline)".to_owned(),
        opt(same_ratio),
        opt(same_p99_ratio),
        opt(other_ratio),
        opt(other_p99_ratio),
        String::new(),
        String::new(),
    ]);
    let slow_seen = stage.receiver.ledger().unique(1, &[SLOW]);
    section.notes.push(format!(
        "{} events/s offered to each project; the slow endpoint received {slow_seen} of the \
         {} events its project was sent; the dead one's attempts fail at connect (30 s backoff)",
        bench.args.isolation_rate,
        bad.settled.balance.published.div_ceil(2)
    ));
    section.details = json!({
        "offered_per_project_per_sec": bench.args.isolation_rate,
        "baseline": {"same_per_sec": b.same_per_sec, "same_p99_ms": b.same_p99_ms,
                     "other_per_sec": b.other_per_sec, "other_p99_ms": b.other_p99_ms,
                     "cpu": base_cpu},
        "with_bad": {"same_per_sec": w.same_per_sec, "same_p99_ms": w.same_p99_ms,
                     "other_per_sec": w.other_per_sec, "other_p99_ms": w.other_p99_ms,
                     "cpu": bad_cpu},
        "ratios": {"same_throughput": same_ratio, "same_p99": same_p99_ratio,
                   "other_throughput": other_ratio, "other_p99": other_p99_ratio},
        "slow_endpoint_deliveries": slow_seen,
    });
    section.balances.push(base.settled.balance);
    section.balances.push(bad.settled.balance);
    stage.record_rejects(&mut section);
    stage.stop().await?;
    Ok(section)
}

async fn run_phase(
    bench: &Bench,
    stage: &Stage,
    targets: &Arc<[Target]>,
    run: u32,
    rate: f64,
    phase: &str,
) -> BenchResult<Measured> {
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
