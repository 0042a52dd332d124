//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`, seeds and any saved crash inputs) on
//! stable, through the same check functions the libFuzzer targets run: fuzz/src/lib.rs is compiled
//! into this test as a module, so the fuzzer and this replay cannot disagree about an invariant.
//! `make fuzz` searches for new inputs; this test keeps every one that was found failing or useful
//! checked on every `cargo test --workspace`.

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use fledge_integration::workspace_root;

fn corpus_dir(target: &str) -> PathBuf {
    workspace_root().join("fuzz").join("corpus").join(target)
}

/// Runs `check` on every file of the target's corpus; fails naming every input that breaks it.
fn replay(target: &str) {
    let check = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, check)| *check)
        .unwrap_or_else(|| panic!("no check for fuzz target {target}"));
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no corpus files", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", f.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} corpus inputs fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!("{target}: replayed {} corpus files", files.len());
}

#[test]
fn every_target_has_a_replay_test() {
    let tested = [
        "plugin_config",
        "rollout_spec",
        "report",
        "outcomes",
        "config_snapshot",
        "outcome_headers",
        "sparse_histogram",
    ];
    let targets: Vec<&str> = checks::TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(targets, tested);
    for t in targets {
        assert!(workspace_root().join("fuzz/fuzz_targets").join(format!("{t}.rs")).is_file(), "fuzz target {t}");
    }
}

#[test]
fn plugin_config() {
    replay("plugin_config");
}

#[test]
fn rollout_spec() {
    replay("rollout_spec");
}

#[test]
fn report() {
    replay("report");
}

#[test]
fn outcomes() {
    replay("outcomes");
}

#[test]
fn config_snapshot() {
    replay("config_snapshot");
}

#[test]
fn outcome_headers() {
    replay("outcome_headers");
}

#[test]
fn sparse_histogram() {
    replay("sparse_histogram");
}
