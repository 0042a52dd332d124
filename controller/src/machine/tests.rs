//! The state machine alone: unit cases, and a property test over random inputs.

use fledge_core::analysis::{judge, VersionStats};
use proptest::prelude::*;

use super::*;

fn rollout(json: &str) -> Rollout {
    let spec: RolloutSpec = serde_json::from_str(json).unwrap();
    Rollout::new("r", spec, 0).unwrap()
}

fn automated() -> Rollout {
    rollout(r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[10,50,100],"step_seconds":5,"min_requests":20,
        "analysis":{"failure_limit":2},
        "gates":[{"metric":"error_rate","max_increase":0.02},{"metric":"policy_violation_rate","max":0,"critical":true}]}"#)
}

fn stats(requests: u64, errors: u64, violations: u64) -> VersionStats {
    VersionStats {
        requests,
        errors,
        status_5xx: errors,
        status_2xx: requests - errors,
        policy_violating_requests: violations,
        policy_violations: violations,
        ..VersionStats::default()
    }
}

fn verdict(r: &Rollout, stable: &VersionStats, canary: &VersionStats, now: u64) -> Verdict {
    judge(r.analysis().unwrap(), &step_state(r), stable, canary, now)
}

#[test]
fn manual_takes_only_promote_and_abort() {
    let m = rollout(r#"{"hosts":["a"],"stable":"v1","canary":"v2","weight":5}"#);
    assert!(matches!(step(&m, Input::Start, 1), Err(StateError::NotAllowed { .. })));
    assert!(matches!(step(&m, Input::User { action: UserAction::Pause }, 1), Err(StateError::NotAllowed { .. })));
    let t = step(&m, Input::User { action: UserAction::Abort }, 1).unwrap();
    assert_eq!((t.rollout.status.phase, t.event, t.routing_changed), (Phase::Aborted, Some("aborted"), true));
    let e = step(&t.rollout, Input::User { action: UserAction::Resume }, 2).unwrap_err();
    assert_eq!(e.to_string(), "cannot resume a rollout that is aborted");
}

#[test]
fn start_then_judgements() {
    let a = automated();
    let t = step(&a, Input::Start, 10).unwrap();
    assert_eq!((t.event, t.rollout.status.phase, t.rollout.status.step, t.rollout.status.weight.percent()), (Some("started"), Phase::Progressing, Some(0), 10.0));
    assert_eq!(t.window, WindowEffect::Reset);
    let p = t.rollout;
    // Not enough data: a hold that records no event.
    let v = verdict(&p, &VersionStats::default(), &VersionStats::default(), 60_000);
    let t = step(&p, Input::judged(v, true), 60_000).unwrap();
    assert_eq!((t.event, t.routing_changed, t.rollout.status.phase), (None, false, Phase::Progressing));
    assert!(t.rollout.status.last_verdict.is_some());
}

#[test]
fn data_between_intervals_only_acts_on_critical_gates() {
    let p = step(&automated(), Input::Start, 0).unwrap().rollout;
    let good = stats(500, 0, 0);
    let bad = stats(50, 50, 0);
    let v = verdict(&p, &good, &bad, 10);
    let t = step(&p, Input::judged(v.clone(), false), 10).unwrap();
    assert!(t.is_noop(&p), "non-critical gates wait for the interval");
    let t = step(&p, Input::judged(v, true), 10).unwrap();
    assert_eq!((t.event, t.rollout.status.consecutive_failures), (Some("gate_failing"), 1));
    let v = verdict(&p, &good, &stats(50, 0, 1), 10);
    let t = step(&p, Input::judged(v, false), 10).unwrap();
    assert_eq!((t.event, t.rollout.status.phase), (Some("rolled_back"), Phase::RolledBack));
}

#[test]
fn judgements_only_while_progressing() {
    let p = step(&automated(), Input::Start, 0).unwrap().rollout;
    let paused = step(&p, Input::User { action: UserAction::Pause }, 1).unwrap().rollout;
    let v = verdict(&p, &stats(10, 0, 0), &stats(10, 0, 0), 2);
    assert_eq!(step(&paused, Input::judged(v, true), 2), Err(StateError::NotJudged("paused")));
    let resumed = step(&paused, Input::User { action: UserAction::Resume }, 3).unwrap();
    assert_eq!((resumed.rollout.status.phase, resumed.window), (Phase::Progressing, WindowEffect::Reset));
}

/// A random input, drawn the way the controller would meet it: user actions, replaced specs and
/// judgements computed by the real `judge` from random stats.
#[derive(Debug, Clone)]
enum Draw {
    User(UserAction),
    Replace(bool),
    Start,
    ReadinessFailed,
    Judge { scheduled: bool, canary_errors: u64, violations: u64, requests: u64, advance_ms: u64 },
}

fn draw() -> impl Strategy<Value = Draw> {
    prop_oneof![
        prop_oneof![Just(UserAction::Pause), Just(UserAction::Resume), Just(UserAction::Promote), Just(UserAction::Abort)].prop_map(Draw::User),
        any::<bool>().prop_map(Draw::Replace),
        Just(Draw::Start),
        Just(Draw::ReadinessFailed),
        (any::<bool>(), 0u64..30, 0u64..2, 0u64..200, 0u64..8_000).prop_map(|(scheduled, canary_errors, violations, requests, advance_ms)| {
            Draw::Judge { scheduled, canary_errors, violations, requests, advance_ms }
        }),
    ]
}

fn input_for(d: &Draw, r: &Rollout, now: u64) -> Input {
    match d {
        Draw::User(action) => Input::User { action: *action },
        Draw::Replace(manual) => {
            let json = if *manual {
                r#"{"hosts":["a"],"stable":"v1","canary":"v2","weight":20}"#.to_string()
            } else {
                serde_json::to_string(&automated().spec).unwrap()
            };
            Input::Replace { spec: Box::new(serde_json::from_str(&json).unwrap()) }
        }
        Draw::Start => Input::Start,
        Draw::ReadinessFailed => Input::ReadinessFailed { detail: "HTTP 503".into() },
        Draw::Judge { scheduled, canary_errors, violations, requests, .. } => {
            let canary = stats(*requests + canary_errors, *canary_errors, *violations);
            let stable = stats(10 * requests + 10, 0, 0);
            match r.analysis() {
                Some(spec) => Input::judged(judge(spec, &step_state(r), &stable, &canary, now), *scheduled),
                None => Input::Start,
            }
        }
    }
}

/// The fields replay must reproduce: everything but the last verdict and its message, which only
/// refresh between events.
fn durable(r: &Rollout) -> (Phase, Option<usize>, Weight, String, String, u64, u32, bool) {
    let s = &r.status;
    (s.phase, s.step, s.weight, r.spec.stable.clone(), r.spec.canary.clone(), s.step_started_at_ms, s.consecutive_failures, r.analysis().is_some())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_never_reach_an_illegal_state_and_events_replay(draws in prop::collection::vec(draw(), 1..60)) {
        let created = automated();
        let mut r = created.clone();
        let mut now = 0u64;
        let mut log: Vec<(Input, u64)> = Vec::new();
        for d in &draws {
            if let Draw::Judge { advance_ms, .. } = d {
                now += advance_ms;
            }
            let input = input_for(d, &r, now);
            match step(&r, input.clone(), now) {
                Ok(t) => {
                    if let Some(why) = invariant_violation(&t.rollout) {
                        prop_assert!(false, "{why} after {input:?}");
                    }
                    if t.event.is_some() {
                        log.push((input, now));
                    } else {
                        prop_assert_eq!(durable(&t.rollout), durable(&r), "a change without an event: {:?}", input);
                    }
                    r = t.rollout;
                }
                Err(StateError::Invalid(e)) => prop_assert!(false, "valid specs only: {e}"),
                Err(_) => {}
            }
        }
        // Replaying the recorded inputs from the created rollout gives the same state.
        let mut replayed = created;
        for (input, at) in log {
            replayed = step(&replayed, input, at).map_err(|e| TestCaseError::fail(e.to_string()))?.rollout;
        }
        prop_assert_eq!(durable(&replayed), durable(&r));
    }
}
