//! The rollout state machine: every change of a rollout, in one pure function.
//!
//! [`step`] takes a rollout, one [`Input`] — a user action, a judgement, a replaced spec, the start of
//! the analysis — and the time, and returns the [`Transition`]: the rollout after it, the event it
//! records, whether the proxies must be told (a new config generation) and what happens to the stats
//! window. It does no I/O: the API handlers and the analysis driver gather the inputs, and
//! [`crate::state::AppState::commit`] writes the transition in one SQLite transaction and publishes it.
//!
//! Every input that changes anything durable other than the last verdict and the sequential evidence
//! is recorded as an event carrying the input itself, so replaying a rollout's events through `step`
//! reproduces its state. The evidence (`status.evidence`, copied from each scheduled verdict's
//! `next_state`) moves with every judgement, event or not: replaying every input reproduces it.
//!
//! Phases: `manual` · `pending` → `progressing` → `succeeded` | `rolled_back`; `paused` (held at its
//! weight) and `aborted`. Blue-green: `pending` → `previewing` → (the switch) `baking` → `succeeded`
//! | `rolled_back`; its steps are the preview (weight 0) and the bake (100 %). With `shadow_seconds`:
//! `pending` → `shadowing` (step 0, weight 0) → `progressing`. Terminal phases take no input but a
//! replaced spec.

use fledge_core::analysis::{Action, GateStatus, StepState, Verdict, Waiting};
use fledge_core::rollout::{RolloutError, RolloutSpec};
use fledge_core::Weight;
use serde::{Deserialize, Serialize};

use crate::model::{Phase, Rollout, RolloutStatus};
use crate::totals::{self, Interval, IntervalRecord};

/// A user's action on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserAction {
    Pause,
    Resume,
    Promote,
    Abort,
}

impl UserAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            "promote" => Some(Self::Promote),
            "abort" => Some(Self::Abort),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Promote => "promote",
            Self::Abort => "abort",
        }
    }
}

/// What can happen to a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Input {
    /// `PUT` of a rollout that exists: it starts again under the new spec.
    Replace { spec: Box<RolloutSpec> },
    User { action: UserAction },
    /// The analysis picks up a pending rollout: its first step starts.
    Start,
    /// A judgement of a progressing rollout. `scheduled` is false for the look taken as soon as data
    /// arrives between intervals, where only a failing critical gate acts. `interval`: the counts the
    /// verdict was made on, closed into `status.totals` and the export when the verdict is committed
    /// (not part of the event: the export has it).
    Judged {
        verdict: Box<Verdict>,
        scheduled: bool,
        #[serde(skip)]
        interval: Option<Box<Interval>>,
    },
    /// The canary failed its readiness probe `failure_threshold` times in a row while its traffic
    /// flows: a failing critical gate.
    ReadinessFailed { detail: String },
    /// A proxy had no answer from the controller for `after_seconds` and sent every request of the
    /// rollout to stable (`on_controller_loss: stable`): the rollout is paused at 0 %, where the
    /// proxies already are, until a user acts.
    ControllerLost { proxy: String, after_seconds: u64 },
}

impl Input {
    pub fn judged(verdict: Verdict, scheduled: bool) -> Self {
        Self::Judged { verdict: Box::new(verdict), scheduled, interval: None }
    }

    /// A judgement with the interval it was made on.
    pub fn judged_on(verdict: Verdict, scheduled: bool, interval: Interval) -> Self {
        Self::Judged { verdict: Box::new(verdict), scheduled, interval: Some(Box::new(interval)) }
    }
}

/// What a transition does to the rollout's stats window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEffect {
    Keep,
    /// Both versions start counting afresh (as the sequential tests require).
    Reset,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub rollout: Rollout,
    /// The event recorded with it; `None` for a judgement that only refreshes the verdict.
    pub event: Option<&'static str>,
    /// Weight or versions changed: the proxies get a new config generation.
    pub routing_changed: bool,
    pub window: WindowEffect,
    /// The judged interval this transition closed (already added to `status.totals`): stored with it.
    pub interval: Option<IntervalRecord>,
}

impl Transition {
    fn new(rollout: Rollout, event: Option<&'static str>, routing_changed: bool, window: WindowEffect) -> Self {
        Self { rollout, event, routing_changed, window, interval: None }
    }

    /// Nothing changes.
    fn none(r: &Rollout) -> Self {
        Self::new(r.clone(), None, false, WindowEffect::Keep)
    }

    pub fn is_noop(&self, before: &Rollout) -> bool {
        self.event.is_none() && !self.routing_changed && self.rollout == *before
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} a rollout that is {phase}")]
    NotAllowed { action: &'static str, phase: &'static str },
    #[error("a judgement applies to a progressing rollout, not one that is {0}")]
    NotJudged(&'static str),
    #[error("{0}")]
    Invalid(#[from] RolloutError),
}

/// The one place a rollout changes.
pub fn step(r: &Rollout, input: Input, now_ms: u64) -> Result<Transition, StateError> {
    match input {
        Input::Replace { spec } => {
            let mut next = Rollout::new(&r.name, *spec, now_ms)?;
            next.status.generation = r.status.generation;
            next.status.revision = r.status.revision;
            next.status.window = r.status.window;
            next.status.totals = r.status.totals.clone();
            Ok(Transition::new(next, Some("replaced"), true, WindowEffect::Reset))
        }
        Input::User { action } => user(r, action, now_ms),
        Input::Start => start(r, now_ms),
        Input::Judged { verdict, scheduled, interval } => {
            let action = verdict.action;
            let mut t = judged(r, *verdict, scheduled, now_ms)?;
            // A judgement that committed anything closed its interval: a scheduled look, or a critical
            // rollback between looks (the data that failed the gate belongs in the record).
            let committed = scheduled || t.rollout.status.phase == Phase::RolledBack;
            if let (Some(interval), true) = (interval, committed && !t.is_noop(r)) {
                let versions = (r.spec.stable.as_str(), r.spec.canary.as_str());
                let s = &mut t.rollout.status;
                let record = totals::close(&mut s.totals, &interval, versions, r.status.window, r.status.phase, r.status.step, action);
                t.interval = Some(record);
            }
            Ok(t)
        }
        Input::ControllerLost { proxy, after_seconds } => {
            let phase = r.status.phase;
            if phase.is_terminal() || phase == Phase::Manual {
                return Err(StateError::NotAllowed { action: "pause", phase: phase.as_str() });
            }
            let mut next = r.clone();
            let s = &mut next.status;
            s.phase = Phase::Paused;
            s.weight = Weight::ZERO;
            s.message = format!(
                "paused at 0 %: proxy {proxy} had no answer from the controller for {after_seconds} s and sent every request to {} (on_controller_loss: stable); resume to continue{}",
                r.spec.stable,
                r.status.step.map(|i| format!(" at step {}", i + 1)).unwrap_or_default()
            );
            Ok(Transition::new(next, Some("paused"), true, WindowEffect::Keep))
        }
        Input::ReadinessFailed { detail } => {
            if !(r.status.phase.is_judged() || r.status.phase == Phase::Paused) {
                return Err(StateError::NotAllowed { action: "fail readiness of", phase: r.status.phase.as_str() });
            }
            let mut next = r.clone();
            next.status.phase = Phase::RolledBack;
            next.status.weight = Weight::ZERO;
            next.status.message = format!("rolled back: the canary failed its readiness probe: {detail}");
            Ok(Transition::new(next, Some("rolled_back"), true, WindowEffect::Keep))
        }
    }
}

fn user(r: &Rollout, action: UserAction, now_ms: u64) -> Result<Transition, StateError> {
    use Phase::*;
    let phase = r.status.phase;
    let allowed = match action {
        UserAction::Pause => phase == Pending || phase.is_judged(),
        UserAction::Resume => phase == Paused,
        UserAction::Promote | UserAction::Abort => matches!(phase, Manual | Pending | Paused) || phase.is_judged(),
    };
    if !allowed {
        return Err(StateError::NotAllowed { action: action.as_str(), phase: phase.as_str() });
    }
    let mut next = r.clone();
    let s = &mut next.status;
    let (event, routing, window) = match action {
        UserAction::Pause => {
            s.phase = Paused;
            s.message = format!("paused by the user at {}%", s.weight.percent());
            ("paused", false, WindowEffect::Keep)
        }
        UserAction::Resume => {
            // Resuming a step's manual pause releases it: the step advances when ready.
            if r.status.last_verdict.as_ref().is_some_and(|v| v.waiting == Some(Waiting::Manual)) {
                s.released = true;
            }
            // A rollout paused before its first step starts from the beginning.
            s.phase = match s.step {
                Some(step) => r.phase_at(step),
                None => Pending,
            };
            s.step_started_at_ms = now_ms;
            s.consecutive_failures = 0;
            // The step's weight again (a pause after a controller loss held the rollout at 0 %).
            s.weight = match (s.step, r.analysis()) {
                (Some(step), Some(a)) => weight_of(a.weight(step).unwrap_or(0.0)),
                _ => s.weight,
            };
            // The evidence stays: a resume continues the same tests and spends the same α.
            s.message = "resumed by the user; analysis window restarted, evidence kept".into();
            ("resumed", s.weight != r.status.weight, WindowEffect::Reset)
        }
        UserAction::Promote => {
            s.phase = Succeeded;
            s.weight = Weight::ZERO;
            s.message = format!("promoted by the user: {} is now stable", next.spec.canary);
            std::mem::swap(&mut next.spec.stable, &mut next.spec.canary);
            ("promoted", true, WindowEffect::Reset)
        }
        UserAction::Abort => {
            s.phase = Aborted;
            s.weight = Weight::ZERO;
            s.message = "aborted by the user; all traffic on stable".into();
            ("aborted", true, WindowEffect::Keep)
        }
    };
    Ok(Transition::new(next, Some(event), routing, window))
}

fn start(r: &Rollout, now_ms: u64) -> Result<Transition, StateError> {
    let Some(spec) = r.analysis() else { return Err(StateError::NotAllowed { action: "start", phase: r.status.phase.as_str() }) };
    if r.status.phase != Phase::Pending {
        return Err(StateError::NotAllowed { action: "start", phase: r.status.phase.as_str() });
    }
    let weight = weight_of(spec.weight(0).unwrap_or(0.0));
    let mut next = r.clone();
    let phase = r.phase_at(0);
    let message = match phase {
        Phase::Shadowing => format!(
            "shadowing for {} s: no user on {}; {}% of {}'s requests copied to it",
            spec.dwell_seconds(0),
            r.spec.canary,
            r.spec.shadow.as_ref().map_or(0.0, |s| s.percent),
            r.spec.stable
        ),
        Phase::Previewing => format!("previewing for {} s: only version: canary segments reach {}", spec.dwell_seconds(0), r.spec.canary),
        Phase::Baking => format!("switched: all traffic on {}; baking for {} s", r.spec.canary, spec.dwell_seconds(0)),
        _ => format!("started at step 1 of {} ({}%)", spec.steps().len(), weight.percent()),
    };
    next.status = RolloutStatus {
        phase,
        step: Some(0),
        weight,
        step_started_at_ms: now_ms,
        consecutive_failures: 0,
        message,
        ..r.status.clone()
    };
    Ok(Transition::new(next, Some("started"), true, WindowEffect::Reset))
}

fn judged(r: &Rollout, verdict: Verdict, scheduled: bool, _now_ms: u64) -> Result<Transition, StateError> {
    let critical = verdict.action == Action::Rollback
        && verdict.gates.iter().any(|g| g.critical && g.status == GateStatus::Fail);
    if r.status.phase == Phase::Paused && r.status.step.is_some() {
        // Paused (by the user or a manual step): held at its weight, but a failing critical gate
        // still rolls back — so the evidence keeps accumulating with every scheduled look.
        if !critical {
            if !scheduled {
                return Ok(Transition::none(r));
            }
            let mut next = r.clone();
            next.status.evidence = verdict.next_state.evidence.clone();
            next.status.last_verdict = Some(verdict);
            return Ok(Transition::new(next, None, false, WindowEffect::Keep));
        }
        let mut next = r.clone();
        next.status.phase = Phase::RolledBack;
        next.status.weight = Weight::ZERO;
        next.status.message = format!("rolled back while paused: {}", verdict.reason);
        next.status.evidence = verdict.next_state.evidence.clone();
        next.status.last_verdict = Some(verdict);
        return Ok(Transition::new(next, Some("rolled_back"), true, WindowEffect::Keep));
    }
    if !r.status.phase.is_judged() {
        return Err(StateError::NotJudged(r.status.phase.as_str()));
    }
    let steps = r.analysis().map_or(0, |a| a.steps().len());
    // Between intervals only a failing critical gate acts, so that failure counting keeps its
    // per-interval meaning.
    if !scheduled && !critical {
        return Ok(Transition::none(r));
    }
    let current = &r.status;
    let mut next = r.clone();
    let s = &mut next.status;
    s.step_started_at_ms = verdict.next_state.step_started_at_ms;
    s.consecutive_failures = verdict.next_state.consecutive_failures;
    // The evidence moves only here, with a scheduled (or critical) judgement: replaying the inputs
    // reproduces it.
    s.evidence = verdict.next_state.evidence.clone();
    let (event, routing, window) = match verdict.action {
        // A manual step ready to advance: paused until resumed or promoted.
        Action::Hold if verdict.waiting == Some(Waiting::Manual) => {
            s.phase = Phase::Paused;
            s.message = verdict.reason.clone();
            (Some("paused"), false, WindowEffect::Keep)
        }
        Action::Hold => {
            s.message = verdict.reason.clone();
            let event = match (current.consecutive_failures, s.consecutive_failures) {
                (before, after) if after > before => Some("gate_failing"),
                (before, 0) if before > 0 => Some("gate_recovered"),
                _ => None,
            };
            (event, false, WindowEffect::Keep)
        }
        Action::Advance => {
            s.step = Some(verdict.next_state.step_index);
            s.released = false;
            s.weight = weight_of(verdict.canary_weight);
            s.phase = r.phase_at(verdict.next_state.step_index);
            if s.phase == Phase::Baking {
                s.message = format!("switched: all traffic on {}; baking: {}", next.spec.canary, verdict.reason);
                (Some("switched"), true, WindowEffect::Keep)
            } else if current.phase == Phase::Shadowing {
                s.message = format!("the shadow passed; first step at {}%: {}", s.weight.percent(), verdict.reason);
                (Some("advanced"), true, WindowEffect::Keep)
            } else {
                s.message = format!(
                    "advanced to step {} of {steps} ({}%): {}",
                    verdict.next_state.step_index + 1,
                    s.weight.percent(),
                    verdict.reason
                );
                (Some("advanced"), true, WindowEffect::Keep)
            }
        }
        Action::Promote => {
            s.phase = Phase::Succeeded;
            s.weight = Weight::ZERO;
            s.message = format!("promoted: the canary is now stable; {}", verdict.reason);
            std::mem::swap(&mut next.spec.stable, &mut next.spec.canary);
            (Some("promoted"), true, WindowEffect::Reset)
        }
        Action::Rollback => {
            s.phase = Phase::RolledBack;
            s.weight = Weight::ZERO;
            s.message = format!("rolled back: {}", verdict.reason);
            (Some("rolled_back"), true, WindowEffect::Keep)
        }
    };
    next.status.last_verdict = Some(verdict);
    Ok(Transition::new(next, event, routing, window))
}

/// Where a progressing rollout stands, as the judgement takes it.
pub fn step_state(r: &Rollout) -> StepState {
    StepState {
        step_index: r.status.step.unwrap_or(0),
        step_started_at_ms: r.status.step_started_at_ms,
        consecutive_failures: r.status.consecutive_failures,
        evidence: r.status.evidence.clone(),
        released: r.status.released,
    }
}

fn weight_of(percent: f64) -> Weight {
    Weight::try_from_percent(percent).unwrap_or(Weight::ZERO)
}

/// A phase no sequence of inputs may leave a rollout in: checked by the property test.
pub fn invariant_violation(r: &Rollout) -> Option<String> {
    let s = &r.status;
    let bad = match s.phase {
        Phase::Manual => r.analysis().is_some().then(|| "manual phase on an automated spec".to_string()),
        _ if r.analysis().is_none() && s.phase != Phase::Aborted && s.phase != Phase::Succeeded => {
            Some(format!("{} on a manual spec", s.phase.as_str()))
        }
        Phase::Pending => (s.step.is_some() || s.weight != Weight::ZERO).then(|| "pending with a step or weight".to_string()),
        Phase::Shadowing if s.weight != Weight::ZERO => Some("shadowing with a weight".to_string()),
        Phase::Progressing | Phase::Shadowing | Phase::Previewing | Phase::Baking => {
            let steps = r.analysis().map_or(0, |a| a.steps().len());
            match s.step {
                Some(i) if i < steps && r.phase_at(i) == s.phase => None,
                other => Some(format!("{} at step {other:?} of {steps}", s.phase.as_str())),
            }
        }
        Phase::Succeeded | Phase::RolledBack | Phase::Aborted => {
            (s.weight != Weight::ZERO).then(|| format!("{} with weight {}", s.phase.as_str(), s.weight.percent()))
        }
        Phase::Paused => None,
    };
    bad.or_else(|| (r.spec.stable == r.spec.canary).then(|| "stable equals canary".to_string()))
}

#[cfg(test)]
mod tests;
