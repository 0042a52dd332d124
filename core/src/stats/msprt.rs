//! Mixture SPRT with a normal mixture (Johari, Pekelis & Walsh), for differences of two arms.
//!
//! For an estimate d̂ ~ N(θ, σ²) and H₀: θ = δ₀, mixing the likelihood ratio over
//! θ ~ N(δ₀, τ²) gives
//!
//! Λ = √(σ²/(σ²+τ²)) · exp(τ²(d̂−δ₀)² / (2σ²(σ²+τ²))),
//!
//! a martingale under H₀, so P(Λ ever ≥ 1/α) ≤ α however often it is looked at. With two arms,
//! σ² = Var(d̂) = v_c/n_c + v_s/n_s; with equal arms and pooled V this is the paper's V/n form.
//! Λ is computed in log space: it overflows f64 long before a decision needs it to.

use super::{check_open, Proportion, StatsError};

/// The mixing distribution N(δ₀, τ²).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalMixture {
    tau2: f64,
}

impl NormalMixture {
    /// τ² > 0: the spread of effects the test is tuned to find (in the estimate's units, squared).
    pub fn try_new(tau2: f64) -> Result<Self, StatsError> {
        check_open("tau2", tau2, 0.0, f64::INFINITY, "(0, ∞)")?;
        Ok(Self { tau2 })
    }

    pub fn tau2(&self) -> f64 {
        self.tau2
    }

    /// ln Λ for an estimate `d` of variance `variance` (σ², > 0) against H₀: θ = `delta0`.
    pub fn ln_lambda(&self, d: f64, delta0: f64, variance: f64) -> Result<f64, StatsError> {
        check_open("variance", variance, 0.0, f64::INFINITY, "(0, ∞)")?;
        let excess = finite("d", d)? - finite("delta0", delta0)?;
        let total = variance + self.tau2;
        Ok(0.5 * (variance / total).ln() + self.tau2 * excess * excess / (2.0 * variance * total))
    }

    /// Λ itself (may be +∞ when ln Λ > ~709).
    pub fn lambda(&self, d: f64, delta0: f64, variance: f64) -> Result<f64, StatsError> {
        self.ln_lambda(d, delta0, variance).map(f64::exp)
    }

    /// ln Λ for a [`Difference`].
    pub fn ln_lambda_of(&self, difference: Difference, delta0: f64) -> Result<f64, StatsError> {
        self.ln_lambda(difference.estimate, delta0, difference.variance)
    }
}

fn finite(name: &'static str, value: f64) -> Result<f64, StatsError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(StatsError::OutOfDomain {
            name,
            value,
            domain: "finite numbers",
        })
    }
}

/// An estimated effect and the variance of the estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    pub estimate: f64,
    pub variance: f64,
}

/// d̂ = p_c − r·p_s with Var = ṽ_c/n_c + r²·ṽ_s/n_s, where ṽ = p̃(1−p̃) and
/// p̃ = (x + pseudo)/(n + 2·pseudo). The pseudo-counts only enter the variance: with no events
/// seen p̂ = 0 would claim zero variance and make any later event look infinitely significant.
/// `ratio` = 1 tests a difference; `ratio` = r tests p_c ≤ r·p_s.
pub fn proportion_difference(
    canary: Proportion,
    stable: Proportion,
    ratio: f64,
    pseudo: f64,
) -> Result<Difference, StatsError> {
    check_open("ratio", ratio, 0.0, f64::INFINITY, "(0, ∞)")?;
    if !(pseudo.is_finite() && pseudo >= 0.0) {
        return Err(StatsError::OutOfDomain {
            name: "pseudo",
            value: pseudo,
            domain: "[0, ∞)",
        });
    }
    let (xc, nc) = canary.checked()?;
    let (xs, ns) = stable.checked()?;
    let smoothed_variance = |x: f64, n: f64| {
        let p = (x + pseudo) / (n + 2.0 * pseudo);
        p * (1.0 - p) / n
    };
    let variance = smoothed_variance(xc, nc) + ratio * ratio * smoothed_variance(xs, ns);
    Ok(Difference {
        estimate: xc / nc - ratio * xs / ns,
        variance,
    })
}

/// One arm against a fixed rate p₀: d̂ = p̂ − p₀ with the null variance p₀(1−p₀)/n.
pub fn proportion_vs_fixed(arm: Proportion, p0: f64) -> Result<Difference, StatsError> {
    check_open("p0", p0, 0.0, 1.0, "(0, 1)")?;
    let (x, n) = arm.checked()?;
    Ok(Difference {
        estimate: x / n - p0,
        variance: p0 * (1.0 - p0) / n,
    })
}

/// Count, sum and sum of squares of a per-observation quantity (e.g. cost per task).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeanSummary {
    pub count: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl MeanSummary {
    pub fn mean(&self) -> Option<f64> {
        let mean = self.sum / self.count as f64;
        (self.count > 0 && mean.is_finite()).then_some(mean)
    }

    /// Unbiased sample variance (clamped at 0 against rounding), needs two observations.
    pub fn variance(&self) -> Option<f64> {
        let mean = self.mean()?;
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let variance = ((self.sum_sq - n * mean * mean) / (n - 1.0)).max(0.0);
        variance.is_finite().then_some(variance)
    }

    fn checked(&self) -> Result<(f64, f64, f64), StatsError> {
        match (self.mean(), self.variance()) {
            (Some(mean), Some(variance)) => Ok((mean, variance, self.count as f64)),
            _ => Err(StatsError::Empty(
                "mean summary (needs ≥ 2 finite observations)",
            )),
        }
    }
}

/// d̂ = m_c − r·m_s with Var = max(s²_c, floor)/n_c + r²·max(s²_s, floor)/n_s.
/// `variance_floor` is a per-observation variance: constant costs would otherwise give σ² = 0.
pub fn mean_difference(
    canary: &MeanSummary,
    stable: &MeanSummary,
    ratio: f64,
    variance_floor: f64,
) -> Result<Difference, StatsError> {
    check_open("ratio", ratio, 0.0, f64::INFINITY, "(0, ∞)")?;
    check_open(
        "variance_floor",
        variance_floor,
        0.0,
        f64::INFINITY,
        "(0, ∞)",
    )?;
    let (mc, vc, nc) = canary.checked()?;
    let (ms, vs, ns) = stable.checked()?;
    let variance = vc.max(variance_floor) / nc + ratio * ratio * vs.max(variance_floor) / ns;
    Ok(Difference {
        estimate: mc - ratio * ms,
        variance,
    })
}

/// One arm's mean against a fixed value: d̂ = m − m₀, Var = max(s², floor)/n.
pub fn mean_vs_fixed(
    arm: &MeanSummary,
    m0: f64,
    variance_floor: f64,
) -> Result<Difference, StatsError> {
    check_open(
        "variance_floor",
        variance_floor,
        0.0,
        f64::INFINITY,
        "(0, ∞)",
    )?;
    let (mean, variance, n) = arm.checked()?;
    Ok(Difference {
        estimate: mean - finite("m0", m0)?,
        variance: variance.max(variance_floor) / n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::assert_close;

    #[test]
    fn lambda_golden() {
        let m = NormalMixture::try_new(1e-4).unwrap();
        // Golden form: σ² = V/n.
        assert_close(
            m.lambda(0.02, 0.0, 0.039 / 2000.0).unwrap(),
            2_156.666_747_150_168_7,
            1e-12,
        );
        assert_close(
            m.lambda(0.01, 0.0, 0.0198 / 1000.0).unwrap(),
            3.346_179_946_852_067,
            1e-12,
        );
    }

    #[test]
    fn unequal_arms_reduce_to_golden_form() {
        // Equal arms with identical per-arm variance v: σ² = 2v/n, i.e. the golden V = 2v.
        let m = NormalMixture::try_new(1e-4).unwrap();
        let v = 0.0198 / 2.0;
        let sigma2 = v / 1000.0 + v / 1000.0;
        assert_close(
            m.lambda(0.01, 0.0, sigma2).unwrap(),
            3.346_179_946_852_067,
            1e-12,
        );
    }

    #[test]
    fn lambda_is_symmetric_and_centred_on_delta0() {
        let m = NormalMixture::try_new(1e-4).unwrap();
        let up = m.ln_lambda(0.013, 0.003, 1e-5).unwrap();
        let down = m.ln_lambda(-0.007, 0.003, 1e-5).unwrap();
        assert_close(up, down, 1e-12);
        assert!(m.ln_lambda(0.003, 0.003, 1e-5).unwrap() < 0.0);
    }

    #[test]
    fn rejects_bad_inputs() {
        assert!(NormalMixture::try_new(0.0).is_err());
        let m = NormalMixture::try_new(1e-4).unwrap();
        assert!(m.ln_lambda(0.1, 0.0, 0.0).is_err());
        assert!(m.ln_lambda(f64::NAN, 0.0, 1e-5).is_err());
        assert!(m.ln_lambda(0.1, 0.0, f64::INFINITY).is_err());
    }

    #[test]
    fn proportion_difference_smooths_variance_only() {
        let c = Proportion {
            successes: 0,
            trials: 100,
        };
        let s = Proportion {
            successes: 0,
            trials: 1000,
        };
        let d = proportion_difference(c, s, 1.0, 1.0).unwrap();
        assert_eq!(d.estimate, 0.0);
        assert!(d.variance > 0.0);
        let raw = proportion_difference(
            Proportion {
                successes: 20,
                trials: 1000,
            },
            Proportion {
                successes: 10,
                trials: 1000,
            },
            1.0,
            0.0,
        )
        .unwrap();
        assert_close(raw.estimate, 0.01, 1e-12);
        assert_close(
            raw.variance,
            0.02 * 0.98 / 1000.0 + 0.01 * 0.99 / 1000.0,
            1e-12,
        );
        let ratio = proportion_difference(
            Proportion {
                successes: 20,
                trials: 1000,
            },
            Proportion {
                successes: 10,
                trials: 1000,
            },
            1.5,
            0.0,
        )
        .unwrap();
        assert_close(ratio.estimate, 0.005, 1e-12);
        assert!(proportion_difference(
            c,
            Proportion {
                successes: 0,
                trials: 0
            },
            1.0,
            1.0
        )
        .is_err());
        assert!(proportion_difference(c, s, 1.0, -1.0).is_err());
        // No pseudo-counts and no events: zero variance is refused downstream, never NaN.
        let zero = proportion_difference(c, s, 1.0, 0.0).unwrap();
        assert!(NormalMixture::try_new(1e-4)
            .unwrap()
            .ln_lambda_of(zero, 0.0)
            .is_err());
    }

    #[test]
    fn mean_summary_and_difference() {
        let values = [1.0, 2.0, 3.0, 4.0];
        let summary = MeanSummary {
            count: 4,
            sum: values.iter().sum(),
            sum_sq: values.iter().map(|v| v * v).sum(),
        };
        assert_close(summary.mean().unwrap(), 2.5, 1e-15);
        assert_close(summary.variance().unwrap(), 5.0 / 3.0, 1e-14);
        let constant = MeanSummary {
            count: 10,
            sum: 10.0,
            sum_sq: 10.0,
        };
        let d = mean_difference(&summary, &constant, 1.0, 1e-6).unwrap();
        assert_close(d.estimate, 1.5, 1e-15);
        assert_close(d.variance, (5.0 / 3.0) / 4.0 + 1e-6 / 10.0, 1e-12);
        assert!(mean_difference(
            &MeanSummary {
                count: 1,
                sum: 1.0,
                sum_sq: 1.0
            },
            &constant,
            1.0,
            1e-6
        )
        .is_err());
        let d = mean_vs_fixed(&summary, 2.0, 1e-6).unwrap();
        assert_close(d.estimate, 0.5, 1e-15);
    }
}
