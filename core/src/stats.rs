//! Statistical primitives for canary judgement, each checked against scipy/statsmodels golden vectors.
//!
//! Everything is a pure function of counts and sums. Inputs are validated and reported as
//! [`StatsError`] instead of producing NaN, because these numbers feed rollback decisions.

pub mod normal;
pub mod sequential;
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
