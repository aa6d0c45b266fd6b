//! Management API: 64 clients over 8 projects, each looping create, list, rotate-secret and
//! delete of a webhook; latency per operation and operations/s.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::phase::PhaseTimes;
use super::{Bench, sleep_until, start_server};
use crate::BenchResult;
use crate::api::{Api, Project};
use crate::database::FreshDb;
use crate::report::{Section, num, opt};
use crate::stats::{micros, percentiles};

const CLIENTS: usize = 64;
const PROJECTS: usize = 8;
const OPERATIONS: [&str; 4] = ["create", "list", "rotate-secret", "delete"];
/// Never called: no event is published here, so the URL only has to be accepted.
const WEBHOOK_URL: &str = "http://127.0.0.1:9009/management";

/// One call: which operation, when it started, how long it took, whether it succeeded.
struct Call {
    operation: usize,
    started: Instant,
    took: Duration,
    ok: bool,
}

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let server = start_server(bench, db, "management", true).await?;
    let api = Api::new(bench.http.clone(), &server);
    let projects = api.provision(PROJECTS).await?;
    let times = bench.phase_times();
    let mut clients = JoinSet::new();
    for n in 0..CLIENTS {
        let api = api.clone();
        let project = projects[n % PROJECTS].clone();
        clients.spawn(client(api, project, times));
    }
    let mut calls = Vec::new();
    let mut first_error = None;
    for (client_calls, error) in clients.join_all().await {
        calls.extend(client_calls);
        first_error = first_error.or(error);
    }
    server.stop().await?;

    let mut section = Section::new(
        "management",
        db.backend.name(),
        &["operation", "calls", "ops/s", "p50 ms", "p99 ms", "errors"],
    );
    section.details = add_rows(&mut section, &calls, times);
    if let Some(error) = first_error {
        section.notes.push(format!("first error: {error}"));
    }
    Ok(section)
}

/// A row per operation and one for all, from the calls started in the measured window;
/// returns the same for the JSON report.
fn add_rows(section: &mut Section, calls: &[Call], times: PhaseTimes) -> Value {
    let measured: Vec<&Call> = calls
        .iter()
        .filter(|c| (times.measured_from..times.end).contains(&c.started))
        .collect();
    let secs = (times.end - times.measured_from).as_secs_f64();
    let mut details = Vec::new();
    let names = OPERATIONS.iter().map(|name| (*name, Some(*name)));
    for (name, only) in names.chain([("all", None)]) {
        let of_op: Vec<&&Call> = measured
            .iter()
            .filter(|c| only.is_none_or(|op| OPERATIONS[c.operation] == op))
            .collect();
        let ok: Vec<u64> = of_op
            .iter()
            .filter(|c| c.ok)
            .map(|c| micros(c.took))
            .collect();
        let errors = of_op.len() - ok.len();
        let per_sec = ok.len() as f64 / secs;
        let latency = percentiles(ok);
        section.rows.push(vec![
            name.to_owned(),
            of_op.len().to_string(),
            num(per_sec),
            opt(latency.map(|l| l.p50_ms)),
            opt(latency.map(|l| l.p99_ms)),
            errors.to_string(),
        ]);
        details.push(
            json!({"operation": name, "calls": of_op.len(), "ops_per_sec": per_sec,
                            "latency": latency, "errors": errors}),
        );
    }
    json!({"clients": CLIENTS, "projects": PROJECTS, "operations": details})
}

/// Loops create → list → rotate → delete until the phase ends; a failed create skips the
/// rest of its round.
async fn client(api: Api, project: Project, times: PhaseTimes) -> (Vec<Call>, Option<String>) {
    sleep_until(times.start).await;
    let mut calls = Vec::new();
    let mut first_error = None;
    let mut note = |calls: &mut Vec<Call>, operation, started: Instant, error: Option<String>| {
        calls.push(Call {
            operation,
            started,
            took: started.elapsed(),
            ok: error.is_none(),
        });
        if first_error.is_none() {
            first_error = error.map(|e| format!("{}: {e}", OPERATIONS[operation]));
        }
    };
    while Instant::now() < times.end {
        let started = Instant::now();
        let webhook = match api.create_webhook(&project, WEBHOOK_URL).await {
            Ok(created) => created.id,
            Err(e) => {
                note(&mut calls, 0, started, Some(e.to_string()));
                continue;
            }
        };
        note(&mut calls, 0, started, None);
        let started = Instant::now();
        let listed = api.list_webhooks(&project).await;
        note(&mut calls, 1, started, listed.err().map(|e| e.to_string()));
        let started = Instant::now();
        let rotated = api.rotate_secret(&project, &webhook).await;
        note(&mut calls, 2, started, rotated.err().map(|e| e.to_string()));
        let started = Instant::now();
        let deleted = api.delete_webhook(&project, &webhook).await;
        note(&mut calls, 3, started, deleted.err().map(|e| e.to_string()));
    }
    (calls, first_error)
}
