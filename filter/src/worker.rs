//! Per-VM (per worker) state shared by the root context and the HTTP contexts it creates, and the few
//! hostcall helpers both use. Its own module so that `root` (which creates HTTP contexts) and `http`
//! (which reads the worker) depend on it rather than on each other.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use fledge_core::plugin::PluginConfig;
use fledge_core::rng::SplitMix64;
use fledge_core::route::RouteTable;
use fledge_core::sampling::Sampler;
use fledge_core::session::SessionKeys;
use fledge_core::telemetry::Telemetry;

use crate::shadow::Shadows;
use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

pub struct Worker {
    pub config: Rc<PluginConfig>,
    pub table: Option<Rc<RouteTable>>,
    pub rng: SplitMix64,
    /// New session keys, on a per-worker low-discrepancy sequence seeded from this worker's seed.
    pub sessions: SessionKeys,
    pub telemetry: Telemetry,
    /// Shadow copies waiting, in flight, and their pairs.
    pub shadows: Shadows,
    /// Which of stable's requests are measured (all, without `stable_sampling`); one slot per rollout
    /// of `table`, renewed with it.
    pub sampler: Sampler,
}

impl Worker {
    pub fn new(seed: u64) -> Self {
        Self { config: Rc::new(PluginConfig::default()), table: None, rng: SplitMix64::new(seed), sessions: SessionKeys::new(seed), telemetry: Telemetry::default(), shadows: Shadows::default(), sampler: Sampler::default() }
    }
}

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// This VM's linear memory in bytes (wasm pages of 64 KiB; it only grows). 0 natively.
pub fn vm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) as u64 * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

pub fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}
