//! The standard process metrics Prometheus clients export (CPU time, resident memory, open
//! files, start time), read from /proc at each scrape and rendered in the text format. Where
//! /proc is missing (not Linux) they are simply left out.

use std::fmt::Write;
use std::fs;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The unit of the times in /proc/<pid>/stat: USER_HZ, 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// When this process began serving metrics, as seconds since the epoch; set on first use, which
/// is while the app is built at start.
pub fn start_time() -> f64 {
    static START: OnceLock<f64> = OnceLock::new();
    *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// utime + stime of this process, in seconds (fields 14 and 15 of /proc/self/stat).
fn cpu_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses; the fields after it do not.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: f64 = fields.get(15 - 3)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// VmRSS of /proc/self/status, in bytes.
fn resident_bytes() -> Option<f64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}

fn open_fds() -> Option<f64> {
    Some(fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: Option<f64>) {
    if let Some(value) = value {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

/// The process metrics in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    sample(
        &mut out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        cpu_seconds(),
    );
    sample(
        &mut out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        resident_bytes(),
    );
    sample(
        &mut out,
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        open_fds(),
    );
    sample(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        Some(start_time()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reports_its_own_figures() {
        let text = render();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} in {text}"
            );
        }
        assert!(
            resident_bytes().unwrap() > 1024.0 * 1024.0,
            "more than a MiB resident"
        );
        assert!(
            open_fds().unwrap() >= 3.0,
            "stdin, stdout and stderr at least"
        );
    }
}
