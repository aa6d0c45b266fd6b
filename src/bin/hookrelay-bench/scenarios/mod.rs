//! The scenarios, what they share (the bench context and a running stage: receiver, server,
//! projects) and the loop that gives each a fresh database.

mod backlog;
mod ceilings;
mod fairness;
mod fanout;
mod isolation;
mod latency;
mod management;
mod phase;
mod saturation;
mod throttle;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::BenchResult;
use crate::api::{Api, Project};
use crate::args::{Args, Backend, Scenario};
use crate::cpu::CpuMeter;
use crate::database::{Databases, FreshDb};
use crate::load::Target;
use crate::receiver::Receiver;
use crate::report::Section;
use crate::server::Server;
use crate::writes::WriteMeter;
use phase::PhaseTimes;

/// What every scenario may use.
pub struct Bench {
    pub args: Args,
    /// The `hookrelay` binary scenarios start; `--compare` switches it between runs.
    server_bin: Mutex<PathBuf>,
    pub http: reqwest::Client,
    pub databases: Databases,
    pub ticks_per_second: u64,
    pub logs_dir: PathBuf,
    /// Saturation's best accepted events/s per backend, for the latency scenario.
    peak_accepted: Mutex<HashMap<&'static str, f64>>,
}

impl Bench {
    pub fn new(
        args: Args,
        server_bin: PathBuf,
        http: reqwest::Client,
        databases: Databases,
        ticks_per_second: u64,
        logs_dir: PathBuf,
    ) -> Self {
        Self {
            args,
            server_bin: Mutex::new(server_bin),
            http,
            databases,
            ticks_per_second,
            logs_dir,
            peak_accepted: Mutex::default(),
        }
    }

    pub fn use_server(&self, bin: PathBuf) {
        *self
            .server_bin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = bin;
    }

    fn server_bin(&self) -> PathBuf {
        self.server_bin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn lock_peaks(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, f64>> {
        self.peak_accepted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remember_peak(&self, backend: Backend, accepted_per_sec: f64) {
        self.lock_peaks().insert(backend.name(), accepted_per_sec);
    }

    fn peak(&self, backend: Backend) -> Option<f64> {
        self.lock_peaks().get(backend.name()).copied()
    }

    /// The start of a phase's warm-up, its measured window and its end.
    fn phase_times(&self) -> PhaseTimes {
        // A moment's head start lets the load tasks spawn before the first send is due.
        let start = Instant::now() + Duration::from_millis(20);
        let measured_from = start + self.args.warmup();
        PhaseTimes {
            start,
            measured_from,
            end: measured_from + self.args.measured(),
        }
    }
}

/// Runs one scenario on a database of its own, dropped afterwards whatever happened.
pub async fn run(bench: &Bench, backend: Backend, scenario: Scenario) -> BenchResult<Section> {
    bench.databases.flush().await?;
    let db = bench.databases.create(backend, scenario.name()).await?;
    let section = match scenario {
        Scenario::Saturation => saturation::run(bench, &db).await,
        Scenario::Fanout => fanout::run(bench, &db).await,
        Scenario::Latency => latency::run(bench, &db).await,
        Scenario::Isolation => isolation::run(bench, &db).await,
        Scenario::Backlog => backlog::run(bench, &db).await,
        Scenario::Management => management::run(bench, &db).await,
        Scenario::Ceilings => ceilings::run(bench, &db).await,
        Scenario::Throttle => throttle::run(bench, &db).await,
        Scenario::Fairness => fairness::run(bench, &db).await,
    };
    let removed = bench.databases.remove(db).await;
    let section = section?;
    removed?;
    Ok(section)
}

/// A receiver, a server on the scenario's database and provisioned projects.
pub struct Stage {
    pub receiver: Receiver,
    pub server: Server,
    pub api: Api,
    pub projects: Vec<Project>,
    scenario: &'static str,
    backend: Backend,
    /// The scenario's database, for the write meter (Postgres only).
    database_url: String,
}

impl Stage {
    pub async fn start(
        bench: &Bench,
        db: &FreshDb,
        scenario: &'static str,
        hooks: usize,
        projects: usize,
        worker: bool,
    ) -> BenchResult<Self> {
        let receiver = Receiver::start(hooks).await?;
        let server = start_server(bench, db, scenario, worker).await?;
        let api = Api::new(bench.http.clone(), &server);
        let projects = api.provision(projects).await?;
        Ok(Self {
            receiver,
            server,
            api,
            projects,
            scenario,
            backend: db.backend,
            database_url: db.url.clone(),
        })
    }

    /// Stops the server, then starts another on the same database; projects and keys stay.
    pub async fn restart(self, bench: &Bench, db: &FreshDb, worker: bool) -> BenchResult<Self> {
        self.server.stop().await?;
        let server = start_server(bench, db, self.scenario, worker).await?;
        Ok(Self {
            api: Api::new(bench.http.clone(), &server),
            server,
            ..self
        })
    }

    /// Subscribes `hooks` of the receiver to events of project `project`; their deliveries
    /// are what its events owe.
    pub async fn target(&self, project: usize, hooks: &[u32]) -> BenchResult<Target> {
        let project = self.projects[project].clone();
        for &hook in hooks {
            self.subscribe(&project, hook, &self.receiver.url(hook))
                .await?;
        }
        Ok(Target {
            project,
            hooks: hooks.to_vec(),
        })
    }

    /// Creates a webhook for `url` whose deliveries the receiver checks as hook `hook`.
    pub async fn subscribe(&self, project: &Project, hook: u32, url: &str) -> BenchResult<()> {
        let created = self.api.create_webhook(project, url).await?;
        self.receiver.ledger().set_secret(hook, &created.secret)?;
        Ok(())
    }

    pub fn cpu_meter(&self) -> CpuMeter {
        CpuMeter::start(self.server.pid(), self.backend == Backend::Postgres)
    }

    /// Commits and WAL bytes from now on; on SQLite there is nothing to read.
    pub async fn write_meter(&self) -> BenchResult<Option<WriteMeter>> {
        match self.backend {
            Backend::Postgres => Ok(Some(WriteMeter::start(&self.database_url).await?)),
            Backend::Sqlite => Ok(None),
        }
    }

    /// Gathers table statistics (Postgres; SQLite plans without them), which also makes every
    /// connection plan its statements again.
    pub async fn analyze(&self) -> BenchResult<()> {
        if self.backend == Backend::Postgres {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&self.database_url).await?;
            sqlx::query("analyze").execute(&mut connection).await?;
            connection.close().await?;
        }
        Ok(())
    }

    /// Receiver-wide counts of bad requests, for the section.
    pub fn record_rejects(&self, section: &mut Section) {
        section.invalid_signatures = self.receiver.ledger().invalid();
        section.malformed = self.receiver.ledger().malformed();
    }

    pub async fn stop(self) -> BenchResult<()> {
        self.server.stop().await
    }
}

/// Starts a server whose output goes to a log file named after the scenario.
pub async fn start_server(
    bench: &Bench,
    db: &FreshDb,
    scenario: &str,
    worker: bool,
) -> BenchResult<Server> {
    let name = format!(
        "{}-{scenario}-{}.log",
        db.backend.name(),
        if worker { "worker" } else { "no-worker" }
    );
    Server::start(
        &bench.server_bin(),
        &db.url,
        worker,
        bench.logs_dir.join(name),
        &bench.http,
    )
    .await
}

/// Sleeps until `at` (at once if it has passed).
pub async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}
