//! Throttle: one endpoint that takes at most 50 requests in any second and answers the rest
//! `429` with `Retry-After: 1`, offered three times that; hookrelay should settle near the
//! receiver's rate and fail nothing.

use std::sync::Arc;

use serde_json::json;

use super::phase::measure;
use super::{Bench, Stage};
use crate::BenchResult;
use crate::database::FreshDb;
use crate::load::{Target, open_loop};
use crate::receiver::LIMITED_PER_SECOND;
use crate::report::{Section, num, opt};

/// Offered events/s: three times what the receiver takes.
const OFFERED: f64 = 150.0;
const COLUMNS: [&str; 6] = [
    "offered events/s",
    "receiver takes /s",
    "deliveries/s",
    "p50 ms",
    "p99 ms",
    "missing",
];

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let stage = Stage::start(bench, db, "throttle", 1, 1, true).await?;
    let project = stage.projects[0].clone();
    stage
        .subscribe(&project, 0, &stage.receiver.limited_url(0))
        .await?;
    let targets: Arc<[Target]> = vec![Target {
        project,
        hooks: vec![0],
    }]
    .into();
    let mut section = Section::new("throttle", db.backend.name(), &COLUMNS);
    let times = bench.phase_times();
    let load = open_loop(
        stage.api.clone(),
        targets.clone(),
        0,
        OFFERED,
        times.start,
        times.end,
    );
    let measured = measure(&stage, times, &targets, "throttling receiver", load).await?;
    let latency = measured.delivery_latency(&[0]);
    let per_sec = measured.deliveries_per_sec(&[0]);
    section.rows.push(vec![
        num(OFFERED),
        num(LIMITED_PER_SECOND as f64),
        num(per_sec),
        opt(latency.map(|l| l.p50_ms)),
        opt(latency.map(|l| l.p99_ms)),
        measured.settled.balance.missing.to_string(),
    ]);
    section.notes.push(format!(
        "every accepted event was delivered once the receiver let it in ({} waited {:.1} s after \
         publishing stopped); none failed",
        measured.settled.balance.delivered, measured.settled.balance.waited_secs
    ));
    section.details = json!({
        "offered_per_sec": OFFERED,
        "receiver_per_sec": LIMITED_PER_SECOND,
        "deliveries_per_sec": per_sec,
        "publish_to_arrival": latency,
    });
    section.balances.push(measured.settled.balance);
    stage.record_rejects(&mut section);
    stage.stop().await?;
    Ok(section)
}
