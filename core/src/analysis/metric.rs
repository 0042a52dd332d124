//! The metrics a gate can judge, with their direction ("which way is worse") and units.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A per-version metric derived from [`super::VersionStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// errors / requests (errors = 5xx or upstream failure).
    ErrorRate,
    /// Median total latency, milliseconds.
    LatencyP50Ms,
    /// 99th-percentile total latency, milliseconds.
    LatencyP99Ms,
    /// success / (success + failure) of reported task outcomes. Higher is better.
    TaskSuccessRate,
    /// Mean reported cost per task (the unit the agent reports).
    CostPerTask,
    /// Share of requests with at least one policy violation.
    PolicyViolationRate,
}

/// How a metric is tested.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricKind {
    /// A proportion in [0, 1].
    Rate,
    /// A latency quantile (q in (0, 1)) of the total-latency histogram.
    Latency { quantile: f64 },
    /// A mean of per-task values.
    Mean,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::ErrorRate,
        Metric::LatencyP50Ms,
        Metric::LatencyP99Ms,
        Metric::TaskSuccessRate,
        Metric::CostPerTask,
        Metric::PolicyViolationRate,
    ];

    /// The wire name (snake_case).
    pub fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::LatencyP50Ms => "latency_p50_ms",
            Metric::LatencyP99Ms => "latency_p99_ms",
            Metric::TaskSuccessRate => "task_success_rate",
            Metric::CostPerTask => "cost_per_task",
            Metric::PolicyViolationRate => "policy_violation_rate",
        }
    }

    /// Only task success is "higher is better"; for every other metric an increase is a regression.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::TaskSuccessRate)
    }

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::ErrorRate | Metric::TaskSuccessRate | Metric::PolicyViolationRate => {
                MetricKind::Rate
            }
            Metric::LatencyP50Ms => MetricKind::Latency { quantile: 0.5 },
            Metric::LatencyP99Ms => MetricKind::Latency { quantile: 0.99 },
            Metric::CostPerTask => MetricKind::Mean,
        }
    }

    /// A value of this metric for people: rates in percent, latency in ms.
    pub fn format_value(self, value: f64) -> String {
        match self.kind() {
            MetricKind::Rate => format!("{:.2}%", value * 100.0),
            MetricKind::Latency { .. } => format!("{value:.1} ms"),
            MetricKind::Mean => format!("{value:.4}"),
        }
    }

    /// A difference of this metric for people: rates in percentage points.
    pub fn format_delta(self, delta: f64) -> String {
        match self.kind() {
            MetricKind::Rate => format!("{:.2} pp", delta * 100.0),
            _ => self.format_value(delta),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_snake_case() {
        for m in Metric::ALL {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
            assert_eq!(serde_json::from_str::<Metric>(&json).unwrap(), m);
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(Metric::ErrorRate.format_value(0.021), "2.10%");
        assert_eq!(Metric::ErrorRate.format_delta(0.005), "0.50 pp");
        assert_eq!(Metric::LatencyP99Ms.format_value(312.26), "312.3 ms");
    }
}
