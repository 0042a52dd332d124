//! `wasm-opt` (binaryen, Debian's package) on the fledge module: its size, and Envoy's start-up with
//! it — the time from starting Envoy to its listener accepting, which includes V8 compiling the
//! module — for the module as cargo builds it and after `wasm-opt -O3` and `-Oz`. Measured, not
//! shipped: the build serves cargo's module (see the report for why).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::envoy::{DirectEnvoy, Filter};

pub struct Variant {
    pub label: &'static str,
    pub bytes: u64,
    /// Start-up times, one per trial.
    pub startup: Vec<Duration>,
}

pub struct WasmOpt {
    pub version: String,
    pub variants: Vec<Variant>,
}

const FEATURES: [&str; 4] = ["--enable-bulk-memory", "--enable-sign-ext", "--enable-mutable-globals", "--enable-nontrapping-float-to-int"];

fn optimize(input: &Path, level: &str, out: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("wasm-opt").arg(level).args(FEATURES).arg(input).arg("-o").arg(out).status().context("cannot run wasm-opt (apt-get install -y binaryen)")?;
    anyhow::ensure!(status.success(), "wasm-opt {level} failed");
    Ok(())
}

pub async fn run(module: &Path, controller: std::net::SocketAddr, trials: usize) -> anyhow::Result<WasmOpt> {
    let out = std::process::Command::new("wasm-opt").arg("--version").output().context("wasm-opt is not installed (apt-get install -y binaryen)")?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = tempfile::Builder::new().prefix("fledge-bench-wasm-opt-").tempdir()?;
    let (o3, oz) = (dir.path().join("o3.wasm"), dir.path().join("oz.wasm"));
    optimize(module, "-O3", &o3)?;
    optimize(module, "-Oz", &oz)?;
    let modules: [(&'static str, PathBuf); 3] = [("as cargo builds it", module.to_path_buf()), ("wasm-opt -O3", o3), ("wasm-opt -Oz", oz)];
    let mut variants = Vec::new();
    for (label, path) in &modules {
        variants.push(Variant { label, bytes: std::fs::metadata(path)?.len(), startup: Vec::new() });
    }
    let paths: Vec<PathBuf> = modules.into_iter().map(|(_, p)| p).collect();
    // Interleaved trials, so drift hits every module alike.
    for _ in 0..trials {
        for (v, path) in variants.iter_mut().zip(&paths) {
            let filter = Filter::Fledge { path: path.clone(), config: json!({"report_interval_ms": 1000}), controller, shadow_sink: None };
            let t = Instant::now();
            let envoy = DirectEnvoy::start(&filter, 1).await?;
            v.startup.push(t.elapsed());
            drop(envoy);
        }
    }
    Ok(WasmOpt { version, variants })
}
