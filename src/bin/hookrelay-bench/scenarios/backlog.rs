//! Backlog: N deliveries queued while no worker runs, then a server with the worker on the
//! same database drains them; drain rate, time to empty and the draining server's peak RSS.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::{Bench, Stage};
use crate::BenchResult;
use crate::balance::{Settled, settle};
use crate::cpu::CpuCost;
use crate::database::FreshDb;
use crate::load::{Load, Stop, Target, closed_loop};
use crate::procfs::peak_rss_kib;
use crate::report::{Section, num, opt};

const FANOUT: u32 = 100;
const PUBLISHERS: usize = 32;
const COLUMNS: [&str; 8] = [
    "deliveries queued",
    "events",
    "queueing events/s",
    "time to empty s",
    "drain deliveries/s",
    "peak RSS MiB",
    "service CPU ms/delivery",
    "Postgres CPU ms/delivery",
];

/// What the draining server did.
struct Drain {
    settled: Settled,
    time_to_empty: Option<f64>,
    per_sec: Option<f64>,
    peak_rss_mib: Option<f64>,
    cpu: CpuCost,
}

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let events = bench.args.backlog.div_ceil(u64::from(FANOUT)).max(1);
    let stage = Stage::start(bench, db, "backlog", FANOUT as usize, 1, false).await?;
    let hooks: Vec<u32> = (0..FANOUT).collect();
    let targets: Arc<[Target]> = vec![stage.target(0, &hooks).await?].into();
    let mut section = Section::new("backlog", db.backend.name(), &COLUMNS);

    let filling = Instant::now();
    let load = closed_loop(
        stage.api.clone(),
        targets.clone(),
        0,
        PUBLISHERS,
        Stop::After(events),
        None,
    )
    .await;
    let queueing_per_sec = events as f64 / filling.elapsed().as_secs_f64();
    let delivered_while_off = stage.receiver.ledger().unique(0, &hooks);

    let stage = stage.restart(bench, db, true).await?;
    let drain = drain(bench, &stage, &targets, &load).await;
    stage.record_rejects(&mut section);
    stage.stop().await?;

    section.rows.push(vec![
        drain.settled.balance.expected.to_string(),
        events.to_string(),
        num(queueing_per_sec),
        opt(drain.time_to_empty),
        opt(drain.per_sec),
        opt(drain.peak_rss_mib),
        opt(drain.cpu.service_ms_per_delivery),
        opt(drain.cpu.postgres_ms_per_delivery),
    ]);
    if delivered_while_off > 0 {
        section.notes.push(format!(
            "{delivered_while_off} deliveries arrived while the worker was off"
        ));
    }
    if let Some(error) = &load.first_error {
        section.notes.push(format!("first refusal: {error}"));
    }
    section.details = json!({
        "deliveries_queued": drain.settled.balance.expected,
        "events": events,
        "queueing_events_per_sec": queueing_per_sec,
        "time_to_empty_secs": drain.time_to_empty,
        "drain_deliveries_per_sec": drain.per_sec,
        "peak_rss_mib": drain.peak_rss_mib,
        "delivered_while_worker_off": delivered_while_off,
        "cpu": drain.cpu,
    });
    section.balances.push(drain.settled.balance);
    Ok(section)
}

/// Waits for the draining server to deliver everything; reads its peak RSS before it stops.
async fn drain(bench: &Bench, stage: &Stage, targets: &[Target], load: &Load) -> Drain {
    let meter = stage.cpu_meter();
    let settled = settle(stage.receiver.ledger(), targets, load, "queued while down").await;
    let spent = meter.stop();
    let peak_rss_mib = peak_rss_kib(stage.server.pid()).map(|kib| kib as f64 / 1024.0);
    let arrivals = || settled.arrivals.iter().map(|a| a.at);
    let (first, last) = (arrivals().min(), arrivals().max());
    let delivered = settled.balance.delivered;
    Drain {
        time_to_empty: last.map(|l| (l - stage.server.spawned_at).as_secs_f64()),
        per_sec: first
            .zip(last)
            .map(|(f, l)| delivered as f64 / (l - f).as_secs_f64().max(1e-3)),
        peak_rss_mib,
        cpu: spent.per_delivery(delivered, bench.ticks_per_second),
        settled,
    }
}
