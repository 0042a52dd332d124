//! Gates over shadow copies. Each copy is paired with stable's answer to the same request, so the
//! relative rate and cost gates test the per-pair difference d = shadow − r·stable (− δ): Gaussian
//! per-interval increments of its mean with the variance of d across pairs, fed to the same
//! Shiryaev–Roberts detector and mSPRT advance proof as the live difference gates. The detector
//! takes each interval's own variance, with its pseudo-pair (on a score of copies that variance
//! rises with the discordant pairs, which keeps a lone one from counting as strong evidence); the
//! proof takes the phase's so far, as the live proofs take the step's. A shared cause (a
//! hard request that fails on both) cancels inside a pair, which is where the pairing's power comes
//! from. Latency quantiles and absolute limits use the unpaired machinery on one side's answers
//! (a quantile bound holds marginally whatever the pairing; an absolute limit looks at the shadow
//! alone). See `docs/analysis-method.md`.

use super::evaluate::{
    evaluate_with, gaussian_proof, proof_outcome, reachable, regression_words, step_rate_bounds, Context, Data, GateEvidence, GateResult,
    Outcome, DIFF_GRID, MEAN_GRID, MIN_FLOOR,
};
use super::gate::{Gate, Threshold};
use super::metric::Metric;
use super::version_stats::VersionStats;
use crate::shadow::{Paired, ShadowStats};

/// Evaluates a shadow gate on this look's shadow counts.
pub(crate) fn evaluate(ctx: &Context, gate: &Gate, prior: &GateEvidence, data: &Data) -> (GateResult, GateEvidence) {
    let metric = gate.metric();
    let view = |s: &ShadowStats, canary: bool| -> VersionStats {
        if metric == Metric::ShadowMismatchRate {
            // Only the shadow side has a mismatch rate: pairs, and those differing in any dimension.
            return VersionStats { requests: s.pairs, errors: if canary { s.mismatch.any } else { 0 }, ..VersionStats::default() };
        }
        if canary {
            s.canary_view()
        } else {
            s.stable_view()
        }
    };
    let (stable, canary) = (view(data.shadow, false), view(data.shadow, true));
    let (stable_step, canary_step) = (view(data.shadow_step, false), view(data.shadow_step, true));
    let views = Data { stable: &stable, canary: &canary, stable_step: &stable_step, canary_step: &canary_step, shadow: data.shadow, shadow_step: data.shadow_step };
    // Copies always have a concurrent stable answer, whatever the weight.
    let ctx = Context { split: true, ..*ctx };
    let paired = gate.threshold().is_relative() && matches!(metric, Metric::ShadowErrorRate | Metric::ShadowTaskSuccessRate | Metric::ShadowCostPerTask);
    if paired {
        let threshold = gate.threshold();
        let run = |ctx: &Context, next: &mut GateEvidence, views: &Data| match metric {
            Metric::ShadowCostPerTask => paired_cost(ctx, threshold, next, views),
            _ => paired_rate(ctx, metric, threshold, next, views),
        };
        evaluate_with(&ctx, gate, prior, &views, Some(&run))
    } else {
        evaluate_with(&ctx, gate, prior, &views, None)
    }
}

/// The 2×2 table the gate's rate comes from (task success is judged by its failures).
fn table(metric: Metric, s: &ShadowStats) -> Paired {
    match metric {
        Metric::ShadowTaskSuccessRate => s.task_failures,
        _ => s.errors,
    }
}

/// Mean and per-pair variance of d = x_shadow − ratio·x_stable; the variance counts one extra
/// discordant pseudo-pair so that a run of identical answers does not claim certainty.
fn moments(t: &Paired, ratio: f64) -> Option<(f64, f64, u64)> {
    if t.n == 0 {
        return None;
    }
    let n = t.n as f64;
    let (a, b, c) = (t.both as f64, t.stable_only as f64, t.shadow_only as f64);
    let mean = (a * (1.0 - ratio) + c - ratio * b) / n;
    let second = (a * (1.0 - ratio).powi(2) + c + ratio * ratio * b + 1.0) / (n + 2.0);
    Some((mean, (second - mean * mean).max(1e-9), t.n))
}

/// Shiryaev–Roberts over Gaussian increments `(d̄ − tol, var/n)` against alternatives c·sd.
fn paired_llrs(m: Option<(f64, f64, u64)>, tol: f64, grid: &[f64]) -> Vec<f64> {
    match m {
        Some((mean, var, n)) => grid
            .iter()
            .map(|c| {
                let theta = c * var.sqrt();
                ((mean - tol) * theta - theta * theta / 2.0) / (var / n as f64)
            })
            .collect(),
        None => vec![0.0; grid.len()],
    }
}

fn paired_rate(ctx: &Context, metric: Metric, threshold: Threshold, next: &mut GateEvidence, data: &Data) -> Outcome {
    let base = metric.live_base().unwrap_or(Metric::ErrorRate);
    let (ratio, tol) = match threshold {
        Threshold::MaxRatio(r) => (r, 0.0),
        Threshold::MaxIncrease(d) | Threshold::MaxDecrease(d) => (1.0, d),
        Threshold::Max(_) | Threshold::Min(_) => (1.0, 0.0),
    };
    let (interval, step) = (table(metric, data.shadow), table(metric, data.shadow_step));
    let m = moments(&interval, ratio);
    let detail = format!(
        "paired over {} copies this interval: shadow {} vs stable {} bad answers on the same requests; Gaussian increments of shadow − {ratio}× stable − {:.2} pp",
        interval.n,
        interval.shadow_events(),
        interval.stable_events(),
        tol * 100.0
    );
    let (failed, evidence) = super::evaluate::detect(ctx, next, &paired_llrs(m, tol, &DIFF_GRID), detail);
    // The proof rules out shadow ≥ stable + target: twice the tolerance (for a ratio, twice its
    // excess over stable's rate so far), at least what the phase's copies can reach.
    let stable_rate = if step.n > 0 { step.stable_events() as f64 / step.n as f64 } else { 0.0 };
    let v_step = moments(&step, 1.0).map_or(0.25, |(_, v, _)| v);
    let floor = reachable(ctx, v_step, step.n).max(MIN_FLOOR);
    let target = match threshold {
        Threshold::MaxRatio(r) => (2.0 * (r - 1.0) * stable_rate).max(floor),
        _ => (2.0 * tol).max(floor),
    };
    // Each interval's increment gets the per-pair variance of the phase so far, as the live proofs
    // take the step's pooled variance: one interval's 20-odd copies give a variance dominated by
    // the pseudo-pair (≈ 1/(n + 2)), which would understate the proof's precision most when the
    // pairing helps most (few discordant pairs).
    let increment = moments(&interval, 1.0).map(|(mean, _, n)| (mean - target, v_step / n as f64));
    let (value, mean) = gaussian_proof(next, increment, interval.n, target);
    let what = regression_words(base, target);
    proof_outcome(failed, evidence, value, mean, next, metric, &what, step_rate_bounds(base, ctx, data, true))
}

fn paired_cost(ctx: &Context, threshold: Threshold, next: &mut GateEvidence, data: &Data) -> Outcome {
    let (ratio, tol) = match threshold {
        Threshold::MaxRatio(r) => (r, 0.0),
        Threshold::MaxIncrease(d) => (1.0, d),
        _ => (1.0, 0.0),
    };
    let interval = &data.shadow.cost;
    let floor_sd = |mean: f64| (super::evaluate::MEAN_SD_FLOOR * mean.abs()).powi(2).max(1e-18);
    let stable_mean = |s: &crate::shadow::PairedSums| if s.n > 0 { s.stable_sum / s.n as f64 } else { 0.0 };
    let m = interval.difference(ratio, tol).map(|(d, v)| (d + tol, v.max(floor_sd(stable_mean(interval))), interval.n));
    let detail = format!("paired over {} costed copies this interval: mean of shadow − {ratio}× stable − {tol:.4}", interval.n);
    let (failed, evidence) = super::evaluate::detect(ctx, next, &paired_llrs(m, tol, &MEAN_GRID), detail);
    let (ratio_adv, delta_adv) = (1.0 + 2.0 * (ratio - 1.0), 2.0 * tol);
    let increment = interval
        .difference(ratio_adv, delta_adv)
        .map(|(d, v)| (d, v.max(floor_sd(stable_mean(interval))) / interval.n.max(1) as f64));
    let tau = increment.map_or(1.0, |(_, v)| v.sqrt().max(1e-9));
    let (value, mean) = gaussian_proof(next, increment, interval.n, tau);
    let what = format!("shadow ≥ {ratio_adv}× stable + {delta_adv:.4} on the same requests");
    let mut outcome = proof_outcome(failed, evidence, value, mean, next, Metric::ShadowCostPerTask, &what, Default::default());
    outcome.bounds = None;
    outcome
}
