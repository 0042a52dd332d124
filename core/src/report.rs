//! `POST /v1/reports`: what each filter worker sends every report interval.
//!
//! Reports carry deltas. Each (proxy, worker) numbers its reports; the controller ignores a sequence
//! number it has already seen, so a duplicate or reordered delivery is harmless; the filter resends an
//! unacknowledged report unchanged (`outbox`), so a lost acknowledgement does not count it twice. Unknown fields are
//! accepted so that newer filters can report to an older controller.

use serde::{Deserialize, Serialize};

use crate::analysis::VersionStats;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The Envoy process (node id, or `proxy_id` from the plugin config).
    pub proxy: String,
    /// The worker (VM) within that process.
    pub worker: String,
    pub seq: u64,
    /// The config generation this worker has applied (None before the first config).
    pub generation: Option<u64>,
    #[serde(default)]
    pub versions: Vec<VersionReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionReport {
    pub rollout: String,
    pub version: String,
    pub stats: VersionStats,
}

/// The JSON body of `POST /v1/reports`.
pub fn encode(report: &Report) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(report)
}
