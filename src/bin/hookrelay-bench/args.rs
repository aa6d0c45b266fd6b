//! The bench's command line: which backends and scenarios to run, and for how long.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hookrelay-bench",
    about = "Measures a hookrelay server end to end: it starts `hookrelay serve`, provisions \
             tenants, publishes events and receives (and verifies) every delivery itself"
)]
pub struct Args {
    /// Which database kinds to run every scenario on.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    pub backend: BackendChoice,

    /// Run one scenario instead of the standard set.
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,

    /// Admin connection to Postgres: fresh databases are created and dropped through it.
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,

    /// The `hookrelay` binary to start (default: the one next to this executable).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,

    /// A second `hookrelay` binary: every scenario runs against both, alternating (A is
    /// --server-bin, B this one), and the report adds each figure's medians and B/A.
    #[arg(long)]
    pub compare: Option<PathBuf>,

    /// With --compare, how many times each binary runs each scenario.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rounds: u32,

    /// Length of each measured phase, warm-up not included.
    #[arg(long, default_value_t = 5)]
    pub duration_secs: u64,

    /// Length of the warm-up before each measured phase; its events are delivered and
    /// accounted for but not measured.
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,

    /// Deliveries queued while the worker is off, in the backlog scenario.
    #[arg(long, default_value_t = 200_000)]
    pub backlog: u64,

    /// Offered events/s to each of the two projects in the isolation scenario.
    #[arg(long, default_value_t = 100)]
    pub isolation_rate: u32,

    /// Where the Markdown and JSON reports (and the server logs) are written.
    #[arg(long, default_value = "bench/results")]
    pub results_dir: PathBuf,
}

impl Args {
    pub fn measured(&self) -> Duration {
        Duration::from_secs(self.duration_secs.max(1))
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup_secs)
    }

    pub fn backends(&self) -> Vec<Backend> {
        match self.backend {
            BackendChoice::Postgres => vec![Backend::Postgres],
            BackendChoice::Sqlite => vec![Backend::Sqlite],
            BackendChoice::Both => vec![Backend::Postgres, Backend::Sqlite],
        }
    }

    /// The scenarios to run, in an order where latency can use saturation's result.
    pub fn scenarios(&self) -> Vec<Scenario> {
        match self.scenario {
            Some(one) => vec![one],
            None => Scenario::value_variants().to_vec(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Postgres,
    Sqlite,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Saturation,
    Fanout,
    Latency,
    Isolation,
    Backlog,
    Management,
    Ceilings,
    Throttle,
    Fairness,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Saturation => "saturation",
            Scenario::Fanout => "fanout",
            Scenario::Latency => "latency",
            Scenario::Isolation => "isolation",
            Scenario::Backlog => "backlog",
            Scenario::Management => "management",
            Scenario::Ceilings => "ceilings",
            Scenario::Throttle => "throttle",
            Scenario::Fairness => "fairness",
        }
    }
}
