//! Dirichlet–multinomial e-value for category counts (Lindon & Malek, 2022).
//!
//! Tests H₀: counts ~ Multinomial(θ₀) against a Dirichlet(k·θ₀) mixture of alternatives. The
//! e-value is a test martingale under H₀, so rejecting when e ≥ 1/α is valid at any stopping
//! time, e.g. for a sample-ratio-mismatch check on the traffic split.

use super::special::ln_beta_multi;
use super::StatsError;

/// Relative slack when checking Σθ₀ = 1.
const SUM_TOLERANCE: f64 = 1e-9;

/// ln e = ln B(α₀ + c) − ln B(α₀) − Σ cᵢ ln θ₀ᵢ with α₀ = k·θ₀ and ln B(v) = Σ ln Γ(vᵢ) − ln Γ(Σvᵢ).
pub fn ln_dirichlet_multinomial_e_value(
    counts: &[u64],
    theta0: &[f64],
    k: f64,
) -> Result<f64, StatsError> {
    check_inputs(counts, theta0, k)?;
    let prior: Vec<f64> = theta0.iter().map(|t| k * t).collect();
    let posterior: Vec<f64> = prior
        .iter()
        .zip(counts)
        .map(|(a, &c)| a + c as f64)
        .collect();
    let null: f64 = counts
        .iter()
        .zip(theta0)
        .map(|(&c, t)| c as f64 * t.ln())
        .sum();
    Ok(ln_beta_multi(&posterior) - ln_beta_multi(&prior) - null)
}

/// The e-value itself (may be +∞ for overwhelming evidence).
pub fn dirichlet_multinomial_e_value(
    counts: &[u64],
    theta0: &[f64],
    k: f64,
) -> Result<f64, StatsError> {
    ln_dirichlet_multinomial_e_value(counts, theta0, k).map(f64::exp)
}

fn check_inputs(counts: &[u64], theta0: &[f64], k: f64) -> Result<(), StatsError> {
    if counts.len() != theta0.len() {
        return Err(StatsError::LengthMismatch("counts and theta0"));
    }
    if counts.len() < 2 {
        return Err(StatsError::Empty("category list (needs ≥ 2 categories)"));
    }
    if let Some(&bad) = theta0.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
        return Err(StatsError::OutOfDomain {
            name: "theta0",
            value: bad,
            domain: "(0, 1]",
        });
    }
    let sum: f64 = theta0.iter().sum();
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(StatsError::OutOfDomain {
            name: "sum of theta0",
            value: sum,
            domain: "1",
        });
    }
    if !(k.is_finite() && k > 0.0) {
        return Err(StatsError::OutOfDomain {
            name: "k",
            value: k,
            domain: "(0, ∞)",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::assert_close;

    #[test]
    fn golden_vectors() {
        let e = |c: [u64; 2], t: [f64; 2]| dirichlet_multinomial_e_value(&c, &t, 100.0).unwrap();
        assert_close(e([30, 70], [0.5, 0.5]), 40.437_581_856_803_405, 1e-11);
        assert_close(e([40, 60], [0.5, 0.5]), 1.932_649_420_042_226_2, 1e-11);
        assert_close(e([80, 20], [0.9, 0.1]), 6.825_898_646_155_29, 1e-11);
    }

    #[test]
    fn no_data_is_no_evidence() {
        assert_close(
            dirichlet_multinomial_e_value(&[0, 0, 0], &[0.2, 0.3, 0.5], 10.0).unwrap(),
            1.0,
            1e-14,
        );
    }

    #[test]
    fn rejects_bad_inputs() {
        assert!(dirichlet_multinomial_e_value(&[1, 2], &[0.5], 100.0).is_err());
        assert!(dirichlet_multinomial_e_value(&[1], &[1.0], 100.0).is_err());
        assert!(dirichlet_multinomial_e_value(&[1, 2], &[0.6, 0.6], 100.0).is_err());
        assert!(dirichlet_multinomial_e_value(&[1, 2], &[0.0, 1.0], 100.0).is_err());
        assert!(dirichlet_multinomial_e_value(&[1, 2], &[0.5, 0.5], 0.0).is_err());
    }
}
