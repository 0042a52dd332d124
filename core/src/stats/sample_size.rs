//! Sample size per arm to detect p₁ → p₂ with a two-sided test at level α with given power.
//!
//! Both functions return the unrounded n; round *up* when planning traffic. (The golden vectors
//! quote the nearest integer: 2318.16 is listed as 2318.)

use super::{check_open, normal, StatsError};

/// Pooled-null / unpooled-alternative normal formula (Fleiss, no continuity correction):
/// n = (z_{1−α/2}·√(2p̄q̄) + z_{power}·√(p₁q₁ + p₂q₂))² / (p₁ − p₂)².
pub fn two_proportions(p1: f64, p2: f64, alpha: f64, power: f64) -> Result<f64, StatsError> {
    let (z_alpha, z_power) = z_values(p1, p2, alpha, power)?;
    let pooled = (p1 + p2) / 2.0;
    let null_sd = (2.0 * pooled * (1.0 - pooled)).sqrt();
    let alt_sd = (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt();
    Ok((z_alpha * null_sd + z_power * alt_sd).powi(2) / (p1 - p2).powi(2))
}

/// Arcsine (Cohen's h) formula: n = 2·((z_{1−α/2} + z_{power}) / h)², h = 2·asin√p₂ − 2·asin√p₁.
pub fn cohens_h(p1: f64, p2: f64, alpha: f64, power: f64) -> Result<f64, StatsError> {
    let (z_alpha, z_power) = z_values(p1, p2, alpha, power)?;
    let h = 2.0 * p2.sqrt().asin() - 2.0 * p1.sqrt().asin();
    Ok(2.0 * ((z_alpha + z_power) / h).powi(2))
}

fn z_values(p1: f64, p2: f64, alpha: f64, power: f64) -> Result<(f64, f64), StatsError> {
    check_open("p1", p1, 0.0, 1.0, "(0, 1)")?;
    check_open("p2", p2, 0.0, 1.0, "(0, 1)")?;
    if p1 == p2 {
        return Err(StatsError::OutOfDomain {
            name: "p2",
            value: p2,
            domain: "p2 ≠ p1",
        });
    }
    check_open("alpha", alpha, 0.0, 1.0, "(0, 1)")?;
    check_open("power", power, 0.0, 1.0, "(0, 1)")?;
    Ok((
        normal::quantile(1.0 - alpha / 2.0)?,
        normal::quantile(power)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::assert_close;

    #[test]
    fn golden_vectors() {
        let n = two_proportions(0.01, 0.02, 0.05, 0.8).unwrap();
        assert_eq!(n.round(), 2318.0);
        assert_close(n, 2_318.164_675_512_036, 1e-12);
        assert_eq!(cohens_h(0.01, 0.02, 0.05, 0.8).unwrap().round(), 2254.0);
        assert_eq!(
            two_proportions(0.05, 0.06, 0.05, 0.8).unwrap().round(),
            8158.0
        );
        assert_eq!(cohens_h(0.05, 0.06, 0.05, 0.8).unwrap().round(), 8143.0);
        assert_close(
            cohens_h(0.05, 0.06, 0.05, 0.8).unwrap(),
            8_142.615_338_701_772,
            1e-12,
        );
    }

    #[test]
    fn rejects_bad_inputs() {
        assert!(two_proportions(0.01, 0.01, 0.05, 0.8).is_err());
        assert!(cohens_h(0.0, 0.01, 0.05, 0.8).is_err());
        assert!(two_proportions(0.01, 0.02, 1.0, 0.8).is_err());
    }
}
