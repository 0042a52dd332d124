//! Envoy metrics for Prometheus: the reported deltas, added to counters once per report interval (not
//! per request, which would cost a hostcall each).
//!
//! Names are `fledge.<rollout>.<version>.<counter>` (dots in names become `_`); the `stats_tags` in the
//! README turn the two middle parts into `fledge_rollout` and `fledge_version` labels.

use std::collections::HashMap;

use fledge_core::analysis::VersionStats;
use fledge_core::report::Report;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Process-wide: reports sent but not acknowledged (each worker adds its change), and reports dropped
/// because the controller acknowledged none for a long time.
const UNACKNOWLEDGED: &str = "fledge.reports_unacknowledged";
const DROPPED: &str = "fledge.reports_dropped_total";
/// Process-wide: the linear memory of fledge's VMs (each worker adds its change), to see it stay flat.
const VM_MEMORY: &str = "fledge.vm_memory_bytes";

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
    /// This worker's share of the unacknowledged gauge.
    unacknowledged: usize,
    /// This worker's share of the memory gauge.
    memory: u64,
}

fn counters(s: &VersionStats) -> [(&'static str, u64); 14] {
    [
        ("requests_total", s.requests),
        // Routed but not measured (stable's sampling): requests_total + unmeasured_total is the traffic.
        ("unmeasured_total", s.unmeasured),
        ("responses_2xx_total", s.status_2xx),
        ("responses_3xx_total", s.status_3xx),
        ("responses_4xx_total", s.status_4xx),
        ("responses_5xx_total", s.status_5xx),
        ("errors_total", s.errors),
        ("outcome_success_total", s.outcome_success),
        ("outcome_failure_total", s.outcome_failure),
        ("outcome_malformed_total", s.outcome_malformed),
        ("cost_tasks_total", s.cost_count),
        ("cost_micros_total", (s.cost_sum * 1e6) as u64),
        ("policy_violations_total", s.policy_violations),
        ("policy_violating_requests_total", s.policy_violating_requests),
    ]
}

fn sanitize(s: &str) -> String {
    s.replace('.', "_")
}

impl Metrics {
    pub fn export(&mut self, report: &Report) {
        for v in &report.versions {
            let prefix = format!("fledge.{}.{}.", sanitize(&v.rollout), sanitize(&v.version));
            for (name, delta) in counters(&v.stats) {
                if delta > 0 {
                    self.add(&prefix, name, delta);
                }
            }
        }
    }

    pub fn reports_dropped(&mut self, n: u64) {
        self.add("", DROPPED, n);
    }

    pub fn reports_unacknowledged(&mut self, now: usize) {
        let delta = i64::try_from(now).unwrap_or(i64::MAX) - i64::try_from(self.unacknowledged).unwrap_or(i64::MAX);
        if delta != 0 {
            if let Some(id) = self.id(MetricType::Gauge, UNACKNOWLEDGED.to_string()) {
                if hostcalls::increment_metric(id, delta).is_ok() {
                    self.unacknowledged = now;
                }
            }
        }
    }

    /// This VM's linear memory now, added to the process-wide gauge as a change.
    pub fn vm_memory(&mut self, bytes: u64) {
        let delta = i64::try_from(bytes).unwrap_or(i64::MAX) - i64::try_from(self.memory).unwrap_or(i64::MAX);
        if delta != 0 {
            if let Some(id) = self.id(MetricType::Gauge, VM_MEMORY.to_string()) {
                if hostcalls::increment_metric(id, delta).is_ok() {
                    self.memory = bytes;
                }
            }
        }
    }

    fn add(&mut self, prefix: &str, name: &str, delta: u64) {
        if let Some(id) = self.id(MetricType::Counter, format!("{prefix}{name}")) {
            let _ = hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
        }
    }

    fn id(&mut self, kind: MetricType, full: String) -> Option<u32> {
        if let Some(id) = self.ids.get(&full) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, &full).ok()?;
        self.ids.insert(full, id);
        Some(id)
    }
}
