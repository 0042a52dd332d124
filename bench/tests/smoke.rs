//! The benchmark harness end to end, for seconds: `fledge-bench --smoke` starts the real Envoys, the
//! controller and agents, drives every benchmark briefly and renders the report. So the harness cannot
//! rot between `make bench` runs. Nothing here asserts a timing (the budgets are measured by
//! `make bench`, never asserted): only that each part ran and produced sane, non-zero numbers.

use std::path::PathBuf;
use std::process::Command;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The empty filter is a workspace member but `make build` does not build its wasm; build it here
/// (seconds: it shares proxy-wasm with the fledge filter's build).
fn empty_filter_wasm() -> PathBuf {
    if let Some(p) = std::env::var_os("FLEDGE_EMPTY_WASM") {
        return PathBuf::from(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["build", "--quiet", "--target", "wasm32-wasip1", "--profile", "wasm", "-p", "fledge-empty-filter"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    assert!(status.success(), "building the empty filter failed");
    target_dir().join("wasm32-wasip1/wasm/fledge_empty_filter.wasm")
}

/// The numbers in the markdown table row that starts with `| {label} |`.
fn row_numbers(md: &str, label: &str) -> Vec<f64> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {label} |")))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{md}"));
    line.split('|')
        .skip(2)
        .filter_map(|cell| cell.split_whitespace().next().map(|w| w.replace(',', "")))
        .filter_map(|w| w.parse::<f64>().ok())
        .collect()
}

#[test]
fn every_benchmark_runs_and_reports() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("BENCHMARKS.md");
    let output = Command::new(env!("CARGO_BIN_EXE_fledge-bench"))
        .arg("--smoke")
        .arg("--out")
        .arg(&out)
        .env("FLEDGE_EMPTY_WASM", empty_filter_wasm())
        .output()
        .unwrap_or_else(|e| panic!("cannot run fledge-bench: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "fledge-bench --smoke failed:\n{stderr}");
    let md = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("no report written: {e}"));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), md.trim(), "the printed table is the written one");

    assert!(!md.contains("sink received 0 copies"), "the shadow variant did not shadow:\n{md}");
    for heading in ["## Budgets", "## 1. Filter cost in Envoy", "## 1b. Hostcalls per request (counted)", "## 3. Push latency", "## 4. Rollback reaction", "## 5. Controller ingest", "## 6. Judgement: decision quality", "## 7. Several replicas on PostgreSQL"] {
        assert!(md.contains(heading), "missing {heading:?} in:\n{md}");
    }
    assert!(!md.contains("**failed**"), "a benchmark failed:\n{md}");

    // Filter cost: every variant served load, cost CPU, and answered the fixed-rate run.
    for variant in ["no filter", "empty proxy-wasm filter", "fledge filter, rollout at 50 %", "fledge filter, rollout at 50 %, shadow 10 % of stable's requests"] {
        let n = row_numbers(&md, variant);
        assert_eq!(n.len(), 7, "{variant}: {n:?}");
        let (rps, cpu_us, p50, p99) = (n[0], n[3], n[5], n[6]);
        assert!(rps > 0.0 && cpu_us > 0.0, "{variant}: {n:?}");
        assert!(p50 > 0.0 && p99 >= p50, "{variant}: {n:?}");
    }
    assert!(md.contains("Canary share seen before measuring"), "{md}");

    // Push: every change was seen by every Envoy.
    let push = row_numbers(&md, "all 2 Envoys route by it");
    assert!(push.len() == 4 && push.iter().all(|x| *x > 0.0), "{push:?}");

    // Judgement: every row of the table ran.
    let a_a = row_numbers(&md, "A/A, both versions identical");
    assert!(a_a.len() >= 5, "{a_a:?}");
    assert!(md.contains("| healthy canary"), "{md}");

    // Rollback: measured, or clearly pending.
    assert!(md.contains("healthy canary requests before t0") || md.contains("**Pending** on automated analysis"), "{md}");

    // Ingest: reports were accepted (the endpoint exists), or clearly pending.
    if !md.contains("**Pending** on `POST /v1/reports`") {
        let ingest = md
            .lines()
            .skip_while(|l| !l.starts_with("| reports/s accepted"))
            .nth(2)
            .unwrap_or_else(|| panic!("no ingest row in:\n{md}"));
        let reports: f64 = ingest.split('|').nth(1).and_then(|c| c.trim().parse().ok()).unwrap_or(0.0);
        assert!(reports > 0.0, "{ingest}");
        // The hostile flood ran, and every one of its requests got a 4xx.
        let flood = md
            .lines()
            .skip_while(|l| !l.starts_with("| requests | 4xx | other answers"))
            .nth(2)
            .unwrap_or_else(|| panic!("no flood row in:\n{md}"));
        let cells: Vec<&str> = flood.split('|').map(str::trim).collect();
        assert!(cells.get(1) == cells.get(2) && cells.get(3) == Some(&"0"), "{flood}");
    }

    // Several replicas: reports accepted through all three, none rejected, a failover measured.
    let ha = md
        .lines()
        .skip_while(|l| !l.starts_with("| reports/s accepted | rejected | CPU per replica"))
        .nth(2)
        .unwrap_or_else(|| panic!("no HA row in:\n{md}"));
    let cells: Vec<&str> = ha.split('|').map(str::trim).collect();
    assert!(cells.get(1).and_then(|c| c.parse::<f64>().ok()).unwrap_or(0.0) > 0.0 && cells.get(2) == Some(&"0"), "{ha}");
    assert_eq!(cells.get(3).map(|c| c.matches('%').count()), Some(3), "a CPU share per replica: {ha}");
    assert!(md.contains("Failover: the leader killed") && md.contains("failover: leader killed under a failing canary"), "{md}");
}
