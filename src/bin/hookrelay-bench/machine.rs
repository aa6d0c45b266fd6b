//! Facts about the machine the numbers were taken on.

use std::fs;
use std::process::Command;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub clock_ticks_per_second: u64,
    /// /proc/loadavg when the bench started: anything else busy on the machine shows here.
    pub load_average_at_start: String,
}

fn first_value(path: &str, key: &str) -> Option<String> {
    fs::read_to_string(path).ok()?.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then(|| value.trim().to_owned())
    })
}

pub fn facts(clock_ticks_per_second: u64) -> Machine {
    let unknown = || "unknown".to_owned();
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: first_value("/proc/cpuinfo", "model name").unwrap_or_else(unknown),
        memory: first_value("/proc/meminfo", "MemTotal").unwrap_or_else(unknown),
        kernel: Command::new("uname")
            .arg("-r")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|text| text.trim().to_owned())
            .unwrap_or_else(unknown),
        clock_ticks_per_second,
        load_average_at_start: fs::read_to_string("/proc/loadavg")
            .map(|text| {
                text.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|_| unknown()),
    }
}
