//! Wald's sequential probability ratio test for a Bernoulli rate, p₀ against p₁.
//!
//! Kept for single-arm checks against a fixed rate (e.g. an SLO); the canary-vs-stable comparison
//! uses the mixture test in [`super::msprt`], which needs no fixed alternative.

use super::{check_count, check_open, StatsError};

/// What the SPRT says after the data seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SprtDecision {
    /// Neither boundary crossed: keep sampling.
    Continue,
    /// LLR ≥ log A: reject H₀ (the rate is p₁).
    RejectNull,
    /// LLR ≤ log B: accept H₀ (the rate is p₀).
    AcceptNull,
}

/// A validated Bernoulli SPRT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BernoulliSprt {
    p0: f64,
    p1: f64,
    log_a: f64,
    log_b: f64,
}

impl BernoulliSprt {
    /// `alpha` = P(reject H₀ | p₀), `beta` = P(accept H₀ | p₁); p₀ ≠ p₁, all in (0, 1), α + β < 1.
    pub fn try_new(p0: f64, p1: f64, alpha: f64, beta: f64) -> Result<Self, StatsError> {
        check_open("p0", p0, 0.0, 1.0, "(0, 1)")?;
        check_open("p1", p1, 0.0, 1.0, "(0, 1)")?;
        check_open("alpha", alpha, 0.0, 1.0, "(0, 1)")?;
        check_open("beta", beta, 0.0, 1.0 - alpha, "(0, 1 − alpha)")?;
        if p0 == p1 {
            return Err(StatsError::OutOfDomain {
                name: "p1",
                value: p1,
                domain: "p1 ≠ p0",
            });
        }
        Ok(Self {
            p0,
            p1,
            log_a: ((1.0 - beta) / alpha).ln(),
            log_b: (beta / (1.0 - alpha)).ln(),
        })
    }

    /// Upper boundary ln((1 − β)/α).
    pub fn log_a(&self) -> f64 {
        self.log_a
    }

    /// Lower boundary ln(β/(1 − α)).
    pub fn log_b(&self) -> f64 {
        self.log_b
    }

    /// Log-likelihood ratio of p₁ over p₀ after `k` events in `n` trials.
    pub fn llr(&self, k: u64, n: u64) -> Result<f64, StatsError> {
        check_count(k, n)?;
        let events = k as f64 * (self.p1 / self.p0).ln();
        let non_events = (n - k) as f64 * ((1.0 - self.p1) / (1.0 - self.p0)).ln();
        Ok(events + non_events)
    }

    pub fn decide(&self, k: u64, n: u64) -> Result<SprtDecision, StatsError> {
        let llr = self.llr(k, n)?;
        Ok(if llr >= self.log_a {
            SprtDecision::RejectNull
        } else if llr <= self.log_b {
            SprtDecision::AcceptNull
        } else {
            SprtDecision::Continue
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::assert_close;

    #[test]
    fn sprt_golden() {
        let t = BernoulliSprt::try_new(0.01, 0.02, 0.05, 0.2).unwrap();
        assert_close(t.log_a(), 2.772_588_722_239_781, 1e-14);
        assert_close(t.log_b(), -1.558_144_618_046_549_7, 1e-14);
        assert_close(t.llr(10, 500).unwrap(), 1.956_809_788_230_652, 1e-12);
        assert_eq!(t.decide(10, 500).unwrap(), SprtDecision::Continue);
        assert_close(t.llr(20, 1000).unwrap(), 3.913_619_576_461_304, 1e-12);
        assert_eq!(t.decide(20, 1000).unwrap(), SprtDecision::RejectNull);
        assert_close(t.llr(5, 1000).unwrap(), -6.635_873_703_898_145, 1e-12);
        assert_eq!(t.decide(5, 1000).unwrap(), SprtDecision::AcceptNull);
    }

    #[test]
    fn sprt_validates() {
        assert!(BernoulliSprt::try_new(0.01, 0.01, 0.05, 0.2).is_err());
        assert!(BernoulliSprt::try_new(0.0, 0.02, 0.05, 0.2).is_err());
        assert!(BernoulliSprt::try_new(0.01, 0.02, 0.6, 0.5).is_err());
        let t = BernoulliSprt::try_new(0.01, 0.02, 0.05, 0.2).unwrap();
        assert!(t.llr(3, 2).is_err());
    }
}
