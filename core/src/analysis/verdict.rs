//! The verdict: advance, hold, promote or roll back, with the reasons and every gate's result.
//!
//! Order of rules: a failing critical gate rolls back at once; other failures count consecutive
//! intervals up to `failure_limit`, holding meanwhile; a step holds until every non-critical gate's
//! advance proof rules out the regression it names (and `min_requests` canary observations are in);
//! only then, and once the step's dwell is over, does the rollout move on.

use super::evaluate::{
    evaluate_gate, Context, Data, GateEvidence, GateResult, GateStatus, OVERALL_ALPHA,
};
use super::baseline::{self, against_baseline};
use super::gate::Gate;
use super::spec::AnalysisSpec;
use super::step::StepHold;
use super::version_stats::VersionStats;
use crate::shadow::ShadowStats;
use crate::stats::sequential::sr_gamma;
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

/// The sequential evidence a rollout carries from look to look. It is part of the rollout's
/// durable status: a restart or a resume continues it, so neither buys a fresh α.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvidenceState {
    /// Scheduled looks so far (k of the Shiryaev–Roberts detectors).
    pub looks: u64,
    /// Latency segments started (a step, or the part of a step after the controller lost its
    /// data): segment s spends [`segment_alpha_share`]`(s)` of α_gate.
    pub segments: u32,
    /// The step of the current segment, and the latency samples it had at the last look.
    pub segment_step: Option<usize>,
    pub segment_samples: u64,
    /// One per gate, in the spec's order.
    pub gates: Vec<GateEvidence>,
    /// Blue-green: blue's (stable's) counts over the preview, frozen at the switch; the bake judges
    /// relative gates against them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<VersionStats>,
    /// Blue-green: the bake's evidence of each relative gate against [`Self::baseline`] (a test of its
    /// own, started at the switch); empty entries for absolute gates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bake_gates: Vec<GateEvidence>,
}

/// Where a rollout stands; the controller stores it between calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub step_index: usize,
    pub step_started_at_ms: u64,
    /// Consecutive judged intervals in which some non-critical gate failed.
    pub consecutive_failures: u32,
    #[serde(default)]
    pub evidence: EvidenceState,
    /// The step's hold (manual pause, approval) has been released: it advances when ready.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

impl StepState {
    /// The first step, starting now, with no evidence yet.
    pub fn start(now_ms: u64) -> Self {
        Self {
            step_index: 0,
            step_started_at_ms: now_ms,
            consecutive_failures: 0,
            evidence: EvidenceState::default(),
            released: false,
        }
    }
}

/// What a step that could advance is waiting for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Waiting {
    /// A `pause: "manual"` step: `resume` or `promote` releases it.
    Manual,
    /// An `approval` step: its URL must answer 2xx.
    Approval { url: String },
}

/// One look's data. `stable`/`canary`: the counts of the interval since the previous scheduled
/// look (the rate and cost gates' evidence is per interval). `stable_step`/`canary_step`: the counts
/// since the current step started (latency quantiles, and the values shown). `scheduled`: false for
/// a look between intervals, where only absolute critical gates are judged. `shadow`/`shadow_step`:
/// the shadow pairs of the interval and of the step (empty without a shadow).
#[derive(Debug, Clone, Copy)]
pub struct Look<'a> {
    pub stable: &'a VersionStats,
    pub canary: &'a VersionStats,
    pub stable_step: &'a VersionStats,
    pub canary_step: &'a VersionStats,
    pub shadow: &'a ShadowStats,
    pub shadow_step: &'a ShadowStats,
    pub scheduled: bool,
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
    /// Set when the step is ready to advance but held (manual pause, approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

/// N, the most looks a rollout can take: twice its nominal length (the steps' dwell / interval).
/// Past N the detectors stop adding start points (γ = 0), which keeps them valid.
pub fn most_looks(spec: &AnalysisSpec) -> u64 {
    let nominal = spec.nominal_seconds() as f64 / spec.interval_seconds();
    ((2.0 * nominal).ceil() as u64).max(1)
}

/// The share of α_gate latency segment s (1-based) may spend: 1/(2S) for each of the first S
/// (S = the number of steps), then half of what is left for each later one. They sum to ≤ 1.
pub fn segment_alpha_share(segment: u32, steps: usize) -> f64 {
    let steps = steps.max(1) as u32;
    let s = segment.max(1);
    if s <= steps {
        0.5 / f64::from(steps)
    } else {
        0.5 * 0.5f64.powi((s - steps).min(1000) as i32)
    }
}

/// Judges the canary against stable on one look; see the module docs of [`crate::analysis`].
pub fn judge(spec: &AnalysisSpec, state: &StepState, look: &Look, now_ms: u64) -> Verdict {
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
            gates: Vec::new(),
            next_state: state.clone(),
            canary_weight: weight,
            waiting: None,
        };
    };
    let mut evidence = state.evidence.clone();
    if evidence.gates.len() != spec.gates().len() {
        evidence.gates = vec![GateEvidence::default(); spec.gates().len()];
    }
    let k = evidence.looks.saturating_add(1);
    if look.scheduled {
        evidence.looks = k;
        let samples = look
            .canary_step
            .latency_total
            .count()
            .saturating_add(look.stable_step.latency_total.count());
        if evidence.segments == 0
            || evidence.segment_step != Some(state.step_index)
            || samples < evidence.segment_samples
        {
            evidence.segments = evidence.segments.saturating_add(1);
            evidence.segment_step = Some(state.step_index);
        }
        evidence.segment_samples = samples;
    }
    let alpha_gate = OVERALL_ALPHA / spec.gates().len().max(1) as f64;
    let ctx = Context {
        spec,
        alpha_gate,
        gamma: sr_gamma(k, most_looks(spec)),
        scheduled: look.scheduled,
        split: weight < 100.0,
        segment_alpha: alpha_gate
            * segment_alpha_share(evidence.segments.max(1), spec.steps().len()),
        step_elapsed_s: now_ms.saturating_sub(state.step_started_at_ms) as f64 / 1000.0,
        dwell_seconds: spec.dwell_seconds(state.step_index) as f64,
    };
    let data = Data {
        stable: look.stable,
        canary: look.canary,
        stable_step: look.stable_step,
        canary_step: look.canary_step,
        shadow: look.shadow,
        shadow_step: look.shadow_step,
    };
    let bake = spec.blue_green().is_some() && !ctx.split;
    if bake && evidence.bake_gates.len() != spec.gates().len() {
        evidence.bake_gates = vec![GateEvidence::default(); spec.gates().len()];
    }
    let mut bake_evidence = evidence.bake_gates.clone();
    let mut gates = Vec::with_capacity(spec.gates().len());
    let mut gate_evidence = Vec::with_capacity(spec.gates().len());
    let shadowing = spec.is_shadow(state.step_index);
    for (i, (g, prior)) in spec.gates().iter().zip(&evidence.gates).enumerate() {
        let relative = g.threshold().is_relative();
        if let Some(note) = not_judged_now(spec, g, shadowing, ctx.split) {
            let (mut result, _) = evaluate_gate(&ctx, g, &GateEvidence::default(), &data);
            result.status = GateStatus::Pass;
            (result.evidence, result.proof, result.bounds) = (None, None, None);
            result.note = note.into();
            gates.push(result);
            gate_evidence.push(prior.clone());
        } else if spec.blue_green().is_some() && relative {
            // Half of the gate's α for the preview's concurrent test, half for the bake's.
            let half = ctx.with_alpha_share(0.5);
            if bake {
                let slot = bake_evidence.get_mut(i);
                let (result, next) = judge_against_baseline(&half, g, evidence.baseline.as_ref(), slot.as_deref(), &data);
                if let (Some(slot), Some(next)) = (slot, next) {
                    *slot = next;
                }
                gates.push(result);
                gate_evidence.push(prior.clone());
            } else {
                let (result, next) = evaluate_gate(&half, g, prior, &data);
                gates.push(result);
                gate_evidence.push(next);
            }
        } else {
            let (result, next) = evaluate_gate(&ctx, g, prior, &data);
            gates.push(result);
            gate_evidence.push(next);
        }
    }
    let state = if look.scheduled {
        evidence.gates = gate_evidence;
        if bake {
            evidence.bake_gates = bake_evidence;
        }
        StepState {
            evidence,
            ..state.clone()
        }
    } else {
        state.clone()
    };
    let failing: Vec<&GateResult> = gates
        .iter()
        .filter(|g| g.status == GateStatus::Fail)
        .collect();
    let (mut action, mut reason, mut next_state) = if failing.is_empty() {
        without_failures(spec, &state, &gates, now_ms)
    } else {
        on_failures(spec, &state, &failing)
    };
    // A held step that could advance waits for its release (the gates keep judging meanwhile).
    let waiting = match (action, spec.hold(state.step_index), state.released) {
        (Action::Advance | Action::Promote, StepHold::Manual, false) => Some(Waiting::Manual),
        (Action::Advance | Action::Promote, StepHold::Approval(a), false) => Some(Waiting::Approval { url: a.url.clone() }),
        _ => None,
    };
    if let Some(w) = &waiting {
        action = Action::Hold;
        next_state = StepState { consecutive_failures: 0, ..state.clone() };
        reason = match w {
            Waiting::Manual => format!("step {} ({weight}%) is a manual pause: resume or promote to continue; {reason}", state.step_index + 1),
            Waiting::Approval { url } => format!("step {} ({weight}%) waits for approval from {url}; {reason}", state.step_index + 1),
        };
    }
    if action == Action::Advance && spec.is_preview(state.step_index) {
        // The switch: blue's preview counts become the bake's baseline.
        next_state.evidence.baseline = Some(look.stable_step.clone());
    }
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
        waiting,
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
        ..state.clone()
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
    let next = StepState {
        consecutive_failures: 0,
        ..state.clone()
    };
    let weight = spec.weight(state.step_index).unwrap_or(0.0);
    let waiting: Vec<String> = gates
        .iter()
        .filter(|g| g.status == GateStatus::InsufficientData)
        .map(|g| format!("{}: {}", g.metric, g.note))
        .collect();
    let dwell_ms = now_ms.saturating_sub(state.step_started_at_ms);
    let dwell_s = spec.dwell_seconds(state.step_index);
    let needed_ms = dwell_s.saturating_mul(1000);
    if !waiting.is_empty() {
        // Absence of evidence of harm is not evidence of safety: the step holds until every
        // non-critical gate's proof rules out the regression it names.
        let dwell = if dwell_ms < needed_ms {
            format!("{} s of {dwell_s} s dwell", dwell_ms / 1000)
        } else {
            format!("{} s (dwell done)", dwell_ms / 1000)
        };
        return (
            Action::Hold,
            format!("holding at {weight}%, {dwell}; {}", waiting.join("; ")),
            next,
        );
    }
    if dwell_ms < needed_ms {
        let reason = format!(
            "no regression, and every gate rules out the regression it names; {} s of {dwell_s} s dwell at {weight}%",
            dwell_ms / 1000
        );
        return (Action::Hold, reason, next);
    }
    let after = format!(
        "every gate rules out its regression after {} s at {weight}%",
        dwell_ms / 1000
    );
    match spec.weight(state.step_index + 1) {
        Some(next_weight) => {
            let advanced = StepState {
                step_index: state.step_index + 1,
                step_started_at_ms: now_ms,
                consecutive_failures: 0,
                evidence: state.evidence.clone(),
                released: false,
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

/// Why a gate is not judged at this step, if it is not: live gates while shadowing (no user is on
/// the canary), shadow gates once the shadow phase is over or at 100 % (no stable request to copy).
fn not_judged_now(spec: &AnalysisSpec, gate: &Gate, shadowing: bool, split: bool) -> Option<&'static str> {
    match (gate.metric().is_shadow(), shadowing) {
        (false, true) => Some("shadowing: no user is on the canary; live gates start with the first step"),
        (true, false) if spec.shadow_seconds().is_some() => Some("the shadow ended with the shadowing phase"),
        (true, false) if !split => Some("no stable request to shadow at 100%"),
        _ => None,
    }
}

/// A relative gate in a blue-green bake: judged as the absolute limit blue's pre-switch window
/// gives it (see [`super::baseline`]); passes, noting why, when there is no such window.
fn judge_against_baseline(
    ctx: &Context,
    gate: &Gate,
    baseline: Option<&VersionStats>,
    prior: Option<&GateEvidence>,
    data: &Data,
) -> (GateResult, Option<GateEvidence>) {
    let derived = baseline
        .ok_or_else(|| "no preview, so no window of blue before the switch: relative judgement skipped".to_string())
        .and_then(|b| against_baseline(gate, b, ctx.spec.min_requests(), ctx.alpha_gate / 2.0));
    match derived {
        Ok((absolute, comparison)) => {
            let test = ctx.with_alpha_share(0.5);
            let prior = prior.cloned().unwrap_or_default();
            let (mut result, next) = evaluate_gate(&test, &absolute, &prior, data);
            result.threshold = baseline::describe(gate, &absolute);
            result.stable = Some(comparison.baseline);
            result.stable_n = comparison.baseline_n;
            result.comparison = Some(comparison);
            (result, Some(next))
        }
        Err(note) => {
            let (mut result, _) = evaluate_gate(ctx, gate, &GateEvidence::default(), data);
            result.status = GateStatus::Pass;
            result.evidence = None;
            result.proof = None;
            result.note = note;
            (result, None)
        }
    }
}

/// "error_rate regressed: canary 2.10% vs stable 1.00% (canary ≤ 1.25× stable; shiryaev_roberts 912 ≥ 400)".
fn describe_failure(g: &GateResult) -> String {
    let value = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| g.metric.format_value(v));
    let evidence = g.evidence.as_ref().map_or_else(String::new, |e| {
        format!(
            "; {} {} ≥ {}; {}",
            e.test,
            short_number(e.value),
            short_number(e.threshold),
            e.detail
        )
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
