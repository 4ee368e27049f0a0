//! Small helpers the benchmarks share: percentiles and printing durations.

#![allow(dead_code)]

use std::time::Duration;

/// The `p` quantile (0.0–1.0) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    percentile(&samples, 0.5)
}

/// Rates of several runs as "median (runs: a, b, c)", whole numbers.
pub fn median_of_runs(mut rates: Vec<f64>) -> String {
    let runs = rates
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    rates.sort_by(f64::total_cmp);
    format!("{:.0} (runs: {runs})", rates[rates.len() / 2])
}

pub fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

pub fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// CPU time process `pid` has used so far (user and system, its ended
/// threads included), from `/proc/<pid>/stat` in the kernel's fixed
/// 100 Hz user ticks.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: count the
    // fields after its closing one (utime and stime are fields 14 and 15).
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// The CPU time the server (`pid`) and this load generator use from its
/// start, for a run's cost per request.
pub struct CpuMeter {
    server: u32,
    started: (Duration, Duration),
}

impl CpuMeter {
    pub fn start(server: u32) -> CpuMeter {
        CpuMeter {
            server,
            started: (cpu_time(server), cpu_time(std::process::id())),
        }
    }

    /// The server's and the load generator's CPU time since the start,
    /// divided by `requests`.
    pub fn per(&self, requests: f64) -> (Duration, Duration) {
        let requests = requests.max(1.0);
        (
            (cpu_time(self.server) - self.started.0).div_f64(requests),
            (cpu_time(std::process::id()) - self.started.1).div_f64(requests),
        )
    }
}

/// The CPU time per request of the server and of the load generator over
/// some runs, as "server / load generator (ratio)" medians. The load
/// generator's work per request is the same whatever the server does, so
/// the ratio cancels the machine's drift in speed, which moves both alike.
pub fn cpu_split(runs: &[(Duration, Duration)]) -> String {
    let mut ratios: Vec<f64> = runs
        .iter()
        .map(|(server, client)| server.as_secs_f64() / client.as_secs_f64().max(1e-9))
        .collect();
    ratios.sort_by(f64::total_cmp);
    format!(
        "{} / {} ({:.2})",
        micros(median(runs.iter().map(|r| r.0).collect())),
        micros(median(runs.iter().map(|r| r.1).collect())),
        ratios.get(ratios.len() / 2).copied().unwrap_or(0.0)
    )
}
