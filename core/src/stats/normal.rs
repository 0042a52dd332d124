//! Standard normal distribution: density, CDF, survival function and quantile.
//!
//! CDF and survival go through erfc so each tail keeps its relative accuracy (sf(8) ≈ 6e-16 is
//! not computed as 1 − cdf). The quantile refines a coarse rational guess with Halley steps on
//! the accurate CDF, so its accuracy is the CDF's.

use super::special::{erfc, erfc_fraction, exp_minus_half_square};
use super::{check_open, StatsError};
use std::f64::consts::{PI, SQRT_2};

pub fn pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

/// Beyond this the tail is computed from x directly (no rounding of x/√2 in the exponent).
const DIRECT_TAIL_FROM: f64 = 1.5;

/// P(Z > x) underflows to zero past here.
const UNDERFLOW_FROM: f64 = 40.0;

/// P(Z ≤ x).
pub fn cdf(x: f64) -> f64 {
    sf(-x)
}

/// P(Z > x), accurate in the upper tail.
pub fn sf(x: f64) -> f64 {
    if x >= UNDERFLOW_FROM {
        return 0.0;
    }
    if x >= DIRECT_TAIL_FROM {
        // erfc(t) = 2t e^{−t²}/√π / K(2t²) with t = x/√2.
        return x * exp_minus_half_square(x) / (2.0 * PI).sqrt() / erfc_fraction(x * x);
    }
    0.5 * erfc(x / SQRT_2)
}

/// The x with P(Z ≤ x) = p, for 0 < p < 1.
pub fn quantile(p: f64) -> Result<f64, StatsError> {
    let p = check_open("p", p, 0.0, 1.0, "(0, 1)")?;
    if p > 0.5 {
        // Refine against the upper tail so p close to 1 is not rounded away.
        return Ok(-lower_quantile(1.0 - p));
    }
    Ok(lower_quantile(p))
}

/// Quantile for p ≤ 0.5: Abramowitz–Stegun 26.2.23 (error < 4.5e-4), then Halley steps.
fn lower_quantile(p: f64) -> f64 {
    let t = (-2.0 * p.ln()).sqrt();
    let numerator = 2.515_517 + t * (0.802_853 + t * 0.010_328);
    let denominator = 1.0 + t * (1.432_788 + t * (0.189_269 + t * 0.001_308));
    let mut x = numerator / denominator - t;
    for _ in 0..3 {
        let density = pdf(x);
        if density == 0.0 {
            break;
        }
        let u = (cdf(x) - p) / density;
        x -= u / (1.0 + 0.5 * x * u);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::assert_close;

    #[test]
    fn cdf_matches_reference() {
        // mpmath ncdf, 50 digits.
        let cases = [
            (-8.0, 6.220_960_574_271_784e-16),
            (-3.0, 0.001_349_898_031_630_094_6),
            (-1.96, 0.024_997_895_148_220_435),
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (-37.0, 5.725_571_222_524_577e-300),
        ];
        for (x, want) in cases {
            assert_close(cdf(x), want, 1e-14);
            assert_close(sf(-x), want, 1e-14);
        }
    }

    #[test]
    fn quantile_inverts_cdf() {
        assert_close(quantile(0.975).unwrap(), 1.959_963_984_540_054, 1e-15);
        assert_close(quantile(0.8).unwrap(), 0.841_621_233_572_914_4, 1e-15);
        for p in [1e-300, 1e-20, 1e-6, 0.01, 0.3, 0.5 + 1e-9, 0.7, 0.999_999] {
            let x = quantile(p).unwrap();
            assert_close(cdf(x), p, 1e-12);
        }
        assert!(quantile(0.5).unwrap().abs() < 1e-15);
        assert_eq!(sf(f64::INFINITY), 0.0);
        assert_eq!(cdf(f64::INFINITY), 1.0);
        assert!(quantile(0.0).is_err() && quantile(1.0).is_err() && quantile(f64::NAN).is_err());
    }
}
