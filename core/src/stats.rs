//! Statistical primitives for canary judgement, each checked against scipy/statsmodels golden vectors.
//!
//! Everything is a pure function of counts and sums. Inputs are validated and reported as
//! [`StatsError`] instead of producing NaN, because these numbers feed rollback decisions.

pub mod msprt;
pub mod normal;
pub mod special;

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A parameter outside its domain (or not finite).
    #[error("{name} = {value} is outside {domain}")]
    OutOfDomain {
        name: &'static str,
        value: f64,
        domain: &'static str,
    },
    /// More successes than trials.
    #[error("{successes} successes out of {trials} trials")]
    CountExceedsTrials { successes: u64, trials: u64 },
    /// A sample that must be non-empty is empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// The statistic's variance is zero (e.g. every observation identical), so it is undefined.
    #[error("zero variance: {0} is undefined")]
    ZeroVariance(&'static str),
}

/// Successes out of trials for one arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proportion {
    pub successes: u64,
    pub trials: u64,
}

impl Proportion {
    pub fn new(successes: u64, trials: u64) -> Self {
        Self { successes, trials }
    }

    /// (successes, trials) as floats, after checking successes ≤ trials and trials > 0.
    pub(crate) fn checked(self) -> Result<(f64, f64), StatsError> {
        check_count(self.successes, self.trials)?;
        if self.trials == 0 {
            return Err(StatsError::Empty("proportion"));
        }
        Ok((self.successes as f64, self.trials as f64))
    }
}

/// Checks `lo < value < hi` (open) and finiteness.
pub(crate) fn check_open(
    name: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    domain: &'static str,
) -> Result<f64, StatsError> {
    if value.is_finite() && value > lo && value < hi {
        Ok(value)
    } else {
        Err(StatsError::OutOfDomain {
            name,
            value,
            domain,
        })
    }
}

/// Checks a success count against its trials.
pub(crate) fn check_count(successes: u64, trials: u64) -> Result<(), StatsError> {
    if successes > trials {
        Err(StatsError::CountExceedsTrials { successes, trials })
    } else {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    /// Asserts `got` is within `rel` relative error of `want` (absolute near zero).
    #[track_caller]
    pub fn assert_close(got: f64, want: f64, rel: f64) {
        let scale = want.abs().max(f64::MIN_POSITIVE);
        let err = (got - want).abs() / scale;
        assert!(
            err <= rel,
            "got {got:e}, want {want:e} (relative error {err:e} > {rel:e})"
        );
    }
}
