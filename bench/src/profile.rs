//! Facts for the "what profiling found" section that can be recomputed on every run (module sizes
//! before and after `wasm-opt`), next to the notes from profiling the filter by hand.

use std::path::Path;
use std::process::Command;

/// `wasm-opt -O3` output size of `wasm`, when binaryen is installed.
fn wasm_opt_size(wasm: &Path) -> Option<u64> {
    let dir = tempfile::tempdir().ok()?;
    let out = dir.path().join("opt.wasm");
    let status = Command::new("wasm-opt").arg("-O3").arg(wasm).arg("-o").arg(&out).output().ok()?;
    status.status.success().then(|| std::fs::metadata(&out).ok().map(|m| m.len()))?
}

pub fn notes() -> Vec<String> {
    let mut notes = Vec::new();
    for (what, path) in [
        ("fledge filter", fledge_integration::wasm_path()),
        ("empty filter", crate::filter_cost::empty_wasm_path()),
    ] {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let opt = wasm_opt_size(&path)
            .map(|b| format!("; `wasm-opt -O3` takes it to {b} bytes"))
            .unwrap_or_default();
        notes.push(format!("{what}: {} bytes as built (profile `wasm`: LTO, opt-level 3){opt}.", meta.len()));
    }
    notes.extend(HAND_NOTES.iter().map(|s| s.to_string()));
    notes
}

/// From profiling the filter by hand (see the report in the commit that added the benchmarks).
const HAND_NOTES: &[&str] = &[];
