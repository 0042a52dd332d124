//! The bake of a blue-green rollout: green has all the traffic, so a relative gate cannot compare it
//! with a concurrent blue. It is judged instead as an absolute limit derived from blue's counts over
//! the preview, frozen at the switch ([`super::EvidenceState::baseline`]).
//!
//! Validity: the limit applies the gate's tolerance to blue's confidence bound at level α_b (the
//! upper bound for lower-is-better metrics, the lower bound for task success). If green is no worse
//! than the tolerance allows against blue's true value, then with probability ≥ 1 − α_b green is also
//! within the derived limit, and the absolute test (level α_t) fails it with probability ≤ α_t; the
//! bake's false-rollback chance for the gate is at most α_t + α_b. The preview and the bake each get
//! half of α_gate for a relative gate (α_t = α_b = α_gate / 4 in the bake), so the rollout keeps
//! [`super::OVERALL_ALPHA`] overall. What this cannot remove is that blue was measured earlier:
//! traffic that changes between the preview and the bake is not cancelled, which is why the result
//! is labelled `concurrent: false`.

use super::evaluate::{bad_events, mean_and_variance, rate_bounds, unit_name, upper_quantile_bound, Comparison};
use super::gate::{Gate, Threshold};
use super::metric::MetricKind;
use super::version_stats::VersionStats;
use crate::stats::normal;

pub(crate) const AGAINST: &str = "blue_pre_switch";

/// The absolute gate a relative `gate` becomes against blue's pre-switch counts `base`, with the
/// comparison to show; `Err` says why there is nothing to compare with.
pub(crate) fn against_baseline(gate: &Gate, base: &VersionStats, min_n: u64, alpha_b: f64) -> Result<(Gate, Comparison), String> {
    let metric = gate.metric();
    let n = base.sample_size(metric);
    if n < min_n.max(1) {
        return Err(format!(
            "blue's window before the switch has {n} of {} {} needed: not compared",
            min_n.max(1),
            unit_name(metric)
        ));
    }
    let baseline = base.metric(metric).unwrap_or(0.0);
    let (tolerated, threshold) = match (metric.kind(), gate.threshold()) {
        (MetricKind::Rate, t) => {
            let (x, trials) = bad_events(metric, base);
            let (_, high_bad) = rate_bounds(x, trials, alpha_b);
            match t {
                Threshold::MaxRatio(r) => {
                    let l = (r * high_bad).min(1.0);
                    (l, Threshold::Max(l))
                }
                Threshold::MaxIncrease(d) => {
                    let l = (high_bad + d).min(1.0);
                    (l, Threshold::Max(l))
                }
                // Task success, judged by its failures: blue's success is at least 1 − high_bad.
                Threshold::MaxDecrease(d) => {
                    let l = (1.0 - high_bad - d).max(0.0);
                    (l, Threshold::Min(l))
                }
                Threshold::Max(_) | Threshold::Min(_) => return Err("not a relative gate".into()),
            }
        }
        (MetricKind::Latency { quantile }, t) => {
            let high_ms = upper_quantile_bound(base.latency(metric), quantile, alpha_b)
                .map(|us| us / 1000.0)
                .ok_or_else(|| "blue's window before the switch cannot bound this quantile".to_string())?;
            let l = match t {
                Threshold::MaxRatio(r) => r * high_ms,
                Threshold::MaxIncrease(d) => high_ms + d,
                _ => return Err("not a relative gate".into()),
            };
            (l, Threshold::Max(l))
        }
        (MetricKind::Mean, t) => {
            let (mean, variance, count) =
                mean_and_variance(base, &[base], 0.0).ok_or_else(|| "blue has no cost before the switch".to_string())?;
            let z = normal::quantile(1.0 - alpha_b).unwrap_or(4.0);
            let high = mean + z * (variance / count).sqrt();
            let l = match t {
                Threshold::MaxRatio(r) => r * high,
                Threshold::MaxIncrease(d) => high + d,
                _ => return Err("not a relative gate".into()),
            };
            (l, Threshold::Max(l))
        }
    };
    let absolute = Gate::try_new(metric, threshold, gate.critical()).map_err(|e| format!("no usable limit from blue's window: {e}"))?;
    Ok((absolute, Comparison { against: AGAINST.into(), concurrent: false, baseline, baseline_n: n, limit: tolerated }))
}

/// "canary ≤ 1.25× stable, against blue before the switch (not concurrent): canary ≤ 2.50%".
pub(crate) fn describe(gate: &Gate, absolute: &Gate) -> String {
    format!("{}, against blue before the switch (not concurrent): {}", gate.describe(), absolute.describe())
}
