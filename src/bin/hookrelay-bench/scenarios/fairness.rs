//! Fairness: project A has 50 webhooks whose endpoints answer after 2 s and 5,000 deliveries
//! queued; project B publishes 20 events/s to one fast endpoint. B's publish-to-arrival p99
//! and deliveries/s alone and next to A's backlog.

use std::sync::Arc;

use serde_json::json;

use super::phase::{Measured, measure};
use super::{Bench, Stage};
use crate::BenchResult;
use crate::database::FreshDb;
use crate::load::{Stop, Target, closed_loop, open_loop};
use crate::report::{Section, num, opt};

const B_RATE: f64 = 20.0;
const A_WEBHOOKS: u32 = 50;
/// A's events, each delivered to all 50 webhooks: 5,000 deliveries.
const A_EVENTS: u64 = 100;
/// Receiver hooks: 0 is B's endpoint, 1..=50 A's.
const B_HOOK: u32 = 0;
const COLUMNS: [&str; 5] = [
    "phase",
    "B deliveries/s",
    "B p50 ms",
    "B p99 ms",
    "A delivered during the phase",
];

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let stage = Stage::start(bench, db, "fairness", A_WEBHOOKS as usize + 1, 2, true).await?;
    let b: Arc<[Target]> = vec![stage.target(1, &[B_HOOK]).await?].into();
    let mut section = Section::new("fairness", db.backend.name(), &COLUMNS);
    let alone = b_phase(bench, &stage, &b, 0, "B alone").await?;
    let a_hooks: Vec<u32> = (1..=A_WEBHOOKS).collect();
    let a_project = stage.projects[0].clone();
    for &hook in &a_hooks {
        stage
            .subscribe(&a_project, hook, &stage.receiver.lagging_url(hook))
            .await?;
    }
    let a: Arc<[Target]> = vec![Target {
        project: a_project,
        hooks: a_hooks.clone(),
    }]
    .into();
    let backlog = closed_loop(stage.api.clone(), a, 1, 16, Stop::After(A_EVENTS), None).await;
    let beside = b_phase(bench, &stage, &b, 2, "B next to A's backlog").await?;
    let a_during = stage.receiver.ledger().unique(1, &a_hooks);
    let rows = [
        (&alone, "B alone", 0),
        (&beside, "B next to A's backlog", a_during),
    ];
    for (measured, phase, a_delivered) in rows {
        let latency = measured.delivery_latency(&[B_HOOK]);
        section.rows.push(vec![
            phase.to_owned(),
            num(measured.deliveries_per_sec(&[B_HOOK])),
            opt(latency.map(|l| l.p50_ms)),
            opt(latency.map(|l| l.p99_ms)),
            a_delivered.to_string(),
        ]);
    }
    let p99 = |m: &Measured| m.delivery_latency(&[B_HOOK]).map(|l| l.p99_ms);
    let ratio = p99(&beside)
        .zip(p99(&alone).filter(|p| *p > 0.0))
        .map(|(w, a)| w / a);
    section.rows.push(vec![
        "ratio (next to A / alone)".to_owned(),
        num(beside.deliveries_per_sec(&[B_HOOK]) / alone.deliveries_per_sec(&[B_HOOK]).max(1e-9)),
        String::new(),
        opt(ratio),
        String::new(),
    ]);
    section.notes.push(format!(
        "A published {} of {A_EVENTS} events ({} deliveries owed to endpoints answering after \
         2 s; only B's deliveries are accounted for here, A's backlog outlives the phase)",
        backlog.records.iter().filter(|p| p.accepted).count(),
        A_EVENTS * u64::from(A_WEBHOOKS)
    ));
    section.details = json!({
        "b_rate_per_sec": B_RATE,
        "b_p99_alone_ms": p99(&alone),
        "b_p99_beside_a_ms": p99(&beside),
        "p99_ratio": ratio,
        "a_delivered_during_phase": a_during,
    });
    section.balances.push(alone.settled.balance);
    section.balances.push(beside.settled.balance);
    stage.record_rejects(&mut section);
    stage.stop().await?;
    Ok(section)
}

async fn b_phase(
    bench: &Bench,
    stage: &Stage,
    b: &Arc<[Target]>,
    run: u32,
    phase: &str,
) -> BenchResult<Measured> {
    let times = bench.phase_times();
    let load = open_loop(
        stage.api.clone(),
        b.clone(),
        run,
        B_RATE,
        times.start,
        times.end,
    );
    measure(stage, times, b, phase, load).await
}
