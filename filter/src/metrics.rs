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

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
}

fn counters(s: &VersionStats) -> [(&'static str, u64); 13] {
    [
        ("requests_total", s.requests),
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

    fn add(&mut self, prefix: &str, name: &str, delta: u64) {
        let full = format!("{prefix}{name}");
        let id = match self.ids.get(&full) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, &full) {
                Ok(id) => *self.ids.entry(full).or_insert(id),
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
    }
}
