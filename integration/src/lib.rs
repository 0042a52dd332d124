//! Test harness for fledge: fluent builders that start a real Envoy (with the built wasm filter), the
//! real `fledge` controller and sample agent backends on loopback, plus [`eventually`] for waiting on a
//! condition with a deadline instead of sleeping and hoping.
//!
//! [`Browser`] drives a real headless Chromium over WebDriver for the dashboard tests.
//!
//! Binaries are found in the workspace's target directory (run `make build` first) or through
//! `FLEDGE_BIN`, `FLEDGE_WASM` and `FLEDGE_ENVOY`.

pub mod agent;
pub mod browser;
pub mod controller;
pub mod envoy;
pub mod eventually;
pub mod relay;
pub mod traffic;

use std::path::PathBuf;

pub use agent::{Agent, Behaviour, MultiAgent};
pub use browser::Browser;
pub use controller::Controller;
pub use envoy::Envoy;
pub use eventually::eventually;

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn from_env_or(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

pub fn fledge_bin() -> PathBuf {
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    from_env_or("FLEDGE_BIN", workspace_root().join("target").join(profile).join("fledge"))
}

pub fn wasm_path() -> PathBuf {
    from_env_or("FLEDGE_WASM", workspace_root().join("target/wasm32-wasip1/wasm/fledge_filter.wasm"))
}

pub fn envoy_bin() -> PathBuf {
    from_env_or("FLEDGE_ENVOY", workspace_root().join(".venv/bin/envoy"))
}
