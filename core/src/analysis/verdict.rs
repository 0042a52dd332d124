//! The verdict: advance, hold, promote or roll back, with the reasons and every gate's result.
//!
//! Order of rules: a failing critical gate rolls back at once; other failures count consecutive
//! intervals up to `failure_limit`, holding meanwhile; any gate without enough data holds; only
//! when every gate passes and the step's dwell is over does the rollout move on.

use super::evaluate::{evaluate_gate, GateResult, GateStatus};
use super::spec::AnalysisSpec;
use super::version_stats::VersionStats;
use serde::{Deserialize, Serialize};

/// What the controller should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Move to the next step's weight.
    Advance,
    /// Stay at the current weight.
    Hold,
    /// The last step passed: make the canary the stable version.
    Promote,
    /// Send all traffic back to stable.
    Rollback,
}

/// Where a rollout stands; the controller stores it between calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    pub step_index: usize,
    pub step_started_at_ms: u64,
    /// Consecutive judged intervals in which some non-critical gate failed.
    pub consecutive_failures: u32,
}

impl StepState {
    /// The first step, starting now.
    pub fn start(now_ms: u64) -> Self {
        Self {
            step_index: 0,
            step_started_at_ms: now_ms,
            consecutive_failures: 0,
        }
    }
}

/// The decision with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub action: Action,
    /// One line for people, e.g. "error_rate regressed: canary 2.10% vs stable 1.00% (…)".
    pub reason: String,
    pub gates: Vec<GateResult>,
    /// The state to pass to the next call (after Advance: the next step, starting now).
    pub next_state: StepState,
    /// Canary weight (percent) to apply: 0 after rollback, 100 after promotion.
    pub canary_weight: f64,
}

/// Judges the canary against stable. Feed cumulative stats since the rollout (re)started; see
/// the module docs of [`crate::analysis`].
pub fn judge(
    spec: &AnalysisSpec,
    state: &StepState,
    stable: &VersionStats,
    canary: &VersionStats,
    now_ms: u64,
) -> Verdict {
    let gates: Vec<GateResult> = spec
        .gates()
        .iter()
        .map(|g| evaluate_gate(g, spec, stable, canary))
        .collect();
    let Some(weight) = spec.weight(state.step_index) else {
        let reason = format!(
            "invalid state: step {} but the spec has {} steps",
            state.step_index,
            spec.steps().len()
        );
        let weight = spec.steps().last().copied().unwrap_or(0.0);
        return Verdict {
            action: Action::Hold,
            reason,
            gates,
            next_state: *state,
            canary_weight: weight,
        };
    };
    let failing: Vec<&GateResult> = gates
        .iter()
        .filter(|g| g.status == GateStatus::Fail)
        .collect();
    let (action, reason, next_state) = if failing.is_empty() {
        without_failures(spec, state, &gates, now_ms)
    } else {
        on_failures(spec, state, &failing)
    };
    let canary_weight = match action {
        Action::Rollback => 0.0,
        Action::Promote => 100.0,
        Action::Advance | Action::Hold => spec.weight(next_state.step_index).unwrap_or(weight),
    };
    Verdict {
        action,
        reason,
        gates,
        next_state,
        canary_weight,
    }
}

fn on_failures(
    spec: &AnalysisSpec,
    state: &StepState,
    failing: &[&GateResult],
) -> (Action, String, StepState) {
    let failures = state.consecutive_failures.saturating_add(1);
    let next = StepState {
        consecutive_failures: failures,
        ..*state
    };
    if let Some(critical) = failing.iter().find(|g| g.critical) {
        return (
            Action::Rollback,
            format!("critical gate failed: {}", describe_failure(critical)),
            next,
        );
    }
    let what = failing
        .iter()
        .map(|g| describe_failure(g))
        .collect::<Vec<_>>()
        .join("; ");
    let limit = spec.failure_limit();
    if failures >= limit {
        let reason =
            format!("{what} — failing {failures} consecutive intervals (failure_limit {limit})");
        (Action::Rollback, reason, next)
    } else {
        (
            Action::Hold,
            format!("{what} — failing interval {failures} of {limit} before rollback"),
            next,
        )
    }
}

fn without_failures(
    spec: &AnalysisSpec,
    state: &StepState,
    gates: &[GateResult],
    now_ms: u64,
) -> (Action, String, StepState) {
    let waiting: Vec<String> = gates
        .iter()
        .filter(|g| g.status == GateStatus::InsufficientData)
        .map(|g| format!("{} ({})", g.metric, g.note))
        .collect();
    if !waiting.is_empty() {
        // An interval without enough data neither fails nor passes: the count of consecutive
        // failures stands (a controller restarted with an empty window must not forget it).
        return (
            Action::Hold,
            format!("waiting for data: {}", waiting.join(", ")),
            *state,
        );
    }
    let next = StepState {
        consecutive_failures: 0,
        ..*state
    };
    let weight = spec.weight(state.step_index).unwrap_or(0.0);
    let dwell_ms = now_ms.saturating_sub(state.step_started_at_ms);
    let needed_ms = spec.step_seconds().saturating_mul(1000);
    if dwell_ms < needed_ms {
        let reason = format!(
            "all gates pass; {} s of {} s dwell at {weight}%",
            dwell_ms / 1000,
            spec.step_seconds()
        );
        return (Action::Hold, reason, next);
    }
    let after = format!("all gates pass after {} s at {weight}%", dwell_ms / 1000);
    match spec.weight(state.step_index + 1) {
        Some(next_weight) => {
            let advanced = StepState {
                step_index: state.step_index + 1,
                step_started_at_ms: now_ms,
                consecutive_failures: 0,
            };
            (
                Action::Advance,
                format!("{after}: advancing to {next_weight}%"),
                advanced,
            )
        }
        None => (
            Action::Promote,
            format!("{after}, the last step: promoting"),
            next,
        ),
    }
}

/// "error_rate regressed: canary 2.10% vs stable 1.00% (canary ≤ 1.25× stable; mSPRT Λ=143 ≥ 400)".
fn describe_failure(g: &GateResult) -> String {
    let value = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| g.metric.format_value(v));
    let evidence = g
        .evidence
        .as_ref()
        .map_or_else(String::new, |e| match e.test.as_str() {
            "mSPRT" => format!(
                "; mSPRT Λ={} ≥ {}",
                short_number(e.value),
                short_number(e.threshold)
            ),
            _ => format!(
                "; {} {} ≥ {}",
                e.test,
                short_number(e.value),
                short_number(e.threshold)
            ),
        });
    format!(
        "{} regressed: canary {} vs stable {} ({}{evidence})",
        g.metric,
        value(g.canary),
        value(g.stable),
        g.threshold
    )
}

fn short_number(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{v:.2e}")
    } else if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
