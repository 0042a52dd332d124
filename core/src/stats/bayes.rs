//! Bayesian comparison of two rates: P(p_canary > p_stable) under independent Beta(1,1) priors.
//!
//! Exact finite sum (Miller, "Formulas for Bayesian A/B testing"): with posteriors
//! A ~ Beta(a_A, b_A), B ~ Beta(a_B, b_B) and integer a_B,
//! P(p_B > p_A) = Σ_{i<a_B} B(a_A+i, b_A+b_B) / ((b_B+i)·B(1+i, b_B)·B(a_A, b_A)).
//! Reported next to the frequentist evidence; a posterior probability is not a sequential test.

use super::special::ln_beta;
use super::{Proportion, StatsError};

/// Beta posterior (successes + 1, failures + 1) from a Beta(1,1) prior.
fn posterior(arm: Proportion) -> Result<(f64, f64), StatsError> {
    let (x, n) = arm.checked()?;
    Ok((x + 1.0, n - x + 1.0))
}

/// Most terms the exact sum may take (it has min(a_A, a_B) terms).
const MAX_TERMS: f64 = 1e7;

/// P(p_canary > p_stable | data), uniform priors on both rates.
pub fn prob_canary_greater(canary: Proportion, stable: Proportion) -> Result<f64, StatsError> {
    let b = posterior(canary)?;
    let a = posterior(stable)?;
    if a.0.min(b.0) > MAX_TERMS {
        return Err(StatsError::ExactUnavailable(
            "both arms have more than 10^7 successes",
        ));
    }
    // The sum has a_B terms; when the other arm has fewer, use P(B > A) = 1 − P(A > B).
    if b.0 <= a.0 {
        Ok(prob_b_greater(a, b))
    } else {
        Ok(1.0 - prob_b_greater(b, a))
    }
}

fn prob_b_greater((a_a, b_a): (f64, f64), (a_b, b_b): (f64, f64)) -> f64 {
    let norm = ln_beta(a_a, b_a);
    let mut total = 0.0;
    let mut i = 0.0;
    while i < a_b {
        total +=
            (ln_beta(a_a + i, b_a + b_b) - (b_b + i).ln() - ln_beta(1.0 + i, b_b) - norm).exp();
        i += 1.0;
    }
    total.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::assert_close;

    #[test]
    fn golden_vectors() {
        let p = |c: u64, s: u64| {
            prob_canary_greater(Proportion::new(c, 1000), Proportion::new(s, 1000)).unwrap()
        };
        assert_close(p(20, 10), 0.965_704_277_488_153_4, 1e-11);
        assert_close(p(12, 10), 0.662_073_005_170_897_3, 1e-11);
    }

    #[test]
    fn complementary_and_symmetric() {
        let ab = prob_canary_greater(Proportion::new(7, 300), Proportion::new(30, 2000)).unwrap();
        let ba = prob_canary_greater(Proportion::new(30, 2000), Proportion::new(7, 300)).unwrap();
        assert_close(ab + ba, 1.0, 1e-12);
        let same = prob_canary_greater(Proportion::new(5, 100), Proportion::new(5, 100)).unwrap();
        assert_close(same, 0.5, 1e-12);
    }

    #[test]
    fn rejects_bad_counts() {
        assert!(prob_canary_greater(Proportion::new(2, 1), Proportion::new(0, 1)).is_err());
        assert!(prob_canary_greater(Proportion::new(0, 0), Proportion::new(0, 1)).is_err());
    }
}
