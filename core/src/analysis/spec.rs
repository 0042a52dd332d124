//! The analysis spec: traffic steps, dwell, data minimums, failure tolerance and gates.

use super::gate::{Gate, GateConfig, GateError, Threshold};
use super::metric::Metric;
use super::step::StepHold;
use serde::{Deserialize, Serialize};

/// Why a spec was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("steps is empty: give at least one canary weight, e.g. [1, 5, 25, 50, 100]")]
    NoSteps,
    #[error("steps[{index}] = {value} is not a canary weight: give a percent in (0, 100] with at most two decimals")]
    StepOutOfRange { index: usize, value: f64 },
    #[error(
        "steps[{index}] = {value} is not above the step before it; steps must strictly increase"
    )]
    StepsNotIncreasing { index: usize, value: f64 },
    #[error("min_requests must be at least 1 (gates never pass on no data)")]
    MinRequestsZero,
    #[error("interval_seconds = {0} must be above 0 and at most {MAX_INTERVAL_SECONDS}")]
    BadInterval(f64),
    #[error("failure_limit must be at least 1")]
    FailureLimitZero,
    #[error("gates is empty: a rollout needs at least one gate (omit the field for the defaults)")]
    NoGates,
    #[error("gates[{index}]: {source}")]
    Gate { index: usize, source: GateError },
    #[error("{field} = {value} must be at most {MAX_PHASE_SECONDS}")]
    PhaseTooLong { field: &'static str, value: u64 },
    #[error("bake_seconds must be at least 1: the bake is where green is judged on all traffic")]
    NoBake,
    #[error("holds must be as long as steps")]
    Holds,
    #[error("shadow_seconds is not available with strategy \"blue_green\" (its preview already judges green before the switch); remove one")]
    ShadowAndBlueGreen,
}

/// The longest preview or bake of a blue-green rollout: a day.
pub const MAX_PHASE_SECONDS: u64 = 86_400;

/// A blue-green rollout: `preview_seconds` with only `version: canary` segments on green (judged
/// against blue, which has every other request), one switch of all traffic to green, then
/// `bake_seconds` on green alone. Internally its steps are `[0, 100]` (or `[100]` with no preview).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueGreen {
    pub preview_seconds: u64,
    pub bake_seconds: u64,
}

/// The longest analysis interval: an hour between judgements is already more than any canary wants.
pub const MAX_INTERVAL_SECONDS: f64 = 3_600.0;

/// The spec as written by users; [`AnalysisSpec`] is its validated form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpecConfig {
    /// Canary weights in percent, strictly increasing, each in (0, 100].
    pub steps: Vec<f64>,
    /// Minimum dwell at each step before advancing.
    pub step_seconds: u64,
    /// Observations each side needs (per metric) before a gate can pass.
    pub min_requests: u64,
    /// How often the controller calls `judge` (one failing call = one failing interval).
    #[serde(default = "default_interval_seconds")]
    pub interval_seconds: f64,
    /// Consecutive failing intervals of non-critical gates that trigger a rollback.
    pub failure_limit: u32,
    /// Defaults to [`default_gates`] when omitted.
    #[serde(default = "default_gate_configs")]
    pub gates: Vec<GateConfig>,
    /// Blue-green instead of steps: `steps` and `step_seconds` are then derived from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreen>,
    /// A shadow phase before the first step: step 0 at weight 0, this long, judged on the shadow
    /// gates only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_seconds: Option<u64>,
    /// What holds each step once it could advance (empty: nothing); as long as `steps` otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<StepHold>,
}

fn default_interval_seconds() -> f64 {
    1.0
}

fn default_gate_configs() -> Vec<GateConfig> {
    default_gates().into_iter().map(GateConfig::from).collect()
}

/// The default gates, all judged against stable:
/// - `error_rate`, `max_ratio: 1.25` — 1% → 1.25% is tolerated; a doubling is not.
/// - `latency_p99_ms`, `max_ratio: 1.2` — tail latency up to +20%.
/// - `task_success_rate`, `max_decrease: 0.02` — a drop of up to 2 percentage points.
/// - `policy_violation_rate`, `max_increase: 0.001`, critical — +0.1 pp of requests with a
///   violation, rolled back at the first significant evidence.
pub fn default_gates() -> Vec<Gate> {
    let gates = [
        (Metric::ErrorRate, Threshold::MaxRatio(1.25), false),
        (Metric::LatencyP99Ms, Threshold::MaxRatio(1.2), false),
        (Metric::TaskSuccessRate, Threshold::MaxDecrease(0.02), false),
        (
            Metric::PolicyViolationRate,
            Threshold::MaxIncrease(0.001),
            true,
        ),
    ];
    // These constants are valid; filter_map only keeps the code free of unwrap.
    gates
        .into_iter()
        .filter_map(|(m, t, c)| Gate::try_new(m, t, c).ok())
        .collect()
}

/// A validated analysis spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AnalysisSpecConfig", into = "AnalysisSpecConfig")]
pub struct AnalysisSpec {
    steps: Vec<f64>,
    step_seconds: u64,
    min_requests: u64,
    interval_seconds: f64,
    failure_limit: u32,
    gates: Vec<Gate>,
    blue_green: Option<BlueGreen>,
    shadow_seconds: Option<u64>,
    holds: Vec<StepHold>,
}

impl Default for AnalysisSpec {
    /// Steps 1 → 5 → 25 → 50 → 100 % at 60 s each, one look a second, 100 requests minimum,
    /// failure_limit 1, the default gates (the setting of the simulations).
    fn default() -> Self {
        Self {
            steps: vec![1.0, 5.0, 25.0, 50.0, 100.0],
            step_seconds: 60,
            min_requests: 100,
            interval_seconds: 1.0,
            failure_limit: 1,
            gates: default_gates(),
            blue_green: None,
            shadow_seconds: None,
            holds: Vec::new(),
        }
    }
}

impl AnalysisSpec {
    pub fn try_new(mut config: AnalysisSpecConfig) -> Result<Self, SpecError> {
        if let Some(bg) = config.blue_green {
            for (field, value) in [("preview_seconds", bg.preview_seconds), ("bake_seconds", bg.bake_seconds)] {
                if value > MAX_PHASE_SECONDS {
                    return Err(SpecError::PhaseTooLong { field, value });
                }
            }
            if bg.bake_seconds == 0 {
                return Err(SpecError::NoBake);
            }
            // The preview is a step at weight 0 (only segments reach green), the bake one at 100 %.
            config.steps = if bg.preview_seconds > 0 { vec![0.0, 100.0] } else { vec![100.0] };
            config.step_seconds = bg.preview_seconds.max(bg.bake_seconds);
        } else {
            // A stored spec with a shadow phase already carries its weight-0 step in front.
            let user_steps = match (config.shadow_seconds, config.steps.split_first()) {
                (Some(_), Some((first, rest))) if *first == 0.0 => rest,
                _ => config.steps.as_slice(),
            };
            check_steps(user_steps)?;
        }
        if let Some(s) = config.shadow_seconds {
            if config.blue_green.is_some() {
                return Err(SpecError::ShadowAndBlueGreen);
            }
            if !(1..=MAX_PHASE_SECONDS).contains(&s) {
                return Err(SpecError::PhaseTooLong { field: "shadow_seconds", value: s });
            }
            // The shadow phase is a step at weight 0 in front of the others (a stored spec already
            // has it).
            if config.steps.first() != Some(&0.0) {
                config.steps.insert(0, 0.0);
                if !config.holds.is_empty() {
                    config.holds.insert(0, StepHold::None);
                }
            }
        }
        if !config.holds.is_empty() && config.holds.len() != config.steps.len() {
            return Err(SpecError::Holds);
        }
        if config.min_requests == 0 {
            return Err(SpecError::MinRequestsZero);
        }
        if !(config.interval_seconds > 0.0 && config.interval_seconds <= MAX_INTERVAL_SECONDS) {
            return Err(SpecError::BadInterval(config.interval_seconds));
        }
        if config.failure_limit == 0 {
            return Err(SpecError::FailureLimitZero);
        }
        if config.gates.is_empty() {
            return Err(SpecError::NoGates);
        }
        let gates = config
            .gates
            .into_iter()
            .enumerate()
            .map(|(index, g)| Gate::try_from(g).map_err(|source| SpecError::Gate { index, source }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            steps: config.steps,
            step_seconds: config.step_seconds,
            min_requests: config.min_requests,
            interval_seconds: config.interval_seconds,
            failure_limit: config.failure_limit,
            gates,
            blue_green: config.blue_green,
            shadow_seconds: config.shadow_seconds,
            holds: config.holds,
        })
    }

    /// What holds `step_index` once it could advance.
    pub fn hold(&self, step_index: usize) -> &StepHold {
        static NONE: StepHold = StepHold::None;
        self.holds.get(step_index).unwrap_or(&NONE)
    }

    /// The shadow phase's step (0, when `shadow_seconds` is set): weight 0, no user on the canary.
    pub fn is_shadow(&self, step_index: usize) -> bool {
        self.shadow_seconds.is_some() && step_index == 0
    }

    pub fn shadow_seconds(&self) -> Option<u64> {
        self.shadow_seconds
    }

    pub fn blue_green(&self) -> Option<BlueGreen> {
        self.blue_green
    }

    /// The dwell of a step: `step_seconds`, or for blue-green the preview's or the bake's length.
    pub fn dwell_seconds(&self, step_index: usize) -> u64 {
        if let (Some(s), true) = (self.shadow_seconds, self.is_shadow(step_index)) {
            return s;
        }
        match self.blue_green {
            Some(bg) if self.weight(step_index) == Some(0.0) => bg.preview_seconds,
            Some(bg) => bg.bake_seconds,
            None => self.step_seconds,
        }
    }

    /// The rollout's nominal length: every step's dwell.
    pub fn nominal_seconds(&self) -> u64 {
        (0..self.steps.len()).map(|i| self.dwell_seconds(i)).sum()
    }

    /// A blue-green preview step: weight 0, only `version: canary` segments on green.
    pub fn is_preview(&self, step_index: usize) -> bool {
        self.blue_green.is_some() && self.weight(step_index) == Some(0.0)
    }

    pub fn steps(&self) -> &[f64] {
        &self.steps
    }

    /// Canary weight (percent) at a step, `None` past the last.
    pub fn weight(&self, step_index: usize) -> Option<f64> {
        self.steps.get(step_index).copied()
    }

    pub fn step_seconds(&self) -> u64 {
        self.step_seconds
    }

    pub fn min_requests(&self) -> u64 {
        self.min_requests
    }

    pub fn interval_seconds(&self) -> f64 {
        self.interval_seconds
    }

    pub fn failure_limit(&self) -> u32 {
        self.failure_limit
    }

    pub fn gates(&self) -> &[Gate] {
        &self.gates
    }
}

fn check_steps(steps: &[f64]) -> Result<(), SpecError> {
    if steps.is_empty() {
        return Err(SpecError::NoSteps);
    }
    let mut previous = 0.0;
    for (index, &value) in steps.iter().enumerate() {
        // A step is a canary weight: above 0, at most 100, at most two decimals.
        let is_weight = crate::bucket::Weight::try_from_percent(value).is_ok();
        if !(value.is_finite() && value > 0.0 && value <= 100.0 && is_weight) {
            return Err(SpecError::StepOutOfRange { index, value });
        }
        if index > 0 && value <= previous {
            return Err(SpecError::StepsNotIncreasing { index, value });
        }
        previous = value;
    }
    Ok(())
}

impl TryFrom<AnalysisSpecConfig> for AnalysisSpec {
    type Error = SpecError;

    fn try_from(config: AnalysisSpecConfig) -> Result<Self, Self::Error> {
        Self::try_new(config)
    }
}

impl From<AnalysisSpec> for AnalysisSpecConfig {
    fn from(spec: AnalysisSpec) -> Self {
        AnalysisSpecConfig {
            steps: spec.steps,
            step_seconds: spec.step_seconds,
            min_requests: spec.min_requests,
            interval_seconds: spec.interval_seconds,
            failure_limit: spec.failure_limit,
            gates: spec.gates.into_iter().map(GateConfig::from).collect(),
            blue_green: spec.blue_green,
            shadow_seconds: spec.shadow_seconds,
            holds: spec.holds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<AnalysisSpec, String> {
        serde_json::from_str::<AnalysisSpec>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_interval_and_gates() {
        let spec = parse(
            r#"{"steps":[1,5,25,50,100],"step_seconds":60,"min_requests":100,"failure_limit":3}"#,
        )
        .unwrap();
        assert_eq!(spec.interval_seconds(), 1.0);
        assert_eq!(spec.gates(), default_gates().as_slice());
        assert_eq!(spec.gates().len(), 4);
        assert_eq!(spec.weight(2), Some(25.0));
        assert_eq!(spec.weight(5), None);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(parse(&json).unwrap(), spec);
    }

    #[test]
    fn refuses_bad_specs() {
        let cases = [
            (
                r#"{"steps":[],"step_seconds":60,"min_requests":100,"failure_limit":3}"#,
                "steps is empty",
            ),
            (
                r#"{"steps":[0,5],"step_seconds":60,"min_requests":100,"failure_limit":3}"#,
                "steps[0] = 0",
            ),
            (
                r#"{"steps":[5,101],"step_seconds":60,"min_requests":100,"failure_limit":3}"#,
                "steps[1] = 101",
            ),
            (
                r#"{"steps":[5,5],"step_seconds":60,"min_requests":100,"failure_limit":3}"#,
                "strictly increase",
            ),
            (
                r#"{"steps":[5],"step_seconds":60,"min_requests":0,"failure_limit":3}"#,
                "min_requests",
            ),
            (
                r#"{"steps":[5],"step_seconds":60,"min_requests":1,"failure_limit":0}"#,
                "failure_limit",
            ),
            (
                r#"{"steps":[5],"step_seconds":60,"min_requests":1,"failure_limit":1,"interval_seconds":0}"#,
                "interval_seconds",
            ),
            (
                r#"{"steps":[5],"step_seconds":60,"min_requests":1,"failure_limit":1,"gates":[]}"#,
                "gates is empty",
            ),
            (
                r#"{"steps":[5],"step_seconds":60,"min_requests":1,"failure_limit":1,"extra":1}"#,
                "unknown field",
            ),
            (
                r#"{"steps":[5],"step_seconds":60,"min_requests":1,"failure_limit":1,"gates":[{"metric":"error_rate","max":0.1},{"metric":"error_rate","min":0.1}]}"#,
                "gates[1]: gate on error_rate: min does not apply",
            ),
        ];
        for (json, want) in cases {
            let err = parse(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
