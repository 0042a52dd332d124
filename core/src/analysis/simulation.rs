//! Seeded rollout simulations: synthetic traffic through [`judge`], one look per interval, in the
//! issue's setting (200 requests/s, one look per second, steps 1 → 5 → 25 → 50 → 100 % at 60 s
//! each, default gates). Deterministic (SplitMix64). The core tests run them at a few thousand
//! rollouts (`cargo test --release -p fledge-core simulation`), `make bench` at 20,000 per row
//! ([`table`]). The shadow rows ([`shadow`]) simulate a rollout's shadowing phase on paired copies.

use super::{
    default_gates, judge, Action, AnalysisSpec, AnalysisSpecConfig, Gate, GateConfig, GateStatus,
    Look, Metric, StepState, Threshold, VersionStats,
};
use crate::rng::SplitMix64;
use crate::shadow::ShadowStats;
use crate::stats::normal;

pub mod shadow;

pub use shadow::{Correlation, ShadowScenario};

const LATENCY_TABLE_BITS: u32 = 12;

/// How one version behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub error_rate: f64,
    pub success_rate: f64,
    pub violation_rate: f64,
    /// Latency = a log-normal (median 100 ms, σ = 0.5, p99 ≈ 320 ms) times this.
    pub latency_factor: f64,
    /// An evaluated answer's judge score: Normal(this, [`SCORE_SD`]), unclipped, so two versions'
    /// means differ by exactly what the row says.
    pub score_mean: f64,
    /// An evaluated answer's chance of the label `pass`.
    pub pass_rate: f64,
}

/// The spread of a judge's scores (on a 1–5 scale, about a point either way).
pub const SCORE_SD: f64 = 0.8;
/// The evaluation the simulated judge reports.
pub const EVALUATION: &str = "helpfulness";

/// 1 % errors, 95 % task success, 0.1 % policy violations, the base latency; judged 4.2 on average
/// with 90 % `pass` labels where answers are evaluated.
pub const BASELINE: Profile = Profile {
    error_rate: 0.01,
    success_rate: 0.95,
    violation_rate: 0.001,
    latency_factor: 1.0,
    score_mean: 4.2,
    pass_rate: 0.90,
};

/// Both versions' error rate becomes `error_rate` for `seconds`, starting `offset_s` into step
/// `step` (0-based): an incident they share (a model provider failing for everyone).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Incident {
    pub step: usize,
    pub offset_s: u64,
    pub seconds: u64,
    pub error_rate: f64,
}

/// The canary turns into `after` at `at_s` seconds into the rollout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub at_s: u64,
    pub after: Profile,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub spec: AnalysisSpec,
    pub rps: u64,
    pub stable: Profile,
    pub canary: Profile,
    pub incident: Option<Incident>,
    pub change: Option<Change>,
    /// The gate whose failures the row is about (`None`: any).
    pub watch: Option<Metric>,
    /// The share of requests on the canary at a weight-0 step: a blue-green preview's
    /// `version: canary` segment (internal users, say).
    pub preview_share: f64,
    /// A shadow row: only the shadowing phase is simulated, on paired copies (see [`shadow`]).
    pub shadow: Option<ShadowScenario>,
    /// The share of answers an evaluator scores and labels (0: no evaluations).
    pub evaluated: f64,
    /// The judge gives whole scores 1–5 (the Normal score rounded and clipped): skewed and discrete,
    /// as LLM judges' scores are.
    pub integer_scores: bool,
    /// Stable's requests measured only in part ([`StableSample`]); `None`: every request.
    pub stable_sample: Option<StableSample>,
}

/// A design under study for the hot path (issue 13), not what the filter does today: measure only a
/// share of stable's requests, chosen at random at request start (so independently of the outcome),
/// with the probability set after each interval to keep stable's sample at `multiple` × the canary's
/// requests plus `floor` — `p = min(1, (multiple·c + floor) / s)` from the interval just ended.
/// Unmeasured requests would skip every response-side hostcall. Rates and quantiles stay unbiased;
/// stable's counts shrink, and with them the tests' precision on its side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StableSample {
    pub multiple: f64,
    pub floor: u64,
}

impl StableSample {
    /// The chance of measuring a stable request next interval, after one with `canary` and `stable`
    /// requests routed.
    pub fn probability(&self, canary: u64, stable: u64) -> f64 {
        if stable == 0 {
            return 1.0;
        }
        ((self.multiple * canary as f64 + self.floor as f64) / stable as f64).clamp(0.0, 1.0)
    }
}

/// How a simulated rollout ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Promoted,
    RolledBack { step: usize, at_s: u64, failing: Vec<Metric> },
    TimedOut,
    /// A shadow row's end: the shadowing phase passed (the verdict advanced to the first step).
    ShadowPassed { at_s: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub ending: Ending,
    /// Seconds spent at each step reached.
    pub step_seconds: Vec<u64>,
}

/// Steps [1, 5, 25, 50, 100] %, 60 s each, one look a second, 100 requests minimum,
/// failure_limit 1, the given gates.
pub fn issue_spec(gates: Vec<Gate>) -> Option<AnalysisSpec> {
    spec_with(vec![1.0, 5.0, 25.0, 50.0, 100.0], 60, gates)
}

pub fn spec_with(steps: Vec<f64>, step_seconds: u64, gates: Vec<Gate>) -> Option<AnalysisSpec> {
    AnalysisSpec::try_new(AnalysisSpecConfig {
        steps,
        step_seconds,
        min_requests: 100,
        interval_seconds: 1.0,
        failure_limit: 1,
        gates: gates.into_iter().map(GateConfig::from).collect(),
        blue_green: None,
        shadow_seconds: None,
        holds: Vec::new(),
    })
    .ok()
}

/// Quantiles of the base log-normal in µs: sampling is one table lookup.
fn latency_table() -> Vec<f64> {
    let size = 1usize << LATENCY_TABLE_BITS;
    (0..size)
        .map(|i| {
            let z = normal::quantile((i as f64 + 0.5) / size as f64).unwrap_or(0.0);
            100_000.0 * (0.5 * z).exp()
        })
        .collect()
}

pub struct Simulator {
    latency: Vec<f64>,
    /// Standard normal quantiles at the same points: a judge's score is one lookup.
    normal: Vec<f64>,
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Simulator {
    pub fn new() -> Self {
        let size = 1usize << LATENCY_TABLE_BITS;
        let normal = (0..size).map(|i| normal::quantile((i as f64 + 0.5) / size as f64).unwrap_or(0.0)).collect();
        Self { latency: latency_table(), normal }
    }

    fn request(&self, rng: &mut SplitMix64, p: &Profile, error_rate: f64, (evaluated, integer_scores): (f64, bool), s: &mut VersionStats) {
        if evaluated > 0.0 && rng.next_f64() < evaluated {
            let z = self.normal.get((rng.next_u64() >> (64 - LATENCY_TABLE_BITS)) as usize).copied().unwrap_or(0.0);
            let mut score = p.score_mean + SCORE_SD * z;
            if integer_scores {
                score = score.round().clamp(1.0, 5.0);
            }
            let e = s.evaluations.entry(EVALUATION.to_string()).or_default();
            e.count += 1;
            e.sum += score;
            e.sum_sq += score * score;
            e.labelled += 1;
            e.pass += u64::from(rng.next_f64() < p.pass_rate);
        }
        s.requests += 1;
        if rng.next_f64() < error_rate {
            s.errors += 1;
            s.status_5xx += 1;
        } else {
            s.status_2xx += 1;
        }
        if rng.next_f64() < p.success_rate {
            s.outcome_success += 1;
        } else {
            s.outcome_failure += 1;
        }
        if rng.next_f64() < p.violation_rate {
            s.policy_violations += 1;
            s.policy_violating_requests += 1;
        }
        let index = (rng.next_u64() >> (64 - LATENCY_TABLE_BITS)) as usize;
        let base = self.latency.get(index).copied().unwrap_or(100_000.0);
        s.latency_total.record((base * p.latency_factor) as u64);
    }

    /// One rollout. Gives up after twice the nominal length plus ten minutes.
    pub fn run(&self, sc: &Scenario, seed: u64) -> Run {
        self.run_traced(sc, seed, |_, _| {})
    }

    /// [`Self::run`], showing every verdict (with the simulated second) to `trace`.
    pub fn run_traced(&self, sc: &Scenario, seed: u64, mut trace: impl FnMut(u64, &super::Verdict)) -> Run {
        if let Some(sh) = &sc.shadow {
            return shadow::run(self, sc, sh, seed, trace);
        }
        let mut rng = SplitMix64::new(seed);
        let spec = &sc.spec;
        let interval_s = (spec.interval_seconds().round() as u64).max(1);
        let horizon = 2 * spec.nominal_seconds() + 600;
        let mut state = StepState::start(0);
        let (mut stable_step, mut canary_step) = (VersionStats::default(), VersionStats::default());
        let mut step_seconds = vec![0u64];
        let mut step_start_s = 0;
        let mut now_s = 0;
        let mut p_stable = 1.0;
        while now_s < horizon {
            let Some(weight) = spec.weight(state.step_index) else { break };
            let share = if weight == 0.0 { sc.preview_share } else { weight / 100.0 };
            let canary = match sc.change {
                Some(c) if now_s >= c.at_s => c.after,
                _ => sc.canary,
            };
            let incident_rate = sc.incident.and_then(|i| {
                let since = now_s.checked_sub(step_start_s)?;
                (state.step_index == i.step && since >= i.offset_s && since < i.offset_s + i.seconds)
                    .then_some(i.error_rate)
            });
            let (mut ds, mut dc) = (VersionStats::default(), VersionStats::default());
            let mut stable_routed = 0;
            for _ in 0..sc.rps * interval_s {
                if rng.next_f64() < share {
                    let e = incident_rate.unwrap_or(canary.error_rate);
                    self.request(&mut rng, &canary, e, (sc.evaluated, sc.integer_scores), &mut dc);
                } else {
                    stable_routed += 1;
                    // Chosen before the answer exists: the outcome cannot bias the sample.
                    if sc.stable_sample.is_some() && rng.next_f64() >= p_stable {
                        continue;
                    }
                    let e = incident_rate.unwrap_or(sc.stable.error_rate);
                    self.request(&mut rng, &sc.stable, e, (sc.evaluated, sc.integer_scores), &mut ds);
                }
            }
            if let Some(s) = &sc.stable_sample {
                p_stable = s.probability(dc.requests, stable_routed);
            }
            stable_step.merge(&ds);
            canary_step.merge(&dc);
            now_s += interval_s;
            let no_shadow = ShadowStats::default();
            let look = Look {
                stable: &ds,
                canary: &dc,
                stable_step: &stable_step,
                canary_step: &canary_step,
                shadow: &no_shadow,
                shadow_step: &no_shadow,
                scheduled: true,
            };
            let verdict = judge(spec, &state, &look, now_s * 1000);
            trace(now_s, &verdict);
            if let Some(last) = step_seconds.last_mut() {
                *last = now_s - step_start_s;
            }
            match verdict.action {
                Action::Promote => return Run { ending: Ending::Promoted, step_seconds },
                Action::Rollback => {
                    let failing = verdict
                        .gates
                        .iter()
                        .filter(|g| g.status == GateStatus::Fail)
                        .map(|g| g.metric)
                        .collect();
                    let ending = Ending::RolledBack { step: state.step_index, at_s: now_s, failing };
                    return Run { ending, step_seconds };
                }
                Action::Advance => {
                    stable_step = VersionStats::default();
                    canary_step = VersionStats::default();
                    step_seconds.push(0);
                    step_start_s = now_s;
                }
                Action::Hold => {}
            }
            state = verdict.next_state;
        }
        Run { ending: Ending::TimedOut, step_seconds }
    }

    pub fn run_many(&self, sc: &Scenario, runs: usize, seed: u64) -> Tally {
        let mut t = Tally { name: sc.name.clone(), runs, shadow_phase_only: sc.shadow.is_some(), ..Tally::default() };
        let onset = sc.change.map(|c| c.at_s);
        // A shadow row's only step is the shadowing phase.
        let step_limit = if sc.shadow.is_some() { sc.spec.dwell_seconds(0) } else { sc.spec.step_seconds() };
        for i in 0..runs {
            let run = self.run(sc, seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
            let longest = run.step_seconds.iter().copied().max().unwrap_or(0);
            t.first_step_s.push(run.step_seconds.first().copied().unwrap_or(0));
            t.longest_step_s = t.longest_step_s.max(longest);
            if longest > 3 * step_limit {
                t.held_over_3x += 1;
            }
            if run.step_seconds.len() > 1 {
                t.advanced_past_first += 1;
            }
            match run.ending {
                Ending::Promoted => t.promoted += 1,
                Ending::TimedOut => t.timed_out += 1,
                Ending::ShadowPassed { .. } => {}
                Ending::RolledBack { at_s, failing, .. } => {
                    let counts = sc.watch.is_none_or(|m| failing.contains(&m));
                    if counts {
                        t.rolled_back += 1;
                        if let Some(onset) = onset {
                            if at_s >= onset {
                                t.delays_s.push(at_s - onset);
                            }
                        }
                    } else {
                        t.rolled_back_other += 1;
                    }
                }
            }
        }
        t.delays_s.sort_unstable();
        t.first_step_s.sort_unstable();
        t
    }
}

/// Outcomes of many runs of one scenario.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub name: String,
    pub runs: usize,
    pub promoted: usize,
    pub timed_out: usize,
    /// Rolled back on the watched gate (any gate when none is watched).
    pub rolled_back: usize,
    /// Rolled back on another gate only.
    pub rolled_back_other: usize,
    pub advanced_past_first: usize,
    pub held_over_3x: usize,
    pub longest_step_s: u64,
    /// Seconds from the change's onset to the rollback, sorted.
    pub delays_s: Vec<u64>,
    /// Seconds each run spent at the first step (the shadowing phase for a shadow row), sorted.
    pub first_step_s: Vec<u64>,
    /// A shadow row: runs end when the shadowing phase passes (`advanced_past_first`), so nothing
    /// is promoted and "longest step" is the longest shadowing phase.
    pub shadow_phase_only: bool,
}

impl Tally {
    pub fn rollback_rate(&self) -> f64 {
        self.rolled_back as f64 / self.runs.max(1) as f64
    }

    pub fn any_rollback_rate(&self) -> f64 {
        (self.rolled_back + self.rolled_back_other) as f64 / self.runs.max(1) as f64
    }

    pub fn median_delay_s(&self) -> Option<u64> {
        self.delays_s.get(self.delays_s.len() / 2).copied()
    }

    pub fn median_first_step_s(&self) -> Option<u64> {
        self.first_step_s.get(self.first_step_s.len() / 2).copied()
    }

    pub fn line(&self) -> String {
        let pct = |n: usize| 100.0 * n as f64 / self.runs.max(1) as f64;
        let progress = if self.shadow_phase_only {
            format!(
                "past the shadow phase {:.1}%, timed out {}, shadowing phase median {} s, longest {} s",
                pct(self.advanced_past_first),
                self.timed_out,
                self.median_first_step_s().unwrap_or(0),
                self.longest_step_s
            )
        } else {
            format!(
                "promoted {:.1}%, timed out {}, past first step {:.1}%, longest step {} s",
                pct(self.promoted),
                self.timed_out,
                pct(self.advanced_past_first),
                self.longest_step_s
            )
        };
        format!(
            "{}: {} runs, rolled back {:.2}% ({} on the watched gate, {} on others), {progress}, steps over 3× {}, median detection {}",
            self.name,
            self.runs,
            100.0 * self.rollback_rate(),
            self.rolled_back,
            self.rolled_back_other,
            self.held_over_3x,
            self.median_delay_s().map_or_else(|| "n/a".to_string(), |d| format!("{d} s")),
        )
    }
}

fn gate(metric: Metric, threshold: Threshold, critical: bool) -> Option<Gate> {
    Gate::try_new(metric, threshold, critical).ok()
}

/// The rows of the decision-quality table, in order: (scenario, what the row checks).
pub fn scenarios() -> Vec<(Scenario, &'static str)> {
    let base = |name: &str, canary: Profile, watch: Option<Metric>| Scenario {
        name: name.to_string(),
        spec: issue_spec(default_gates()).unwrap_or_default(),
        rps: 200,
        stable: BASELINE,
        canary,
        incident: None,
        change: None,
        watch,
        preview_share: 0.0,
        shadow: None,
        evaluated: 0.0,
        integer_scores: false,
        stable_sample: None,
    };
    let mut rows = vec![
        (base("A/A, both versions identical", BASELINE, None), "false rollbacks ≤ 1 %"),
        (
            base("error rate at the tolerance (1 % → 1.25 %, max_ratio 1.25)", Profile { error_rate: 0.0125, ..BASELINE }, Some(Metric::ErrorRate)),
            "rollbacks on error_rate ≤ α_gate = 0.25 %",
        ),
        (
            base("task success at the tolerance (95 % → 93 %, max_decrease 0.02)", Profile { success_rate: 0.93, ..BASELINE }, Some(Metric::TaskSuccessRate)),
            "rollbacks on task_success_rate ≤ 0.25 %",
        ),
        (
            base("policy violations at the tolerance (0.1 % → 0.2 %, max_increase 0.001, critical)", Profile { violation_rate: 0.002, ..BASELINE }, Some(Metric::PolicyViolationRate)),
            "rollbacks on policy_violation_rate ≤ 0.25 %",
        ),
    ];
    for step in 0..5 {
        let mut sc = base(
            &format!("shared incident (both 1 % → 5 % errors for 30 s) in step {} ({} %)", step + 1, [1, 5, 25, 50, 100].get(step).copied().unwrap_or(0)),
            BASELINE,
            None,
        );
        sc.incident = Some(Incident { step, offset_s: 15, seconds: 30, error_rate: 0.05 });
        rows.push((sc, "false rollbacks ≤ 1 %"));
    }
    rows.push((
        base("latency, canary 1.15× (max_ratio 1.2 on p99)", Profile { latency_factor: 1.15, ..BASELINE }, Some(Metric::LatencyP99Ms)),
        "rollbacks ≤ 1 %",
    ));
    rows.push((
        base("latency, canary 1.2× (exactly at max_ratio 1.2)", Profile { latency_factor: 1.2, ..BASELINE }, Some(Metric::LatencyP99Ms)),
        "rollbacks ≤ α_gate = 0.25 %",
    ));
    rows.push((
        base("latency, canary 1.5×", Profile { latency_factor: 1.5, ..BASELINE }, Some(Metric::LatencyP99Ms)),
        "rollbacks ≥ 95 %",
    ));
    for (critical, name) in [(false, "absolute limit, canary exactly at it (policy_violation_rate max 0.001)"), (true, "absolute limit, critical (watched from the first request), canary exactly at it")] {
        let mut sc = base(name, BASELINE, Some(Metric::PolicyViolationRate));
        // Replace the relative policy gate by the absolute one under test.
        let gates: Vec<Gate> = default_gates()
            .into_iter()
            .filter(|g| g.metric() != Metric::PolicyViolationRate)
            .chain(gate(Metric::PolicyViolationRate, Threshold::Max(0.001), critical))
            .collect();
        sc.spec = issue_spec(gates).unwrap_or_default();
        rows.push((sc, "failures ≤ α_gate = 0.25 %"));
    }
    for minutes in [0u64, 10, 30] {
        let mut sc = base(
            &format!("sudden 1 % → 10 % errors at a 5 % step after {minutes} min of healthy history"),
            BASELINE,
            Some(Metric::ErrorRate),
        );
        // A 5 % step held long enough for the history, then the canary breaks.
        sc.spec = spec_with(vec![5.0, 100.0], 60 * minutes + 600, default_gates()).unwrap_or_default();
        sc.change = Some(Change { at_s: 60 * minutes + 1, after: Profile { error_rate: 0.10, ..BASELINE } });
        rows.push((sc, "median detection ≤ 20 s"));
    }
    rows.push((
        base("power: errors 1 % → 2 %", Profile { error_rate: 0.02, ..BASELINE }, Some(Metric::ErrorRate)),
        "rolled back ≥ 90 %",
    ));
    rows.push((
        base("power: errors 1 % → 1.5 %", Profile { error_rate: 0.015, ..BASELINE }, Some(Metric::ErrorRate)),
        "reported only",
    ));
    rows.push((
        base("the demo's planner: task success 95 % → 80 %", Profile { success_rate: 0.80, ..BASELINE }, Some(Metric::TaskSuccessRate)),
        "never past the first step",
    ));
    rows.push((
        base("healthy canary (1 % errors, 95 % success), promotion time", BASELINE, None),
        "promoted, no step held over 3 × 60 s",
    ));
    rows.extend(evaluation_rows(&base));
    rows.extend(blue_green_rows(&base));
    rows.extend(shadow::rows(&base));
    rows
}

/// The default gates plus `evaluation_score` (max_decrease 0.3) and `evaluation_pass_rate`
/// (max_decrease 0.05) on [`EVALUATION`]: six gates, α_gate = 0.01 / 6.
pub fn evaluation_gates() -> Vec<Gate> {
    let named = |metric, threshold| Gate::evaluation(metric, EVALUATION, threshold, false).ok();
    default_gates()
        .into_iter()
        .chain(named(Metric::EvaluationScore, Threshold::MaxDecrease(0.3)))
        .chain(named(Metric::EvaluationPassRate, Threshold::MaxDecrease(0.05)))
        .collect()
}

/// Evaluation gates: a judge scores and labels half of the answers (the issue's setting otherwise).
fn evaluation_rows(base: &dyn Fn(&str, Profile, Option<Metric>) -> Scenario) -> Vec<(Scenario, &'static str)> {
    let eval = |name: &str, canary: Profile, watch: Option<Metric>| {
        let mut sc = base(name, canary, watch);
        sc.spec = issue_spec(evaluation_gates()).unwrap_or_default();
        sc.evaluated = 0.5;
        sc
    };
    let mut after_history = eval(
        "evaluations: judge scores 4.2 → 3.4 at a 5 % step after 10 min of equal scores",
        BASELINE,
        Some(Metric::EvaluationScore),
    );
    after_history.spec = spec_with(vec![5.0, 100.0], 1_200, evaluation_gates()).unwrap_or_default();
    after_history.change = Some(Change { at_s: 601, after: Profile { score_mean: 3.4, ..BASELINE } });
    let from_start = |mut sc: Scenario| {
        sc.change = Some(Change { at_s: 0, after: sc.canary });
        sc
    };
    let mut whole = eval("evaluations A/A with whole scores 1–5 (skewed: mean 4.15, 81 % of answers 4 or 5)", BASELINE, None);
    whole.integer_scores = true;
    vec![
        (eval("evaluations A/A: equal judge scores and labels (half the answers evaluated)", BASELINE, None), "false rollbacks ≤ 1 %, promoted ≥ 95 %"),
        (whole, "false rollbacks ≤ 1 %, promoted ≥ 95 %"),
        (
            eval("evaluations: mean score at the tolerance (4.2 → 3.9, max_decrease 0.3)", Profile { score_mean: 3.9, ..BASELINE }, Some(Metric::EvaluationScore)),
            "rollbacks on evaluation_score ≤ α_gate = 0.17 %",
        ),
        (
            eval("evaluations: pass rate at the tolerance (90 % → 85 %, max_decrease 0.05)", Profile { pass_rate: 0.85, ..BASELINE }, Some(Metric::EvaluationPassRate)),
            "rollbacks on evaluation_pass_rate ≤ α_gate = 0.17 %",
        ),
        (
            from_start(eval("evaluations: judge scores 4.2 → 3.4 from the start", Profile { score_mean: 3.4, ..BASELINE }, Some(Metric::EvaluationScore))),
            "rolled back ≥ 95 %, never past the first step",
        ),
        (
            from_start(eval("evaluations: pass rate 90 % → 75 % from the start", Profile { pass_rate: 0.75, ..BASELINE }, Some(Metric::EvaluationPassRate))),
            "rolled back ≥ 95 %",
        ),
        (after_history, "rolled back ≥ 95 %, median detection ≤ 60 s"),
    ]
}

/// Blue-green: a 120 s preview with 5 % of the traffic (a `version: canary` segment) on green, the
/// switch, a 120 s bake judged against blue's preview counts.
fn blue_green_rows(base: &dyn Fn(&str, Profile, Option<Metric>) -> Scenario) -> Vec<(Scenario, &'static str)> {
    let bg = |name: &str, canary: Profile, watch: Option<Metric>, change: Option<Change>| {
        let mut sc = base(name, canary, watch);
        sc.spec = blue_green_spec(120, 120, default_gates()).unwrap_or_default();
        sc.preview_share = 0.05;
        sc.change = change;
        sc
    };
    // The switch comes at 120 s at the earliest; a change at 125 s falls in the bake.
    let after_switch = |after: Profile| Some(Change { at_s: 125, after });
    vec![
        (bg("blue-green: identical versions", BASELINE, None, None), "false rollbacks ≤ 1 %"),
        (
            bg("blue-green: green at the error tolerance (1 % → 1.25 %) throughout", Profile { error_rate: 0.0125, ..BASELINE }, Some(Metric::ErrorRate), None),
            "rollbacks on error_rate ≤ α_gate = 0.25 %",
        ),
        (
            bg("blue-green: green's errors 1 % → 5 % just after the switch", BASELINE, Some(Metric::ErrorRate), after_switch(Profile { error_rate: 0.05, ..BASELINE })),
            "rolled back ≥ 95 %",
        ),
        (
            bg("blue-green: green's task success 95 % → 85 % just after the switch", BASELINE, Some(Metric::TaskSuccessRate), after_switch(Profile { success_rate: 0.85, ..BASELINE })),
            "rolled back ≥ 95 %",
        ),
        (
            bg("blue-green: green's latency 2× just after the switch", BASELINE, Some(Metric::LatencyP99Ms), after_switch(Profile { latency_factor: 2.0, ..BASELINE })),
            "rolled back ≥ 95 %",
        ),
    ]
}

/// A blue-green spec with the simulations' other settings.
pub fn blue_green_spec(preview_seconds: u64, bake_seconds: u64, gates: Vec<Gate>) -> Option<AnalysisSpec> {
    AnalysisSpec::try_new(AnalysisSpecConfig {
        steps: Vec::new(),
        step_seconds: 0,
        min_requests: 100,
        interval_seconds: 1.0,
        failure_limit: 1,
        gates: gates.into_iter().map(GateConfig::from).collect(),
        blue_green: Some(super::BlueGreen { preview_seconds, bake_seconds }),
        shadow_seconds: None,
        holds: Vec::new(),
    })
    .ok()
}

/// The whole table at `runs` rollouts per row (the bench uses 20,000).
pub fn table(runs: usize, seed: u64) -> Vec<(Tally, &'static str)> {
    let sim = Simulator::new();
    scenarios()
        .into_iter()
        .enumerate()
        .map(|(i, (sc, check))| (sim.run_many(&sc, runs, seed.wrapping_add(i as u64)), check))
        .collect()
}
