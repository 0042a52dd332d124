//! Evaluating one gate: is there always-valid evidence that the canary breaks it?
//!
//! Every gate is reduced to a one-sided mSPRT on a "bad" quantity, so it can be looked at every
//! interval without inflating false rollbacks:
//! - rates: the bad-event rate (errors, violating requests, task *failures*), canary − r·stable
//!   against the gate's tolerance, or canary alone against an absolute limit;
//! - latency: the share of requests above a limit (r·stable quantile, stable quantile + Δ, or the
//!   absolute `max`), canary vs stable (or vs the 1 − q the quantile allows), AND the canary's
//!   quantile itself must be past the limit (effect size);
//! - cost: the mean per task (from count, sum and sum of squares), canary − r·stable.
//!
//! A gate fails only when the estimate is on the bad side AND Λ ≥ 1/α_gate.

use super::gate::{Gate, Threshold};
use super::metric::{Metric, MetricKind};
use super::spec::AnalysisSpec;
use super::version_stats::VersionStats;
use crate::stats::msprt::{
    mean_difference, mean_vs_fixed, proportion_difference, proportion_vs_fixed, Difference,
    MeanSummary, NormalMixture,
};
use crate::stats::Proportion;
use serde::{Deserialize, Serialize};

/// Overall false-rollback rate for a whole rollout, split evenly (Bonferroni) over the gates.
pub const OVERALL_ALPHA: f64 = 0.01;
/// Mixture spread τ in units of one observation's standard deviation under the reference
/// (stable, or the limit): τ² = 0.1² · v_ref. For a 1% error rate this is τ² ≈ 1e-4, i.e.
/// the test is tuned to effects of about one percentage point.
pub const TAU_IN_SDS: f64 = 0.1;
/// The mixing scales actually used: Λ is the average of the mixtures at these multiples of one
/// observation's standard deviation. An average of test martingales is a test martingale, so the test
/// stays always-valid; the small scale keeps power for small regressions (1 % → 2 %), the large ones
/// let a gross regression (10 % errors) trip within a couple of seconds instead of ten.
pub const TAU_GRID_IN_SDS: [f64; 3] = [TAU_IN_SDS, 0.3, 1.0];
/// Pseudo-successes and pseudo-failures added per arm when estimating a rate's variance.
pub const PSEUDO_COUNT: f64 = 1.0;
/// Observations a mean (cost) needs before its plug-in variance is trusted.
pub const MIN_MEAN_SAMPLES: u64 = 30;
/// Per-observation standard deviation floor for means, relative to the mean's magnitude.
pub const MEAN_SD_FLOOR: f64 = 0.01;
const ABSOLUTE_VARIANCE_FLOOR: f64 = 1e-18;

/// A gate's outcome for this interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStatus {
    Pass,
    Fail,
    InsufficientData,
}

/// The statistic behind a gate's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// e.g. "mSPRT" (Λ vs 1/α) or "count" (events vs a zero limit).
    pub test: String,
    pub value: f64,
    /// The value at or above which the test counts as evidence.
    pub threshold: f64,
    /// What was tested, for people.
    pub detail: String,
}

/// One gate's result in a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub metric: Metric,
    /// e.g. "canary ≤ 1.25× stable".
    pub threshold: String,
    pub critical: bool,
    pub status: GateStatus,
    pub canary: Option<f64>,
    pub stable: Option<f64>,
    /// Observations behind each value (the metric's denominator).
    pub canary_n: u64,
    pub stable_n: u64,
    pub evidence: Option<Evidence>,
    /// Why the status is what it is, when that is not obvious (e.g. which data is missing).
    pub note: String,
}

/// What a statistical test concluded.
struct TestOutcome {
    evidence: Option<Evidence>,
    regressed: bool,
}

/// Evaluates `gate` on cumulative stats of both versions.
pub fn evaluate_gate(
    gate: &Gate,
    spec: &AnalysisSpec,
    stable: &VersionStats,
    canary: &VersionStats,
) -> GateResult {
    let metric = gate.metric();
    let mut result = GateResult {
        metric,
        threshold: gate.describe(),
        critical: gate.critical(),
        status: GateStatus::InsufficientData,
        canary: canary.metric(metric),
        stable: stable.metric(metric),
        canary_n: canary.sample_size(metric),
        stable_n: stable.sample_size(metric),
        evidence: None,
        note: String::new(),
    };
    let enough = enough_data(gate, spec.min_requests(), &result);
    // A critical absolute gate is watched from the first request: its tests stay valid on
    // little data, and a zero limit needs only one event.
    let early = gate.critical() && !gate.threshold().is_relative();
    if let (Err(note), false) = (&enough, early) {
        result.note.clone_from(note);
        return result;
    }
    let alpha = OVERALL_ALPHA / spec.gates().len().max(1) as f64;
    match run_test(gate, stable, canary, alpha) {
        Err(note) => result.note = note,
        Ok(outcome) => {
            result.status = match (outcome.regressed, &enough) {
                (true, _) => GateStatus::Fail,
                (false, Ok(())) => GateStatus::Pass,
                (false, Err(note)) => {
                    result.note.clone_from(note);
                    GateStatus::InsufficientData
                }
            };
            result.evidence = outcome.evidence;
        }
    }
    result
}

fn enough_data(gate: &Gate, min: u64, r: &GateResult) -> Result<(), String> {
    let unit = unit_name(gate.metric());
    if r.canary_n < min {
        return Err(format!("canary has {} of {min} {unit} needed", r.canary_n));
    }
    if gate.threshold().is_relative() && r.stable_n < min {
        return Err(format!("stable has {} of {min} {unit} needed", r.stable_n));
    }
    Ok(())
}

fn unit_name(metric: Metric) -> &'static str {
    match metric {
        Metric::ErrorRate | Metric::PolicyViolationRate => "requests",
        Metric::LatencyP50Ms | Metric::LatencyP99Ms => "latency samples",
        Metric::TaskSuccessRate => "task outcomes",
        Metric::CostPerTask => "cost reports",
    }
}

fn run_test(
    gate: &Gate,
    stable: &VersionStats,
    canary: &VersionStats,
    alpha: f64,
) -> Result<TestOutcome, String> {
    let (metric, threshold) = (gate.metric(), gate.threshold());
    match (metric.kind(), threshold) {
        (MetricKind::Rate, Threshold::Max(limit)) => rate_vs_limit(metric, canary, limit, alpha),
        (MetricKind::Rate, Threshold::Min(limit)) => {
            rate_vs_limit(metric, canary, 1.0 - limit, alpha)
        }
        (MetricKind::Rate, t) => rate_vs_stable(metric, t, stable, canary, alpha),
        (MetricKind::Latency { quantile }, Threshold::Max(limit)) => {
            latency_vs_limit(quantile, canary, limit, alpha)
        }
        (MetricKind::Latency { quantile }, t) => {
            latency_vs_stable(quantile, t, stable, canary, alpha)
        }
        (MetricKind::Mean, Threshold::Max(limit)) => mean_vs_limit(canary, limit, alpha),
        (MetricKind::Mean, t) => mean_vs_stable(t, stable, canary, alpha),
    }
}

/// The events that count against a rate metric: task success is judged by its failures.
fn bad_events(metric: Metric, s: &VersionStats) -> Proportion {
    match metric {
        Metric::TaskSuccessRate => Proportion::new(s.outcome_failure, s.outcomes()),
        Metric::PolicyViolationRate => {
            Proportion::new(s.policy_violating_requests.min(s.requests), s.requests)
        }
        _ => Proportion::new(s.errors.min(s.requests), s.requests),
    }
}

/// (ratio r, tolerance δ₀) of a relative threshold, in "bad" units: canary − r·stable ≤ δ₀.
fn relative_terms(threshold: Threshold) -> (f64, f64) {
    match threshold {
        Threshold::MaxRatio(r) => (r, 0.0),
        Threshold::MaxIncrease(d) | Threshold::MaxDecrease(d) => (1.0, d),
        Threshold::Max(_) | Threshold::Min(_) => (1.0, 0.0),
    }
}

fn rate_vs_stable(
    metric: Metric,
    threshold: Threshold,
    stable: &VersionStats,
    canary: &VersionStats,
    alpha: f64,
) -> Result<TestOutcome, String> {
    let (c, s) = (bad_events(metric, canary), bad_events(metric, stable));
    let (ratio, delta0) = relative_terms(threshold);
    let diff = proportion_difference(c, s, ratio, PSEUDO_COUNT).map_err(|e| e.to_string())?;
    let reference = smoothed_rate(s);
    let detail = format!(
        "{} rate: canary {} vs stable {}",
        bad_name(metric),
        pct(c),
        pct(s)
    );
    msprt(diff, delta0, reference * (1.0 - reference), alpha, detail)
}

fn rate_vs_limit(
    metric: Metric,
    canary: &VersionStats,
    limit: f64,
    alpha: f64,
) -> Result<TestOutcome, String> {
    let c = bad_events(metric, canary);
    if c.trials == 0 {
        return Err(format!("canary has no {}", unit_name(metric)));
    }
    let detail = format!(
        "{} rate: canary {} vs limit {:.2}%",
        bad_name(metric),
        pct(c),
        limit * 100.0
    );
    if limit <= 0.0 {
        // A zero limit: a single event is proof, no statistics needed.
        let evidence = Evidence {
            test: "count".into(),
            value: c.successes as f64,
            threshold: 1.0,
            detail,
        };
        return Ok(TestOutcome {
            regressed: c.successes > 0,
            evidence: Some(evidence),
        });
    }
    if limit >= 1.0 {
        return Ok(TestOutcome {
            regressed: false,
            evidence: None,
        });
    }
    let diff = proportion_vs_fixed(c, limit).map_err(|e| e.to_string())?;
    msprt(diff, 0.0, limit * (1.0 - limit), alpha, detail)
}

fn latency_vs_stable(
    q: f64,
    threshold: Threshold,
    stable: &VersionStats,
    canary: &VersionStats,
    alpha: f64,
) -> Result<TestOutcome, String> {
    let (Some(stable_q), Some(canary_q)) =
        (stable.latency_quantile_ms(q), canary.latency_quantile_ms(q))
    else {
        return Err("no latency samples".into());
    };
    let limit_ms = match threshold {
        Threshold::MaxIncrease(d) => stable_q + d,
        Threshold::MaxRatio(r) => stable_q * r,
        Threshold::Max(_) | Threshold::Min(_) | Threshold::MaxDecrease(_) => stable_q,
    };
    let (c, s) = (share_above(canary, limit_ms), share_above(stable, limit_ms));
    let diff = proportion_difference(c, s, 1.0, PSEUDO_COUNT).map_err(|e| e.to_string())?;
    let detail = format!(
        "share above {limit_ms:.1} ms: canary {} vs stable {}; canary p{} {canary_q:.1} ms",
        pct(c),
        pct(s),
        q * 100.0
    );
    let outcome = msprt(diff, 0.0, q * (1.0 - q), alpha, detail)?;
    Ok(TestOutcome {
        regressed: outcome.regressed && canary_q > limit_ms,
        ..outcome
    })
}

fn latency_vs_limit(
    q: f64,
    canary: &VersionStats,
    limit_ms: f64,
    alpha: f64,
) -> Result<TestOutcome, String> {
    let Some(canary_q) = canary.latency_quantile_ms(q) else {
        return Err("no latency samples".into());
    };
    let c = share_above(canary, limit_ms);
    let allowed = 1.0 - q;
    let diff = proportion_vs_fixed(c, allowed).map_err(|e| e.to_string())?;
    let detail = format!(
        "share above {limit_ms:.1} ms: canary {} vs {:.1}% allowed; canary p{} {canary_q:.1} ms",
        pct(c),
        allowed * 100.0,
        q * 100.0
    );
    let outcome = msprt(diff, 0.0, q * (1.0 - q), alpha, detail)?;
    Ok(TestOutcome {
        regressed: outcome.regressed && canary_q > limit_ms,
        ..outcome
    })
}

fn mean_vs_stable(
    threshold: Threshold,
    stable: &VersionStats,
    canary: &VersionStats,
    alpha: f64,
) -> Result<TestOutcome, String> {
    let (c, s) = (canary.cost_summary(), stable.cost_summary());
    let (mc, ms) = (mean_of(&c, "canary")?, mean_of(&s, "stable")?);
    let floor = variance_floor(mc.abs().max(ms.abs()));
    let (ratio, delta0) = relative_terms(threshold);
    let diff = mean_difference(&c, &s, ratio, floor).map_err(|e| e.to_string())?;
    let reference = s.variance().unwrap_or(0.0).max(floor);
    msprt(
        diff,
        delta0,
        reference,
        alpha,
        format!("mean cost: canary {mc:.4} vs stable {ms:.4}"),
    )
}

fn mean_vs_limit(canary: &VersionStats, limit: f64, alpha: f64) -> Result<TestOutcome, String> {
    let c = canary.cost_summary();
    let mc = mean_of(&c, "canary")?;
    let floor = variance_floor(mc.abs().max(limit));
    let diff = mean_vs_fixed(&c, limit, floor).map_err(|e| e.to_string())?;
    let reference = c.variance().unwrap_or(0.0).max(floor);
    msprt(
        diff,
        0.0,
        reference,
        alpha,
        format!("mean cost: canary {mc:.4} vs limit {limit:.4}"),
    )
}

fn mean_of(summary: &MeanSummary, side: &str) -> Result<f64, String> {
    match summary.mean() {
        Some(mean) if summary.count >= MIN_MEAN_SAMPLES => Ok(mean),
        _ => Err(format!(
            "{side} has {} of {MIN_MEAN_SAMPLES} cost reports a mean test needs",
            summary.count
        )),
    }
}

fn variance_floor(scale: f64) -> f64 {
    (MEAN_SD_FLOOR * scale).powi(2).max(ABSOLUTE_VARIANCE_FLOOR)
}

/// One-sided mSPRT: regression when the estimate exceeds δ₀ and Λ ≥ 1/α.
/// `reference_variance` is one observation's variance under the reference; τ² = 0.1²·that.
fn msprt(
    diff: Difference,
    delta0: f64,
    reference_variance: f64,
    alpha: f64,
    detail: String,
) -> Result<TestOutcome, String> {
    let mut ln_lambdas = [0.0; TAU_GRID_IN_SDS.len()];
    for (slot, scale) in ln_lambdas.iter_mut().zip(TAU_GRID_IN_SDS) {
        let tau2 = (scale * scale * reference_variance).max(ABSOLUTE_VARIANCE_FLOOR);
        let mixture = NormalMixture::try_new(tau2).map_err(|e| e.to_string())?;
        *slot = mixture.ln_lambda_of(diff, delta0).map_err(|e| e.to_string())?;
    }
    // ln(mean(exp(l))) without overflow.
    let top = ln_lambdas.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = ln_lambdas.iter().map(|l| (l - top).exp()).sum();
    let ln_lambda = top + (sum / ln_lambdas.len() as f64).ln();
    let bound = (1.0 / alpha).ln();
    let regressed = diff.estimate > delta0 && ln_lambda >= bound;
    let evidence = Evidence {
        test: "mSPRT".into(),
        value: ln_lambda.exp().min(f64::MAX),
        threshold: 1.0 / alpha,
        detail,
    };
    Ok(TestOutcome {
        evidence: Some(evidence),
        regressed,
    })
}

fn share_above(stats: &VersionStats, limit_ms: f64) -> Proportion {
    // `as` saturates: a limit past the histogram's range simply counts nothing above it.
    let limit_micros = (limit_ms * 1000.0).round() as u64;
    Proportion::new(
        stats.latency_total.count_above(limit_micros),
        stats.latency_total.count(),
    )
}

/// (x + pseudo) / (n + 2·pseudo): never 0 or 1, so variances built on it are never 0.
fn smoothed_rate(p: Proportion) -> f64 {
    (p.successes as f64 + PSEUDO_COUNT) / (p.trials as f64 + 2.0 * PSEUDO_COUNT)
}

fn bad_name(metric: Metric) -> &'static str {
    match metric {
        Metric::TaskSuccessRate => "task failure",
        Metric::PolicyViolationRate => "violating-request",
        _ => "error",
    }
}

fn pct(p: Proportion) -> String {
    if p.trials == 0 {
        return "n/a".into();
    }
    format!(
        "{:.2}% ({}/{})",
        100.0 * p.successes as f64 / p.trials as f64,
        p.successes,
        p.trials
    )
}
