//! CPU time and peak memory of processes, read from /proc.

use std::fs;
use std::process::Command;

/// Clock ticks per second of the times in /proc/<pid>/stat (`getconf CLK_TCK`; 100 when
/// getconf is missing, the value on every common Linux).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// utime + stime of one process in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
pub fn process_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3, so field n sits at index n - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks summed over every process whose /proc/<pid>/comm is `postgres`, and how many
/// there were. A process that exits between two readings takes its ticks with it.
pub fn postgres_ticks() -> (u64, usize) {
    let Ok(entries) = fs::read_dir("/proc") else {
        return (0, 0);
    };
    let mut ticks = 0;
    let mut processes = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let is_postgres = fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end() == "postgres");
        if let Some(t) = is_postgres.then(|| process_ticks(pid)).flatten() {
            ticks += t;
            processes += 1;
        }
    }
    (ticks, processes)
}

/// Peak resident set size (VmHWM) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}
