//! Evaluating one gate on one look: the interval's evidence against the gate (a change detector
//! that may fail it) and the evidence for it (an advance proof that may pass it).
//!
//! | gate | fails when (detector, level α_gate) | passes when (proof, level [`ADVANCE_ALPHA`]) |
//! |---|---|---|
//! | rate `max_ratio r` | Shiryaev–Roberts over per-interval conditional-binomial LRs (Lindon & Malek), ρ ∈ r·[`RATIO_GRID`] | Gaussian per-interval increments rule out canary ≥ stable + max(2(r−1)·stable, reachable) |
//! | rate `max_increase δ` / success `max_decrease δ` | Shiryaev–Roberts over Gaussian per-interval increments of p̂_c − p̂_s − δ (plug-in variance: an approximation) | Gaussian increments rule out canary ≥ stable + max(2δ, reachable) |
//! | rate `max m` / success `min m` | Shiryaev–Roberts over per-interval Bernoulli LRs against m | Bernoulli mixture rules out canary ≥ max(2m, m + reachable) |
//! | latency `max m` ms | the same on the share above m against 1 − q | the share above m is below max(2(1 − q), [`TAIL_COUNT`]/n) |
//! | latency `max_ratio r` / `max_increase Δ` | quantile confidence sequences on the step's data: canary's lower bound > r × stable's upper bound | canary's upper bound at min(q, 1 − [`TAIL_COUNT`]/n) ≤ (1 + 2(r−1)) × stable's lower bound |
//! | cost | Shiryaev–Roberts over Gaussian per-interval increments | Gaussian increments (one-sided mSPRT) rule out twice the tolerance |
//!
//! Task success is judged by its failures. Relative gates need a concurrent stable: at 100 % they
//! pass (relative judgement ends at the last split step) and only absolute gates watch the bake.

use super::gate::{Gate, Threshold};
use super::metric::{Metric, MetricKind};
use super::spec::AnalysisSpec;
use super::version_stats::VersionStats;
use crate::histogram::Histogram;
use crate::shadow::ShadowStats;
use crate::stats::sequential::{
    bernoulli_llr, bernoulli_mixture, conditional_llr, ln_one_sided_msprt, sr_update,
};
use serde::{Deserialize, Serialize};

/// The chance of any false rollback over a whole rollout, split evenly (Bonferroni) over the gates.
pub const OVERALL_ALPHA: f64 = 0.01;
/// The advance proof's level: the chance that a step advances while the canary is at least as bad
/// as the regression the proof rules out. The detectors keep watching after an advance.
pub const ADVANCE_ALPHA: f64 = 0.1;
/// The floor of the regression a rate proof rules out is what the step's traffic can reach:
/// FLOOR_Z standard errors of the canary's rate over the observations it gets in `step_seconds`
/// (`reachable`). At 1 % of 200 requests/s (120 requests a minute) that is 8 pp for a 5 % failure
/// rate; at 25 % (3,000 a minute) 1.6 pp; twice the tolerance takes over once it is larger.
pub const FLOOR_Z: f64 = 4.0;
/// An absolute floor for rare events: a rate proof never has to rule out less than 0.1 pp.
pub const MIN_FLOOR: f64 = 0.001;
/// The latency proof for quantile q bounds the quantile min(q, 1 − TAIL_COUNT / n), n the canary
/// requests the step gets in `step_seconds`: a 1 % tail cannot be bounded from the 120 requests of a
/// first step, the 95th percentile can; from 3,000 requests on, q itself is bounded.
pub const TAIL_COUNT: f64 = 20.0;
/// Alternatives of the rate-ratio detector, as multiples of the gate's ratio r.
pub const RATIO_GRID: [f64; 4] = [1.6, 2.5, 4.0, 8.0];
/// Alternatives of the absolute-limit detector and of the quantile bounds, as multiples of the limit.
pub const LIMIT_GRID: [f64; 4] = [1.5, 2.0, 4.0, 8.0];
/// Alternatives below a limit (the proofs and upper quantile bounds), as fractions of it.
pub const BELOW_GRID: [f64; 3] = [0.75, 0.5, 0.25];
/// Alternatives of the difference detector (excess over the tolerance), in pooled per-observation
/// standard deviations.
pub const DIFF_GRID: [f64; 3] = [0.05, 0.15, 0.5];
/// Alternatives of the mean (cost) detector, in per-observation standard deviations.
pub const MEAN_GRID: [f64; 4] = [0.1, 0.25, 0.5, 1.0];
/// Per-observation standard deviation floor for means, relative to the mean's magnitude.
pub const MEAN_SD_FLOOR: f64 = 0.01;

/// A gate's outcome for this look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStatus {
    /// Evidence rules out the regression the advance proof looks for (or the gate does not block).
    Pass,
    /// Evidence of a regression past the gate's threshold.
    Fail,
    /// Neither yet: the step holds.
    InsufficientData,
}

/// A statistic against its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// e.g. "shiryaev_roberts", "quantile_cs", "count", "e_process", "msprt".
    pub test: String,
    pub value: f64,
    /// The value at or above which the test counts as evidence.
    pub threshold: f64,
    /// What was tested, for people.
    pub detail: String,
}

/// Confidence bounds (in the metric's unit) of canary and stable on the current step's data;
/// `None` while the data does not yet bound that side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_high: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_high: Option<f64>,
}

/// One gate's result in a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub metric: Metric,
    /// e.g. "canary ≤ 1.25× stable".
    pub threshold: String,
    pub critical: bool,
    pub status: GateStatus,
    /// Values on the current step's data.
    pub canary: Option<f64>,
    pub stable: Option<f64>,
    /// Observations behind each value (the metric's denominator), current step.
    pub canary_n: u64,
    pub stable_n: u64,
    /// The detector: evidence that the gate is broken (fails at its threshold 1/α_gate).
    pub evidence: Option<Evidence>,
    /// The advance proof: evidence that the regression it names is ruled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Evidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<Bounds>,
    /// Why the status is what it is when that is not obvious (e.g. what is missing).
    pub note: String,
    /// Set when the gate compared the canary with something other than a concurrent stable: in a
    /// blue-green bake, blue's window from before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

/// What a gate compared the canary with when stable was not running beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `"blue_pre_switch"`: stable's (blue's) counts over the preview, frozen at the switch.
    pub against: String,
    /// Always false here: the two were measured at different times, so a change of traffic between
    /// them is not cancelled as it is in a concurrent comparison.
    pub concurrent: bool,
    /// Blue's value before the switch, and the observations behind it.
    pub baseline: f64,
    pub baseline_n: u64,
    /// The absolute limit the canary was judged against: the gate's tolerance applied to blue's
    /// confidence bound (upper for lower-is-better metrics, lower for task success).
    pub limit: f64,
}

/// What a gate carries from look to look (persisted with the rollout's status).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GateEvidence {
    /// Shiryaev–Roberts components M_j, one per grid point (an event count for zero limits).
    pub detector: Vec<f64>,
    /// The advance proof's sufficient statistics: [Σ1/σ², Σd/σ², stable events, stable trials]
    /// for Gaussian increments, [events, trials] for Bernoulli limits.
    pub proof: Vec<f64>,
    /// Canary observations the proof rests on.
    pub proof_n: u64,
}

/// Everything about this look that is the same for every gate.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    pub spec: &'a AnalysisSpec,
    pub alpha_gate: f64,
    /// γ of this look (the next look's for a look between intervals).
    pub gamma: f64,
    pub scheduled: bool,
    /// A concurrent stable exists (the weight is below 100 %).
    pub split: bool,
    /// α of the current latency segment (a share of α_gate).
    pub segment_alpha: f64,
    /// Seconds since the current step started.
    pub step_elapsed_s: f64,
    /// The current step's dwell ([`AnalysisSpec::dwell_seconds`]).
    pub dwell_seconds: f64,
}

impl Context<'_> {
    /// The same look with `share` of this gate's α (blue-green splits a relative gate's α between
    /// the preview's concurrent test and the bake's comparison with blue's pre-switch window).
    pub fn with_alpha_share(&self, share: f64) -> Self {
        Self { alpha_gate: self.alpha_gate * share, segment_alpha: self.segment_alpha * share, ..*self }
    }
}

/// The canary observations the current step gets in its dwell, at its rate so far.
fn step_observations(ctx: &Context, canary_step_n: u64) -> f64 {
    let elapsed = ctx.step_elapsed_s.max(ctx.spec.interval_seconds()).max(1e-3);
    canary_step_n as f64 * ctx.dwell_seconds / elapsed
}

/// The smallest rate regression the step's traffic can rule out: [`FLOOR_Z`] standard errors of a
/// rate of per-observation variance `variance` over the step's canary observations.
pub(crate) fn reachable(ctx: &Context, variance: f64, canary_step_n: u64) -> f64 {
    let n = step_observations(ctx, canary_step_n);
    if n < 1.0 {
        // No canary data this step: nothing is reachable yet; the tolerance term names the goal.
        return 0.0;
    }
    (FLOOR_Z * (variance / n).sqrt()).min(1.0)
}

/// p̃(1 − p̃) with p̃ = (x + 1)/(n + 2).
fn smoothed_variance(x: u64, n: u64) -> f64 {
    let p = (x as f64 + 1.0) / (n as f64 + 2.0);
    p * (1.0 - p)
}

/// One look's data: the interval just ended, and the current step so far.
pub(crate) struct Data<'a> {
    pub stable: &'a VersionStats,
    pub canary: &'a VersionStats,
    pub stable_step: &'a VersionStats,
    pub canary_step: &'a VersionStats,
    /// Shadow pairs of the interval and of the step.
    pub shadow: &'a ShadowStats,
    pub shadow_step: &'a ShadowStats,
}

/// What the gate's kind made of the look.
pub(crate) struct Outcome {
    pub failed: bool,
    pub evidence: Option<Evidence>,
    pub proof: Option<Evidence>,
    pub proven: bool,
    /// What is missing when not proven.
    pub missing: String,
    pub bounds: Option<Bounds>,
}

pub(crate) fn evaluate_gate(
    ctx: &Context,
    gate: &Gate,
    prior: &GateEvidence,
    data: &Data,
) -> (GateResult, GateEvidence) {
    if gate.metric().is_shadow() {
        return super::shadow_gate::evaluate(ctx, gate, prior, data);
    }
    if gate.metric().is_evaluation() {
        return super::evaluation_gate::evaluate(ctx, gate, prior, data);
    }
    evaluate_with(ctx, gate, prior, data, None)
}

/// How a gate's test reads the look when the default for its kind does not apply (the paired
/// shadow tests).
pub(crate) type Test<'t> = &'t dyn Fn(&Context, &mut GateEvidence, &Data) -> Outcome;

/// [`evaluate_gate`] with the gate's test given: `None` picks it by the metric's kind and threshold.
pub(crate) fn evaluate_with(
    ctx: &Context,
    gate: &Gate,
    prior: &GateEvidence,
    data: &Data,
    test: Option<Test>,
) -> (GateResult, GateEvidence) {
    let metric = gate.metric();
    let mut result = GateResult {
        metric,
        threshold: gate.describe(),
        critical: gate.critical(),
        status: GateStatus::InsufficientData,
        canary: data.canary_step.metric(metric),
        stable: data.stable_step.metric(metric),
        canary_n: data.canary_step.sample_size(metric),
        stable_n: data.stable_step.sample_size(metric),
        evidence: None,
        proof: None,
        bounds: None,
        note: String::new(),
        comparison: None,
    };
    let relative = gate.threshold().is_relative();
    if relative && !ctx.split {
        result.status = GateStatus::Pass;
        result.note = "no concurrent stable at 100%: relative judgement ended at the last split step".into();
        return (result, prior.clone());
    }
    if !ctx.scheduled && (!gate.critical() || relative) {
        result.note = "judged at the next interval".into();
        return (result, prior.clone());
    }
    let mut next = prior.clone();
    let outcome = if let Some(test) = test {
        test(ctx, &mut next, data)
    } else {
        default_test(ctx, gate, &mut next, data)
    };
    finish(ctx, gate, prior, next, outcome, result)
}

fn default_test(ctx: &Context, gate: &Gate, next: &mut GateEvidence, data: &Data) -> Outcome {
    let metric = gate.metric();
    match (metric.kind(), gate.threshold()) {
        (MetricKind::Rate, Threshold::Max(m)) => rate_limit(ctx, metric, m, next, data),
        (MetricKind::Rate, Threshold::Min(m)) => rate_limit(ctx, metric, 1.0 - m, next, data),
        (MetricKind::Rate, Threshold::MaxRatio(r)) => rate_ratio(ctx, metric, r, next, data),
        (MetricKind::Rate, Threshold::MaxIncrease(d) | Threshold::MaxDecrease(d)) => {
            rate_difference(ctx, metric, d, next, data)
        }
        (MetricKind::Latency { quantile }, Threshold::Max(ms)) => {
            latency_limit(ctx, metric, quantile, ms, next, data)
        }
        (MetricKind::Latency { quantile }, t) => latency_relative(ctx, metric, quantile, t, data),
        (MetricKind::Mean, t) => mean_gate(ctx, t, next, data),
    }
}

/// The gate's status from its test's outcome.
fn finish(ctx: &Context, gate: &Gate, prior: &GateEvidence, mut next: GateEvidence, outcome: Outcome, mut result: GateResult) -> (GateResult, GateEvidence) {
    let metric = gate.metric();
    let relative = gate.threshold().is_relative();
    result.evidence = outcome.evidence;
    result.proof = outcome.proof;
    result.bounds = outcome.bounds;
    let unit = unit_name(metric);
    let enough = next.proof_n >= ctx.spec.min_requests() || matches!(metric.kind(), MetricKind::Latency { .. }) && relative;
    result.status = if outcome.failed {
        GateStatus::Fail
    } else if gate.critical() {
        // Critical gates prove nothing before an advance (they act at the first evidence of harm),
        // but a step does not advance before they have seen `min_requests` canary observations.
        let seen = result.canary_n.max(next.proof_n);
        if seen >= ctx.spec.min_requests() {
            result.note = "critical: watched at every look".into();
            GateStatus::Pass
        } else {
            result.note = format!(
                "critical: canary has {} of {} {unit} needed",
                seen,
                ctx.spec.min_requests()
            );
            GateStatus::InsufficientData
        }
    } else if outcome.proven && enough {
        GateStatus::Pass
    } else {
        result.note = if outcome.proven {
            format!(
                "canary has {} of {} {unit} needed",
                next.proof_n,
                ctx.spec.min_requests()
            )
        } else {
            outcome.missing
        };
        GateStatus::InsufficientData
    };
    if !ctx.scheduled {
        next = prior.clone();
    }
    sanitize(&mut result, &mut next);
    (result, next)
}

/// Keeps every number of the result and the state finite (they are stored as JSON).
fn sanitize(result: &mut GateResult, next: &mut GateEvidence) {
    for e in [&mut result.evidence, &mut result.proof].into_iter().flatten() {
        e.value = finite(e.value);
        e.threshold = finite(e.threshold);
    }
    for v in [&mut result.canary, &mut result.stable].into_iter().flatten() {
        *v = finite(*v);
    }
    if let Some(b) = &mut result.bounds {
        for v in [&mut b.canary_low, &mut b.canary_high, &mut b.stable_low, &mut b.stable_high].into_iter().flatten() {
            *v = finite(*v);
        }
    }
    for v in next.detector.iter_mut().chain(next.proof.iter_mut()) {
        *v = finite(*v);
    }
}

pub(crate) fn unit_name(metric: Metric) -> &'static str {
    match metric {
        m if m.is_shadow() => "shadow copies",
        Metric::EvaluationScore => "scores",
        Metric::EvaluationPassRate => "labelled evaluations",
        Metric::ErrorRate | Metric::PolicyViolationRate => "requests",
        Metric::LatencyP50Ms | Metric::LatencyP99Ms => "requests",
        Metric::LatencyTtftP50Ms | Metric::LatencyTtftP99Ms => "answers with a body",
        Metric::TaskSuccessRate => "task outcomes",
        Metric::CostPerTask => "cost reports",
        _ => "observations",
    }
}

/// (events, trials) that count against a rate metric: task success is judged by its failures.
pub(crate) fn bad_events(metric: Metric, s: &VersionStats) -> (u64, u64) {
    match metric.live_base().unwrap_or(metric) {
        Metric::TaskSuccessRate | Metric::EvaluationPassRate => (s.outcome_failure.min(s.outcomes()), s.outcomes()),
        Metric::PolicyViolationRate => (s.policy_violating_requests.min(s.requests), s.requests),
        _ => (s.errors.min(s.requests), s.requests),
    }
}

fn bad_name(metric: Metric) -> &'static str {
    match metric {
        Metric::TaskSuccessRate => "task failure",
        Metric::EvaluationPassRate => "failed-evaluation",
        Metric::PolicyViolationRate => "violating-request",
        _ => "error",
    }
}

/// "a 4.00 pp drop in task success" / "an error-rate increase of 5.00 pp".
pub(crate) fn regression_words(metric: Metric, delta: f64) -> String {
    match metric {
        Metric::TaskSuccessRate => format!("a {:.2} pp drop in task success", delta * 100.0),
        Metric::EvaluationPassRate => format!("a {:.2} pp drop in the pass rate", delta * 100.0),
        _ => format!("an increase of {:.2} pp in {}", delta * 100.0, metric.name()),
    }
}

fn rate(x: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        x as f64 / n as f64
    }
}

/// Display-only confidence bounds of a rate (normal-mixture boundary with a plug-in variance);
/// decisions never use them.
pub(crate) fn rate_bounds(x: u64, n: u64, alpha: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let nf = n as f64;
    let p = (x as f64 + 0.5) / (nf + 1.0);
    let v = nf * p * (1.0 - p) + 1.0;
    let radius = (2.0 * v * ((v).sqrt() / alpha).ln()).sqrt() / nf;
    let hat = rate(x, n);
    ((hat - radius).max(0.0), (hat + radius).min(1.0))
}

fn detector_threshold(ctx: &Context) -> f64 {
    1.0 / ctx.alpha_gate
}

/// Runs the Shiryaev–Roberts update on the gate's components and says whether it fired.
pub(crate) fn detect(ctx: &Context, next: &mut GateEvidence, llrs: &[f64], detail: String) -> (bool, Evidence) {
    if next.detector.len() != llrs.len() {
        next.detector = vec![0.0; llrs.len()];
    }
    let statistic = sr_update(&mut next.detector, ctx.gamma, llrs);
    let threshold = detector_threshold(ctx);
    let evidence = Evidence {
        test: "shiryaev_roberts".into(),
        value: statistic,
        threshold,
        detail,
    };
    (statistic >= threshold, evidence)
}

/// Gaussian-increment advance proof: adds this interval's (d, σ²) — d the excess over the
/// regression to rule out, negative when the canary is better — and tests mean d < 0 with the
/// one-sided normal-mixture mSPRT (mixing scale `tau`).
pub(crate) fn gaussian_proof(next: &mut GateEvidence, increment: Option<(f64, f64)>, canary_n: u64, tau: f64) -> (f64, f64) {
    if next.proof.len() != 4 {
        next.proof = vec![0.0; 4];
    }
    if let Some((d, var)) = increment {
        if var > 0.0 && d.is_finite() && var.is_finite() {
            if let Some(s0) = next.proof.get_mut(0) {
                *s0 += 1.0 / var;
            }
            if let Some(s1) = next.proof.get_mut(1) {
                *s1 += d / var;
            }
            next.proof_n = next.proof_n.saturating_add(canary_n);
        }
    }
    let s0 = next.proof.first().copied().unwrap_or(0.0);
    let s1 = next.proof.get(1).copied().unwrap_or(0.0);
    if s0 <= 0.0 {
        return (0.0, 0.0);
    }
    let mean = s1 / s0;
    (finite(ln_one_sided_msprt(-mean, 0.0, 1.0 / s0, tau * tau).exp()), mean)
}

/// Every number the verdict carries is finite (JSON has no infinity or NaN, and the status is
/// stored as JSON): ±∞ saturate at ±f64::MAX, NaN is 0.
fn finite(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(-f64::MAX, f64::MAX)
    }
}

/// "needs about N more canary task outcomes to rule out a 4.00 pp drop in task success".
fn missing_for_gaussian(next: &GateEvidence, mean: f64, unit: &str, what: &str) -> String {
    let s0 = next.proof.first().copied().unwrap_or(0.0);
    if next.proof_n == 0 || s0 <= 0.0 {
        return format!("needs canary {unit} to rule out {what}");
    }
    if mean >= 0.0 {
        return format!(
            "the canary is not yet clearly better than {what} ({} {unit} so far): needs more data",
            next.proof_n
        );
    }
    // ln Λ⁺ ≈ s0·mean²/2 − ½ln(1 + s0·τ²) + ln 2: aim for ln(1/α) + 2 nats of room.
    let needed_precision = 2.0 * ((1.0 / ADVANCE_ALPHA).ln() + 2.0) / (mean * mean);
    let per_obs = s0 / next.proof_n as f64;
    let more = ((needed_precision - s0) / per_obs).max(1.0).ceil();
    format!("needs about {more:.0} more canary {unit} to rule out {what}")
}

/// The proofs' per-interval variance of p̂_c − p̂_s: v/n_c + v/n_s, with v the pooled smoothed
/// per-observation variance of the step so far (steadier than one interval's).
fn interval_variance(nc: u64, ns: u64, step_variance: f64) -> Option<f64> {
    if nc == 0 || ns == 0 {
        return None;
    }
    Some(step_variance / nc as f64 + step_variance / ns as f64)
}

/// The pooled smoothed variance of a rate metric over the step, and the canary's observations.
fn step_variance(metric: Metric, data: &Data) -> (f64, u64) {
    let (xc, nc) = bad_events(metric, data.canary_step);
    let (xs, ns) = bad_events(metric, data.stable_step);
    (smoothed_variance(xc.saturating_add(xs), nc.saturating_add(ns)), nc)
}

pub(crate) fn step_rate_bounds(metric: Metric, ctx: &Context, data: &Data, relative: bool) -> Bounds {
    let (xc, nc) = bad_events(metric, data.canary_step);
    let (xs, ns) = bad_events(metric, data.stable_step);
    let flip = |(lo, hi): (f64, f64)| {
        if metric == Metric::TaskSuccessRate {
            (1.0 - hi, 1.0 - lo)
        } else {
            (lo, hi)
        }
    };
    let (cl, ch) = flip(rate_bounds(xc, nc, ctx.alpha_gate));
    let stable = relative.then(|| flip(rate_bounds(xs, ns, ctx.alpha_gate)));
    Bounds {
        canary_low: Some(cl),
        canary_high: Some(ch),
        stable_low: stable.map(|s| s.0),
        stable_high: stable.map(|s| s.1),
    }
}

fn rate_ratio(ctx: &Context, metric: Metric, r: f64, next: &mut GateEvidence, data: &Data) -> Outcome {
    let (xc, nc) = bad_events(metric, data.canary);
    let (xs, ns) = bad_events(metric, data.stable);
    let llrs: Vec<f64> = RATIO_GRID
        .iter()
        .map(|g| conditional_llr(xc, nc, xs, ns, g * r, r))
        .collect();
    let detail = format!(
        "{} rate this interval: canary {xc}/{nc} vs stable {xs}/{ns}; alternatives ρ = {:?}× stable",
        bad_name(metric),
        RATIO_GRID.map(|g| (g * r * 100.0).round() / 100.0)
    );
    let (failed, evidence) = detect(ctx, next, &llrs, detail);
    // The proof: canary ≥ stable + Δ ruled out, Δ = max(2(r−1)·stable rate so far, floor).
    if next.proof.len() != 4 {
        next.proof = vec![0.0; 4];
    }
    let stable_so_far = match (next.proof.get(2), next.proof.get(3)) {
        (Some(&x), Some(&n)) if n > 0.0 => x / n,
        _ => rate(xs, ns),
    };
    let (v_step, nc_step) = step_variance(metric, data);
    let floor = reachable(ctx, v_step, nc_step).max(MIN_FLOOR);
    let delta = (2.0 * (r - 1.0) * stable_so_far).max(floor);
    let increment = interval_variance(nc, ns, v_step)
        .map(|var| (rate(xc, nc) - rate(xs, ns) - delta, var));
    if let (Some(x), Some(n)) = (next.proof.get_mut(2), Some(xs as f64)) {
        *x += n;
    }
    if let Some(n) = next.proof.get_mut(3) {
        *n += ns as f64;
    }
    let (value, mean) = gaussian_proof(next, increment, nc, delta);
    let what = regression_words(metric, delta);
    proof_outcome(failed, evidence, value, mean, next, metric, &what, step_rate_bounds(metric, ctx, data, true))
}

fn rate_difference(ctx: &Context, metric: Metric, delta: f64, next: &mut GateEvidence, data: &Data) -> Outcome {
    let (xc, nc) = bad_events(metric, data.canary);
    let (xs, ns) = bad_events(metric, data.stable);
    let diff = (nc > 0 && ns > 0).then(|| rate(xc, nc) - rate(xs, ns));
    // Gaussian per-interval increments: d = p̂_c − p̂_s − δ with σ² = ṽ_c/n_c + ṽ_s/n_s, ṽ = p̃(1 − p̃)
    // per arm, p̃ = (x + 1)/(n + 2) (so one event among few requests is not a certainty), against
    // alternatives θ_j = c_j × the pooled per-observation standard deviation.
    let llrs: Vec<f64> = match diff {
        Some(d) => {
            let var = smoothed_variance(xc, nc) / nc as f64 + smoothed_variance(xs, ns) / ns as f64;
            let sd = smoothed_variance(xc.saturating_add(xs), nc.saturating_add(ns)).sqrt();
            DIFF_GRID
                .iter()
                .map(|c| {
                    let theta = c * sd;
                    ((d - delta) * theta - theta * theta / 2.0) / var
                })
                .collect()
        }
        None => vec![0.0; DIFF_GRID.len()],
    };
    let detail = format!(
        "{} rate this interval: canary {xc}/{nc} vs stable {xs}/{ns}; Gaussian increments of canary − stable − {:.2} pp",
        bad_name(metric),
        delta * 100.0
    );
    let (failed, evidence) = detect(ctx, next, &llrs, detail);
    let (v_step, nc_step) = step_variance(metric, data);
    let target = (2.0 * delta).max(reachable(ctx, v_step, nc_step)).max(MIN_FLOOR);
    let increment = diff.and_then(|d| interval_variance(nc, ns, v_step).map(|var| (d - target, var)));
    let (value, mean) = gaussian_proof(next, increment, nc, target);
    let what = regression_words(metric, target);
    proof_outcome(failed, evidence, value, mean, next, metric, &what, step_rate_bounds(metric, ctx, data, true))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn proof_outcome(
    failed: bool,
    evidence: Evidence,
    value: f64,
    mean: f64,
    next: &GateEvidence,
    metric: Metric,
    what: &str,
    bounds: Bounds,
) -> Outcome {
    let threshold = 1.0 / ADVANCE_ALPHA;
    let proven = value >= threshold;
    let missing = if proven {
        String::new()
    } else {
        missing_for_gaussian(next, mean, unit_name(metric), what)
    };
    Outcome {
        failed,
        evidence: Some(evidence),
        proof: Some(Evidence {
            test: "msprt".into(),
            value,
            threshold,
            detail: format!("rules out {what}"),
        }),
        proven,
        missing,
        bounds: Some(bounds),
    }
}

/// Detector and proof of a Bernoulli rate against an absolute limit, on (events, trials) of the
/// interval. `what` names the events for people.
fn bernoulli_limit(ctx: &Context, x: u64, n: u64, limit: f64, step_n: u64, next: &mut GateEvidence, what: &str) -> (bool, Option<Evidence>, Option<Evidence>, bool, String) {
    if next.proof.len() != 2 {
        next.proof = vec![0.0; 2];
    }
    if let Some(b) = next.proof.get_mut(0) {
        *b += x as f64;
    }
    if let Some(t) = next.proof.get_mut(1) {
        *t += n as f64;
    }
    next.proof_n = next.proof_n.saturating_add(n);
    let (b, t) = (
        next.proof.first().copied().unwrap_or(0.0) as u64,
        next.proof.get(1).copied().unwrap_or(0.0) as u64,
    );
    if limit <= 0.0 {
        // A zero limit: one event is proof, no statistics needed.
        if next.detector.len() != 1 {
            next.detector = vec![0.0];
        }
        if let Some(count) = next.detector.get_mut(0) {
            *count += x as f64;
        }
        let count = next.detector.first().copied().unwrap_or(0.0);
        let evidence = Evidence {
            test: "count".into(),
            value: count,
            threshold: 1.0,
            detail: format!("{what}: {b} of {t} so far; the limit is zero"),
        };
        return (count >= 1.0, Some(evidence), None, true, String::new());
    }
    if limit >= 1.0 {
        return (false, None, None, true, String::new());
    }
    let llrs: Vec<f64> = LIMIT_GRID
        .iter()
        .map(|g| bernoulli_llr(x, n, (g * limit).min((1.0 + limit) / 2.0), limit))
        .collect();
    let (failed, evidence) = detect(
        ctx,
        next,
        &llrs,
        format!("{what}: {x}/{n} this interval, {b}/{t} so far, vs limit {:.3}%", limit * 100.0),
    );
    let target = (2.0 * limit).max(limit + reachable(ctx, limit * (1.0 - limit), step_n));
    if target >= 1.0 {
        return (failed, Some(evidence), None, true, String::new());
    }
    let grid = BELOW_GRID.map(|g| g * target);
    let value = bernoulli_mixture(b, t, target, &grid);
    let threshold = 1.0 / ADVANCE_ALPHA;
    let proven = value >= threshold;
    let missing = if proven {
        String::new()
    } else {
        let p = rate(b, t).max(0.5 / (t as f64 + 1.0));
        let gap = (target - p).max(1e-6);
        // KL(p ‖ target) per trial; aim for ln(1/α) + 2 nats.
        let kl = p * (p / target).ln() + (1.0 - p) * ((1.0 - p) / (1.0 - target)).ln();
        let more = (((1.0 / ADVANCE_ALPHA).ln() + 2.0) / kl.max(gap * gap)) - t as f64;
        format!(
            "needs about {:.0} more canary requests to rule out {what} at {:.2}% or more",
            more.max(1.0).ceil(),
            target * 100.0
        )
    };
    let proof = Evidence {
        test: "e_process".into(),
        value,
        threshold,
        detail: format!("rules out {what} at {:.2}% or more", target * 100.0),
    };
    (failed, Some(evidence), Some(proof), proven, missing)
}

fn rate_limit(ctx: &Context, metric: Metric, limit: f64, next: &mut GateEvidence, data: &Data) -> Outcome {
    let (x, n) = bad_events(metric, data.canary);
    let what = format!("{} rate", bad_name(metric));
    let step_n = bad_events(metric, data.canary_step).1;
    let (failed, evidence, proof, proven, missing) = bernoulli_limit(ctx, x, n, limit, step_n, next, &what);
    Outcome { failed, evidence, proof, proven, missing, bounds: Some(step_rate_bounds(metric, ctx, data, false)) }
}

fn latency_limit(ctx: &Context, metric: Metric, q: f64, limit_ms: f64, next: &mut GateEvidence, data: &Data) -> Outcome {
    let hist = data.canary.latency(metric);
    let limit_micros = (limit_ms * 1000.0).round() as u64;
    let (x, n) = (hist.count_above(limit_micros), hist.count());
    let what = format!("share of requests above {limit_ms:.1} ms");
    let allowed = 1.0 - q;
    let step_n = data.canary_step.latency(metric).count();
    let (failed, evidence, _, _, _) = bernoulli_limit(ctx, x, n, allowed, step_n, next, &what);
    // The proof looks at a share of max(2(1 − q), TAIL_COUNT / n) above the limit.
    let target = (2.0 * allowed).max(TAIL_COUNT / step_observations(ctx, step_n).max(1.0)).min(1.0);
    let (b, t) = (
        next.proof.first().copied().unwrap_or(0.0) as u64,
        next.proof.get(1).copied().unwrap_or(0.0) as u64,
    );
    let value = bernoulli_mixture(b, t, target, &BELOW_GRID.map(|g| g * target));
    let threshold = 1.0 / ADVANCE_ALPHA;
    let proven = value >= threshold;
    let step = data.canary_step.latency(metric);
    let alpha = ctx.segment_alpha / 2.0;
    let bounds = Bounds {
        canary_low: lower_quantile_bound(step, q, alpha).map(|v| v / 1000.0),
        canary_high: upper_quantile_bound(step, q, alpha).map(|v| v / 1000.0),
        stable_low: None,
        stable_high: None,
    };
    Outcome {
        failed,
        evidence,
        proof: Some(Evidence {
            test: "e_process".into(),
            value,
            threshold,
            detail: format!("rules out more than {:.1}% of requests above {limit_ms:.1} ms", target * 100.0),
        }),
        proven,
        missing: if proven {
            String::new()
        } else {
            format!(
                "needs more canary requests to rule out more than {:.1}% above {limit_ms:.1} ms ({b} of {t} so far)",
                target * 100.0
            )
        },
        bounds: Some(bounds),
    }
}

/// The fewest exceedances among n requests that are evidence (level α) of a share above 1 − q,
/// i.e. of a q-quantile above the exceeded edge; `None` if even n exceedances are not.
fn exceedances_for_lower_bound(n: u64, q: f64, alpha: f64) -> Option<u64> {
    let theta0 = 1.0 - q;
    let grid = LIMIT_GRID.map(|g| (g * theta0).min((1.0 + theta0) / 2.0));
    let enough = |y: u64| bernoulli_mixture(y, n, theta0, &grid) >= 1.0 / alpha;
    if n == 0 || !enough(n) {
        return None;
    }
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if enough(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// The most exceedances among n requests that are still evidence (level α) of a share below 1 − q.
fn exceedances_for_upper_bound(n: u64, q: f64, alpha: f64) -> Option<u64> {
    let theta0 = 1.0 - q;
    let grid = BELOW_GRID.map(|g| g * theta0);
    let enough = |y: u64| bernoulli_mixture(y, n, theta0, &grid) >= 1.0 / alpha;
    if n == 0 || !enough(0) {
        return None;
    }
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if enough(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// A lower confidence bound (µs) of the q-quantile: the smallest value of the bucket holding the
/// y-th largest request, y the fewest exceedances that are evidence. `None`: no bound yet.
pub(crate) fn lower_quantile_bound(h: &Histogram, q: f64, alpha: f64) -> Option<f64> {
    let y = exceedances_for_lower_bound(h.count(), q, alpha)?;
    h.bucket_of_rank_from_top(y.max(1)).map(|(low, _)| low as f64)
}

/// An upper confidence bound (µs) of the q-quantile: the largest value of the bucket holding the
/// (y+1)-th largest request, y the most exceedances still evidence of a share below 1 − q.
pub(crate) fn upper_quantile_bound(h: &Histogram, q: f64, alpha: f64) -> Option<f64> {
    let y = exceedances_for_upper_bound(h.count(), q, alpha)?;
    match h.bucket_of_rank_from_top(y.saturating_add(1)) {
        Some((_, high)) => Some(high as f64),
        None => Some(0.0),
    }
}

fn latency_relative(ctx: &Context, metric: Metric, q: f64, threshold: Threshold, data: &Data) -> Outcome {
    let (c, s) = (data.canary_step.latency(metric), data.stable_step.latency(metric));
    let alpha = ctx.segment_alpha / 2.0;
    let (ratio, add) = match threshold {
        Threshold::MaxIncrease(d) => (1.0, d * 1000.0),
        Threshold::MaxRatio(r) => (r, 0.0),
        _ => (1.0, 0.0),
    };
    let canary_low = lower_quantile_bound(c, q, alpha);
    let stable_high = upper_quantile_bound(s, q, alpha);
    let limit = stable_high.map(|h| ratio * h + add);
    let failed = matches!((canary_low, limit), (Some(lo), Some(l)) if lo > l);
    let ms = |v: Option<f64>| v.map_or_else(|| "none yet".to_string(), |v| format!("{:.1} ms", v / 1000.0));
    let evidence = Evidence {
        test: "quantile_cs".into(),
        value: canary_low.unwrap_or(0.0) / 1000.0,
        threshold: limit.map_or(f64::MAX, |l| l / 1000.0),
        detail: format!(
            "p{} this step: canary lower bound {} vs {ratio}× stable upper bound {} (+{:.1} ms); level α = {:.2e} each",
            q * 100.0,
            ms(canary_low),
            ms(stable_high),
            add / 1000.0,
            alpha
        ),
    };
    // The proof: canary's min(q, 0.95) upper bound ≤ (1 + 2(r − 1))·stable's q lower bound (+2Δ).
    let q_adv = q.min((1.0 - TAIL_COUNT / step_observations(ctx, c.count()).max(1.0)).max(0.5));
    let ratio_adv = 1.0 + 2.0 * (ratio - 1.0);
    let adv_alpha = ADVANCE_ALPHA / 2.0;
    let canary_high = upper_quantile_bound(c, q_adv, adv_alpha);
    let stable_low = lower_quantile_bound(s, q, adv_alpha);
    let target = stable_low.map(|lo| ratio_adv * lo + 2.0 * add);
    let proven = matches!((canary_high, target), (Some(hi), Some(t)) if hi <= t);
    let proof = Evidence {
        test: "quantile_cs".into(),
        value: canary_high.map_or(f64::MAX, |v| v / 1000.0),
        threshold: target.map_or(0.0, |t| t / 1000.0),
        detail: format!(
            "rules out canary p{} above {ratio_adv}× stable p{} lower bound (+{:.1} ms): canary upper bound {} vs {}",
            q_adv * 100.0,
            q * 100.0,
            2.0 * add / 1000.0,
            ms(canary_high),
            ms(target)
        ),
    };
    let missing = match (canary_high, target) {
        (None, _) => format!(
            "needs more canary requests this step to bound its p{} ({} so far)",
            q_adv * 100.0,
            c.count()
        ),
        (_, None) => "needs more stable requests this step to bound its latency".into(),
        (Some(_), Some(_)) => format!(
            "needs more canary requests this step to rule out p{} above {ratio_adv}× stable ({} so far)",
            q_adv * 100.0,
            c.count()
        ),
    };
    let bounds = Bounds {
        canary_low: canary_low.map(|v| v / 1000.0),
        canary_high: upper_quantile_bound(c, q, alpha).map(|v| v / 1000.0),
        stable_low: lower_quantile_bound(s, q, alpha).map(|v| v / 1000.0),
        stable_high: stable_high.map(|v| v / 1000.0),
    };
    Outcome { failed, evidence: Some(evidence), proof: Some(proof), proven, missing, bounds: Some(bounds) }
}

/// Values a per-observation variance is estimated from at least.
pub const MIN_VARIANCE_N: u64 = 30;

/// The mean of one interval's values (cost reports, or an evaluation's scores), their
/// per-observation variance (floored) and count. The variance is not the interval's own: estimated
/// from the two or three values an interval at a small step holds it is often far too small, and a
/// Gaussian increment judged with it looks like strong evidence (the evaluation simulations rolled
/// back 45 % of identical canaries that way). It is the largest of the `variance_from` estimates —
/// the step's counts, which include the interval's — that rest on [`MIN_VARIANCE_N`] values or more;
/// `None` (no evidence this interval) when none does.
pub(crate) fn mean_and_variance(interval: &VersionStats, variance_from: &[&VersionStats], scale: f64) -> Option<(f64, f64, f64)> {
    let summary = interval.cost_summary();
    let mean = summary.mean()?;
    let variance = variance_from
        .iter()
        .map(|s| s.cost_summary())
        .filter(|s| s.count >= MIN_VARIANCE_N)
        .filter_map(|s| s.variance())
        .reduce(f64::max)?;
    let floor = (MEAN_SD_FLOOR * scale.abs().max(mean.abs())).powi(2).max(1e-18);
    Some((mean, variance.max(floor), summary.count as f64))
}

pub(crate) fn mean_gate(ctx: &Context, threshold: Threshold, next: &mut GateEvidence, data: &Data) -> Outcome {
    let (ratio, delta, absolute) = match threshold {
        Threshold::MaxRatio(r) => (r, 0.0, None),
        Threshold::MaxIncrease(d) => (1.0, d, None),
        Threshold::Max(m) => (0.0, 0.0, Some(m)),
        Threshold::Min(_) | Threshold::MaxDecrease(_) => (1.0, 0.0, None),
    };
    let scale = absolute.unwrap_or(0.0);
    // The canary's spread from its step's values, or stable's if larger (under no regression they
    // are alike, and stable has the data at a small step); stable's from its own step.
    let canary = mean_and_variance(data.canary, &[data.canary_step, data.stable_step], scale);
    let stable = mean_and_variance(data.stable, &[data.stable_step], scale);
    // (d, σ², per-observation sd) of "canary − ratio·stable − delta" (or canary − limit).
    let increment = |ratio: f64, delta: f64| match (absolute, canary, stable) {
        (Some(m), Some((mc, vc, nc)), _) => Some((mc - m, vc / nc, vc.sqrt())),
        (None, Some((mc, vc, nc)), Some((ms, vs, ns))) => {
            Some((mc - ratio * ms - delta, vc / nc + ratio * ratio * vs / ns, vs.sqrt()))
        }
        _ => None,
    };
    let llrs: Vec<f64> = match increment(ratio, delta) {
        Some((d, var, sd)) => MEAN_GRID
            .iter()
            .map(|g| {
                let theta = g * sd;
                (d * theta - theta * theta / 2.0) / var
            })
            .collect(),
        None => vec![0.0; MEAN_GRID.len()],
    };
    let (failed, evidence) = detect(ctx, next, &llrs, "mean cost this interval, Gaussian increments".into());
    let (ratio_adv, delta_adv) = match absolute {
        Some(m) => (0.0, m),
        None => (1.0 + 2.0 * (ratio - 1.0), 2.0 * delta),
    };
    let proof_increment = increment(ratio_adv, delta_adv).map(|(d, var, _)| match absolute {
        Some(m) => (d - m, var),
        None => (d, var),
    });
    let nc = data.canary.cost_count;
    let tau = proof_increment.map_or(1.0, |(_, v)| v.sqrt().max(1e-9));
    let (value, mean) = gaussian_proof(next, proof_increment, nc, tau);
    let what = match absolute {
        Some(m) => format!("a mean cost of {:.4} or more", 2.0 * m),
        None => format!("canary ≥ {ratio_adv}× stable + {delta_adv:.4}"),
    };
    let threshold = 1.0 / ADVANCE_ALPHA;
    let proven = value >= threshold;
    let missing = if proven { String::new() } else { missing_for_gaussian(next, mean, "cost reports", &what) };
    Outcome {
        failed,
        evidence: Some(evidence),
        proof: Some(Evidence { test: "msprt".into(), value, threshold, detail: format!("rules out {what}") }),
        proven,
        missing,
        bounds: None,
    }
}
