//! `hookrelay-bench`: runs the benchmark scenarios against a `hookrelay serve` child process
//! and writes the report (Markdown to stdout and bench/results/, JSON beside it).
#![forbid(unsafe_code)]

mod api;
mod args;
mod balance;
mod compare;
mod cpu;
mod database;
mod ledger;
mod load;
mod machine;
mod procfs;
mod receiver;
mod report;
mod scenarios;
mod server;
mod stats;
mod writes;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;

use args::{Args, Backend};
use compare::Comparison;
use database::Databases;
use report::{Failure, Report};
use scenarios::Bench;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("VOID: at least one run did not balance or failed; see the report");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `hookrelay` beside this executable, as cargo builds both into one target directory.
fn default_server_bin() -> BenchResult<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me
        .parent()
        .ok_or("the bench executable has no parent directory")?;
    Ok(dir.join("hookrelay"))
}

fn client() -> BenchResult<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        // One kept-alive connection per publish in flight, and then some.
        .pool_max_idle_per_host(2048)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Runs every planned scenario; `Ok(false)` when the report is VOID.
async fn run(args: Args) -> BenchResult<bool> {
    let started = Instant::now();
    let started_at = Utc::now();
    let server_bin = match &args.server_bin {
        Some(bin) => bin.clone(),
        None => default_server_bin()?,
    };
    if !server_bin.is_file() {
        return Err(format!(
            "no server binary at {} (build it with `cargo build --release --bin hookrelay`, \
             or pass --server-bin)",
            server_bin.display()
        )
        .into());
    }
    let stamp = started_at.format("%Y%m%dT%H%M%SZ").to_string();
    let logs_dir = args.results_dir.join(format!("{stamp}-logs"));
    std::fs::create_dir_all(&logs_dir)?;
    let ticks_per_second = procfs::clock_ticks_per_second();
    let with_postgres = args.backends().contains(&Backend::Postgres);
    let databases = Databases::open(&args.postgres_url, with_postgres).await?;
    let mut report = Report {
        started_at,
        elapsed_secs: 0.0,
        machine: machine::facts(ticks_per_second),
        postgres: None,
        sqlite: None,
        server_bin: server_bin.display().to_string(),
        server_settings: server::settings(&server_bin)?,
        bench_settings: bench_settings(&args, &logs_dir),
        sections: Vec::new(),
        failures: Vec::new(),
        comparison: None,
    };
    if let Some(b) = &args.compare {
        if !b.is_file() {
            return Err(format!("no server binary at {} (--compare)", b.display()).into());
        }
        report.server_bin = format!("A: {}, B: {}", server_bin.display(), b.display());
        report.comparison = Some(Comparison {
            a: server_bin.display().to_string(),
            b: b.display().to_string(),
            rounds: args.rounds,
        });
    }
    for backend in args.backends() {
        match backend {
            Backend::Postgres => report.postgres = Some(databases.postgres_facts().await?),
            Backend::Sqlite => report.sqlite = Some(databases.sqlite_facts().await?),
        }
    }
    let bench = Bench::new(
        args,
        server_bin.clone(),
        client()?,
        databases,
        ticks_per_second,
        logs_dir,
    );
    let builds = match bench.args.compare.clone() {
        Some(b) => vec![("A", server_bin), ("B", b)],
        None => vec![("", server_bin)],
    };
    run_all(&bench, &builds, &mut report, started).await;
    report.elapsed_secs = started.elapsed().as_secs_f64();
    write_report(&report, &bench.args.results_dir, &stamp)?;
    bench.databases.close().await;
    Ok(!report.void())
}

/// Every planned scenario on every planned backend, once per build (alternating, for
/// `--rounds` rounds, when two are compared); a failure is reported, not fatal.
async fn run_all(
    bench: &Bench,
    builds: &[(&'static str, PathBuf)],
    report: &mut Report,
    started: Instant,
) {
    let rounds = if builds.len() > 1 {
        bench.args.rounds
    } else {
        1
    };
    for backend in bench.args.backends() {
        for scenario in bench.args.scenarios() {
            for round in 1..=rounds {
                for (variant, bin) in builds {
                    bench.use_server(bin.clone());
                    eprintln!(
                        "[{:>6.1} s] {} on {}{}",
                        started.elapsed().as_secs_f64(),
                        scenario.name(),
                        backend.name(),
                        if variant.is_empty() {
                            String::new()
                        } else {
                            format!(", {variant} round {round}")
                        }
                    );
                    match scenarios::run(bench, backend, scenario).await {
                        Ok(mut section) => {
                            section.variant = (!variant.is_empty()).then_some(*variant);
                            report.sections.push(section);
                        }
                        Err(error) => {
                            eprintln!("  failed: {error}");
                            report.failures.push(Failure {
                                scenario: scenario.name(),
                                backend: backend.name(),
                                error: error.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }
}

/// The Markdown to stdout and to `<results>/<stamp>.md`, the JSON to `<stamp>.json`.
fn write_report(report: &Report, results: &Path, stamp: &str) -> BenchResult<()> {
    let markdown = report.markdown();
    println!("{markdown}");
    let path = results.join(format!("{stamp}.md"));
    std::fs::write(&path, &markdown)?;
    let json = serde_json::to_string_pretty(&report.json())?;
    std::fs::write(results.join(format!("{stamp}.json")), json)?;
    eprintln!(
        "[{:>6.1} s] done; written to {}",
        report.elapsed_secs,
        path.display()
    );
    Ok(())
}

fn bench_settings(args: &Args, logs_dir: &Path) -> Vec<(String, String)> {
    vec![
        ("measured phase".into(), format!("{} s", args.duration_secs)),
        (
            "warm-up (not measured)".into(),
            format!("{} s", args.warmup_secs),
        ),
        ("backlog deliveries".into(), args.backlog.to_string()),
        (
            "isolation offered rate".into(),
            format!("{} events/s per project", args.isolation_rate),
        ),
        ("server logs".into(), logs_dir.display().to_string()),
    ]
}
