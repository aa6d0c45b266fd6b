//! The report: the machine, the settings, one Markdown table per scenario and the accounting
//! of every run, with the same content as JSON.

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::balance::Balance;
use crate::compare::Comparison;
use crate::database::{PostgresFacts, SqliteFacts};
use crate::machine::Machine;

/// One scenario's results on one backend.
#[derive(Debug, Serialize)]
pub struct Section {
    pub scenario: &'static str,
    pub backend: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// The same results, typed, for the JSON report.
    pub details: Value,
    pub balances: Vec<Balance>,
    pub invalid_signatures: u64,
    /// Correctly signed requests without a delivery id or the bench's tags.
    pub malformed: u64,
    pub notes: Vec<String>,
    /// Which binary ran it, `A` or `B`, under `--compare`.
    pub variant: Option<&'static str>,
}

impl Section {
    pub fn new(scenario: &'static str, backend: &'static str, columns: &[&'static str]) -> Self {
        Self {
            scenario,
            backend,
            columns: columns.to_vec(),
            rows: Vec::new(),
            details: Value::Null,
            balances: Vec::new(),
            invalid_signatures: 0,
            malformed: 0,
            notes: Vec::new(),
            variant: None,
        }
    }

    /// A run that does not balance, or received a bad signature, proves nothing.
    pub fn void(&self) -> bool {
        self.invalid_signatures > 0
            || self.malformed > 0
            || self.balances.iter().any(|b| !b.balanced())
    }
}

/// A scenario that could not run to the end.
#[derive(Debug, Serialize)]
pub struct Failure {
    pub scenario: &'static str,
    pub backend: &'static str,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub started_at: DateTime<Utc>,
    pub elapsed_secs: f64,
    pub machine: Machine,
    pub postgres: Option<PostgresFacts>,
    pub sqlite: Option<SqliteFacts>,
    pub server_bin: String,
    pub server_settings: Vec<(String, String)>,
    pub bench_settings: Vec<(String, String)>,
    pub sections: Vec<Section>,
    pub failures: Vec<Failure>,
    pub comparison: Option<Comparison>,
}

/// A number with as many decimals as its size deserves.
pub fn num(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        v if v >= 0.1 => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

pub fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), num)
}

pub fn table(out: &mut String, columns: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", columns.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(columns.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

fn minutes(duration: Duration) -> String {
    let secs = duration.as_secs();
    format!("{}m {:02}s", secs / 60, secs % 60)
}

impl Report {
    pub fn void(&self) -> bool {
        !self.failures.is_empty() || self.sections.iter().any(Section::void)
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let verdict = if self.void() {
            "**VOID**: a run did not balance, saw a bad signature or failed (see Accounting)"
        } else {
            "every run balanced"
        };
        let _ = writeln!(
            out,
            "# hookrelay-bench, {}\n\nFinished in {} ({:.0} s); {verdict}.\n",
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            minutes(Duration::from_secs_f64(self.elapsed_secs)),
            self.elapsed_secs
        );
        self.write_setup(&mut out);
        let mut seen: Vec<&str> = Vec::new();
        for section in &self.sections {
            if !seen.contains(&section.scenario) {
                seen.push(section.scenario);
                self.write_scenario(&mut out, section.scenario);
            }
        }
        if let Some(comparison) = &self.comparison {
            crate::compare::write(&mut out, comparison, &self.sections);
        }
        self.write_accounting(&mut out);
        out
    }

    fn write_setup(&self, out: &mut String) {
        let m = &self.machine;
        out.push_str("## Machine\n\n");
        table(
            out,
            &[
                "nproc",
                "CPU",
                "memory",
                "kernel",
                "CLK_TCK",
                "load average at start",
            ],
            &[vec![
                m.nproc.to_string(),
                m.cpu_model.clone(),
                m.memory.clone(),
                m.kernel.clone(),
                m.clock_ticks_per_second.to_string(),
                m.load_average_at_start.clone(),
            ]],
        );
        out.push_str("## Databases\n\n");
        if let Some(pg) = &self.postgres {
            let _ = writeln!(
                out,
                "- Postgres: {}; synchronous_commit = {}, fsync = {}, wal_sync_method = {} \
                 (left as configured); connections with sslmode = {}",
                pg.version, pg.synchronous_commit, pg.fsync, pg.wal_sync_method, pg.sslmode
            );
        }
        if let Some(lite) = &self.sqlite {
            let _ = writeln!(
                out,
                "- SQLite {} (the server opens it in WAL mode with synchronous = FULL)",
                lite.version
            );
        }
        let _ = writeln!(out, "\n## Server settings (`{}`)\n", self.server_bin);
        let rows: Vec<Vec<String>> = self
            .server_settings
            .iter()
            .map(|(flag, value)| vec![format!("`{flag}`"), value.clone()])
            .collect();
        table(out, &["flag", "value"], &rows);
        out.push_str("## Bench settings\n\n");
        let rows: Vec<Vec<String>> = self
            .bench_settings
            .iter()
            .map(|(name, value)| vec![name.clone(), value.clone()])
            .collect();
        table(out, &["setting", "value"], &rows);
    }

    fn write_scenario(&self, out: &mut String, scenario: &str) {
        let sections: Vec<&Section> = self
            .sections
            .iter()
            .filter(|s| s.scenario == scenario)
            .collect();
        let _ = writeln!(out, "## {scenario}\n");
        let mut columns = vec!["backend"];
        if self.comparison.is_some() {
            columns.push("build");
        }
        columns.extend(&sections[0].columns);
        columns.push("run");
        let mut rows = Vec::new();
        for section in &sections {
            let status = if section.void() { "VOID" } else { "ok" };
            for row in &section.rows {
                let mut full = vec![section.backend.to_owned()];
                full.extend(section.variant.map(str::to_owned));
                full.extend(row.iter().cloned());
                full.push(status.to_owned());
                rows.push(full);
            }
        }
        table(out, &columns, &rows);
        for section in &sections {
            for note in &section.notes {
                let _ = writeln!(out, "- {}: {note}", section.backend);
            }
        }
        if sections.iter().any(|s| !s.notes.is_empty()) {
            out.push('\n');
        }
    }

    fn write_accounting(&self, out: &mut String) {
        out.push_str("## Accounting\n\n");
        let columns = [
            "backend",
            "scenario",
            "phase",
            "published",
            "accepted (202)",
            "refused",
            "expected deliveries",
            "delivered (unique)",
            "missing",
            "duplicates",
            "unexpected",
            "bad signatures",
            "drain wait s",
            "status",
        ];
        let mut rows = Vec::new();
        for section in &self.sections {
            for b in &section.balances {
                let ok = b.balanced() && section.invalid_signatures == 0 && section.malformed == 0;
                rows.push(vec![
                    section.backend.to_owned(),
                    section.scenario.to_owned(),
                    b.phase.clone(),
                    b.published.to_string(),
                    b.accepted.to_string(),
                    b.refused.to_string(),
                    b.expected.to_string(),
                    b.delivered.to_string(),
                    b.missing.to_string(),
                    b.duplicates.to_string(),
                    b.unexpected.to_string(),
                    (section.invalid_signatures + section.malformed).to_string(),
                    num(b.waited_secs),
                    if ok { "balanced" } else { "VOID" }.to_owned(),
                ]);
            }
        }
        table(out, &columns, &rows);
        for failure in &self.failures {
            let _ = writeln!(
                out,
                "- **FAILED** {} on {}: {}",
                failure.scenario, failure.backend, failure.error
            );
        }
    }

    pub fn json(&self) -> Value {
        json!({ "void": self.void(), "report": self })
    }
}
