//! CPU milliseconds per delivery spent by the service and by Postgres over a measured phase.

use serde::Serialize;

use crate::procfs::{postgres_ticks, process_ticks};

/// Readings taken when a measured phase starts.
pub struct CpuMeter {
    server_pid: u32,
    server_start: u64,
    /// `None` on SQLite, where Postgres takes no part.
    postgres_start: Option<(u64, usize)>,
}

/// Ticks spent between `CpuMeter::start` and `CpuMeter::stop`.
pub struct CpuSpent {
    server: Option<u64>,
    postgres: Option<(u64, (usize, usize))>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuCost {
    pub service_ms_per_delivery: Option<f64>,
    pub postgres_ms_per_delivery: Option<f64>,
    /// How many `postgres` processes were seen at the start and at the end.
    pub postgres_processes: Option<(usize, usize)>,
}

impl CpuMeter {
    pub fn start(server_pid: u32, with_postgres: bool) -> Self {
        Self {
            server_pid,
            server_start: process_ticks(server_pid).unwrap_or(0),
            postgres_start: with_postgres.then(postgres_ticks),
        }
    }

    pub fn stop(&self) -> CpuSpent {
        CpuSpent {
            server: process_ticks(self.server_pid).map(|now| now.saturating_sub(self.server_start)),
            postgres: self.postgres_start.map(|(start, processes)| {
                let (now, processes_now) = postgres_ticks();
                (now.saturating_sub(start), (processes, processes_now))
            }),
        }
    }
}

impl CpuSpent {
    /// The CPU spent, divided over the `deliveries` made meanwhile.
    pub fn per_delivery(&self, deliveries: u64, ticks_per_second: u64) -> CpuCost {
        let per_delivery = |ticks: u64| {
            (deliveries > 0)
                .then(|| ticks as f64 * 1000.0 / ticks_per_second as f64 / deliveries as f64)
        };
        CpuCost {
            service_ms_per_delivery: self.server.and_then(per_delivery),
            postgres_ms_per_delivery: self.postgres.and_then(|(ticks, _)| per_delivery(ticks)),
            postgres_processes: self.postgres.map(|(_, seen)| seen),
        }
    }
}
