//! Gates: one metric, one threshold, validated at construction.
//!
//! Wire form (JSON/YAML), exactly one threshold field per gate:
//! `{"metric": "error_rate", "max_ratio": 1.25}`, `{"metric": "policy_violation_rate", "max": 0,
//! "critical": true}`.
//!
//! Thresholds, in the metric's own unit (rates as fractions, latency in ms):
//! - `max` / `min`: absolute limits on the canary's value, applied as given.
//! - `max_increase`: canary − stable may be at most this (0.01 = 1 percentage point for rates).
//! - `max_ratio`: canary / stable may be at most this (≥ 1).
//! - `max_decrease`: stable − canary may be at most this.
//!
//! Direction: only `task_success_rate` is higher-is-better. It takes `min` and `max_decrease`
//! (the allowed drop); `max`, `max_increase` and `max_ratio` are refused on it rather than
//! guessed at. Every other metric takes `max`, `max_increase` and `max_ratio`, and refuses `min`
//! and `max_decrease`.

use super::metric::{Metric, MetricKind};
use serde::{Deserialize, Serialize};

/// A validated threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Max(f64),
    Min(f64),
    MaxIncrease(f64),
    MaxDecrease(f64),
    MaxRatio(f64),
}

impl Threshold {
    /// Relative thresholds compare canary with stable; absolute ones look at the canary alone.
    pub fn is_relative(self) -> bool {
        matches!(
            self,
            Threshold::MaxIncrease(_) | Threshold::MaxDecrease(_) | Threshold::MaxRatio(_)
        )
    }

    fn field(self) -> &'static str {
        match self {
            Threshold::Max(_) => "max",
            Threshold::Min(_) => "min",
            Threshold::MaxIncrease(_) => "max_increase",
            Threshold::MaxDecrease(_) => "max_decrease",
            Threshold::MaxRatio(_) => "max_ratio",
        }
    }

    fn value(self) -> f64 {
        match self {
            Threshold::Max(v)
            | Threshold::Min(v)
            | Threshold::MaxIncrease(v)
            | Threshold::MaxDecrease(v)
            | Threshold::MaxRatio(v) => v,
        }
    }
}

/// Why a gate was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    #[error("gate on {metric}: no threshold (set one of max, min, max_increase, max_decrease, max_ratio)")]
    NoThreshold { metric: Metric },
    #[error("gate on {metric}: several thresholds ({fields}); use one gate per threshold")]
    SeveralThresholds { metric: Metric, fields: String },
    #[error("gate on {metric}: {field} = {value} is not a finite number")]
    NotFinite {
        metric: Metric,
        field: &'static str,
        value: f64,
    },
    #[error("gate on {metric}: {field} = {value} is outside {allowed}")]
    OutOfRange {
        metric: Metric,
        field: &'static str,
        value: f64,
        allowed: &'static str,
    },
    #[error("gate on {metric}: {why}")]
    Name { metric: Metric, why: &'static str },
    #[error("gate on {metric}: {field} does not apply ({hint})")]
    WrongDirection {
        metric: Metric,
        field: &'static str,
        hint: &'static str,
    },
}

/// The gate as written by users; [`Gate`] is its validated form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    pub metric: Metric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_increase: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_decrease: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ratio: Option<f64>,
    /// A failing critical gate rolls back at once; a critical absolute gate is applied even
    /// before `min_requests`.
    #[serde(default)]
    pub critical: bool,
    /// The evaluation an `evaluation_score` / `evaluation_pass_rate` gate judges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An evaluation's name, kept inline so that a gate stays `Copy`: 1-64 letters, digits, `.`, `_`,
/// `-` (the OpenTelemetry `gen_ai.evaluation.name`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EvalName {
    bytes: [u8; EvalName::MAX],
    len: u8,
}

impl EvalName {
    pub const MAX: usize = 64;

    pub fn parse(s: &str) -> Option<Self> {
        let ok = (1..=Self::MAX).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return None;
        }
        let mut bytes = [0u8; Self::MAX];
        for (slot, b) in bytes.iter_mut().zip(s.bytes()) {
            *slot = b;
        }
        Some(Self { bytes, len: s.len() as u8 })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.bytes.get(..usize::from(self.len)).unwrap_or_default()).unwrap_or_default()
    }
}

impl std::fmt::Debug for EvalName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// A validated gate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "GateConfig", into = "GateConfig")]
pub struct Gate {
    metric: Metric,
    threshold: Threshold,
    critical: bool,
    name: Option<EvalName>,
}

impl Gate {
    pub fn try_new(
        metric: Metric,
        threshold: Threshold,
        critical: bool,
    ) -> Result<Self, GateError> {
        if metric.is_evaluation() {
            return Err(GateError::Name { metric, why: "name the evaluation it judges (\"name\": \"helpfulness\")" });
        }
        Self::checked(metric, threshold, critical, None)
    }

    /// A gate on one named evaluation (`evaluation_score`, `evaluation_pass_rate`).
    pub fn evaluation(metric: Metric, name: &str, threshold: Threshold, critical: bool) -> Result<Self, GateError> {
        if !metric.is_evaluation() {
            return Err(GateError::Name { metric, why: "name applies to evaluation_score and evaluation_pass_rate only" });
        }
        let name = EvalName::parse(name).ok_or(GateError::Name { metric, why: "name must be 1-64 letters, digits, '.', '_' or '-'" })?;
        Self::checked(metric, threshold, critical, Some(name))
    }

    fn checked(metric: Metric, threshold: Threshold, critical: bool, name: Option<EvalName>) -> Result<Self, GateError> {
        check_direction(metric, threshold)?;
        check_range(metric, threshold)?;
        Ok(Self { metric, threshold, critical, name })
    }

    /// The evaluation an evaluation gate judges.
    pub fn evaluation_name(&self) -> Option<&str> {
        self.name.as_ref().map(EvalName::as_str)
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    pub fn critical(&self) -> bool {
        self.critical
    }

    /// The threshold for people, e.g. "canary ≤ 1.25× stable".
    pub fn describe(&self) -> String {
        let m = self.metric;
        match self.threshold {
            Threshold::Max(v) => format!("canary ≤ {}", m.format_value(v)),
            Threshold::Min(v) => format!("canary ≥ {}", m.format_value(v)),
            Threshold::MaxIncrease(v) => format!("canary ≤ stable + {}", m.format_delta(v)),
            Threshold::MaxDecrease(v) => format!("canary ≥ stable − {}", m.format_delta(v)),
            Threshold::MaxRatio(v) if m.higher_is_better() => format!("canary ≥ stable / {v}"),
            Threshold::MaxRatio(v) => format!("canary ≤ {v}× stable"),
        }
    }
}

fn check_direction(metric: Metric, threshold: Threshold) -> Result<(), GateError> {
    let field = threshold.field();
    // A mean score may fall by a factor: stable / canary ≤ r.
    if metric == Metric::EvaluationScore && matches!(threshold, Threshold::MaxRatio(_)) {
        return Ok(());
    }
    if metric == Metric::ShadowMismatchRate && !matches!(threshold, Threshold::Max(_)) {
        return Err(GateError::WrongDirection { metric, field, hint: "a mismatch rate has no stable counterpart: use max" });
    }
    let allowed = match threshold {
        Threshold::Min(_) | Threshold::MaxDecrease(_) => metric.higher_is_better(),
        Threshold::Max(_) | Threshold::MaxIncrease(_) | Threshold::MaxRatio(_) => {
            !metric.higher_is_better()
        }
    };
    if allowed {
        return Ok(());
    }
    let hint = if metric.higher_is_better() {
        "higher is better for this metric: use min, or max_decrease for the allowed drop"
    } else {
        "lower is better for this metric: use max, max_increase or max_ratio"
    };
    Err(GateError::WrongDirection {
        metric,
        field,
        hint,
    })
}

fn check_range(metric: Metric, threshold: Threshold) -> Result<(), GateError> {
    let (field, value) = (threshold.field(), threshold.value());
    if !value.is_finite() {
        return Err(GateError::NotFinite {
            metric,
            field,
            value,
        });
    }
    let is_rate = metric.kind() == MetricKind::Rate;
    let (ok, allowed) = match threshold {
        Threshold::MaxRatio(r) => (
            r >= 1.0,
            "[1, ∞) (a ratio below 1 would fail identical versions)",
        ),
        Threshold::Max(v) | Threshold::Min(v) if is_rate => ((0.0..=1.0).contains(&v), "[0, 1]"),
        Threshold::Max(v) if matches!(metric.kind(), MetricKind::Latency { .. }) => {
            (v > 0.0, "(0, ∞) ms")
        }
        Threshold::MaxIncrease(v) | Threshold::MaxDecrease(v) if is_rate => {
            ((0.0..1.0).contains(&v), "[0, 1)")
        }
        Threshold::Max(v)
        | Threshold::Min(v)
        | Threshold::MaxIncrease(v)
        | Threshold::MaxDecrease(v) => (v >= 0.0, "[0, ∞)"),
    };
    if ok {
        Ok(())
    } else {
        Err(GateError::OutOfRange {
            metric,
            field,
            value,
            allowed,
        })
    }
}

impl TryFrom<GateConfig> for Gate {
    type Error = GateError;

    fn try_from(c: GateConfig) -> Result<Self, Self::Error> {
        let set: Vec<Threshold> = [
            c.max.map(Threshold::Max),
            c.min.map(Threshold::Min),
            c.max_increase.map(Threshold::MaxIncrease),
            c.max_decrease.map(Threshold::MaxDecrease),
            c.max_ratio.map(Threshold::MaxRatio),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.as_slice() {
            [] => Err(GateError::NoThreshold { metric: c.metric }),
            [one] => match &c.name {
                Some(name) => Gate::evaluation(c.metric, name, *one, c.critical),
                None => Gate::try_new(c.metric, *one, c.critical),
            },
            several => {
                let fields = several
                    .iter()
                    .map(|t| t.field())
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(GateError::SeveralThresholds {
                    metric: c.metric,
                    fields,
                })
            }
        }
    }
}

impl From<Gate> for GateConfig {
    fn from(g: Gate) -> Self {
        let mut c = GateConfig {
            metric: g.metric,
            max: None,
            min: None,
            max_increase: None,
            max_decrease: None,
            max_ratio: None,
            critical: g.critical,
            name: g.evaluation_name().map(str::to_string),
        };
        match g.threshold {
            Threshold::Max(v) => c.max = Some(v),
            Threshold::Min(v) => c.min = Some(v),
            Threshold::MaxIncrease(v) => c.max_increase = Some(v),
            Threshold::MaxDecrease(v) => c.max_decrease = Some(v),
            Threshold::MaxRatio(v) => c.max_ratio = Some(v),
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Gate, String> {
        serde_json::from_str::<Gate>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_and_round_trips() {
        let g = parse(r#"{"metric":"policy_violation_rate","max":0,"critical":true}"#).unwrap();
        assert_eq!(g.threshold(), Threshold::Max(0.0));
        assert!(g.critical());
        let back = serde_json::to_string(&g).unwrap();
        assert_eq!(
            back,
            r#"{"metric":"policy_violation_rate","max":0.0,"critical":true}"#
        );
        let g = parse(r#"{"metric":"task_success_rate","max_decrease":0.02}"#).unwrap();
        assert!(!g.critical());
        assert_eq!(g.describe(), "canary ≥ stable − 2.00 pp");
    }

    #[test]
    fn refuses_unknown_fields_and_threshold_counts() {
        assert!(parse(r#"{"metric":"error_rate","max":0.1,"maximum":2}"#)
            .unwrap_err()
            .contains("unknown field"));
        assert!(parse(r#"{"metric":"error_rate"}"#)
            .unwrap_err()
            .contains("no threshold"));
        let err = parse(r#"{"metric":"error_rate","max":0.1,"max_ratio":2}"#).unwrap_err();
        assert!(err.contains("several thresholds (max, max_ratio)"), "{err}");
    }

    #[test]
    fn refuses_wrong_direction() {
        let err = Gate::try_new(Metric::ErrorRate, Threshold::Min(0.9), false).unwrap_err();
        assert!(matches!(
            err,
            GateError::WrongDirection { field: "min", .. }
        ));
        let err = Gate::try_new(Metric::TaskSuccessRate, Threshold::MaxIncrease(0.01), false)
            .unwrap_err();
        assert!(err.to_string().contains("max_decrease"), "{err}");
        assert!(Gate::try_new(Metric::TaskSuccessRate, Threshold::MaxRatio(1.1), false).is_err());
        assert!(Gate::try_new(Metric::LatencyP99Ms, Threshold::MaxDecrease(10.0), false).is_err());
    }

    #[test]
    fn refuses_out_of_range_values() {
        let bad = [
            (Metric::ErrorRate, Threshold::Max(1.5)),
            (Metric::ErrorRate, Threshold::MaxIncrease(-0.01)),
            (Metric::ErrorRate, Threshold::MaxIncrease(1.0)),
            (Metric::ErrorRate, Threshold::MaxRatio(0.9)),
            (Metric::LatencyP99Ms, Threshold::Max(0.0)),
            (Metric::CostPerTask, Threshold::Max(-1.0)),
            (Metric::TaskSuccessRate, Threshold::Min(1.01)),
            (Metric::LatencyP50Ms, Threshold::MaxRatio(f64::INFINITY)),
            (Metric::CostPerTask, Threshold::MaxIncrease(f64::NAN)),
        ];
        for (metric, threshold) in bad {
            assert!(
                Gate::try_new(metric, threshold, false).is_err(),
                "{metric} {threshold:?}"
            );
        }
        let good = [
            (Metric::ErrorRate, Threshold::Max(0.0)),
            (Metric::LatencyP99Ms, Threshold::Max(500.0)),
            (Metric::LatencyP50Ms, Threshold::MaxIncrease(25.0)),
            (Metric::CostPerTask, Threshold::MaxRatio(1.0)),
            (Metric::TaskSuccessRate, Threshold::Min(1.0)),
        ];
        for (metric, threshold) in good {
            assert!(
                Gate::try_new(metric, threshold, false).is_ok(),
                "{metric} {threshold:?}"
            );
        }
    }
}
