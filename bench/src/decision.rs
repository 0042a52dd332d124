//! The core decision natively: runs `cargo bench -p fledge-core --bench decision` (criterion,
//! core/benches/decision.rs) and reads the medians criterion stores in `estimates.json`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// The criterion benchmarks of core/benches/decision.rs, with what each one measures.
pub const BENCHES: [(&str, &str); 5] = [
    ("sticky_key", "lookup + decide with an `x-user-id` (one murmur3)"),
    ("random", "lookup + decide without a key (SplitMix64 draw)"),
    ("route_segments", "lookup + route: three segment rules that do not match, then the `x-user-id` split"),
    ("new_session", "a new session key (rejection sampling, ~196 murmur3; a session's first request only)"),
    ("no_rollout", "lookup of a host without a rollout"),
];

pub struct Estimate {
    pub name: &'static str,
    pub what: &'static str,
    pub median_ns: f64,
    pub mean_ns: f64,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| fledge_integration::workspace_root().join("target"))
}

/// Runs the criterion bench (its output goes to our stderr) and collects the estimates.
pub async fn run() -> anyhow::Result<Vec<Estimate>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = tokio::process::Command::new(cargo)
        .current_dir(fledge_integration::workspace_root())
        .args(["bench", "-p", "fledge-core", "--bench", "decision", "--", "--noplot"])
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .await
        .context("cannot run cargo bench")?;
    anyhow::ensure!(status.success(), "cargo bench -p fledge-core --bench decision failed: {status}");
    read(&target_dir().join("criterion"))
}

/// Reads `<dir>/decision/<bench>/new/estimates.json` for every bench.
pub fn read(criterion_dir: &Path) -> anyhow::Result<Vec<Estimate>> {
    BENCHES
        .iter()
        .map(|(name, what)| {
            let path = criterion_dir.join("decision").join(name).join("new/estimates.json");
            let v: Value = serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?;
            let point = |k: &str| v[k]["point_estimate"].as_f64().with_context(|| format!("{k} in {}", path.display()));
            Ok(Estimate { name, what, median_ns: point("median")?, mean_ns: point("mean")? })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_criterion_estimates() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (name, _) in super::BENCHES {
            let d = dir.path().join("decision").join(name).join("new");
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
            let json = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":36.9,"upper_bound":38.2},"point_estimate":37.5,"standard_error":0.3},
                           "median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":37.0,"upper_bound":37.9},"point_estimate":37.4,"standard_error":0.2}}"#;
            std::fs::write(d.join("estimates.json"), json).unwrap_or_else(|e| panic!("{e}"));
        }
        let est = super::read(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(est.len(), super::BENCHES.len());
        assert_eq!(est[0].median_ns, 37.4);
        assert_eq!(est[0].mean_ns, 37.5);
    }
}
