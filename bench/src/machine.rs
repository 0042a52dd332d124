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
    /// The commit measured, and the paths with uncommitted changes (they were measured too).
    pub commit: String,
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
        let wrk = run("wrk", &["-v"])
            .and_then(|v| v.lines().next().map(|l| l.split(" Copyright").next().unwrap_or(l).to_string()))
            .unwrap_or_else(|| "not installed".into());
        let date = run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
        Self { cpu, cores, memory_gib, kernel, envoy, rustc, wrk, date, commit: commit() }
    }
}

/// `git rev-parse --short HEAD`, plus which source paths differ from it (BENCHMARKS.md itself aside).
fn commit() -> String {
    let root = fledge_integration::workspace_root();
    let git = |args: &[&str]| {
        Command::new("git").arg("-C").arg(&root).args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else { return "unknown (not a git checkout)".into() };
    let dirty: Vec<String> = git(&["status", "--porcelain", "--untracked-files=no"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.get(3..).map(str::to_string))
        .filter(|p| p != "BENCHMARKS.md")
        .collect();
    if dirty.is_empty() {
        head.trim().to_string()
    } else {
        format!("{} with uncommitted changes to {}", head.trim(), dirty.join(", "))
    }
}
