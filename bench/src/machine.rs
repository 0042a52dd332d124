//! What the numbers were measured on: CPU model, cores, memory, kernel, Envoy and rustc versions.
//! Benchmarks from different machines are not comparable; BENCHMARKS.md says which one this was.

use std::path::Path;
use std::process::Command;

pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub envoy: String,
    pub rustc: String,
    pub wrk: String,
    pub date: String,
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Some(text.trim().to_string()).filter(|s| !s.is_empty())
}

impl Machine {
    pub fn describe(envoy_bin: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).map(str::to_string))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        let kernel = run("uname", &["-sr"]).unwrap_or_else(|| "unknown".into());
        // "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL": keep the version part.
        let envoy = run(&envoy_bin.to_string_lossy(), &["--version"])
            .and_then(|v| v.split("version:").nth(1).map(|s| s.trim().to_string()))
            .map(|v| v.split('/').skip(1).collect::<Vec<_>>().join("/"))
            .unwrap_or_else(|| "unknown".into());
        let rustc = run("rustc", &["--version"]).unwrap_or_else(|| "unknown".into());
        // `wrk -v` prints its version and exits non-zero; the first line is what we want.
        let wrk = run("wrk", &["-v"]).and_then(|v| v.lines().next().map(str::to_string)).unwrap_or_else(|| "not installed".into());
        let date = run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
        Self { cpu, cores, memory_gib, kernel, envoy, rustc, wrk, date }
    }
}
