//! Sequential evidence, v2: per-interval likelihood ratios, the weighted
//! Shiryaev–Roberts e-detector that turns them into a change detector, Bernoulli mixture e-values
//! against a fixed limit, and the one-sided normal-mixture mSPRT.
//!
//! Everything here is a pure function of counts. The validity arguments are in
//! `docs/analysis-method.md`; the golden vectors in `shared/reference/golden-vectors.md`
//! ("Sequential evidence, v2") are asserted in the tests below.

use super::normal;

/// π(ρ) = ρw / (ρw + 1 − w): the chance that an event of the interval came from the canary when
/// the canary's rate is ρ × stable's and a share w of the interval's requests went to the canary.
pub fn canary_share(rho: f64, w: f64) -> f64 {
    let a = rho * w;
    a / (a + 1.0 - w)
}

/// Lindon & Malek (2022): the log likelihood ratio of one interval's events, conditional on their
/// total, of "canary rate = ρ × stable rate" against the null boundary "= r × stable rate":
/// ℓ(ρ; r) = x_c·ln(π(ρ)/π(r)) + x_s·ln((1 − π(ρ))/(1 − π(r))), w = n_c/(n_c + n_s).
///
/// Nothing else about the interval enters: a rate both versions share (an incident) cancels. An
/// interval without traffic on one side carries no information and gives 0.
pub fn conditional_llr(xc: u64, nc: u64, xs: u64, ns: u64, rho: f64, r: f64) -> f64 {
    if nc == 0 || ns == 0 || xc.saturating_add(xs) == 0 {
        return 0.0;
    }
    let (xc, xs) = (xc.min(nc) as f64, xs.min(ns) as f64);
    let w = nc as f64 / (nc as f64 + ns as f64);
    let (p, p0) = (canary_share(rho, w), canary_share(r, w));
    let value = xc * (p / p0).ln() + xs * ((1.0 - p) / (1.0 - p0)).ln();
    if value.is_finite() {
        value
    } else {
        0.0
    }
}

/// ln[(θ/θ₀)^b · ((1 − θ)/(1 − θ₀))^(n − b)]: b events in n Bernoulli trials, rate θ against θ₀.
/// Both rates must be inside (0, 1); otherwise 0 (no evidence).
pub fn bernoulli_llr(b: u64, n: u64, theta: f64, theta0: f64) -> f64 {
    let inside = |t: f64| t > 0.0 && t < 1.0;
    if n == 0 || !inside(theta) || !inside(theta0) {
        return 0.0;
    }
    let b = b.min(n);
    let value =
        b as f64 * (theta / theta0).ln() + (n - b) as f64 * ((1.0 - theta) / (1.0 - theta0)).ln();
    if value.is_finite() {
        value
    } else {
        0.0
    }
}

/// The Bernoulli mixture e-value against θ₀: E = mean_j exp(bernoulli_llr(b, n, θ_j, θ₀)). With all
/// θ_j above θ₀ it is evidence of a rate above θ₀ (and below θ₀ with all θ_j below). A test
/// martingale in the trials, so P(E ever ≥ 1/α) ≤ α when the rate is θ₀ (Ville).
pub fn bernoulli_mixture(b: u64, n: u64, theta0: f64, grid: &[f64]) -> f64 {
    let mut logs = [0.0; 8];
    let len = grid.len().min(logs.len());
    for (slot, &t) in logs.iter_mut().zip(grid) {
        *slot = bernoulli_llr(b, n, t, theta0);
    }
    mean_exp(logs.get(..len).unwrap_or(&[]))
}

/// mean_j exp(l_j) without overflow (0 for no terms); saturates at f64::MAX.
pub fn mean_exp(logs: &[f64]) -> f64 {
    if logs.is_empty() {
        return 0.0;
    }
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if top == f64::NEG_INFINITY {
        return 0.0;
    }
    let sum: f64 = logs.iter().map(|l| (l - top).exp()).sum();
    let value = top + (sum / logs.len() as f64).ln();
    value.exp().min(f64::MAX)
}

/// γ_k of the weighted Shiryaev–Roberts detector: ½ for the first look, 1/(2N) for looks 2…N, and
/// 0 after N (N = the most looks a rollout can take), so Σγ ≤ 1 and the detector is a sum of test
/// martingales of total initial weight ≤ 1: P(statistic ever ≥ 1/α) ≤ α under the null.
pub fn sr_gamma(k: u64, most_looks: u64) -> f64 {
    match k {
        0 => 0.0,
        1 => 0.5,
        k if k <= most_looks.max(1) => 0.5 / most_looks.max(1) as f64,
        _ => 0.0,
    }
}

/// Largest value a detector component is kept at (JSON has no infinity).
pub const DETECTOR_CAP: f64 = 1e300;

/// One look of the weighted Shiryaev–Roberts e-detector (Shin, Ramdas & Rinaldo 2022):
/// M_j ← (M_j + γ)·exp(ℓ_j) for every grid point j. Returns the statistic mean_j M_j.
pub fn sr_update(m: &mut [f64], gamma: f64, llrs: &[f64]) -> f64 {
    for (mj, l) in m.iter_mut().zip(llrs) {
        let next = (*mj + gamma) * l.exp();
        *mj = if next.is_finite() {
            next.clamp(0.0, DETECTOR_CAP)
        } else if next.is_nan() {
            *mj
        } else {
            DETECTOR_CAP
        };
    }
    sr_statistic(m)
}

/// mean_j M_j.
pub fn sr_statistic(m: &[f64]) -> f64 {
    if m.is_empty() {
        0.0
    } else {
        m.iter().sum::<f64>() / m.len() as f64
    }
}

/// One-sided normal-mixture mSPRT with a half-normal mixing density of scale τ on the effect beyond
/// δ₀: Λ⁺ = 2·√(σ²/(σ²+τ²))·exp(τ²(d−δ₀)²/(2σ²(σ²+τ²)))·Φ(τ(d−δ₀)/(σ·√(σ²+τ²))), as ln Λ⁺.
pub fn ln_one_sided_msprt(d: f64, delta0: f64, variance: f64, tau2: f64) -> f64 {
    if !(variance > 0.0 && tau2 > 0.0 && d.is_finite() && delta0.is_finite()) {
        return 0.0;
    }
    let e = d - delta0;
    let total = variance + tau2;
    let z = tau2.sqrt() * e / (variance.sqrt() * total.sqrt());
    let ln_phi = ln_normal_cdf(z);
    std::f64::consts::LN_2 + 0.5 * (variance / total).ln() + tau2 * e * e / (2.0 * variance * total)
        + ln_phi
}

/// ln Φ(z), accurate far into the lower tail (where Φ underflows): for z < −30 the asymptotic
/// series ln(φ(z)/|z|) + ln(1 − 1/z² + 3/z⁴ − 15/z⁶).
pub fn ln_normal_cdf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z > -30.0 {
        return normal::cdf(z).ln();
    }
    let z2 = z * z;
    let series = 1.0 - 1.0 / z2 + 3.0 / (z2 * z2) - 15.0 / (z2 * z2 * z2);
    -0.5 * z2 - (-z).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::assert_close;

    #[test]
    fn conditional_llr_golden() {
        assert_close(conditional_llr(3, 50, 10, 950, 2.0, 1.25), 0.9372315135158336, 1e-12);
        assert_close(conditional_llr(0, 50, 10, 950, 2.0, 1.25), -0.36367644170874835, 1e-12);
        assert_close(conditional_llr(12, 500, 10, 500, 3.0, 1.0), -2.0658905083014805, 1e-12);
        assert_eq!(conditional_llr(3, 50, 0, 0, 2.0, 1.25), 0.0, "no stable: no evidence");
        assert_eq!(conditional_llr(0, 50, 0, 950, 2.0, 1.25), 0.0, "no events: no evidence");
    }

    #[test]
    fn shiryaev_roberts_golden() {
        let grid = [2.0, 5.0, 10.0];
        let intervals = [(0, 10, 2, 190), (1, 10, 1, 190), (4, 10, 2, 190), (5, 10, 1, 190), (6, 10, 2, 190)];
        let want = [
            0.35489169680394456,
            0.8858174222270173,
            183.0603304544651,
            583673.7666445234,
            8489254619.174867,
        ];
        let mut m = [0.0; 3];
        for (k, (&(xc, nc, xs, ns), want)) in intervals.iter().zip(want).enumerate() {
            let llrs: Vec<f64> =
                grid.iter().map(|&rho| conditional_llr(xc, nc, xs, ns, rho, 1.25)).collect();
            let got = sr_update(&mut m, sr_gamma(k as u64 + 1, 3600), &llrs);
            assert_close(got, want, 1e-12);
        }
    }

    #[test]
    fn one_sided_msprt_golden() {
        assert_close(ln_one_sided_msprt(0.01, 0.0, 2e-5, 1e-4).exp(), 6.422271944955794, 1e-12);
        assert_close(ln_one_sided_msprt(-0.01, 0.0, 2e-5, 1e-4).exp(), 0.13517131009698458, 1e-12);
        assert_close(ln_one_sided_msprt(0.02, 0.005, 4e-5, 1e-4).exp(), 7.79066794213432, 1e-12);
    }

    #[test]
    fn ln_normal_cdf_is_continuous_into_the_far_tail() {
        let below = ln_normal_cdf(-30.0 - 1e-9);
        let above = ln_normal_cdf(-30.0 + 1e-9);
        assert_close(below, above, 1e-9);
        assert!(ln_normal_cdf(-1e6).is_finite());
        // A canary far worse than the regression the proof rules out: no evidence, and finite.
        let l = ln_one_sided_msprt(-0.5, 0.0, 1e-8, 1e-4);
        assert!(l.is_finite() && l < 0.0, "{l}");
    }

    #[test]
    fn bernoulli_mixture_golden() {
        let grid = [0.02, 0.05, 0.1];
        assert_close(bernoulli_mixture(3, 100, 0.01, &grid), 1.7909710573247148, 1e-12);
        assert_close(bernoulli_mixture(0, 100, 0.01, &grid), 0.12618798112390525, 1e-12);
        let grid = [0.002, 0.005, 0.01];
        assert_close(bernoulli_mixture(5, 2000, 0.001, &grid), 1.794988619356781, 1e-12);
    }

    #[test]
    fn gamma_sums_to_at_most_one() {
        let n = 3600;
        let total: f64 = (1..=n + 50).map(|k| sr_gamma(k, n)).sum();
        assert!(total <= 1.0 + 1e-12, "{total}");
        assert_eq!(sr_gamma(n + 1, n), 0.0);
    }

    #[test]
    fn detector_never_overflows() {
        let mut m = [DETECTOR_CAP, 1.0];
        let s = sr_update(&mut m, 0.5, &[800.0, f64::NAN]);
        assert!(s.is_finite());
        assert_eq!(m, [DETECTOR_CAP, 1.0]);
    }
}
