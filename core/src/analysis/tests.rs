//! Rule-by-rule tests of `judge` on hand-built stats.

use super::*;

fn spec(extra: &str) -> AnalysisSpec {
    let json = format!(
        r#"{{"steps":[5,50,100],"step_seconds":60,"min_requests":100,"failure_limit":3{extra}}}"#
    );
    serde_json::from_str(&json).unwrap()
}

/// `requests` requests, `errors` of them errors, all at 100 ms, 95% task success.
fn traffic(requests: u64, errors: u64) -> VersionStats {
    let mut s = VersionStats {
        requests,
        errors,
        status_5xx: errors,
        status_2xx: requests - errors,
        ..Default::default()
    };
    s.latency_total.record_n(100_000, requests);
    s.outcome_success = requests * 95 / 100;
    s.outcome_failure = requests - s.outcome_success;
    s
}

fn status_of(v: &Verdict, metric: Metric) -> GateStatus {
    v.gates.iter().find(|g| g.metric == metric).unwrap().status
}

#[test]
fn advances_after_dwell_when_all_gates_pass() {
    let spec = spec("");
    let (stable, canary) = (traffic(20_000, 200), traffic(2_000, 20));
    let early = judge(&spec, &StepState::start(0), &stable, &canary, 30_000);
    assert_eq!(early.action, Action::Hold);
    assert!(early.reason.contains("30 s of 60 s"), "{}", early.reason);
    let v = judge(&spec, &StepState::start(0), &stable, &canary, 60_000);
    assert_eq!(v.action, Action::Advance, "{}", v.reason);
    assert_eq!(
        v.next_state,
        StepState {
            step_index: 1,
            step_started_at_ms: 60_000,
            consecutive_failures: 0
        }
    );
    assert_eq!(v.canary_weight, 50.0);
    assert!(v.gates.iter().all(|g| g.status == GateStatus::Pass));
}

#[test]
fn promotes_after_last_step() {
    let spec = spec("");
    let state = StepState {
        step_index: 2,
        step_started_at_ms: 0,
        consecutive_failures: 0,
    };
    let v = judge(
        &spec,
        &state,
        &traffic(20_000, 200),
        &traffic(20_000, 200),
        61_000,
    );
    assert_eq!(v.action, Action::Promote, "{}", v.reason);
    assert_eq!(v.canary_weight, 100.0);
}

#[test]
fn too_little_data_holds_and_never_passes() {
    let spec = spec("");
    let v = judge(
        &spec,
        &StepState::start(0),
        &traffic(20_000, 200),
        &traffic(99, 0),
        10_000_000,
    );
    assert_eq!(v.action, Action::Hold);
    assert!(v.reason.starts_with("waiting for data"), "{}", v.reason);
    assert!(
        v.reason.contains("canary has 99 of 100 requests needed"),
        "{}",
        v.reason
    );
    assert!(v
        .gates
        .iter()
        .all(|g| g.status == GateStatus::InsufficientData));
}

#[test]
fn missing_outcomes_hold_on_the_success_gate() {
    let spec = spec("");
    let mut canary = traffic(2_000, 20);
    canary.outcome_success = 0;
    canary.outcome_failure = 0;
    let v = judge(
        &spec,
        &StepState::start(0),
        &traffic(20_000, 200),
        &canary,
        120_000,
    );
    assert_eq!(v.action, Action::Hold);
    assert_eq!(
        status_of(&v, Metric::TaskSuccessRate),
        GateStatus::InsufficientData
    );
    assert_eq!(status_of(&v, Metric::ErrorRate), GateStatus::Pass);
}

#[test]
fn non_critical_failure_counts_up_to_the_limit() {
    let spec = spec("");
    let (stable, bad) = (traffic(20_000, 200), traffic(5_000, 250));
    let mut state = StepState::start(0);
    for expected in 1..=2 {
        let v = judge(&spec, &state, &stable, &bad, 120_000);
        assert_eq!(v.action, Action::Hold, "{}", v.reason);
        assert!(
            v.reason
                .contains(&format!("failing interval {expected} of 3")),
            "{}",
            v.reason
        );
        state = v.next_state;
    }
    let v = judge(&spec, &state, &stable, &bad, 120_000);
    assert_eq!(v.action, Action::Rollback, "{}", v.reason);
    assert_eq!(v.canary_weight, 0.0);
    assert!(
        v.reason.starts_with(
            "error_rate regressed: canary 5.00% vs stable 1.00% (canary ≤ 1.25× stable; mSPRT Λ="
        ),
        "{}",
        v.reason
    );
    assert_eq!(status_of(&v, Metric::ErrorRate), GateStatus::Fail);
}

#[test]
fn recovery_resets_the_failure_count() {
    let spec = spec("");
    let state = StepState {
        step_index: 0,
        step_started_at_ms: 0,
        consecutive_failures: 2,
    };
    let v = judge(
        &spec,
        &state,
        &traffic(20_000, 200),
        &traffic(2_000, 20),
        10_000,
    );
    assert_eq!(v.action, Action::Hold);
    assert_eq!(v.next_state.consecutive_failures, 0);
}

#[test]
fn critical_zero_limit_rolls_back_on_one_violation_before_min_requests() {
    let spec = spec(
        r#","gates":[{"metric":"error_rate","max_ratio":1.25},{"metric":"policy_violation_rate","max":0,"critical":true}]"#,
    );
    let mut canary = traffic(3, 0);
    let clean = judge(
        &spec,
        &StepState::start(0),
        &traffic(20_000, 200),
        &canary,
        1_000,
    );
    assert_eq!(clean.action, Action::Hold);
    canary.policy_violations = 1;
    canary.policy_violating_requests = 1;
    let v = judge(
        &spec,
        &StepState::start(0),
        &traffic(20_000, 200),
        &canary,
        1_000,
    );
    assert_eq!(v.action, Action::Rollback, "{}", v.reason);
    assert!(
        v.reason
            .starts_with("critical gate failed: policy_violation_rate regressed"),
        "{}",
        v.reason
    );
    assert_eq!(
        status_of(&v, Metric::ErrorRate),
        GateStatus::InsufficientData
    );
}

#[test]
fn critical_relative_gate_rolls_back_at_once() {
    let spec = spec(r#","gates":[{"metric":"error_rate","max_increase":0.01,"critical":true}]"#);
    let v = judge(
        &spec,
        &StepState::start(0),
        &traffic(20_000, 200),
        &traffic(5_000, 500),
        1_000,
    );
    assert_eq!(v.action, Action::Rollback, "{}", v.reason);
}

#[test]
fn task_success_drop_fails_min_and_max_decrease_gates() {
    let spec = spec(
        r#","gates":[{"metric":"task_success_rate","min":0.9},{"metric":"task_success_rate","max_decrease":0.02}]"#,
    );
    let mut canary = traffic(3_000, 30);
    canary.outcome_success = 2_400;
    canary.outcome_failure = 600;
    let v = judge(
        &spec,
        &StepState::start(0),
        &traffic(20_000, 200),
        &canary,
        120_000,
    );
    assert!(
        v.gates.iter().all(|g| g.status == GateStatus::Fail),
        "{:?}",
        v.gates
    );
    assert_eq!(v.gates[0].canary, Some(0.8));
}

#[test]
fn latency_gates_need_evidence_and_effect_size() {
    let spec = spec(
        r#","gates":[{"metric":"latency_p99_ms","max_ratio":1.2},{"metric":"latency_p50_ms","max":150}]"#,
    );
    let stable = traffic(20_000, 0);
    let mut slow = traffic(0, 0);
    slow.requests = 3_000;
    slow.latency_total.record_n(300_000, 3_000);
    let v = judge(&spec, &StepState::start(0), &stable, &slow, 120_000);
    assert!(
        v.gates.iter().all(|g| g.status == GateStatus::Fail),
        "{:?}",
        v.gates
    );
    let mut tail = traffic(0, 0);
    tail.requests = 3_000;
    tail.latency_total.record_n(100_000, 2_980);
    tail.latency_total.record_n(119_000, 20); // p99 ≤ 1.2 × stable: no effect, no failure
    let v = judge(&spec, &StepState::start(0), &stable, &tail, 120_000);
    assert!(
        v.gates.iter().all(|g| g.status == GateStatus::Pass),
        "{:?}",
        v.gates
    );
}

fn with_costs(mut s: VersionStats, costs: &[f64]) -> VersionStats {
    s.cost_count = costs.len() as u64;
    s.cost_sum = costs.iter().sum();
    s.cost_sum_sq = costs.iter().map(|c| c * c).sum();
    s
}

#[test]
fn cost_gate_uses_mean_difference() {
    let spec = spec(r#","gates":[{"metric":"cost_per_task","max_ratio":1.2}]"#);
    let stable_costs: Vec<f64> = (0..5_000).map(|i| 1.0 + (i % 10) as f64 * 0.1).collect();
    let pricier: Vec<f64> = (0..1_000).map(|i| 1.5 + (i % 10) as f64 * 0.15).collect();
    let stable = with_costs(traffic(5_000, 0), &stable_costs);
    let v = judge(
        &spec,
        &StepState::start(0),
        &stable,
        &with_costs(traffic(1_000, 0), &pricier),
        120_000,
    );
    assert_eq!(v.gates[0].status, GateStatus::Fail, "{:?}", v.gates[0]);
    let same: Vec<f64> = stable_costs.iter().take(1_000).copied().collect();
    let v = judge(
        &spec,
        &StepState::start(0),
        &stable,
        &with_costs(traffic(1_000, 0), &same),
        120_000,
    );
    assert_eq!(v.gates[0].status, GateStatus::Pass, "{:?}", v.gates[0]);
}

#[test]
fn constant_costs_do_not_produce_nan() {
    let spec = spec(
        r#","gates":[{"metric":"cost_per_task","max_increase":0.1},{"metric":"cost_per_task","max":2}]"#,
    );
    let stable = with_costs(traffic(500, 0), &[1.0; 500]);
    let canary = with_costs(traffic(500, 0), &[1.0; 500]);
    let v = judge(&spec, &StepState::start(0), &stable, &canary, 120_000);
    assert!(
        v.gates.iter().all(|g| g.status == GateStatus::Pass),
        "{:?}",
        v.gates
    );
    assert!(v
        .gates
        .iter()
        .all(|g| g.evidence.as_ref().unwrap().value.is_finite()));
    let costly = with_costs(traffic(500, 0), &[3.0; 500]);
    let v = judge(&spec, &StepState::start(0), &stable, &costly, 120_000);
    assert!(
        v.gates.iter().all(|g| g.status == GateStatus::Fail),
        "{:?}",
        v.gates
    );
    serde_json::to_string(&v).unwrap();
}

#[test]
fn zero_error_stable_with_ratio_gate_is_safe() {
    let spec = spec("");
    let v = judge(
        &spec,
        &StepState::start(0),
        &traffic(20_000, 0),
        &traffic(2_000, 0),
        120_000,
    );
    assert_eq!(v.action, Action::Advance, "{}", v.reason);
    let v = judge(
        &spec,
        &StepState::start(0),
        &traffic(20_000, 0),
        &traffic(2_000, 1),
        120_000,
    );
    assert_eq!(
        status_of(&v, Metric::ErrorRate),
        GateStatus::Pass,
        "one error is not evidence"
    );
}

#[test]
fn invalid_step_index_holds() {
    let spec = spec("");
    let state = StepState {
        step_index: 7,
        step_started_at_ms: 0,
        consecutive_failures: 0,
    };
    let v = judge(
        &spec,
        &state,
        &traffic(20_000, 200),
        &traffic(2_000, 20),
        120_000,
    );
    assert_eq!(v.action, Action::Hold);
    assert!(v.reason.contains("invalid state"));
}

#[test]
fn verdict_serialises_round_trip() {
    let spec = spec("");
    let v = judge(
        &spec,
        &StepState::start(0),
        &traffic(20_000, 200),
        &traffic(5_000, 250),
        120_000,
    );
    let json = serde_json::to_string(&v).unwrap();
    assert!(
        json.contains(r#""action":"hold""#) && json.contains(r#""status":"fail""#),
        "{json}"
    );
    let back: Verdict = serde_json::from_str(&json).unwrap();
    // serde_json's default float parsing may be off in the last bit, so floats are compared loosely.
    assert_eq!(
        (back.action, &back.reason, back.next_state),
        (v.action, &v.reason, v.next_state)
    );
    for (b, g) in back.gates.iter().zip(&v.gates) {
        assert_eq!(
            (b.metric, b.status, &b.threshold, &b.note),
            (g.metric, g.status, &g.threshold, &g.note)
        );
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-15 * y.abs();
        assert!(close(b.canary.unwrap(), g.canary.unwrap()));
        assert!(close(
            b.evidence.as_ref().unwrap().value,
            g.evidence.as_ref().unwrap().value
        ));
    }
}
