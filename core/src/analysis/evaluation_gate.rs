//! Gates over one named evaluation (`{"metric": "evaluation_score", "name": "helpfulness",
//! "max_decrease": 0.3}`), judged with the same evidence rules as the live gates by reading the
//! evaluation as a version view: the pass rate as task outcomes (pass = success), the mean score as a
//! mean whose sign is flipped so that "lower is worse" becomes the mean gates' "higher is worse":
//! `max_decrease δ` is then `max_increase δ` on −score, `max_ratio r` (stable / canary ≤ r) is
//! `max_ratio 1/r`, and `min m` is judged below.

use super::evaluate::{detect, evaluate_with, gaussian_proof, mean_and_variance, mean_gate, Context, Data, Evidence, GateEvidence, GateResult, Outcome, ADVANCE_ALPHA, MEAN_GRID};
use super::gate::{Gate, Threshold};
use super::metric::Metric;
use super::version_stats::VersionStats;

pub(crate) fn evaluate(ctx: &Context, gate: &Gate, prior: &GateEvidence, data: &Data) -> (GateResult, GateEvidence) {
    let name = gate.evaluation_name().unwrap_or_default();
    let score = gate.metric() == Metric::EvaluationScore;
    let view = |s: &VersionStats| {
        let e = s.evaluations.get(name).copied().unwrap_or_default();
        if score {
            VersionStats { cost_count: e.count, cost_sum: -e.sum, cost_sum_sq: e.sum_sq, ..VersionStats::default() }
        } else {
            VersionStats { outcome_success: e.pass, outcome_failure: e.labelled.saturating_sub(e.pass), ..VersionStats::default() }
        }
    };
    let (stable, canary, stable_step, canary_step) = (view(data.stable), view(data.canary), view(data.stable_step), view(data.canary_step));
    let views = Data { stable: &stable, canary: &canary, stable_step: &stable_step, canary_step: &canary_step, shadow: data.shadow, shadow_step: data.shadow_step };
    let (mut result, next) = if score {
        let threshold = gate.threshold();
        let test = |ctx: &Context, next: &mut GateEvidence, d: &Data| match threshold {
            Threshold::MaxDecrease(delta) => mean_gate(ctx, Threshold::MaxIncrease(delta), next, d),
            Threshold::MaxRatio(r) => mean_gate(ctx, Threshold::MaxRatio(1.0 / r), next, d),
            Threshold::Min(m) => score_at_least(ctx, m, next, d),
            other => mean_gate(ctx, other, next, d),
        };
        evaluate_with(ctx, gate, prior, &views, Some(&test))
    } else {
        evaluate_with(ctx, gate, prior, &views, None)
    };
    result.threshold = format!("{} ({name})", result.threshold);
    (result, next)
}

/// `min m` on the mean score: the detector watches Gaussian increments of m − score per interval;
/// the proof rules out a mean score of m/2 or less (for the positive scores evaluators give).
fn score_at_least(ctx: &Context, m: f64, next: &mut GateEvidence, data: &Data) -> Outcome {
    // The view holds −score: mean_and_variance gives (−mean, variance, n).
    let canary = mean_and_variance(data.canary, &[data.canary_step, data.stable_step], m).map(|(neg, v, n)| (-neg, v, n));
    let llrs: Vec<f64> = match canary {
        Some((mean, var, n)) => MEAN_GRID
            .iter()
            .map(|g| {
                let theta = g * var.sqrt();
                ((m - mean) * theta - theta * theta / 2.0) / (var / n)
            })
            .collect(),
        None => vec![0.0; MEAN_GRID.len()],
    };
    let (failed, evidence) = detect(ctx, next, &llrs, format!("mean score this interval against the minimum {m}"));
    let target = m / 2.0;
    let increment = canary.map(|(mean, var, n)| (target - mean, var / n));
    let tau = increment.map_or(1.0, |(_, v)| v.sqrt().max(1e-9));
    let (value, _) = gaussian_proof(next, increment, data.canary.cost_count, tau);
    let threshold = 1.0 / ADVANCE_ALPHA;
    let proven = value >= threshold;
    let what = format!("a mean score of {target} or less");
    Outcome {
        failed,
        evidence: Some(evidence),
        proof: Some(Evidence { test: "msprt".into(), value, threshold, detail: format!("rules out {what}") }),
        proven,
        missing: if proven { String::new() } else { format!("needs more scores to rule out {what}") },
        bounds: None,
    }
}
