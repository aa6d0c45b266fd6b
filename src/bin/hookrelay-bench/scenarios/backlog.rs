//! Backlog: N deliveries queued while no worker runs, then a server with the worker on the
//! same database drains them; drain rate, time to empty and the draining server's peak RSS.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::{Bench, Stage};
use crate::BenchResult;
use crate::balance::settle;
use crate::database::FreshDb;
use crate::load::{Stop, Target, closed_loop};
use crate::procfs::peak_rss_kib;
use crate::report::{Section, num, opt};

const FANOUT: u32 = 100;
const PUBLISHERS: usize = 32;

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let events = bench.args.backlog.div_ceil(u64::from(FANOUT)).max(1);
    let stage = Stage::start(bench, db, "backlog", FANOUT as usize, 1, false).await?;
    let hooks: Vec<u32> = (0..FANOUT).collect();
    let targets: Arc<[Target]> = vec![stage.target(0, &hooks).await?].into();
    let mut section = Section::new(
        "backlog",
        db.backend.name(),
        &[
            "deliveries queued",
            "events",
            "queueing events/s",
            "time to empty s",
            "drain deliveries/s",
            "peak RSS MiB",
            "service CPU ms/delivery",
            "Postgres CPU ms/delivery",
        ],
    );

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
    let meter = stage.cpu_meter();
    let settled = settle(
        stage.receiver.ledger(),
        &targets,
        &load,
        "queued while down",
    )
    .await;
    let spent = meter.stop();
    // Read before the stop: VmHWM goes with the process.
    let peak_rss_mib = peak_rss_kib(stage.server.pid()).map(|kib| kib as f64 / 1024.0);

    let arrivals = || settled.arrivals.iter().map(|a| a.at);
    let (first, last) = (arrivals().min(), arrivals().max());
    let time_to_empty = last.map(|l| (l - stage.server.spawned_at).as_secs_f64());
    let drain_per_sec = first
        .zip(last)
        .map(|(f, l)| settled.balance.delivered as f64 / (l - f).as_secs_f64().max(1e-3));
    let cpu = spent.per_delivery(settled.balance.delivered, bench.ticks_per_second);
    section.rows.push(vec![
        settled.balance.expected.to_string(),
        events.to_string(),
        num(queueing_per_sec),
        opt(time_to_empty),
        opt(drain_per_sec),
        opt(peak_rss_mib),
        opt(cpu.service_ms_per_delivery),
        opt(cpu.postgres_ms_per_delivery),
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
        "deliveries_queued": settled.balance.expected,
        "events": events,
        "queueing_events_per_sec": queueing_per_sec,
        "time_to_empty_secs": time_to_empty,
        "drain_deliveries_per_sec": drain_per_sec,
        "peak_rss_mib": peak_rss_mib,
        "delivered_while_worker_off": delivered_while_off,
        "cpu": cpu,
    });
    section.balances.push(settled.balance);
    stage.record_rejects(&mut section);
    stage.stop().await?;
    Ok(section)
}
