//! Fixed-sample tests on two proportions: pooled z-test, Fisher's exact test, Wilson interval.
//!
//! These are *not* valid under repeated looks; the judgement uses them only for reporting. The
//! sequential tests live in [`super::msprt`] and [`super::sprt`].

use super::{check_count, check_open, normal, StatsError};

/// Result of the pooled two-proportion z-test of p₁ − p₂.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZTest {
    pub z: f64,
    /// H₁: p₁ ≠ p₂.
    pub p_two_sided: f64,
    /// H₁: p₁ < p₂ (statsmodels' `alternative='smaller'`).
    pub p_smaller: f64,
    /// H₁: p₁ > p₂.
    pub p_larger: f64,
}

/// Pooled z-test for x₁/n₁ vs x₂/n₂ (statsmodels `proportions_ztest`).
pub fn z_test(x1: u64, n1: u64, x2: u64, n2: u64) -> Result<ZTest, StatsError> {
    check_count(x1, n1)?;
    check_count(x2, n2)?;
    if n1 == 0 || n2 == 0 {
        return Err(StatsError::Empty("z-test arm"));
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se == 0.0 {
        return Err(StatsError::ZeroVariance("z-test with all or no successes"));
    }
    let z = (x1 as f64 / n1f - x2 as f64 / n2f) / se;
    Ok(ZTest {
        z,
        p_two_sided: 2.0 * normal::sf(z.abs()),
        p_smaller: normal::cdf(z),
        p_larger: normal::sf(z),
    })
}

/// R's tolerance for "as or less likely than observed" (guards against rounding in the pmf).
const FISHER_RELATIVE_TOLERANCE: f64 = 1e-7;

/// Largest hypergeometric support the exact test walks (one f64 per table).
const FISHER_MAX_SUPPORT: u64 = 10_000_000;

/// Two-sided Fisher exact test of the 2×2 table [[x₁, n₁−x₁], [x₂, n₂−x₂]]: the probability,
/// under the hypergeometric null, of tables no more likely than the observed one.
pub fn fisher_exact_two_sided(x1: u64, n1: u64, x2: u64, n2: u64) -> Result<f64, StatsError> {
    check_count(x1, n1)?;
    check_count(x2, n2)?;
    if n1.min(x1 + x2) > FISHER_MAX_SUPPORT {
        return Err(StatsError::ExactUnavailable(
            "Fisher support above 10^7 tables",
        ));
    }
    let weights = HypergeometricWeights::new(n1 + n2, x1 + x2, n1);
    let observed = weights.weight(x1);
    let cutoff = observed * (1.0 + FISHER_RELATIVE_TOLERANCE);
    let (mut tail, mut total) = (0.0, 0.0);
    for w in weights.all() {
        total += w;
        if w <= cutoff {
            tail += w;
        }
    }
    Ok((tail / total).min(1.0))
}

/// Hypergeometric probabilities up to a common factor (the mode has weight 1), built from the
/// ratio of consecutive terms, so no factorials and no loss of precision for large counts.
struct HypergeometricWeights {
    low: u64,
    weights: Vec<f64>,
}

impl HypergeometricWeights {
    /// Population `n`, `k` marked, `draws` drawn.
    fn new(n: u64, k: u64, draws: u64) -> Self {
        let low = draws.saturating_sub(n - k);
        let high = draws.min(k);
        let mode = (((draws + 1) as f64 * (k + 1) as f64) / (n + 2) as f64).floor() as u64;
        let mode = mode.clamp(low, high);
        let ratio = |x: u64| {
            // P(x + 1) / P(x)
            ((k - x) as f64 * (draws - x) as f64)
                / ((x + 1) as f64 * (n - k + x + 1 - draws) as f64)
        };
        let mut weights = vec![0.0; (high - low + 1) as usize];
        let mut w = 1.0;
        for x in mode..high {
            w *= ratio(x);
            if let Some(slot) = weights.get_mut((x + 1 - low) as usize) {
                *slot = w;
            }
        }
        w = 1.0;
        for x in (low..mode).rev() {
            w /= ratio(x);
            if let Some(slot) = weights.get_mut((x - low) as usize) {
                *slot = w;
            }
        }
        if let Some(slot) = weights.get_mut((mode - low) as usize) {
            *slot = 1.0;
        }
        Self { low, weights }
    }

    fn weight(&self, x: u64) -> f64 {
        x.checked_sub(self.low)
            .and_then(|i| self.weights.get(i as usize))
            .copied()
            .unwrap_or(0.0)
    }

    fn all(&self) -> impl Iterator<Item = f64> + '_ {
        self.weights.iter().copied()
    }
}

/// Wilson score interval for a proportion at the given two-sided confidence level.
pub fn wilson_interval(
    successes: u64,
    trials: u64,
    confidence: f64,
) -> Result<(f64, f64), StatsError> {
    check_count(successes, trials)?;
    if trials == 0 {
        return Err(StatsError::Empty("Wilson interval sample"));
    }
    let confidence = check_open("confidence", confidence, 0.0, 1.0, "(0, 1)")?;
    let z = normal::quantile(1.0 - (1.0 - confidence) / 2.0)?;
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2n = z * z / n;
    let centre = (p + z2n / 2.0) / (1.0 + z2n);
    let half = z / (1.0 + z2n) * (p * (1.0 - p) / n + z2n / (4.0 * n)).sqrt();
    Ok(((centre - half).max(0.0), (centre + half).min(1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::assert_close;

    #[test]
    fn z_test_golden() {
        let t = z_test(30, 1000, 45, 1000).unwrap();
        assert_close(t.z, -1.765_469_659_009_499_1, 1e-12);
        assert_close(t.p_two_sided, 0.077_484_865_132_644_7, 1e-12);
        assert_close(t.p_smaller, 0.038_742_432_566_322_35, 1e-12);
        let t = z_test(5, 500, 15, 480).unwrap();
        assert_close(t.z, -2.351_944_009_750_232, 1e-12);
        assert_close(t.p_two_sided, 0.018_675_585_824_251_304, 1e-12);
    }

    #[test]
    fn z_test_rejects_degenerate_input() {
        assert!(matches!(
            z_test(0, 10, 0, 10),
            Err(StatsError::ZeroVariance(_))
        ));
        assert!(z_test(11, 10, 0, 10).is_err());
        assert!(z_test(0, 0, 0, 10).is_err());
    }

    #[test]
    fn fisher_golden() {
        assert_close(
            fisher_exact_two_sided(30, 1000, 45, 1000).unwrap(),
            0.098_801_839_533_069_23,
            1e-12,
        );
    }

    #[test]
    fn fisher_small_tables() {
        // Lady tasting tea: [[3,1],[1,3]] → 0.4857142857 (= 34/70).
        assert_close(
            fisher_exact_two_sided(3, 4, 1, 4).unwrap(),
            34.0 / 70.0,
            1e-14,
        );
        assert_close(fisher_exact_two_sided(0, 5, 0, 5).unwrap(), 1.0, 1e-15);
        assert_close(
            fisher_exact_two_sided(5, 5, 0, 5).unwrap(),
            2.0 / 252.0,
            1e-14,
        );
        // More draws than unmarked items, so the support starts above zero: [[7,0],[1,2]].
        // x₁ = 5, 6, 7 have C(8,x)·C(2,7−x) = 56, 56, 8 of 120; only x₁ = 7 is as unlikely.
        assert_close(
            fisher_exact_two_sided(7, 7, 1, 3).unwrap(),
            8.0 / 120.0,
            1e-14,
        );
    }

    #[test]
    fn wilson_golden() {
        let (lo, hi) = wilson_interval(30, 1000, 0.95).unwrap();
        assert_close(lo, 0.021_093_738_828_834_696, 1e-12);
        assert_close(hi, 0.042_503_414_147_587_126, 1e-12);
        let (lo, hi) = wilson_interval(0, 10, 0.95).unwrap();
        assert_eq!(lo, 0.0);
        assert!(hi > 0.2 && hi < 0.35);
    }
}
