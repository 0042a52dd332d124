//! Seeded rollout simulations: synthetic traffic through `judge`, checking false and true rollback
//! rates with the default gates. Deterministic (SplitMix64); run with `--nocapture` to see rates.

use super::{
    default_gates, judge, Action, AnalysisSpec, AnalysisSpecConfig, GateConfig, Metric, StepState,
    VersionStats,
};
use crate::rng::SplitMix64;
use crate::stats::normal;

const LATENCY_TABLE_BITS: u32 = 12;

/// Quantiles of a log-normal (median 100 ms, σ = 0.5; p99 ≈ 320 ms) in µs: sampling is one
/// table lookup, which keeps the simulations fast in debug builds.
fn latency_table() -> Vec<u64> {
    let size = 1usize << LATENCY_TABLE_BITS;
    (0..size)
        .map(|i| {
            let z = normal::quantile((i as f64 + 0.5) / size as f64).unwrap();
            (100_000.0 * (0.5 * z).exp()) as u64
        })
        .collect()
}

/// How one version behaves.
#[derive(Clone, Copy)]
struct Profile {
    error_rate: f64,
    success_rate: f64,
    violation_rate: f64,
    extra_latency_us: u64,
}

const BASELINE: Profile = Profile {
    error_rate: 0.01,
    success_rate: 0.95,
    violation_rate: 0.001,
    extra_latency_us: 0,
};

struct Simulation {
    spec: AnalysisSpec,
    rps: u64,
    latency: Vec<u64>,
    stable: Profile,
    canary: Profile,
}

/// Steps [1, 5, 25, 50, 100] %, 60 s each, judged every 5 s, 100 requests minimum, default gates.
fn sim_spec(failure_limit: u32) -> AnalysisSpec {
    let config = AnalysisSpecConfig {
        steps: vec![1.0, 5.0, 25.0, 50.0, 100.0],
        step_seconds: 60,
        min_requests: 100,
        interval_seconds: 5.0,
        failure_limit,
        gates: default_gates().into_iter().map(GateConfig::from).collect(),
    };
    AnalysisSpec::try_new(config).unwrap()
}

#[derive(Debug, Clone, PartialEq)]
enum Ending {
    Promoted,
    RolledBack { step: usize, failing: Vec<Metric> },
    TimedOut,
}

const MAX_SIMULATED_SECONDS: u64 = 3600;

impl Simulation {
    fn new(stable: Profile, canary: Profile) -> Self {
        Self {
            spec: sim_spec(3),
            rps: 200,
            latency: latency_table(),
            stable,
            canary,
        }
    }

    /// One request into a delta.
    fn request(&self, rng: &mut SplitMix64, profile: &Profile, delta: &mut VersionStats) {
        delta.requests += 1;
        if rng.next_f64() < profile.error_rate {
            delta.errors += 1;
            delta.status_5xx += 1;
        } else {
            delta.status_2xx += 1;
        }
        if rng.next_f64() < profile.success_rate {
            delta.outcome_success += 1;
        } else {
            delta.outcome_failure += 1;
        }
        if rng.next_f64() < profile.violation_rate {
            delta.policy_violations += 1;
            delta.policy_violating_requests += 1;
        }
        let index = (rng.next_u64() >> (64 - LATENCY_TABLE_BITS)) as usize;
        delta
            .latency_total
            .record(self.latency[index] + profile.extra_latency_us);
    }

    fn run(&self, seed: u64) -> Ending {
        let mut rng = SplitMix64::new(seed);
        let (mut stable, mut canary) = (VersionStats::default(), VersionStats::default());
        let mut state = StepState::start(0);
        let interval_s = self.spec.interval_seconds() as u64;
        let mut now_s = 0;
        while now_s < MAX_SIMULATED_SECONDS {
            let share = self.spec.weight(state.step_index).unwrap() / 100.0;
            let (mut ds, mut dc) = (VersionStats::default(), VersionStats::default());
            for _ in 0..self.rps * interval_s {
                if rng.next_f64() < share {
                    self.request(&mut rng, &self.canary, &mut dc);
                } else {
                    self.request(&mut rng, &self.stable, &mut ds);
                }
            }
            // Proxies report deltas; the controller keeps cumulative totals.
            stable.merge(&ds);
            canary.merge(&dc);
            now_s += interval_s;
            let verdict = judge(&self.spec, &state, &stable, &canary, now_s * 1000);
            match verdict.action {
                Action::Promote => return Ending::Promoted,
                Action::Rollback => {
                    let failing = verdict
                        .gates
                        .iter()
                        .filter(|g| g.status == super::GateStatus::Fail)
                        .map(|g| g.metric)
                        .collect();
                    return Ending::RolledBack {
                        step: state.step_index,
                        failing,
                    };
                }
                Action::Advance | Action::Hold => state = verdict.next_state,
            }
        }
        Ending::TimedOut
    }
}

struct Tally {
    runs: usize,
    promoted: usize,
    timed_out: usize,
    rolled_back: usize,
    by_metric: Vec<(Metric, usize)>,
    by_step: [usize; 5],
}

fn run_many(sim: &Simulation, runs: usize, seed: u64) -> Tally {
    let mut t = Tally {
        runs,
        promoted: 0,
        timed_out: 0,
        rolled_back: 0,
        by_metric: Vec::new(),
        by_step: [0; 5],
    };
    for i in 0..runs {
        match sim.run(seed.wrapping_mul(1_000_003).wrapping_add(i as u64)) {
            Ending::Promoted => t.promoted += 1,
            Ending::TimedOut => t.timed_out += 1,
            Ending::RolledBack { step, failing } => {
                t.rolled_back += 1;
                t.by_step[step.min(4)] += 1;
                for m in failing {
                    match t.by_metric.iter_mut().find(|(k, _)| *k == m) {
                        Some((_, n)) => *n += 1,
                        None => t.by_metric.push((m, 1)),
                    }
                }
            }
        }
    }
    t
}

impl Tally {
    fn rollback_rate(&self) -> f64 {
        self.rolled_back as f64 / self.runs as f64
    }

    fn rolled_back_on(&self, metric: Metric) -> usize {
        self.by_metric
            .iter()
            .find(|(m, _)| *m == metric)
            .map_or(0, |(_, n)| *n)
    }

    fn print(&self, name: &str) {
        println!(
            "{name}: {} runs, rolled back {} ({:.1}%), promoted {}, timed out {}; failing gates {:?}; rollback step (0-based) counts {:?}",
            self.runs,
            self.rolled_back,
            100.0 * self.rollback_rate(),
            self.promoted,
            self.timed_out,
            self.by_metric,
            self.by_step
        );
    }
}

#[test]
fn a_a_rollouts_rarely_roll_back() {
    let sim = Simulation::new(BASELINE, BASELINE);
    let t = run_many(&sim, 500, 1);
    t.print("A/A (1% errors, 95% success, 0.1% violations, same latency)");
    assert!(
        t.rollback_rate() <= 0.01,
        "false rollback rate {}",
        t.rollback_rate()
    );
    assert_eq!(t.promoted + t.rolled_back, t.runs, "every A/A rollout ends");
}

#[test]
fn doubled_error_rate_is_rolled_back() {
    let sim = Simulation::new(
        BASELINE,
        Profile {
            error_rate: 0.02,
            ..BASELINE
        },
    );
    let t = run_many(&sim, 200, 2);
    t.print("errors 1% → 2%");
    assert!(
        t.rollback_rate() >= 0.95,
        "detection rate {}",
        t.rollback_rate()
    );
    assert!(t.rolled_back_on(Metric::ErrorRate) >= t.rolled_back * 95 / 100);
}

#[test]
fn slower_canary_is_rolled_back_on_latency() {
    let sim = Simulation::new(
        BASELINE,
        Profile {
            extra_latency_us: 150_000,
            ..BASELINE
        },
    );
    let t = run_many(&sim, 100, 3);
    t.print("latency +150 ms");
    assert!(t.rollback_rate() >= 0.95);
    assert_eq!(t.rolled_back_on(Metric::LatencyP99Ms), t.rolled_back);
}

#[test]
fn worse_task_success_is_rolled_back_on_success_gate() {
    let sim = Simulation::new(
        BASELINE,
        Profile {
            success_rate: 0.80,
            ..BASELINE
        },
    );
    let t = run_many(&sim, 100, 4);
    t.print("task success 95% → 80%");
    assert!(t.rollback_rate() >= 0.95);
    assert_eq!(t.rolled_back_on(Metric::TaskSuccessRate), t.rolled_back);
}

#[test]
fn better_canary_is_promoted() {
    // One-sided tests: an improvement is never a regression.
    let better = Profile {
        error_rate: 0.002,
        success_rate: 0.99,
        violation_rate: 0.0,
        extra_latency_us: 0,
    };
    let t = run_many(&Simulation::new(BASELINE, better), 50, 5);
    t.print("better canary (0.2% errors, 99% success)");
    assert_eq!(t.promoted, t.runs);
}

/// Larger runs for METHOD.md: `cargo test --release -- --ignored --nocapture long_run`.
#[test]
#[ignore = "slow: run in release"]
fn long_run_rates() {
    let mut aa = Simulation::new(BASELINE, BASELINE);
    run_many(&aa, 5_000, 11).print("A/A, failure_limit 3");
    aa.spec = sim_spec(1);
    run_many(&aa, 5_000, 12).print("A/A, failure_limit 1 (any single failing interval rolls back)");
    // Exactly at a gate's tolerance (the null's boundary): each should stay under α/4 = 0.25%.
    let edge = Simulation::new(
        BASELINE,
        Profile {
            error_rate: 0.0125,
            ..BASELINE
        },
    );
    run_many(&edge, 2_000, 18).print("errors at tolerance (1% → 1.25%, max_ratio 1.25)");
    let edge = Simulation::new(
        BASELINE,
        Profile {
            success_rate: 0.93,
            ..BASELINE
        },
    );
    run_many(&edge, 2_000, 19).print("success at tolerance (95% → 93%, max_decrease 0.02)");
    let edge = Simulation::new(
        BASELINE,
        Profile {
            violation_rate: 0.002,
            ..BASELINE
        },
    );
    run_many(&edge, 2_000, 20).print("violations at tolerance (0.1% → 0.2%, max_increase 0.001)");
    let errors = Simulation::new(
        BASELINE,
        Profile {
            error_rate: 0.02,
            ..BASELINE
        },
    );
    run_many(&errors, 2_000, 13).print("errors 1% → 2%");
    let mild = Simulation::new(
        BASELINE,
        Profile {
            error_rate: 0.015,
            ..BASELINE
        },
    );
    run_many(&mild, 1_000, 14).print("errors 1% → 1.5%");
    let latency = Simulation::new(
        BASELINE,
        Profile {
            extra_latency_us: 150_000,
            ..BASELINE
        },
    );
    run_many(&latency, 1_000, 15).print("latency +150 ms");
    let success = Simulation::new(
        BASELINE,
        Profile {
            success_rate: 0.80,
            ..BASELINE
        },
    );
    run_many(&success, 1_000, 16).print("task success 95% → 80%");
    let violations = Simulation::new(
        BASELINE,
        Profile {
            violation_rate: 0.005,
            ..BASELINE
        },
    );
    run_many(&violations, 1_000, 17).print("policy violations 0.1% → 0.5%");
}

#[test]
fn zero_traffic_holds_forever() {
    let mut sim = Simulation::new(BASELINE, BASELINE);
    sim.rps = 0;
    let empty = VersionStats::default();
    let mut state = StepState::start(0);
    for now_s in (5..=24 * 3600).step_by(5) {
        let verdict = judge(&sim.spec, &state, &empty, &empty, now_s * 1000);
        assert_eq!(verdict.action, Action::Hold, "{}", verdict.reason);
        assert!(verdict
            .gates
            .iter()
            .all(|g| g.status == super::GateStatus::InsufficientData));
        state = verdict.next_state;
    }
    assert_eq!(state, StepState::start(0));
    assert_eq!(sim.run(9), Ending::TimedOut);
}
