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
    /// Mean score of an evaluation (`name` on the gate), e.g. an LLM judge's helpfulness. Higher is
    /// better.
    EvaluationScore,
    /// Share of an evaluation's labelled results that are `pass`. Higher is better.
    EvaluationPassRate,
    /// Median time to the first response body byte (first token), milliseconds.
    LatencyTtftP50Ms,
    /// 99th-percentile time to the first response body byte, milliseconds.
    LatencyTtftP99Ms,
    /// The shadow's (canary's) error rate on copies, judged against stable's answers to the same
    /// requests.
    ShadowErrorRate,
    /// The shadow's task success on copies, against stable's on the same requests. Higher is better.
    ShadowTaskSuccessRate,
    /// The shadow's mean cost per task, against stable's on the same requests.
    ShadowCostPerTask,
    /// The shadow's 99th-percentile time to complete, against stable's on the same requests.
    ShadowLatencyP99Ms,
    /// Share of pairs that differ in any dimension (status class, outcome, cost, policy, latency,
    /// body). Absolute limits only.
    ShadowMismatchRate,
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
    pub const ALL: [Metric; 15] = [
        Metric::ErrorRate,
        Metric::LatencyP50Ms,
        Metric::LatencyP99Ms,
        Metric::TaskSuccessRate,
        Metric::CostPerTask,
        Metric::PolicyViolationRate,
        Metric::LatencyTtftP50Ms,
        Metric::LatencyTtftP99Ms,
        Metric::EvaluationScore,
        Metric::EvaluationPassRate,
        Metric::ShadowErrorRate,
        Metric::ShadowTaskSuccessRate,
        Metric::ShadowCostPerTask,
        Metric::ShadowLatencyP99Ms,
        Metric::ShadowMismatchRate,
    ];

    /// Judged on shadow copies rather than on user traffic.
    pub fn is_shadow(self) -> bool {
        self.live_base().is_some() || self == Metric::ShadowMismatchRate
    }

    /// The live metric a shadow metric mirrors (None for live metrics and for mismatches).
    pub fn live_base(self) -> Option<Metric> {
        match self {
            Metric::ShadowErrorRate => Some(Metric::ErrorRate),
            Metric::ShadowTaskSuccessRate => Some(Metric::TaskSuccessRate),
            Metric::ShadowCostPerTask => Some(Metric::CostPerTask),
            Metric::ShadowLatencyP99Ms => Some(Metric::LatencyP99Ms),
            _ => None,
        }
    }

    /// The shadow gate a live gate gets when the spec shadows and names no shadow gate.
    pub fn shadow_counterpart(self) -> Option<Metric> {
        match self {
            Metric::ErrorRate => Some(Metric::ShadowErrorRate),
            Metric::TaskSuccessRate => Some(Metric::ShadowTaskSuccessRate),
            Metric::CostPerTask => Some(Metric::ShadowCostPerTask),
            Metric::LatencyP99Ms => Some(Metric::ShadowLatencyP99Ms),
            _ => None,
        }
    }

    /// The wire name (snake_case).
    pub fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::LatencyP50Ms => "latency_p50_ms",
            Metric::LatencyP99Ms => "latency_p99_ms",
            Metric::TaskSuccessRate => "task_success_rate",
            Metric::CostPerTask => "cost_per_task",
            Metric::PolicyViolationRate => "policy_violation_rate",
            Metric::EvaluationScore => "evaluation_score",
            Metric::EvaluationPassRate => "evaluation_pass_rate",
            Metric::LatencyTtftP50Ms => "latency_ttft_p50_ms",
            Metric::LatencyTtftP99Ms => "latency_ttft_p99_ms",
            Metric::ShadowErrorRate => "shadow_error_rate",
            Metric::ShadowTaskSuccessRate => "shadow_task_success_rate",
            Metric::ShadowCostPerTask => "shadow_cost_per_task",
            Metric::ShadowLatencyP99Ms => "shadow_latency_p99_ms",
            Metric::ShadowMismatchRate => "shadow_mismatch_rate",
        }
    }

    /// Only task success is "higher is better"; for every other metric an increase is a regression.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::TaskSuccessRate | Metric::ShadowTaskSuccessRate | Metric::EvaluationScore | Metric::EvaluationPassRate)
    }

    /// Judged on one named evaluation's results (the gate names it).
    pub fn is_evaluation(self) -> bool {
        matches!(self, Metric::EvaluationScore | Metric::EvaluationPassRate)
    }

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::ErrorRate | Metric::TaskSuccessRate | Metric::PolicyViolationRate => {
                MetricKind::Rate
            }
            Metric::ShadowErrorRate | Metric::ShadowTaskSuccessRate | Metric::ShadowMismatchRate => MetricKind::Rate,
            Metric::EvaluationPassRate => MetricKind::Rate,
            Metric::EvaluationScore => MetricKind::Mean,
            Metric::LatencyP50Ms | Metric::LatencyTtftP50Ms => MetricKind::Latency { quantile: 0.5 },
            Metric::LatencyTtftP99Ms => MetricKind::Latency { quantile: 0.99 },
            Metric::LatencyP99Ms | Metric::ShadowLatencyP99Ms => MetricKind::Latency { quantile: 0.99 },
            Metric::CostPerTask | Metric::ShadowCostPerTask => MetricKind::Mean,
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
