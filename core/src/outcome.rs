//! Agent outcome signals: the response headers (or trailers) an agent sets to say how the task went.
//! Parsing is byte-level and total: a malformed value is a value of its own, never an error path that
//! could lose the request's other signals.

/// Names of the outcome headers, configurable per plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeHeaders {
    pub result: String,
    pub cost: String,
    pub policy_violations: String,
}

impl Default for OutcomeHeaders {
    fn default() -> Self {
        Self {
            result: "x-agent-outcome".into(),
            cost: "x-agent-cost".into(),
            policy_violations: "x-agent-policy-violations".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TaskResult {
    Success,
    Failure,
    Malformed,
}

/// `success` / `failure`, case-insensitive, surrounding spaces ignored.
pub fn parse_result(v: &[u8]) -> TaskResult {
    let v = v.trim_ascii();
    if v.eq_ignore_ascii_case(b"success") {
        TaskResult::Success
    } else if v.eq_ignore_ascii_case(b"failure") {
        TaskResult::Failure
    } else {
        TaskResult::Malformed
    }
}

/// A non-negative finite decimal cost.
pub fn parse_cost(v: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(v.trim_ascii()).ok()?;
    let x: f64 = s.parse().ok()?;
    valid_cost(x).then_some(x)
}

/// The largest cost one task may report. Bounded so that sums of costs and of their squares over any
/// number of tasks stay finite (1e12² × 2^64 ≈ 1.8e43).
pub const MAX_COST: f64 = 1e12;

/// A cost is a number in [0, [`MAX_COST`]].
pub fn valid_cost(x: f64) -> bool {
    x.is_finite() && (0.0..=MAX_COST).contains(&x)
}

/// A non-negative integer count of policy violations.
pub fn parse_violations(v: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(v.trim_ascii()).ok()?;
    if s.starts_with('+') {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results() {
        assert_eq!(parse_result(b"success"), TaskResult::Success);
        assert_eq!(parse_result(b" FAILURE "), TaskResult::Failure);
        assert_eq!(parse_result(b"ok"), TaskResult::Malformed);
        assert_eq!(parse_result(&[0xff, 0xfe]), TaskResult::Malformed);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_cost(b"0.02"), Some(0.02));
        assert_eq!(parse_cost(b"-1"), None);
        assert_eq!(parse_cost(b"NaN"), None);
        assert_eq!(parse_cost(b"inf"), None);
        assert_eq!(parse_violations(b"3"), Some(3));
        assert_eq!(parse_violations(b"-3"), None);
        assert_eq!(parse_violations(b"1.5"), None);
        assert_eq!(parse_violations(b"99999999999"), None);
    }
}
