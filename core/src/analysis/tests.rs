//! Rule-by-rule tests of `judge`, and the seeded simulations behind the published decision-quality
//! figures (run in release: `cargo test --release -p fledge-core analysis`).

use super::simulation::{issue_spec, scenarios, Simulator, Tally};
use super::*;

static NO_SHADOW: std::sync::LazyLock<crate::shadow::ShadowStats> = std::sync::LazyLock::new(Default::default);

fn stats(requests: u64, errors: u64) -> VersionStats {
    VersionStats {
        requests,
        errors,
        status_5xx: errors,
        status_2xx: requests - errors,
        outcome_success: requests,
        ..VersionStats::default()
    }
}

fn look<'a>(s: &'a VersionStats, c: &'a VersionStats, scheduled: bool) -> Look<'a> {
    Look { stable: s, canary: c, stable_step: s, canary_step: c, shadow: &NO_SHADOW, shadow_step: &NO_SHADOW, scheduled }
}

fn only(gates: Vec<Gate>) -> AnalysisSpec {
    issue_spec(gates).unwrap()
}

#[test]
fn no_data_holds_and_says_what_is_missing() {
    let spec = issue_spec(default_gates()).unwrap();
    let empty = VersionStats::default();
    let mut state = StepState::start(0);
    for s in 1..=600u64 {
        let v = judge(&spec, &state, &look(&empty, &empty, true), s * 1000);
        assert_eq!(v.action, Action::Hold, "{}", v.reason);
        state = v.next_state;
    }
    assert_eq!(state.step_index, 0);
    assert_eq!(state.evidence.looks, 600);
    let v = judge(&spec, &state, &look(&empty, &empty, true), 601_000);
    assert!(v.reason.contains("holding at 1%"), "{}", v.reason);
    assert!(v.reason.contains("task_success_rate: needs canary task outcomes to rule out a 4.00 pp drop in task success"), "{}", v.reason);
}

#[test]
fn a_step_holds_until_the_proof_is_in_and_says_how_much_more() {
    // 51 task outcomes at 80 % success against 95 %: no proof of safety, the step holds.
    let spec = issue_spec(default_gates()).unwrap();
    let mut stable = stats(1000, 10);
    stable.outcome_success = 950;
    stable.outcome_failure = 50;
    let mut canary = stats(51, 0);
    canary.outcome_success = 41;
    canary.outcome_failure = 10;
    let state = StepState { step_started_at_ms: 0, ..StepState::start(0) };
    let v = judge(&spec, &state, &look(&stable, &canary, true), 120_000);
    assert_eq!(v.action, Action::Hold, "{}", v.reason);
    let task = v.gates.iter().find(|g| g.metric == Metric::TaskSuccessRate).unwrap();
    assert_eq!(task.status, GateStatus::InsufficientData);
    assert!(task.note.contains(" pp drop in task success"), "{}", task.note);
    // A healthy interval: the note counts what is missing.
    let mut canary = stats(20, 0);
    canary.outcome_success = 19;
    canary.outcome_failure = 1;
    let v = judge(&spec, &StepState::start(0), &look(&stable, &canary, true), 1000);
    let task = v.gates.iter().find(|g| g.metric == Metric::TaskSuccessRate).unwrap();
    assert!(task.note.starts_with("needs about "), "{}", task.note);
    assert!(task.note.contains("more canary task outcomes to rule out a "), "{}", task.note);
    assert!(task.note.ends_with(" pp drop in task success"), "{}", task.note);
    assert!(task.proof.is_some() && task.evidence.is_some() && task.bounds.is_some());
}

#[test]
fn a_critical_absolute_gate_acts_between_intervals_and_others_wait() {
    let g = Gate::try_new(Metric::PolicyViolationRate, Threshold::Max(0.0), true).unwrap();
    let e = Gate::try_new(Metric::ErrorRate, Threshold::MaxRatio(1.25), false).unwrap();
    let spec = only(vec![e, g]);
    let stable = stats(100, 1);
    let mut canary = stats(10, 10);
    let v = judge(&spec, &StepState::start(0), &look(&stable, &canary, false), 500);
    assert_eq!(v.action, Action::Hold, "non-critical gates wait: {}", v.reason);
    assert_eq!(v.next_state, StepState::start(0), "a look between intervals keeps no state");
    canary.policy_violating_requests = 1;
    let v = judge(&spec, &StepState::start(0), &look(&stable, &canary, false), 500);
    assert_eq!(v.action, Action::Rollback, "{}", v.reason);
    assert!(v.reason.starts_with("critical gate failed: policy_violation_rate"), "{}", v.reason);
}

#[test]
fn a_shared_incident_cancels_and_a_canary_only_one_does_not() {
    let gates = vec![Gate::try_new(Metric::ErrorRate, Threshold::MaxRatio(1.25), false).unwrap()];
    let spec = simulation::spec_with(vec![50.0, 100.0], 600, gates).unwrap();
    // 50 % split, both versions at 30 % errors for a minute: no evidence against the canary.
    let mut state = StepState::start(0);
    for s in 1..=60u64 {
        let (st, ca) = (stats(100, 30), stats(100, 30));
        let v = judge(&spec, &state, &look(&st, &ca, true), s * 1000);
        assert_ne!(v.action, Action::Rollback, "{}", v.reason);
        state = v.next_state;
    }
    let (st, ca) = (stats(100, 1), stats(100, 30));
    let v = judge(&spec, &state, &look(&st, &ca, true), 61_000);
    assert_eq!(v.action, Action::Hold, "one interval is not enough here: {}", v.reason);
    let v = judge(&spec, &v.next_state, &look(&st, &ca, true), 62_000);
    assert_eq!(v.action, Action::Rollback, "{}", v.reason);
    let gate = &v.gates[0];
    let e = gate.evidence.as_ref().unwrap();
    assert_eq!(e.test, "shiryaev_roberts");
    assert!(e.value >= e.threshold && e.threshold == 100.0, "{e:?}");
}

#[test]
fn relative_gates_end_at_the_last_split_step() {
    let spec = issue_spec(default_gates()).unwrap();
    let state = StepState { step_index: 4, ..StepState::start(0) };
    let (st, ca) = (VersionStats::default(), stats(200, 100));
    let v = judge(&spec, &state, &look(&st, &ca, true), 1000);
    assert_ne!(v.action, Action::Rollback);
    assert!(v.gates.iter().all(|g| g.status == GateStatus::Pass && g.note.contains("100%")));
}

#[test]
fn evidence_survives_serde_and_old_records_default() {
    let spec = issue_spec(default_gates()).unwrap();
    let (st, ca) = (stats(198, 2), stats(2, 0));
    let v = judge(&spec, &StepState::start(0), &look(&st, &ca, true), 1000);
    let json = serde_json::to_string(&v.next_state).unwrap();
    let back: StepState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v.next_state);
    let old: StepState = serde_json::from_str(r#"{"step_index":1,"step_started_at_ms":5,"consecutive_failures":0}"#).unwrap();
    assert_eq!(old.evidence, EvidenceState::default());
}

#[test]
fn every_verdict_survives_json_even_on_extreme_counts() {
    // A verdict with ±∞ or NaN would be stored as null and make the record unreadable.
    let spec = issue_spec(default_gates()).unwrap();
    let huge = u64::MAX / 4;
    let cases = [
        (stats(400_000, 0), stats(40_000, 20_000)),
        (stats(huge, 0), stats(huge, huge)),
        (stats(huge, huge), stats(1, 0)),
        (stats(10, 0), stats(huge, 0)),
    ];
    for (st, ca) in cases {
        let mut state = StepState { step_index: 2, ..StepState::start(0) };
        for k in 1..=20u64 {
            let v = judge(&spec, &state, &look(&st, &ca, true), k * 1000);
            let json = serde_json::to_string(&v).unwrap();
            let back: Verdict = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
            assert_eq!(back.next_state, v.next_state);
            state = v.next_state;
        }
    }
}

#[test]
fn segment_alpha_sums_to_at_most_one() {
    let total: f64 = (1..200).map(|s| segment_alpha_share(s, 5)).sum();
    assert!(total <= 1.0 + 1e-12 && total > 0.99, "{total}");
}

fn row(name_starts: &str, runs: usize) -> Tally {
    let (sc, _) = scenarios().into_iter().find(|(s, _)| s.name.starts_with(name_starts)).unwrap();
    let t = Simulator::new().run_many(&sc, runs, 7);
    println!("{}", t.line());
    t
}

const ALPHA_GATE: f64 = OVERALL_ALPHA / 4.0;

#[test]
fn sim_a_a_rarely_rolls_back() {
    let t = row("A/A", 2_000);
    assert!(t.rollback_rate() <= 0.01, "{}", t.line());
}

#[test]
fn sim_at_the_tolerance_stays_under_alpha_gate() {
    for name in ["error rate at the tolerance", "task success at the tolerance", "policy violations at the tolerance"] {
        let t = row(name, 2_000);
        assert!(t.rollback_rate() <= ALPHA_GATE, "{}", t.line());
    }
}

#[test]
fn sim_shared_incidents_do_not_roll_back() {
    for step in 1..=5 {
        let t = row(&format!("shared incident (both 1 % → 5 % errors for 30 s) in step {step}"), 500);
        assert!(t.rollback_rate() <= 0.01, "{}", t.line());
    }
}

#[test]
fn sim_latency_inside_and_outside_the_ratio() {
    let t = row("latency, canary 1.15×", 1_000);
    assert!(t.rollback_rate() <= 0.01, "{}", t.line());
    let t = row("latency, canary 1.2×", 1_000);
    assert!(t.rollback_rate() <= ALPHA_GATE, "{}", t.line());
    let t = row("latency, canary 1.5×", 500);
    assert!(t.rollback_rate() >= 0.95, "{}", t.line());
}

#[test]
fn sim_absolute_limit_at_the_limit() {
    for name in ["absolute limit, canary exactly", "absolute limit, critical"] {
        let t = row(name, 2_000);
        assert!(t.rollback_rate() <= OVERALL_ALPHA / 4.0, "{}", t.line());
    }
}

#[test]
fn sim_sudden_failure_after_long_healthy_history_is_found_fast() {
    let t = row("sudden 1 % → 10 % errors at a 5 % step after 30 min", 100);
    assert!(t.median_delay_s().unwrap() <= 20, "{}", t.line());
    assert!(t.rollback_rate() >= 0.99, "{}", t.line());
}

#[test]
fn sim_power_and_the_planner_and_a_healthy_promotion() {
    let t = row("power: errors 1 % → 2 %", 1_000);
    assert!(t.rollback_rate() >= 0.90, "{}", t.line());
    let t = row("the demo's planner", 500);
    assert_eq!(t.advanced_past_first, 0, "{}", t.line());
    let t = row("healthy canary", 1_000);
    assert_eq!(t.promoted, t.runs, "{}", t.line());
    assert_eq!(t.held_over_3x, 0, "{}", t.line());
}

fn costs(n: u64, mean: f64, sd: f64) -> VersionStats {
    VersionStats {
        requests: n,
        status_2xx: n,
        cost_count: n,
        cost_sum: n as f64 * mean,
        cost_sum_sq: n as f64 * (mean * mean + sd * sd),
        ..VersionStats::default()
    }
}

#[test]
fn cost_gate_fails_a_dearer_canary_and_passes_an_equal_one() {
    let gate = Gate::try_new(Metric::CostPerTask, Threshold::MaxRatio(1.2), false).unwrap();
    let spec = simulation::spec_with(vec![50.0, 100.0], 30, vec![gate]).unwrap();
    let (st, dear) = (costs(100, 1.0, 0.3), costs(100, 2.0, 0.3));
    let mut state = StepState::start(0);
    let mut rolled_back = None;
    for k in 1..=10u64 {
        let v = judge(&spec, &state, &look(&st, &dear, true), k * 1000);
        if v.action == Action::Rollback {
            rolled_back = Some(k);
            break;
        }
        state = v.next_state;
    }
    assert!(rolled_back.is_some_and(|k| k <= 3), "{rolled_back:?}");
    let same = costs(100, 1.0, 0.3);
    let mut state = StepState::start(0);
    let mut actions = Vec::new();
    for k in 1..=40u64 {
        let v = judge(&spec, &state, &look(&st, &same, true), k * 1000);
        actions.push(v.action);
        state = v.next_state;
    }
    assert!(!actions.contains(&Action::Rollback));
    assert!(actions.contains(&Action::Advance), "{actions:?}");
}

#[test]
fn sim_blue_green_rows() {
    let runs = 1000;
    for (prefix, check) in [
        ("blue-green: identical versions", "a/a"),
        ("blue-green: green at the error tolerance", "tolerance"),
        ("blue-green: green's errors", "power"),
        ("blue-green: green's task success", "power"),
        ("blue-green: green's latency", "power"),
    ] {
        let t = row(prefix, runs);
        match check {
            "a/a" => {
                assert!(t.any_rollback_rate() <= 0.01, "{}", t.line());
                assert!(t.promoted as f64 >= 0.97 * runs as f64, "{}", t.line());
            }
            "tolerance" => assert!(t.rollback_rate() <= 0.01, "{}", t.line()),
            "power" => assert!(t.rollback_rate() >= 0.95, "{}", t.line()),
            _ => {}
        }
    }
}

#[test]
fn blue_green_previews_switches_with_a_frozen_baseline_and_bakes_against_it() {
    let gates = vec![
        Gate::try_new(Metric::ErrorRate, Threshold::MaxRatio(1.25), false).unwrap(),
        Gate::try_new(Metric::ErrorRate, Threshold::Max(0.2), true).unwrap(),
    ];
    let spec = simulation::blue_green_spec(10, 10, gates).unwrap();
    assert_eq!(spec.steps(), &[0.0, 100.0]);
    assert!(spec.is_preview(0) && !spec.is_preview(1));
    assert_eq!((spec.dwell_seconds(0), spec.dwell_seconds(1), spec.nominal_seconds()), (10, 10, 20));
    // Preview: green (the segment) 1 % errors against blue's 1 %, until the proof and the dwell are in.
    let mut state = StepState::start(0);
    let (mut blue, mut green) = (VersionStats::default(), VersionStats::default());
    let mut s = 0;
    let verdict = loop {
        s += 1;
        assert!(s < 600, "the preview never switched");
        let (b, g) = (stats(1000, 10), stats(100, 1));
        blue.merge(&b);
        green.merge(&g);
        let v = judge(&spec, &state, &Look { stable: &b, canary: &g, stable_step: &blue, canary_step: &green, shadow: &NO_SHADOW, shadow_step: &NO_SHADOW, scheduled: true }, s * 1000);
        assert_ne!(v.action, Action::Rollback, "{}", v.reason);
        assert_eq!(v.gates[0].comparison, None, "the preview is concurrent");
        if v.action == Action::Advance {
            break v;
        }
        state = v.next_state;
    };
    assert!(s >= 10, "not before the preview's dwell: {s}");
    assert_eq!(verdict.canary_weight, 100.0);
    let baseline = verdict.next_state.evidence.baseline.clone().expect("the switch freezes blue's counts");
    assert_eq!(baseline.requests, blue.requests);
    let mut state = verdict.next_state;
    // Bake: green alone. At 1 % it stays within 1.25× blue's bound and is promoted after the dwell.
    let empty = VersionStats::default();
    let mut green = VersionStats::default();
    let start = s;
    let promoted = loop {
        s += 1;
        assert!(s < start + 600, "the bake never ended");
        let g = stats(1000, 10);
        green.merge(&g);
        let v = judge(&spec, &state, &Look { stable: &empty, canary: &g, stable_step: &empty, canary_step: &green, shadow: &NO_SHADOW, shadow_step: &NO_SHADOW, scheduled: true }, s * 1000);
        let ratio = &v.gates[0];
        let c = ratio.comparison.as_ref().expect("the bake compares with blue before the switch");
        assert_eq!((c.against.as_str(), c.concurrent, c.baseline_n), ("blue_pre_switch", false, baseline.requests));
        assert!(c.limit > 0.0125 && c.limit < 0.02, "1.25 × blue's upper bound: {c:?}");
        assert_eq!(ratio.stable, Some(0.01));
        assert!(ratio.threshold.contains("not concurrent"), "{}", ratio.threshold);
        assert_ne!(v.action, Action::Rollback, "{}", v.reason);
        if v.action == Action::Promote {
            break s;
        }
        state = v.next_state;
    };
    assert!(promoted >= start + 10, "not before the bake's dwell");
    // The same bake with green at 3 % errors fails the comparison.
    let mut bad = VersionStats::default();
    let mut state = verdict_state_at_switch();
    for t in 1..=60u64 {
        let g = stats(1000, 30);
        bad.merge(&g);
        let v = judge(&spec, &state, &Look { stable: &empty, canary: &g, stable_step: &empty, canary_step: &bad, shadow: &NO_SHADOW, shadow_step: &NO_SHADOW, scheduled: true }, t * 1000);
        if v.action == Action::Rollback {
            assert!(v.reason.contains("error_rate regressed"), "{}", v.reason);
            assert_eq!(v.gates[0].status, GateStatus::Fail);
            return;
        }
        state = v.next_state;
    }
    panic!("3 % errors against blue's 1 % were never caught in the bake");
}

/// The state right after a switch whose preview saw blue at 1 % errors over 100,000 requests.
fn verdict_state_at_switch() -> StepState {
    let mut state = StepState::start(0);
    state.step_index = 1;
    state.evidence.baseline = Some(stats(100_000, 1000));
    state
}

#[test]
fn blue_green_without_a_preview_skips_the_relative_comparison() {
    let gates = vec![Gate::try_new(Metric::ErrorRate, Threshold::MaxRatio(1.25), false).unwrap()];
    let spec = simulation::blue_green_spec(0, 10, gates).unwrap();
    assert_eq!(spec.steps(), &[100.0]);
    let (empty, g) = (VersionStats::default(), stats(1000, 10));
    let v = judge(&spec, &StepState::start(0), &Look { stable: &empty, canary: &g, stable_step: &empty, canary_step: &g, shadow: &NO_SHADOW, shadow_step: &NO_SHADOW, scheduled: true }, 1000);
    assert_eq!(v.gates[0].status, GateStatus::Pass);
    assert!(v.gates[0].note.contains("no preview"), "{}", v.gates[0].note);
}

#[test]
fn shadow_and_blue_green_specs_survive_a_json_round_trip() {
    for json in [
        r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[10,100],"shadow":{"cluster":"c","percent":10},"shadow_seconds":60}"#,
        r#"{"hosts":["a"],"stable":"v1","canary":"v2","strategy":"blue_green","preview_seconds":0,"bake_seconds":60}"#,
        r#"{"hosts":["a"],"stable":"v1","canary":"v2","steps":[{"weight":10,"pause":"manual"},100]}"#,
    ] {
        let spec: crate::rollout::RolloutSpec = serde_json::from_str(json).unwrap();
        let crate::rollout::Mode::Automated(a) = spec.mode().unwrap() else { panic!("automated") };
        let back: AnalysisSpec = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a, "{json}");
    }
}

fn scored(n: u64, mean: f64, sd: f64, pass: u64) -> VersionStats {
    let mut s = VersionStats::default();
    let e = EvaluationStats { count: n, sum: mean * n as f64, sum_sq: (sd * sd + mean * mean) * n as f64, labelled: n, pass };
    s.evaluations.insert("helpfulness".into(), e);
    s
}

#[test]
fn evaluation_gates_fail_a_lower_score_and_pass_an_equal_one() {
    let gate = |json: &str| -> Gate { serde_json::from_str(json).unwrap() };
    let score = gate(r#"{"metric":"evaluation_score","name":"helpfulness","max_decrease":0.3}"#);
    let pass = gate(r#"{"metric":"evaluation_pass_rate","name":"helpfulness","max_decrease":0.05}"#);
    let min = gate(r#"{"metric":"evaluation_score","name":"helpfulness","min":3.0}"#);
    assert_eq!(score.describe(), "canary ≥ stable − 0.3000");
    for (g, bad) in [(score, scored(40, 3.4, 0.8, 36)), (pass, scored(40, 4.2, 0.8, 24)), (min, scored(40, 2.0, 0.8, 36))] {
        let spec = simulation::spec_with(vec![50.0, 100.0], 10, vec![g]).unwrap();
        // Equal scores: no failure, and the gate passes once its proof is in.
        let mut state = StepState::start(0);
        let mut passed = false;
        for s in 1..=120u64 {
            let (st, ca) = (scored(40, 4.2, 0.8, 36), scored(40, 4.2, 0.8, 36));
            let v = judge(&spec, &state, &look(&st, &ca, true), s * 1000);
            assert_ne!(v.gates[0].status, GateStatus::Fail, "{:?}: {}", g.metric(), v.reason);
            passed |= v.gates[0].status == GateStatus::Pass;
            state = v.next_state;
        }
        assert!(passed, "{:?} never passed on equal scores", g.metric());
        // A lower score (or pass rate) fails within a few intervals.
        let mut state = StepState::start(0);
        let failed = (1..=20u64).any(|s| {
            let st = scored(40, 4.2, 0.8, 36);
            let v = judge(&spec, &state, &look(&st, &bad, true), s * 1000);
            state = v.next_state.clone();
            v.gates[0].status == GateStatus::Fail
        });
        assert!(failed, "{:?} missed the drop", g.metric());
    }
    assert!(serde_json::from_str::<Gate>(r#"{"metric":"evaluation_score","max_decrease":0.3}"#).unwrap_err().to_string().contains("name the evaluation"));
    assert!(serde_json::from_str::<Gate>(r#"{"metric":"error_rate","name":"x","max":0.1}"#).unwrap_err().to_string().contains("name applies to"));
    assert!(serde_json::from_str::<Gate>(r#"{"metric":"evaluation_score","name":"a b","min":1}"#).is_err());
}

/// α_gate of the shadow rows' spec: the four default gates and three shadow counterparts.
const SHADOW_ALPHA_GATE: f64 = OVERALL_ALPHA / 7.0;

#[test]
fn the_shadow_rows_spec_is_the_controllers() {
    let spec = simulation::shadow::shadow_spec(300).unwrap();
    assert!(spec.is_shadow(0) && !spec.is_shadow(1));
    assert_eq!(spec.steps(), &[0.0, 1.0, 5.0, 25.0, 50.0, 100.0]);
    assert_eq!((spec.dwell_seconds(0), spec.failure_limit()), (300, 1));
    let shadow: Vec<Metric> = spec.gates().iter().map(|g| g.metric()).filter(|m| m.is_shadow()).collect();
    assert_eq!(shadow, [Metric::ShadowErrorRate, Metric::ShadowLatencyP99Ms, Metric::ShadowTaskSuccessRate]);
    assert_eq!(spec.gates().len(), 7);
}

#[test]
fn sim_shadow_a_a_and_a_healthy_shadow_pass_the_phase() {
    let t = row("shadow A/A", 1_000);
    assert!(t.any_rollback_rate() <= 0.01, "{}", t.line());
    assert!(t.advanced_past_first as f64 >= 0.95 * t.runs as f64, "{}", t.line());
    assert!(t.median_first_step_s().unwrap() <= 310, "passes at the phase's dwell: {}", t.line());
    let t = row("shadow: healthy canary, independent answers", 500);
    assert!(t.any_rollback_rate() <= 0.01, "{}", t.line());
    assert!(t.advanced_past_first as f64 >= 0.95 * t.runs as f64, "{}", t.line());
}

#[test]
fn sim_shadow_at_the_tolerance_stays_under_alpha_gate() {
    for name in ["shadow: errors at the tolerance", "shadow: task success at the tolerance"] {
        let t = row(name, 1_000);
        assert!(t.rollback_rate() <= SHADOW_ALPHA_GATE, "{}", t.line());
    }
}

#[test]
fn sim_shadow_failures_roll_back_while_shadowing() {
    // Shadow runs end when the phase passes: every rollback counted is one during shadowing.
    let t = row("shadow: canary failing 30 % of tasks", 1_000);
    assert!(t.rollback_rate() >= 0.95, "{}", t.line());
    assert!(t.median_delay_s().unwrap() <= 10, "{}", t.line());
    // Latency is judged on quantile bounds of each side's copies: slower, the phase holds meanwhile.
    let t = row("shadow: latency 1.5×", 300);
    assert!(t.rollback_rate() >= 0.95, "{}", t.line());
    assert!(t.median_delay_s().unwrap() <= 450, "{}", t.line());
}

#[test]
fn sim_shadow_advance_proof_at_the_regression_it_rules_out() {
    let t = row("shadow: errors 1 % → 1.5 %", 300);
    assert!(t.advanced_past_first as f64 <= 0.15 * t.runs as f64, "{}", t.line());
}

#[test]
fn sim_shadow_pairing_gain() {
    // The same copies (the same seed) judged paired and unpaired.
    let paired = row("shadow pairing gain: task success 95 % → 91 %", 500);
    let unpaired = row("shadow pairing gain: the same at 91 %", 500);
    assert!(paired.rolled_back > unpaired.rolled_back, "{}\n{}", paired.line(), unpaired.line());
}

fn pair(status: u16, failed: bool, ms: u64) -> crate::shadow::Answer {
    crate::shadow::Answer {
        status: Some(status),
        result: Some(if failed { crate::outcome::TaskResult::Failure } else { crate::outcome::TaskResult::Success }),
        total_us: ms * 1000,
        ..Default::default()
    }
}

#[test]
fn a_shadow_answering_like_stable_passes_the_phase_at_its_dwell() {
    // 20 copies a second whose answers match stable's on every pair but a rare one: the paired
    // proofs get the precision of the few discordant pairs, and the phase passes when its dwell
    // is over. (With each interval's own variance, dominated by its pseudo-pair, the error proof
    // could not rule out 0.25 pp within the hour.)
    let rollout: crate::rollout::RolloutSpec = serde_json::from_str(
        r#"{"hosts":["a"],"stable":"v1","canary":"v2","shadow":{"cluster":"v2","percent":10},"shadow_seconds":300,"analysis":{"failure_limit":1}}"#,
    )
    .unwrap();
    let Ok(crate::rollout::Mode::Automated(spec)) = rollout.mode() else { panic!("automated") };
    let mut state = StepState::start(0);
    let (mut step, mut live_step) = (crate::shadow::ShadowStats::default(), VersionStats::default());
    for s in 1..=400u64 {
        let mut pairs = crate::shadow::ShadowStats::default();
        for i in 0..20u64 {
            let ms = 80 + 7 * i + s % 13;
            // One shared task failure per interval, a shared error every tenth interval, and a
            // discordant task outcome (each way in turn) every twentieth.
            let error = s % 10 == 0 && i == 0;
            let stable_fails = i == 1 || (s % 40 == 0 && i == 2);
            let shadow_fails = i == 1 || (s % 40 == 20 && i == 2);
            let status = if error { 503 } else { 200 };
            pairs.record_pair(&pair(status, stable_fails, ms), &pair(status, shadow_fails, ms));
        }
        step.merge(&pairs);
        let (live, empty) = (pairs.stable_view(), VersionStats::default());
        live_step.merge(&live);
        let look = Look { stable: &live, canary: &empty, stable_step: &live_step, canary_step: &empty, shadow: &pairs, shadow_step: &step, scheduled: true };
        let v = judge(&spec, &state, &look, s * 1000);
        assert_ne!(v.action, Action::Rollback, "{}", v.reason);
        if v.action == Action::Advance {
            assert!(s >= 300, "not before the phase's dwell: {s}");
            assert!(s <= 305, "the phase held to {s} s: {}", v.reason);
            return;
        }
        state = v.next_state;
    }
    panic!("the shadow phase never passed: {:?}", state.evidence.gates);
}

/// Six gates with the two evaluation gates.
const ALPHA_GATE_6: f64 = OVERALL_ALPHA / 6.0;

#[test]
fn sim_evaluation_gates_keep_their_level_on_equal_and_tolerated_judges() {
    for name in ["evaluations A/A: equal", "evaluations A/A with whole scores"] {
        let t = row(name, 500);
        assert!(t.any_rollback_rate() <= 0.01 && t.promoted as f64 >= 0.95 * t.runs as f64, "{}", t.line());
    }
    for name in ["evaluations: mean score at the tolerance", "evaluations: pass rate at the tolerance"] {
        let t = row(name, 1_000);
        assert!(t.rollback_rate() <= ALPHA_GATE_6, "{}", t.line());
    }
}

#[test]
fn sim_evaluation_gates_catch_a_worse_judge_verdict() {
    let t = row("evaluations: judge scores 4.2 → 3.4 from", 300);
    assert!(t.rollback_rate() >= 0.95 && t.advanced_past_first == 0, "{}", t.line());
    let t = row("evaluations: pass rate 90 % → 75 %", 200);
    assert!(t.rollback_rate() >= 0.95, "{}", t.line());
    let t = row("evaluations: judge scores 4.2 → 3.4 at a 5 %", 200);
    assert!(t.rollback_rate() >= 0.95 && t.median_delay_s().is_some_and(|d| d <= 60), "{}", t.line());
}

/// A row with stable's requests measured in part (the hot-path design under study, see
/// [`simulation::StableSample`]): 4 × the canary's requests plus 50 per interval.
fn sampled_row(name_starts: &str, runs: usize) -> Tally {
    let (mut sc, _) = scenarios().into_iter().find(|(s, _)| s.name.starts_with(name_starts)).unwrap();
    sc.stable_sample = Some(simulation::StableSample { multiple: 4.0, floor: 50 });
    sc.name = format!("{} — stable sampled (4 × canary + 50)", sc.name);
    let t = Simulator::new().run_many(&sc, runs, 11);
    println!("{}", t.line());
    t
}

#[test]
fn sim_stable_sampling_keeps_level_and_power() {
    let t = sampled_row("A/A", 1_000);
    assert!(t.rollback_rate() <= 0.01 && t.promoted as f64 >= 0.99 * t.runs as f64, "{}", t.line());
    for name in ["error rate at the tolerance", "task success at the tolerance", "latency, canary 1.2×"] {
        let t = sampled_row(name, 1_000);
        assert!(t.rollback_rate() <= ALPHA_GATE && t.any_rollback_rate() <= 0.01, "{}", t.line());
    }
    let t = sampled_row("power: errors 1 % → 2 %", 500);
    assert!(t.rollback_rate() >= 0.90, "{}", t.line());
    let t = sampled_row("latency, canary 1.5×", 300);
    assert!(t.rollback_rate() >= 0.95, "{}", t.line());
    let t = sampled_row("the demo's planner", 300);
    assert_eq!(t.advanced_past_first, 0, "{}", t.line());
    let t = sampled_row("healthy canary", 500);
    assert!(t.promoted as f64 >= 0.99 * t.runs as f64 && t.held_over_3x == 0, "{}", t.line());
}
