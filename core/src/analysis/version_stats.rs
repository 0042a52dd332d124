//! Per-version counters the proxies report (as deltas) and the controller sums.
//!
//! The wire form is this struct in serde (histograms sparse); every field defaults to zero so
//! proxies and controller of different versions still understand each other. Counters add with
//! saturation: a corrupt report must not panic the controller.

use super::metric::Metric;
use crate::histogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Counters for one version (stable or canary) over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionStats {
    /// Requests measured: every count below is of these.
    pub requests: u64,
    /// Requests routed to this version but not measured (stable's sampling, `stable_sampling` in the
    /// plugin config): counted only, so the traffic each version carried stays visible. Never judged.
    #[serde(skip_serializing_if = "is_zero")]
    pub unmeasured: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// 5xx or upstream failure (reset, timeout, no response), each request counted once.
    pub errors: u64,
    /// Time to response headers, µs. No gate judges it and the filter no longer measures it (a clock
    /// read per request saved); kept so that reports of older filters still parse and merge.
    pub latency_headers: Histogram,
    /// Time to end of response, µs; the latency metrics use this one.
    pub latency_total: Histogram,
    /// Time to the first response body byte, µs (time to first token for a streamed answer).
    pub latency_ttft: Histogram,
    pub outcome_success: u64,
    pub outcome_failure: u64,
    /// Outcome reports that could not be parsed (not counted as success or failure).
    pub outcome_malformed: u64,
    /// Tasks with a reported cost, and the sum and sum of squares of those costs.
    pub cost_count: u64,
    pub cost_sum: f64,
    pub cost_sum_sq: f64,
    pub cost_malformed: u64,
    /// Total violations reported (a request may report several).
    pub policy_violations: u64,
    /// Requests with at least one violation.
    pub policy_violating_requests: u64,
    pub policy_malformed: u64,
    /// Evaluation results by evaluation name (sent by evaluators, not by the proxies).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub evaluations: BTreeMap<String, EvaluationStats>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Evaluations one version keeps at most (more names are dropped).
pub const MAX_EVALUATIONS: usize = 32;

/// One evaluation's results for a version: scores, and labels (`pass` or anything else).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvaluationStats {
    pub count: u64,
    pub sum: f64,
    pub sum_sq: f64,
    pub labelled: u64,
    pub pass: u64,
}

impl EvaluationStats {
    pub fn merge(&mut self, o: &EvaluationStats) {
        self.count = self.count.saturating_add(o.count);
        self.sum = saturating_add(self.sum, o.sum);
        self.sum_sq = saturating_add(self.sum_sq, o.sum_sq);
        self.labelled = self.labelled.saturating_add(o.labelled);
        self.pass = self.pass.saturating_add(o.pass);
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    pub fn pass_rate(&self) -> Option<f64> {
        ratio(self.pass, self.labelled)
    }
}

impl VersionStats {
    /// Adds another window's (or proxy's) counters.
    pub fn merge(&mut self, other: &VersionStats) {
        let counters = [
            (&mut self.requests, other.requests),
            (&mut self.unmeasured, other.unmeasured),
            (&mut self.status_2xx, other.status_2xx),
            (&mut self.status_3xx, other.status_3xx),
            (&mut self.status_4xx, other.status_4xx),
            (&mut self.status_5xx, other.status_5xx),
            (&mut self.errors, other.errors),
            (&mut self.outcome_success, other.outcome_success),
            (&mut self.outcome_failure, other.outcome_failure),
            (&mut self.outcome_malformed, other.outcome_malformed),
            (&mut self.cost_count, other.cost_count),
            (&mut self.cost_malformed, other.cost_malformed),
            (&mut self.policy_violations, other.policy_violations),
            (
                &mut self.policy_violating_requests,
                other.policy_violating_requests,
            ),
            (&mut self.policy_malformed, other.policy_malformed),
        ];
        for (mine, theirs) in counters {
            *mine = mine.saturating_add(theirs);
        }
        self.cost_sum = saturating_add(self.cost_sum, other.cost_sum);
        self.cost_sum_sq = saturating_add(self.cost_sum_sq, other.cost_sum_sq);
        self.latency_headers.merge(&other.latency_headers);
        self.latency_total.merge(&other.latency_total);
        self.latency_ttft.merge(&other.latency_ttft);
        for (name, e) in &other.evaluations {
            if let Some(mine) = self.evaluations.get_mut(name) {
                mine.merge(e);
            } else if self.evaluations.len() < MAX_EVALUATIONS {
                self.evaluations.insert(name.clone(), *e);
            }
        }
    }

    /// The histogram a latency metric reads: time to first byte for the TTFT metrics, else the total.
    pub fn latency(&self, metric: Metric) -> &Histogram {
        match metric {
            Metric::LatencyTtftP50Ms | Metric::LatencyTtftP99Ms => &self.latency_ttft,
            _ => &self.latency_total,
        }
    }

    /// errors / requests.
    pub fn error_rate(&self) -> Option<f64> {
        ratio(self.errors, self.requests)
    }

    /// success / (success + failure).
    pub fn task_success_rate(&self) -> Option<f64> {
        ratio(self.outcome_success, self.outcomes())
    }

    /// cost_sum / cost_count.
    pub fn cost_per_task(&self) -> Option<f64> {
        self.cost_summary().mean()
    }

    /// policy_violating_requests / requests.
    pub fn policy_violation_rate(&self) -> Option<f64> {
        ratio(self.policy_violating_requests, self.requests)
    }

    pub fn latency_p50_ms(&self) -> Option<f64> {
        self.latency_quantile_ms(0.5)
    }

    pub fn latency_p99_ms(&self) -> Option<f64> {
        self.latency_quantile_ms(0.99)
    }

    /// A quantile of total latency, in milliseconds.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        self.latency_total.quantile(q).map(|micros| micros / 1000.0)
    }

    /// Tasks with a parsed outcome.
    pub fn outcomes(&self) -> u64 {
        self.outcome_success.saturating_add(self.outcome_failure)
    }

    pub fn cost_summary(&self) -> MeanSummary {
        MeanSummary {
            count: self.cost_count,
            sum: self.cost_sum,
            sum_sq: self.cost_sum_sq,
        }
    }

    /// The metric's value, `None` while its denominator is zero.
    /// A shadow metric reads these counts as a view of one side's answers to the copies
    /// ([`crate::shadow::ShadowStats::canary_view`]): its live base metric; mismatches are not a
    /// version metric (None).
    pub fn metric(&self, metric: Metric) -> Option<f64> {
        match metric.live_base().unwrap_or(metric) {
            Metric::ErrorRate => self.error_rate(),
            Metric::LatencyP50Ms => self.latency_p50_ms(),
            Metric::LatencyP99Ms => self.latency_p99_ms(),
            Metric::LatencyTtftP50Ms => self.latency_ttft.quantile(0.5).map(|us| us / 1000.0),
            Metric::LatencyTtftP99Ms => self.latency_ttft.quantile(0.99).map(|us| us / 1000.0),
            Metric::TaskSuccessRate => self.task_success_rate(),
            Metric::CostPerTask => self.cost_per_task(),
            Metric::PolicyViolationRate => self.policy_violation_rate(),
            // A mismatch view counts the differing pairs as its errors.
            Metric::ShadowMismatchRate => self.error_rate(),
            // Evaluation views: the score's negation is the "cost", labels are the outcomes.
            Metric::EvaluationScore => self.cost_per_task().map(|m| -m),
            Metric::EvaluationPassRate => self.task_success_rate(),
            _ => None,
        }
    }

    /// How many observations the metric rests on (its denominator).
    pub fn sample_size(&self, metric: Metric) -> u64 {
        match metric.live_base().unwrap_or(metric) {
            Metric::ErrorRate | Metric::PolicyViolationRate | Metric::ShadowMismatchRate => self.requests,
            Metric::LatencyP50Ms | Metric::LatencyP99Ms => self.latency_total.count(),
            Metric::LatencyTtftP50Ms | Metric::LatencyTtftP99Ms => self.latency_ttft.count(),
            Metric::TaskSuccessRate => self.outcomes(),
            Metric::CostPerTask | Metric::EvaluationScore => self.cost_count,
            Metric::EvaluationPassRate => self.outcomes(),
            _ => 0,
        }
    }
}

/// a + b, held at f64::MAX rather than overflowing to infinity (inputs are checked finite on ingest).
fn saturating_add(a: f64, b: f64) -> f64 {
    let sum = a + b;
    if sum.is_finite() {
        sum
    } else if sum.is_nan() {
        a
    } else {
        f64::MAX.copysign(sum)
    }
}

/// Count, sum and sum of squares of a per-observation quantity (e.g. cost per task).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeanSummary {
    pub count: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl MeanSummary {
    pub fn mean(&self) -> Option<f64> {
        let mean = self.sum / self.count as f64;
        (self.count > 0 && mean.is_finite()).then_some(mean)
    }

    /// Unbiased sample variance (clamped at 0 against rounding), needs two observations.
    pub fn variance(&self) -> Option<f64> {
        let mean = self.mean()?;
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let variance = ((self.sum_sq - n * mean * mean) / (n - 1.0)).max(0.0);
        variance.is_finite().then_some(variance)
    }
}

/// num / den clamped to [0, 1] (a report with more errors than requests is corrupt, not 110%).
fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num.min(den) as f64 / den as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VersionStats {
        let mut s = VersionStats {
            requests: 200,
            status_2xx: 196,
            status_5xx: 4,
            errors: 4,
            ..Default::default()
        };
        s.outcome_success = 90;
        s.outcome_failure = 10;
        s.cost_count = 4;
        s.cost_sum = 10.0;
        s.cost_sum_sq = 30.0;
        s.policy_violating_requests = 2;
        s.policy_violations = 3;
        for ms in 1..=100u64 {
            s.latency_total.record(ms * 1000);
        }
        s
    }

    #[test]
    fn derived_metrics() {
        let s = sample();
        assert_eq!(s.error_rate(), Some(0.02));
        assert_eq!(s.task_success_rate(), Some(0.9));
        assert_eq!(s.cost_per_task(), Some(2.5));
        assert_eq!(s.policy_violation_rate(), Some(0.01));
        assert!((s.latency_p50_ms().unwrap() - 50.0).abs() < 0.5);
        assert!((s.latency_p99_ms().unwrap() - 99.0).abs() < 1.0);
        assert_eq!(s.sample_size(Metric::TaskSuccessRate), 100);
        let empty = VersionStats::default();
        assert!(Metric::ALL.iter().all(|&m| empty.metric(m).is_none()));
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = sample();
        a.merge(&sample());
        assert_eq!(a.requests, 400);
        assert_eq!(a.errors, 8);
        assert_eq!(a.cost_sum_sq, 60.0);
        assert_eq!(a.latency_total.count(), 200);
        assert_eq!(a.error_rate(), Some(0.02));
        let mut huge = VersionStats {
            requests: u64::MAX,
            ..Default::default()
        };
        huge.merge(&sample());
        assert_eq!(huge.requests, u64::MAX);
    }

    #[test]
    fn wire_form_round_trips_and_defaults_missing_fields() {
        let s = sample();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""latency_total":{"buckets":[["#));
        let back: VersionStats = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let partial: VersionStats = serde_json::from_str(r#"{"requests":5,"errors":1}"#).unwrap();
        assert_eq!(partial.error_rate(), Some(0.2));
    }

    #[test]
    fn corrupt_counts_stay_in_range() {
        let s = VersionStats {
            requests: 10,
            errors: 20,
            ..Default::default()
        };
        assert_eq!(s.error_rate(), Some(1.0));
    }
}
