//! The state machine alone: unit cases, and a property test over random inputs.

use fledge_core::analysis::{judge, Look, VersionStats};
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

fn blue_green() -> Rollout {
    rollout(r#"{"hosts":["a"],"stable":"v1","canary":"v2","strategy":"blue_green","preview_seconds":5,"bake_seconds":5,"min_requests":20,
        "analysis":{"failure_limit":2},
        "segments":[{"name":"staff","match":{"header":{"name":"x-staff","present":true}},"version":"canary"},
                    {"name":"beta","match":{"header":{"name":"x-beta","present":true}},"weight":50}],
        "gates":[{"metric":"error_rate","max_increase":0.02},{"metric":"policy_violation_rate","max":0,"critical":true}]}"#)
}

fn initial(bg: bool) -> Rollout {
    if bg {
        blue_green()
    } else {
        automated()
    }
}

static NO_SHADOW: std::sync::LazyLock<fledge_core::shadow::ShadowStats> = std::sync::LazyLock::new(Default::default);

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

fn look<'a>(stable: &'a VersionStats, canary: &'a VersionStats, scheduled: bool) -> Look<'a> {
    Look { stable, canary, stable_step: stable, canary_step: canary, shadow: &NO_SHADOW, shadow_step: &NO_SHADOW, scheduled }
}

fn verdict(r: &Rollout, stable: &VersionStats, canary: &VersionStats, now: u64, scheduled: bool) -> Verdict {
    judge(r.analysis().unwrap(), &step_state(r), &look(stable, canary, scheduled), now)
}

#[test]
fn blue_green_previews_switches_bakes_and_switches_back() {
    let t = step(&blue_green(), Input::Start, 10).unwrap();
    let p = t.rollout;
    assert_eq!((t.event, p.status.phase, p.status.weight, t.routing_changed), (Some("started"), Phase::Previewing, Weight::ZERO, true));
    // The preview publishes the canary segment and pins the weighted one to blue.
    let route = p.route();
    assert_eq!(route.segments.len(), 2);
    assert_eq!(route.segments[0].version.as_deref(), Some("canary"));
    assert_eq!((route.segments[1].version.as_deref(), route.segments[1].weight), (Some("stable"), None));
    assert!(!p.switched());
    // Healthy staff traffic for the preview's 5 s: the switch.
    let (blue, green) = (stats(2000, 0, 0), stats(200, 0, 0));
    let v = verdict(&p, &blue, &green, 6_000, true);
    assert_eq!(v.action, Action::Advance, "{}", v.reason);
    let t = step(&p, Input::judged(v, true), 6_000).unwrap();
    let b = t.rollout;
    assert_eq!((t.event, b.status.phase, b.status.weight.percent(), t.routing_changed), (Some("switched"), Phase::Baking, 100.0, true));
    assert!(b.switched() && b.route().segments.is_empty(), "after the switch every request reaches green");
    assert!(b.status.evidence.baseline.is_some());
    // Paused while baking: still switched; resumed: baking again.
    let paused = step(&b, Input::User { action: UserAction::Pause }, 7_000).unwrap().rollout;
    assert!(paused.switched() && paused.route().segments.is_empty());
    let resumed = step(&paused, Input::User { action: UserAction::Resume }, 8_000).unwrap().rollout;
    assert_eq!(resumed.status.phase, Phase::Baking);
    // A critical failure in the bake switches back at once.
    let v = verdict(&b, &VersionStats::default(), &stats(100, 0, 1), 7_000, false);
    let t = step(&b, Input::judged(v, false), 7_000).unwrap();
    assert_eq!((t.event, t.rollout.status.phase, t.rollout.status.weight, t.routing_changed), (Some("rolled_back"), Phase::RolledBack, Weight::ZERO, true));
    assert!(t.rollout.route().segments.is_empty() && !t.rollout.switched());
    // An abort in the bake too.
    let t = step(&b, Input::User { action: UserAction::Abort }, 7_000).unwrap();
    assert_eq!((t.rollout.status.phase, t.rollout.status.weight, t.routing_changed), (Phase::Aborted, Weight::ZERO, true));
}

#[test]
fn committed_judgements_close_their_interval_into_the_totals() {
    let p = step(&automated(), Input::Start, 0).unwrap().rollout;
    let interval = |stable: &VersionStats, canary: &VersionStats| Interval { started_at_ms: 0, ended_at_ms: 1_000, stable: stable.clone(), canary: canary.clone() };
    let (good, bad) = (stats(500, 0, 0), stats(50, 50, 0));
    // Between intervals, nothing committed: nothing closed.
    let v = verdict(&p, &good, &bad, 10, false);
    let t = step(&p, Input::judged_on(v, false, interval(&good, &bad)), 10).unwrap();
    assert!(t.is_noop(&p) && t.interval.is_none() && t.rollout.status.totals.is_empty());
    // A scheduled look: interval 1, both versions counted.
    let v = verdict(&p, &good, &good, 1_000, true);
    let t = step(&p, Input::judged_on(v, true, interval(&good, &good)), 1_000).unwrap();
    let record = t.interval.clone().unwrap();
    assert_eq!((record.n, record.body["action"].as_str(), record.body["step"].as_u64()), (1, Some("hold"), Some(0)));
    let totals = &t.rollout.status.totals;
    assert_eq!((totals.intervals, totals.versions["v1"].requests, totals.versions["v2"].requests), (1, 500, 500));
    // A critical failure between looks rolls back and closes the open interval with it.
    let unsafe_call = stats(3, 0, 1);
    let v = verdict(&t.rollout, &good, &unsafe_call, 1_500, false);
    let t = step(&t.rollout, Input::judged_on(v, false, interval(&good, &unsafe_call)), 1_500).unwrap();
    assert_eq!(t.rollout.status.phase, Phase::RolledBack);
    let totals = &t.rollout.status.totals;
    assert_eq!((t.interval.map(|i| i.n), totals.intervals, totals.versions["v2"].policy_violations), (Some(2), 2, 1));
    // A replaced spec keeps them, as it keeps the events.
    let spec = t.rollout.spec.clone();
    let replaced = step(&t.rollout, Input::Replace { spec: Box::new(spec) }, 2_000).unwrap().rollout;
    assert_eq!(replaced.status.totals, t.rollout.status.totals);
}

#[test]
fn a_proxy_that_lost_the_controller_pauses_the_rollout_at_zero_until_a_resume() {
    let p = step(&automated(), Input::Start, 0).unwrap().rollout;
    let v = verdict(&p, &stats(2000, 0, 0), &stats(200, 0, 0), 6_000, true);
    let p = step(&p, Input::judged(v, true), 6_000).unwrap().rollout;
    assert_eq!((p.status.step, p.status.weight.percent()), (Some(1), 50.0));
    let t = step(&p, Input::ControllerLost { proxy: "envoy-1".into(), after_seconds: 30 }, 7_000).unwrap();
    assert_eq!((t.event, t.rollout.status.phase, t.rollout.status.weight, t.routing_changed), (Some("paused"), Phase::Paused, Weight::ZERO, true));
    assert!(t.rollout.status.message.contains("envoy-1") && t.rollout.status.message.contains("on_controller_loss"), "{}", t.rollout.status.message);
    let body = crate::events::body("paused", &t.rollout, &Input::ControllerLost { proxy: "envoy-1".into(), after_seconds: 30 });
    assert_eq!(body["input"]["kind"], "controller_lost", "the event says why");
    // Nothing moves while paused; a resume goes back to the step's weight.
    let resumed = step(&t.rollout, Input::User { action: UserAction::Resume }, 8_000).unwrap();
    assert_eq!((resumed.rollout.status.phase, resumed.rollout.status.weight.percent(), resumed.routing_changed), (Phase::Progressing, 50.0, true));
    // Ended and manual rollouts are not paused.
    let done = step(&p, Input::User { action: UserAction::Abort }, 9_000).unwrap().rollout;
    assert!(step(&done, Input::ControllerLost { proxy: "e".into(), after_seconds: 30 }, 10_000).is_err());
    let m = rollout(r#"{"hosts":["a"],"stable":"v1","canary":"v2","weight":5}"#);
    assert!(step(&m, Input::ControllerLost { proxy: "e".into(), after_seconds: 30 }, 10_000).is_err());
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
    let v = verdict(&p, &VersionStats::default(), &VersionStats::default(), 60_000, true);
    let t = step(&p, Input::judged(v, true), 60_000).unwrap();
    assert_eq!((t.event, t.routing_changed, t.rollout.status.phase), (None, false, Phase::Progressing));
    assert!(t.rollout.status.last_verdict.is_some());
}

#[test]
fn data_between_intervals_only_acts_on_critical_gates() {
    let p = step(&automated(), Input::Start, 0).unwrap().rollout;
    let good = stats(500, 0, 0);
    let bad = stats(50, 50, 0);
    let v = verdict(&p, &good, &bad, 10, false);
    let t = step(&p, Input::judged(v, false), 10).unwrap();
    assert!(t.is_noop(&p), "non-critical gates wait for the interval");
    // Evidence builds interval by interval: the first failing one records gate_failing.
    let mut r = p.clone();
    let mut looks = 0;
    let t = loop {
        let v = verdict(&r, &good, &bad, 10, true);
        let t = step(&r, Input::judged(v, true), 10).unwrap();
        looks += 1;
        assert_eq!(t.rollout.status.evidence.looks, looks, "the evidence moves with a scheduled judgement");
        if t.event.is_some() || looks > 30 {
            break t;
        }
        r = t.rollout;
    };
    assert_eq!((t.event, t.rollout.status.consecutive_failures), (Some("gate_failing"), 1));
    assert!(looks <= 2, "a canary failing every request is found within {looks} intervals");
    let v = verdict(&p, &good, &stats(50, 0, 1), 10, false);
    let t = step(&p, Input::judged(v, false), 10).unwrap();
    assert_eq!((t.event, t.rollout.status.phase), (Some("rolled_back"), Phase::RolledBack));
}

#[test]
fn a_pause_holds_but_never_shields_a_critical_failure() {
    let p = step(&automated(), Input::Start, 0).unwrap().rollout;
    let paused = step(&p, Input::User { action: UserAction::Pause }, 1).unwrap().rollout;
    // Healthy or failing a non-critical gate: nothing changes while paused.
    let v = verdict(&p, &stats(10, 0, 0), &stats(10, 0, 0), 2, true);
    let t = step(&paused, Input::judged(v, true), 2).unwrap();
    assert_eq!((t.event, t.routing_changed, t.rollout.status.phase), (None, false, Phase::Paused), "the evidence moves, nothing else");
    let v = verdict(&p, &stats(100, 0, 0), &stats(100, 90, 0), 2, true);
    let t = step(&paused, Input::judged(v, true), 2).unwrap();
    assert_eq!((t.event, t.rollout.status.phase), (None, Phase::Paused), "a non-critical failure does not act while paused");
    // A critical failure rolls back.
    let v = verdict(&p, &stats(100, 0, 0), &stats(100, 0, 1), 3, false);
    let t = step(&paused, Input::judged(v, false), 3).unwrap();
    assert_eq!((t.event, t.rollout.status.phase, t.rollout.status.weight), (Some("rolled_back"), Phase::RolledBack, Weight::ZERO));
    assert!(t.rollout.status.message.starts_with("rolled back while paused"), "{}", t.rollout.status.message);
    let resumed = step(&paused, Input::User { action: UserAction::Resume }, 3).unwrap();
    assert_eq!((resumed.rollout.status.phase, resumed.window), (Phase::Progressing, WindowEffect::Reset));
    // A pending rollout is not judged.
    assert_eq!(step(&automated(), Input::judged(verdict(&p, &stats(1, 0, 0), &stats(1, 0, 0), 1, true), true), 1), Err(StateError::NotJudged("pending")));
}

#[test]
fn a_manual_step_pauses_when_ready_and_a_resume_releases_it() {
    let r = rollout(r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[{"weight":10,"pause":"manual"},100],"step_seconds":5,"min_requests":20,
        "analysis":{"failure_limit":2},"gates":[{"metric":"error_rate","max_increase":0.02}]}"#);
    let mut p = step(&r, Input::Start, 0).unwrap().rollout;
    let mut now = 0;
    let paused = loop {
        now += 1000;
        assert!(now < 600_000, "never became ready");
        let v = verdict(&p, &stats(2000, 0, 0), &stats(200, 0, 0), now, true);
        assert_ne!(v.action, Action::Advance, "a manual step never advances on its own");
        let t = step(&p, Input::judged(v, true), now).unwrap();
        if t.event == Some("paused") {
            break t.rollout;
        }
        p = t.rollout;
    };
    assert_eq!((paused.status.phase, paused.status.weight.percent()), (Phase::Paused, 10.0));
    assert!(paused.status.message.contains("manual pause: resume or promote"), "{}", paused.status.message);
    let resumed = step(&paused, Input::User { action: UserAction::Resume }, now + 1).unwrap().rollout;
    assert!(resumed.status.released);
    let v = verdict(&resumed, &stats(2000, 0, 0), &stats(200, 0, 0), now + 10_000, true);
    assert_eq!(v.action, Action::Advance, "{}", v.reason);
    let t = step(&resumed, Input::judged(v, true), now + 10_000).unwrap();
    assert_eq!((t.event, t.rollout.status.weight.percent(), t.rollout.status.released), (Some("advanced"), 100.0, false));
}

#[test]
fn an_approval_step_waits_until_released() {
    let r = rollout(r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[{"weight":10,"approval":{"url":"http://approver/ok"}},100],"step_seconds":1,"min_requests":20,
        "analysis":{"failure_limit":2},"gates":[{"metric":"error_rate","max_increase":0.02}]}"#);
    let p = step(&r, Input::Start, 0).unwrap().rollout;
    let mut state = step_state(&p);
    let (good, canary) = (stats(2000, 0, 0), stats(200, 0, 0));
    let mut now = 0;
    let v = loop {
        now += 1000;
        let v = judge(p.analysis().unwrap(), &state, &look(&good, &canary, true), now);
        if v.waiting.is_some() {
            break v;
        }
        state = v.next_state;
    };
    assert_eq!((v.action, v.waiting.clone()), (Action::Hold, Some(Waiting::Approval { url: "http://approver/ok".into() })));
    let t = step(&p, Input::judged(v, true), now).unwrap();
    assert_eq!(t.rollout.status.phase, Phase::Progressing, "an approval step holds without pausing");
    state.released = true;
    let v = judge(p.analysis().unwrap(), &state, &look(&good, &canary, true), now + 1000);
    assert_eq!(v.action, Action::Advance, "{}", v.reason);
}

#[test]
fn a_resume_keeps_the_evidence() {
    let mut p = step(&automated(), Input::Start, 0).unwrap().rollout;
    for now in 1..=5u64 {
        let v = verdict(&p, &stats(200, 2, 0), &stats(20, 0, 0), now * 1000, true);
        p = step(&p, Input::judged(v, true), now * 1000).unwrap().rollout;
    }
    assert_eq!(p.status.evidence.looks, 5);
    let paused = step(&p, Input::User { action: UserAction::Pause }, 6_000).unwrap().rollout;
    let resumed = step(&paused, Input::User { action: UserAction::Resume }, 7_000).unwrap().rollout;
    assert_eq!(resumed.status.evidence, p.status.evidence, "a resume does not buy a fresh α");
    let json = serde_json::to_string(&resumed.status).unwrap();
    let back: RolloutStatus = serde_json::from_str(&json).unwrap();
    assert_eq!(back.evidence, resumed.status.evidence, "persisted exactly");
    let old: RolloutStatus = serde_json::from_str(r#"{"phase":"progressing","step":0,"weight":0,"generation":1,"updated_at_ms":0}"#).unwrap();
    assert_eq!(old.evidence, Default::default(), "records from before the evidence state load");
}

/// A random input, drawn the way the controller would meet it: user actions, replaced specs and
/// judgements computed by the real `judge` from random stats.
#[derive(Debug, Clone)]
enum Draw {
    User(UserAction),
    Replace(bool),
    Start,
    ReadinessFailed,
    ControllerLost,
    Judge { scheduled: bool, canary_errors: u64, violations: u64, requests: u64, advance_ms: u64 },
}

fn draw() -> impl Strategy<Value = Draw> {
    prop_oneof![
        prop_oneof![Just(UserAction::Pause), Just(UserAction::Resume), Just(UserAction::Promote), Just(UserAction::Abort)].prop_map(Draw::User),
        any::<bool>().prop_map(Draw::Replace),
        Just(Draw::Start),
        Just(Draw::ReadinessFailed),
        Just(Draw::ControllerLost),
        (any::<bool>(), 0u64..30, 0u64..2, 0u64..200, 0u64..8_000).prop_map(|(scheduled, canary_errors, violations, requests, advance_ms)| {
            Draw::Judge { scheduled, canary_errors, violations, requests, advance_ms }
        }),
    ]
}

fn input_for(d: &Draw, r: &Rollout, now: u64, bg: bool) -> Input {
    match d {
        Draw::User(action) => Input::User { action: *action },
        Draw::Replace(manual) => {
            let json = if *manual {
                r#"{"hosts":["a"],"stable":"v1","canary":"v2","weight":20}"#.to_string()
            } else {
                serde_json::to_string(&initial(bg).spec).unwrap()
            };
            Input::Replace { spec: Box::new(serde_json::from_str(&json).unwrap()) }
        }
        Draw::Start => Input::Start,
        Draw::ReadinessFailed => Input::ReadinessFailed { detail: "HTTP 503".into() },
        Draw::ControllerLost => Input::ControllerLost { proxy: "envoy-1".into(), after_seconds: 30 },
        Draw::Judge { scheduled, canary_errors, violations, requests, .. } => {
            let canary = stats(*requests + canary_errors, *canary_errors, *violations);
            let stable = stats(10 * requests + 10, 0, 0);
            // After a blue-green switch blue has no traffic.
            let stable = if r.switched() { VersionStats::default() } else { stable };
            match r.analysis() {
                Some(spec) => Input::judged(judge(spec, &step_state(r), &look(&stable, &canary, *scheduled), now), *scheduled),
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
    fn random_inputs_never_reach_an_illegal_state_and_events_replay(bg in any::<bool>(), draws in prop::collection::vec(draw(), 1..60)) {
        let created = initial(bg);
        let mut r = created.clone();
        let mut now = 0u64;
        let mut log: Vec<(Input, u64)> = Vec::new();
        let mut all: Vec<(Input, u64)> = Vec::new();
        for d in &draws {
            if let Draw::Judge { advance_ms, .. } = d {
                now += advance_ms;
            }
            let input = input_for(d, &r, now, bg);
            match step(&r, input.clone(), now) {
                Ok(t) => {
                    all.push((input.clone(), now));
                    if let Some(why) = invariant_violation(&t.rollout) {
                        prop_assert!(false, "{why} after {input:?}");
                    }
                    if let Some(kind) = t.event {
                        // Every event is one a notification can subscribe to (and core validates against).
                        prop_assert!(fledge_core::rollout::EVENT_KINDS.contains(&kind), "event {kind} is not in EVENT_KINDS");
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
        // The evidence moves with every scheduled judgement, event or not: replaying every input
        // reproduces it (and everything else).
        let mut replayed = initial(bg);
        for (input, at) in all {
            replayed = step(&replayed, input, at).map_err(|e| TestCaseError::fail(e.to_string()))?.rollout;
        }
        prop_assert_eq!(&replayed.status.evidence, &r.status.evidence);
        prop_assert_eq!(durable(&replayed), durable(&r));
    }
}
