//! Shadow simulations: a rollout's shadowing phase, judged on paired copies.
//!
//! Setting: 200 requests/s on stable (the canary has no user during the phase), 10 % of them copied
//! to the canary (about 20 pairs a second), one look a second, `shadow_seconds: 300`, the default
//! gates with their shadow counterparts (the spec is built by [`RolloutSpec::mode`], as the
//! controller builds it), `failure_limit` 1. A run ends when the phase passes (the verdict advances
//! to the first step: [`Ending::ShadowPassed`]), at a rollback, or when it is held past twice its
//! length plus ten minutes.
//!
//! The two answers of a pair are correlated ([`Correlation`]): some requests fail their task (or
//! end in an error) whichever version answers them — the cause is in the request — and the two
//! latencies share their quantile some of the time. Each side's marginal rates are its
//! [`Profile`]'s, whatever the correlation, so a row compares like with like.

use super::{Change, Ending, Profile, Run, Scenario, Simulator, BASELINE, LATENCY_TABLE_BITS};
use crate::analysis::{
    judge, Action, AnalysisSpec, AnalysisSpecConfig, Gate, GateConfig, GateStatus, Look, Metric, StepState,
    Threshold, Verdict, VersionStats,
};
use crate::bucket::Weight;
use crate::outcome::TaskResult;
use crate::rng::SplitMix64;
use crate::rollout::{AnalysisOptions, Mode, RolloutSpec};
use crate::shadow::{Answer, ShadowSpec, ShadowStats};

/// What the two answers of a pair share: causes that lie in the request, not in the version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correlation {
    /// Share of requests whose task fails whichever version answers (a hard request).
    pub shared_failure: f64,
    /// Share of requests that end in an error on both sides (a request that breaks a dependency).
    pub shared_error: f64,
    /// Chance that both sides draw the same latency quantile (otherwise independent ones).
    pub same_latency: f64,
}

/// Strong correlation: 4 % of requests fail their task on both sides (4 of stable's 5 points of task
/// failure are shared), 0.8 % end in an error on both (0.8 of stable's 1 point of errors), half the
/// pairs share their latency quantile.
pub const STRONG: Correlation = Correlation { shared_failure: 0.04, shared_error: 0.008, same_latency: 0.5 };

/// Independent answers: the pairing gains nothing.
pub const INDEPENDENT: Correlation = Correlation { shared_failure: 0.0, shared_error: 0.0, same_latency: 0.0 };

/// How a shadow row is run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShadowScenario {
    /// Percent of stable's requests copied.
    pub percent: f64,
    pub correlation: Correlation,
    /// Judge the pairs as two independent samples instead: the live gate on a spec at weight 50
    /// fed the two sides' views of the pairs ([`ShadowStats::stable_view`], [`ShadowStats::canary_view`]).
    pub unpaired: bool,
    /// Stop after this many seconds (a run that neither rolled back nor passed by then times out).
    pub window_s: Option<u64>,
}

impl Default for ShadowScenario {
    fn default() -> Self {
        Self { percent: 10.0, correlation: STRONG, unpaired: false, window_s: None }
    }
}

/// The seconds of the shadowing phase in the rows.
pub const SHADOW_SECONDS: u64 = 300;

/// The spec the controller builds for `{"shadow": {"cluster": …, "percent": 10}, "shadow_seconds":
/// 300, "analysis": {"failure_limit": 1}}` and default everything else: steps 0 (shadowing) → 1 → 5
/// → 25 → 50 → 100 %, the default gates and their shadow counterparts.
pub fn shadow_spec(shadow_seconds: u64) -> Option<AnalysisSpec> {
    let mut r = RolloutSpec::manual(&["support.example.com"], "v1", "v2", Weight::ZERO);
    r.weight = None;
    r.shadow = Some(ShadowSpec::new("support_agent_v2", 10.0));
    r.shadow_seconds = Some(shadow_seconds);
    r.analysis = Some(AnalysisOptions { interval_seconds: None, failure_limit: Some(1) });
    match r.mode() {
        Ok(Mode::Automated(spec)) => Some(spec),
        _ => None,
    }
}

/// The pairing's gain, measured: one gate, judged paired (the shadow gate, during a shadowing phase
/// of `seconds`) or unpaired (its live counterpart at a 50 % step of `seconds`); α_gate = 0.01 in both.
pub fn one_gate_spec(metric: Metric, threshold: Threshold, paired: bool, seconds: u64) -> Option<AnalysisSpec> {
    let gate = Gate::try_new(metric, threshold, false).ok()?;
    AnalysisSpec::try_new(AnalysisSpecConfig {
        steps: if paired { vec![100.0] } else { vec![50.0, 100.0] },
        step_seconds: seconds,
        min_requests: 100,
        interval_seconds: 1.0,
        failure_limit: 1,
        gates: vec![GateConfig::from(gate)],
        blue_green: None,
        shadow_seconds: paired.then_some(seconds),
        holds: Vec::new(),
    })
    .ok()
}

/// The chance of the event on a request without the shared cause that gives the side its marginal
/// rate `m` (at least the shared share: a side cannot be better than the shared cause lets it).
fn own_rate(m: f64, shared: f64) -> f64 {
    if shared >= 1.0 {
        return 0.0;
    }
    ((m - shared) / (1.0 - shared)).clamp(0.0, 1.0)
}

impl Simulator {
    fn latency_index(rng: &mut SplitMix64) -> usize {
        (rng.next_u64() >> (64 - LATENCY_TABLE_BITS)) as usize
    }

    /// One side's answer to a request; `shared` says which shared causes the request carries
    /// (task failure, error).
    fn answer(&self, rng: &mut SplitMix64, p: &Profile, c: &Correlation, shared: (bool, bool), latency_index: usize) -> Answer {
        let failure = shared.0 || rng.next_f64() < own_rate(1.0 - p.success_rate, c.shared_failure);
        let error = shared.1 || rng.next_f64() < own_rate(p.error_rate, c.shared_error);
        let violation = rng.next_f64() < p.violation_rate;
        let base = self.latency.get(latency_index).copied().unwrap_or(100_000.0);
        Answer {
            status: Some(if error { 503 } else { 200 }),
            result: Some(if failure { TaskResult::Failure } else { TaskResult::Success }),
            cost: None,
            violations: Some(u32::from(violation)),
            total_us: (base * p.latency_factor) as u64,
            body: Default::default(),
        }
    }
}

/// Stable's answer to a copied request, in stable's live counts.
fn record_live(s: &mut VersionStats, a: &Answer) {
    s.requests += 1;
    if a.status.is_none_or(|st| st >= 500) {
        s.errors += 1;
        s.status_5xx += 1;
    } else {
        s.status_2xx += 1;
    }
    match a.result {
        Some(TaskResult::Success) => s.outcome_success += 1,
        Some(TaskResult::Failure) => s.outcome_failure += 1,
        _ => {}
    }
    if let Some(v) = a.violations.filter(|v| *v > 0) {
        s.policy_violations += u64::from(v);
        s.policy_violating_requests += 1;
    }
    s.latency_total.record(a.total_us);
}

/// One shadow row's run (see the module docs).
pub(super) fn run(sim: &Simulator, sc: &Scenario, sh: &ShadowScenario, seed: u64, mut trace: impl FnMut(u64, &Verdict)) -> Run {
    let mut rng = SplitMix64::new(seed);
    let spec = &sc.spec;
    let horizon = sh.window_s.unwrap_or(2 * spec.dwell_seconds(0) + 600);
    let share = sh.percent / 100.0;
    let c = &sh.correlation;
    let mut state = StepState::start(0);
    let (mut stable_step, mut shadow_step) = (VersionStats::default(), ShadowStats::default());
    let (empty, no_shadow) = (VersionStats::default(), ShadowStats::default());
    let mut step_seconds = vec![0u64];
    let mut now_s = 0;
    while now_s < horizon {
        let canary = match sc.change {
            Some(Change { at_s, after }) if now_s >= at_s => after,
            _ => sc.canary,
        };
        let (mut ds, mut pairs) = (VersionStats::default(), ShadowStats::default());
        for _ in 0..sc.rps {
            if rng.next_f64() < share {
                let shared = (rng.next_f64() < c.shared_failure, rng.next_f64() < c.shared_error);
                let i = Simulator::latency_index(&mut rng);
                let j = if rng.next_f64() < c.same_latency { i } else { Simulator::latency_index(&mut rng) };
                let a = sim.answer(&mut rng, &sc.stable, c, shared, i);
                let b = sim.answer(&mut rng, &canary, c, shared, j);
                record_live(&mut ds, &a);
                pairs.sent += 1;
                pairs.answered += 1;
                pairs.record_pair(&a, &b);
            } else {
                sim.request(&mut rng, &sc.stable, sc.stable.error_rate, (0.0, false), &mut ds);
            }
        }
        stable_step.merge(&ds);
        shadow_step.merge(&pairs);
        now_s += 1;
        let verdict = if sh.unpaired {
            let (s, k) = (pairs.stable_view(), pairs.canary_view());
            let (s_step, k_step) = (shadow_step.stable_view(), shadow_step.canary_view());
            let look = Look { stable: &s, canary: &k, stable_step: &s_step, canary_step: &k_step, shadow: &no_shadow, shadow_step: &no_shadow, scheduled: true };
            judge(spec, &state, &look, now_s * 1000)
        } else {
            let look = Look { stable: &ds, canary: &empty, stable_step: &stable_step, canary_step: &empty, shadow: &pairs, shadow_step: &shadow_step, scheduled: true };
            judge(spec, &state, &look, now_s * 1000)
        };
        trace(now_s, &verdict);
        if let Some(last) = step_seconds.last_mut() {
            *last = now_s;
        }
        match verdict.action {
            Action::Rollback => {
                let failing = verdict.gates.iter().filter(|g| g.status == GateStatus::Fail).map(|g| g.metric).collect();
                return Run { ending: Ending::RolledBack { step: state.step_index, at_s: now_s, failing }, step_seconds };
            }
            Action::Advance | Action::Promote => {
                step_seconds.push(0);
                return Run { ending: Ending::ShadowPassed { at_s: now_s }, step_seconds };
            }
            Action::Hold => {}
        }
        state = verdict.next_state;
    }
    Run { ending: Ending::TimedOut, step_seconds }
}

/// The pairing's gain at a small real difference: task success 95 % → `success` (the tolerance is
/// 2 pp), strongly correlated pairs, 300 s of copies; the paired shadow gate and the unpaired live
/// one, one gate each (α_gate = 0.01), dwell 600 s so that only the detectors decide in the window.
/// Detection is counted from the first copy.
pub fn pairing_gain_scenario(base: &dyn Fn(&str, Profile, Option<Metric>) -> Scenario, success: f64, paired: bool) -> Scenario {
    let drop = ((0.95 - success) * 100.0).round();
    let (name, metric) = if paired {
        (format!("shadow pairing gain: task success 95 % → {:.0} % ({drop:.0} pp drop, tolerance 2 pp), strong correlation, 300 s of copies — paired (shadow gate)", success * 100.0), Metric::ShadowTaskSuccessRate)
    } else {
        (format!("shadow pairing gain: the same at {:.0} %, judged unpaired (the live gate on both sides' answers)", success * 100.0), Metric::TaskSuccessRate)
    };
    let mut sc = base(&name, Profile { success_rate: success, ..BASELINE }, Some(metric));
    sc.spec = one_gate_spec(metric, Threshold::MaxDecrease(0.02), paired, 600).unwrap_or_default();
    sc.shadow = Some(ShadowScenario { unpaired: !paired, window_s: Some(SHADOW_SECONDS), ..ShadowScenario::default() });
    sc.change = Some(Change { at_s: 0, after: sc.canary });
    sc
}

/// The shadow rows of the decision-quality table.
pub(super) fn rows(base: &dyn Fn(&str, Profile, Option<Metric>) -> Scenario) -> Vec<(Scenario, &'static str)> {
    let shadow = |name: &str, canary: Profile, watch: Option<Metric>, correlation: Correlation| {
        let mut sc = base(name, canary, watch);
        sc.spec = shadow_spec(SHADOW_SECONDS).unwrap_or_default();
        sc.shadow = Some(ShadowScenario { correlation, ..ShadowScenario::default() });
        sc
    };
    // Failing from the first copy: detection is counted from the start of the phase.
    let from_start = |mut sc: Scenario| {
        sc.change = Some(Change { at_s: 0, after: sc.canary });
        sc
    };
    let mut edge = shadow(
        "shadow: errors 1 % → 1.5 %, the regression the error proof rules out (600 s window)",
        Profile { error_rate: 0.015, ..BASELINE },
        None,
        STRONG,
    );
    if let Some(s) = edge.shadow.as_mut() {
        s.window_s = Some(2 * SHADOW_SECONDS);
    }
    vec![
        (
            shadow("shadow A/A: identical versions, strongly correlated pairs (10 % copied, 300 s shadowing)", BASELINE, None, STRONG),
            "false rollbacks ≤ 1 %, past the shadow phase ≥ 95 %",
        ),
        (
            shadow("shadow: errors at the tolerance (1 % → 1.25 %, max_ratio 1.25)", Profile { error_rate: 0.0125, ..BASELINE }, Some(Metric::ShadowErrorRate), STRONG),
            "rollbacks on shadow_error_rate ≤ α_gate = 0.14 %",
        ),
        (
            shadow("shadow: task success at the tolerance (95 % → 93 %, max_decrease 0.02)", Profile { success_rate: 0.93, ..BASELINE }, Some(Metric::ShadowTaskSuccessRate), STRONG),
            "rollbacks on shadow_task_success_rate ≤ α_gate = 0.14 %",
        ),
        (
            from_start(shadow("shadow: canary failing 30 % of tasks vs stable's 5 %", Profile { success_rate: 0.70, ..BASELINE }, Some(Metric::ShadowTaskSuccessRate), STRONG)),
            "rolled back ≥ 95 % during shadowing, median detection ≤ 10 s",
        ),
        (
            from_start(shadow("shadow: latency 1.5×", Profile { latency_factor: 1.5, ..BASELINE }, Some(Metric::ShadowLatencyP99Ms), STRONG)),
            "rolled back ≥ 95 % during shadowing, median detection ≤ 450 s",
        ),
        (shadow("shadow: healthy canary, independent answers (no pairing gain)", BASELINE, None, INDEPENDENT), "past the shadow phase ≥ 95 %"),
        (edge, "past the shadow phase ≤ 15 % (the proof's level is 10 %)"),
        (pairing_gain_scenario(base, 0.92, true), "reported"),
        (pairing_gain_scenario(base, 0.92, false), "reported"),
        (pairing_gain_scenario(base, 0.91, true), "rolled back more often than unpaired"),
        (pairing_gain_scenario(base, 0.91, false), "reported"),
    ]
}
