//! Where a rollout goes next: a pure function of the rollout, its window stats and the time.
//!
//! The driver gathers the inputs and carries out the [`Step`]; nothing here does I/O. Every
//! transition carries its reason and the verdict that caused it, which become the rollout's event.

use fledge_core::analysis::{judge, Action, StepState, Verdict, VersionStats};
use fledge_core::rollout::Mode;
use fledge_core::Weight;

use crate::model::{Phase, Rollout, RolloutStatus};

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to judge (manual, paused or finished).
    Idle,
    /// Judged; stays where it is. The status carries the new verdict; it is not persisted.
    Hold(RolloutStatus),
    /// Moves: persist the status, publish, record the event.
    Transition { status: RolloutStatus, event: &'static str, swap_versions: bool },
}

fn weight_of(percent: f64) -> Weight {
    Weight::try_from_percent(percent).unwrap_or(Weight::ZERO)
}

pub fn next(rollout: &Rollout, stable: &VersionStats, canary: &VersionStats, now_ms: u64) -> Step {
    let Ok(Mode::Automated(spec)) = rollout.spec.mode() else { return Step::Idle };
    let current = &rollout.status;
    match current.phase {
        Phase::Pending => {
            let weight = weight_of(spec.weight(0).unwrap_or(0.0));
            let status = RolloutStatus {
                phase: Phase::Progressing,
                step: Some(0),
                weight,
                step_started_at_ms: now_ms,
                consecutive_failures: 0,
                message: format!("started at step 1 of {} ({}%)", spec.steps().len(), weight.percent()),
                ..current.clone()
            };
            Step::Transition { status, event: "started", swap_versions: false }
        }
        Phase::Progressing => {
            let state = StepState {
                step_index: current.step.unwrap_or(0),
                step_started_at_ms: current.step_started_at_ms,
                consecutive_failures: current.consecutive_failures,
            };
            let verdict = judge(&spec, &state, stable, canary, now_ms);
            apply(current, verdict, spec.steps().len())
        }
        _ => Step::Idle,
    }
}

/// The check made as soon as new data arrives, between analysis intervals: only a failing critical gate
/// acts (rolls back); everything else waits for the interval, so that failure counting keeps its
/// per-interval meaning.
pub fn next_on_data(rollout: &Rollout, stable: &VersionStats, canary: &VersionStats, now_ms: u64) -> Step {
    if rollout.status.phase != Phase::Progressing {
        return Step::Idle;
    }
    match next(rollout, stable, canary, now_ms) {
        step @ Step::Transition { event: "rolled_back", .. } if critical_failure(&step) => step,
        _ => Step::Idle,
    }
}

fn critical_failure(step: &Step) -> bool {
    let Step::Transition { status, .. } = step else { return false };
    status.last_verdict.as_ref().is_some_and(|v| {
        v.gates.iter().any(|g| g.critical && g.status == fledge_core::analysis::GateStatus::Fail)
    })
}

fn apply(current: &RolloutStatus, verdict: Verdict, steps: usize) -> Step {
    let mut status = RolloutStatus {
        step_started_at_ms: verdict.next_state.step_started_at_ms,
        consecutive_failures: verdict.next_state.consecutive_failures,
        ..current.clone()
    };
    let (event, swap) = match verdict.action {
        Action::Hold => {
            status.message = verdict.reason.clone();
            status.last_verdict = Some(verdict);
            return Step::Hold(status);
        }
        Action::Advance => {
            status.step = Some(verdict.next_state.step_index);
            status.weight = weight_of(verdict.canary_weight);
            status.message = format!(
                "advanced to step {} of {steps} ({}%): {}",
                verdict.next_state.step_index + 1,
                status.weight.percent(),
                verdict.reason
            );
            ("advanced", false)
        }
        Action::Promote => {
            status.phase = Phase::Succeeded;
            status.weight = Weight::ZERO;
            status.message = format!("promoted: the canary is now stable; {}", verdict.reason);
            ("promoted", true)
        }
        Action::Rollback => {
            status.phase = Phase::RolledBack;
            status.weight = Weight::ZERO;
            status.message = format!("rolled back: {}", verdict.reason);
            ("rolled_back", false)
        }
    };
    status.last_verdict = Some(verdict);
    Step::Transition { status, event, swap_versions: swap }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_core::rollout::RolloutSpec;

    fn rollout(json: &str) -> Rollout {
        let spec: RolloutSpec = serde_json::from_str(json).unwrap();
        Rollout::new("r", spec, 1, 0)
    }

    #[test]
    fn manual_is_idle_and_pending_starts() {
        let m = rollout(r#"{"hosts":["a"],"stable":"v1","canary":"v2","weight":5}"#);
        assert_eq!(next(&m, &VersionStats::default(), &VersionStats::default(), 10), Step::Idle);
        let a = rollout(r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[10,100]}"#);
        let Step::Transition { status, event, .. } = next(&a, &VersionStats::default(), &VersionStats::default(), 10) else {
            panic!()
        };
        assert_eq!((event, status.phase, status.step, status.weight.percent()), ("started", Phase::Progressing, Some(0), 10.0));
    }

    #[test]
    fn data_between_intervals_only_acts_on_critical_gates() {
        let bad = VersionStats { requests: 50, errors: 50, status_5xx: 50, ..VersionStats::default() };
        let good = VersionStats { requests: 500, status_2xx: 500, ..VersionStats::default() };
        let mut critical = rollout(
            r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[5,100],"min_requests":1000,
                "gates":[{"metric":"error_rate","max":0.05,"critical":true}]}"#,
        );
        critical.status.phase = Phase::Progressing;
        critical.status.step = Some(0);
        let Step::Transition { event, .. } = next_on_data(&critical, &good, &bad, 10) else { panic!("critical gate must act") };
        assert_eq!(event, "rolled_back");
        let mut relaxed = rollout(
            r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[5,100],"min_requests":10,
                "gates":[{"metric":"error_rate","max_increase":0.01}],"analysis":{"failure_limit":1}}"#,
        );
        relaxed.status.phase = Phase::Progressing;
        relaxed.status.step = Some(0);
        assert!(matches!(next(&relaxed, &good, &bad, 10), Step::Transition { event: "rolled_back", .. }));
        assert_eq!(next_on_data(&relaxed, &good, &bad, 10), Step::Idle, "non-critical gates wait for the interval");
    }

    #[test]
    fn no_data_holds() {
        let mut a = rollout(r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[10,100],"step_seconds":0}"#);
        a.status.phase = Phase::Progressing;
        a.status.step = Some(0);
        let Step::Hold(status) = next(&a, &VersionStats::default(), &VersionStats::default(), 60_000) else { panic!() };
        assert_eq!(status.phase, Phase::Progressing);
        assert!(status.last_verdict.is_some());
    }
}
