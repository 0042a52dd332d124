//! Shadow traffic (dark launch): a share of stable's requests is copied to the canary's cluster, the
//! copy's answer is thrown away for the user but compared with stable's answer to the same request.
//!
//! This module is the pure part both sides share: the `shadow` spec, one side's [`Answer`], the
//! [`compare`] of a pair, the per-rollout [`ShadowStats`] the filter accumulates and reports (paired
//! tables, so the controller's gates can use the pairing), and the [`ShadowSample`] of a mismatching
//! pair. The filter does the I/O: the copy, the body hashing, the reads of both answers.

use serde::{Deserialize, Serialize};

use crate::analysis::VersionStats;
use crate::bucket::Weight;
use crate::histogram::{Histogram, SparseHistogram};
use crate::outcome::TaskResult;

/// Headers never copied into a stored sample, whatever `capture.redact_headers` says.
pub const ALWAYS_REDACTED: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "set-cookie"];
/// Request headers the copy does not carry: the hop-by-hop ones (RFC 9110 §7.6.1), and
/// `content-length`, which Envoy sets for the copy's buffered body itself.
pub const NOT_FORWARDED: [&str; 8] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "content-length"];
/// The header every copy carries: the agent must treat the request as a dry run.
pub const SHADOW_HEADER: &str = "x-fledge-shadow";
/// Answer bodies kept in a sample (only with `capture.bodies`).
pub const SAMPLE_BODY_BYTES: usize = 4096;
pub const MAX_BODY_BYTES: u32 = 4 * 1024 * 1024;
pub const MAX_TIMEOUT_MS: u32 = 120_000;
pub const MAX_IN_FLIGHT: u32 = 4096;
pub const MAX_SAMPLES: u32 = 100;
pub const MAX_REDACTED: usize = 64;

/// `shadow` of a rollout spec; also what the filter receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowSpec {
    /// The canary's Envoy cluster (the filter cannot infer Istio's or a plain config's names).
    pub cluster: String,
    /// Percent of stable's requests copied, two decimals.
    pub percent: f64,
    #[serde(default = "ShadowSpec::default_body")]
    pub max_body_bytes: u32,
    #[serde(default = "ShadowSpec::default_timeout")]
    pub timeout_ms: u32,
    /// Copies outstanding per worker; beyond it a copy is dropped and counted.
    #[serde(default = "ShadowSpec::default_in_flight")]
    pub max_in_flight: u32,
    #[serde(default)]
    pub capture: CaptureSpec,
}

/// Which mismatching pairs are kept for `GET /v1/rollouts/{name}/shadow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSpec {
    #[serde(default = "CaptureSpec::default_samples")]
    pub samples: u32,
    /// Keep both answers' bodies (truncated to 4 KiB). Off by default: bodies may hold user data.
    #[serde(default)]
    pub bodies: bool,
    /// Request headers left out of samples, besides [`ALWAYS_REDACTED`].
    #[serde(default)]
    pub redact_headers: Vec<String>,
}

impl Default for CaptureSpec {
    fn default() -> Self {
        Self { samples: Self::default_samples(), bodies: false, redact_headers: Vec::new() }
    }
}

impl CaptureSpec {
    fn default_samples() -> u32 {
        20
    }
}

impl ShadowSpec {
    fn default_body() -> u32 {
        65_536
    }
    fn default_timeout() -> u32 {
        10_000
    }
    fn default_in_flight() -> u32 {
        64
    }

    /// A spec with the defaults, for tests and examples.
    pub fn new(cluster: &str, percent: f64) -> Self {
        Self {
            cluster: cluster.into(),
            percent,
            max_body_bytes: Self::default_body(),
            timeout_ms: Self::default_timeout(),
            max_in_flight: Self::default_in_flight(),
            capture: CaptureSpec::default(),
        }
    }

    /// The share copied, as a weight (validated specs only; 0 otherwise).
    pub fn weight(&self) -> Weight {
        Weight::try_from_percent(self.percent).unwrap_or(Weight::ZERO)
    }

    /// Whether a request header stays out of samples.
    pub fn redacts(&self, name: &str) -> bool {
        ALWAYS_REDACTED.iter().any(|h| h.eq_ignore_ascii_case(name))
            || self.capture.redact_headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// `shadow.<field>: <why>`, or Ok.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |field: &str, why: &str| Err(format!("shadow.{field}: {why}"));
        let c = &self.cluster;
        if c.is_empty() || c.len() > 255 || c.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return bad("cluster", "give the canary's Envoy cluster name: 1-255 printable characters without spaces");
        }
        if !(self.percent.is_finite() && self.percent > 0.0 && Weight::try_from_percent(self.percent).is_ok()) {
            return bad("percent", "must be above 0 and at most 100, with at most two decimals");
        }
        if !(1..=MAX_BODY_BYTES).contains(&self.max_body_bytes) {
            return bad("max_body_bytes", "must be between 1 and 4194304");
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return bad("timeout_ms", "must be between 1 and 120000");
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return bad("max_in_flight", "must be between 1 and 4096");
        }
        if self.capture.samples > MAX_SAMPLES {
            return bad("capture.samples", "must be at most 100");
        }
        if self.capture.redact_headers.len() > MAX_REDACTED {
            return bad("capture.redact_headers", "at most 64 names");
        }
        for h in &self.capture.redact_headers {
            if h.is_empty() || h.len() > 256 || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
                return Err(format!("shadow.capture.redact_headers: {h:?} is not a header name"));
            }
        }
        Ok(())
    }
}

/// FNV-1a over a body as it streams past, with its length: enough to tell equal bodies apart from
/// different ones without keeping them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyHasher {
    state: u64,
    len: u64,
}

impl Default for BodyHasher {
    fn default() -> Self {
        Self { state: 0xcbf2_9ce4_8422_2325, len: 0 }
    }
}

impl BodyHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.state ^= u64::from(*b);
            self.state = self.state.wrapping_mul(0x0100_0000_01b3);
        }
        self.len = self.len.saturating_add(bytes.len() as u64);
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn digest(&self) -> u64 {
        self.state
    }
}

/// One side's answer to a request. `status: None` is no answer: the copy failed or timed out (or,
/// on the user's side, the client went away first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub status: Option<u16>,
    pub result: Option<TaskResult>,
    pub cost: Option<f64>,
    pub violations: Option<u32>,
    /// Request start (the copy's dispatch, for the shadow) to the end of the answer, µs.
    pub total_us: u64,
    pub body: BodyHasher,
}

impl Answer {
    fn error(&self) -> bool {
        self.status.is_none_or(|s| s >= 500)
    }

    fn task(&self) -> Option<bool> {
        match self.result {
            Some(TaskResult::Success) => Some(true),
            Some(TaskResult::Failure) => Some(false),
            _ => None,
        }
    }

    fn violating(&self) -> bool {
        self.violations.unwrap_or(0) > 0
    }
}

/// Which dimensions of a pair differ. Definitions (documented in the README):
/// - `status`: the status class (2xx, 4xx, …), or only one side answered;
/// - `outcome`: the task outcome (success, failure, none);
/// - `cost`: present on one side only, or more than 5 % apart;
/// - `policy`: the number of policy violations;
/// - `latency`: the shadow took more than twice as long as stable plus 100 ms;
/// - `body`: length or content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub status: bool,
    pub outcome: bool,
    pub cost: bool,
    pub policy: bool,
    pub latency: bool,
    pub body: bool,
}

impl Mismatch {
    pub fn any(&self) -> bool {
        self.status || self.outcome || self.cost || self.policy || self.latency || self.body
    }

    /// The names of the differing dimensions.
    pub fn names(&self) -> Vec<&'static str> {
        [("status", self.status), ("outcome", self.outcome), ("cost", self.cost), ("policy", self.policy), ("latency", self.latency), ("body", self.body)]
            .into_iter()
            .filter_map(|(n, on)| on.then_some(n))
            .collect()
    }
}

pub fn compare(stable: &Answer, shadow: &Answer) -> Mismatch {
    let cost = match (stable.cost, shadow.cost) {
        (Some(a), Some(b)) => (a - b).abs() > 0.05 * a.abs().max(b.abs()) + 1e-12,
        (None, None) => false,
        _ => true,
    };
    Mismatch {
        status: stable.status.map(|s| s / 100) != shadow.status.map(|s| s / 100),
        outcome: stable.result != shadow.result,
        cost,
        policy: stable.violations.unwrap_or(0) != shadow.violations.unwrap_or(0),
        latency: shadow.total_us > stable.total_us.saturating_mul(2).saturating_add(100_000),
        body: stable.body.len() != shadow.body.len() || stable.body.digest() != shadow.body.digest(),
    }
}

/// A 2×2 table of one binary event over pairs: both sides had it, only stable, only the shadow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Paired {
    pub n: u64,
    pub both: u64,
    pub stable_only: u64,
    pub shadow_only: u64,
}

impl Paired {
    fn record(&mut self, stable: bool, shadow: bool) {
        self.n += 1;
        match (stable, shadow) {
            (true, true) => self.both += 1,
            (true, false) => self.stable_only += 1,
            (false, true) => self.shadow_only += 1,
            (false, false) => {}
        }
    }

    fn merge(&mut self, o: &Paired) {
        self.n = self.n.saturating_add(o.n);
        self.both = self.both.saturating_add(o.both);
        self.stable_only = self.stable_only.saturating_add(o.stable_only);
        self.shadow_only = self.shadow_only.saturating_add(o.shadow_only);
    }

    pub fn stable_events(&self) -> u64 {
        self.both.saturating_add(self.stable_only)
    }

    pub fn shadow_events(&self) -> u64 {
        self.both.saturating_add(self.shadow_only)
    }

    /// Consistent: the cells fit in n.
    pub fn is_consistent(&self) -> bool {
        self.both.checked_add(self.stable_only).and_then(|s| s.checked_add(self.shadow_only)).is_some_and(|s| s <= self.n)
    }
}

/// Sums over pairs where both sides reported a cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairedSums {
    pub n: u64,
    pub stable_sum: f64,
    pub shadow_sum: f64,
    pub stable_sq: f64,
    pub shadow_sq: f64,
    pub cross: f64,
}

impl PairedSums {
    fn merge(&mut self, o: &PairedSums) {
        self.n = self.n.saturating_add(o.n);
        self.stable_sum += o.stable_sum;
        self.shadow_sum += o.shadow_sum;
        self.stable_sq += o.stable_sq;
        self.shadow_sq += o.shadow_sq;
        self.cross += o.cross;
    }

    /// Mean and per-pair variance of `shadow − ratio·stable − delta`.
    pub fn difference(&self, ratio: f64, delta: f64) -> Option<(f64, f64)> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f64;
        let mean = (self.shadow_sum - ratio * self.stable_sum) / n - delta;
        let second = (self.shadow_sq - 2.0 * ratio * self.cross + ratio * ratio * self.stable_sq) / n;
        let m0 = mean + delta;
        Some((mean, (second - m0 * m0).max(0.0)))
    }
}

/// One rollout's shadow counts over an interval (the filter's deltas; the controller's sums).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowStats {
    /// Copies dispatched.
    pub sent: u64,
    /// Copies answered (any status).
    pub answered: u64,
    /// Copies with no answer: connection failure, reset or timeout (timeouts included).
    pub failed: u64,
    pub timeouts: u64,
    /// Not sent: `max_in_flight` reached, or the dispatch was refused.
    pub dropped: u64,
    /// Not sent: the request body exceeded `max_body_bytes`.
    pub too_large: u64,
    /// Pairs compared: the copy's answer (or failure) with the user's answer.
    pub pairs: u64,
    pub mismatch: MismatchCounts,
    /// Over pairs: 5xx or no answer.
    pub errors: Paired,
    /// Task failures, over pairs where both sides reported a success or failure.
    pub task_failures: Paired,
    /// Requests with at least one policy violation, over pairs.
    pub violating: Paired,
    pub cost: PairedSums,
    /// Time to complete over pairs, µs (a failed copy counts at its elapsed time).
    pub latency_shadow: Histogram,
    pub latency_stable: Histogram,
    /// Σ shadow body length / stable body length, over pairs with a non-empty stable body.
    pub body_ratio_sum: f64,
    pub body_ratio_count: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MismatchCounts {
    pub status: u64,
    pub outcome: u64,
    pub cost: u64,
    pub policy: u64,
    pub latency: u64,
    pub body: u64,
    pub any: u64,
}

impl MismatchCounts {
    fn record(&mut self, m: &Mismatch) {
        for (count, on) in [(&mut self.status, m.status), (&mut self.outcome, m.outcome), (&mut self.cost, m.cost), (&mut self.policy, m.policy), (&mut self.latency, m.latency), (&mut self.body, m.body), (&mut self.any, m.any())] {
            if on {
                *count += 1;
            }
        }
    }

    fn merge(&mut self, o: &MismatchCounts) {
        self.status = self.status.saturating_add(o.status);
        self.outcome = self.outcome.saturating_add(o.outcome);
        self.cost = self.cost.saturating_add(o.cost);
        self.policy = self.policy.saturating_add(o.policy);
        self.latency = self.latency.saturating_add(o.latency);
        self.body = self.body.saturating_add(o.body);
        self.any = self.any.saturating_add(o.any);
    }
}

impl ShadowStats {
    /// Adds one compared pair and returns how it mismatched. A stable side without an answer (the
    /// client went away) is not a pair: nothing is recorded.
    pub fn record_pair(&mut self, stable: &Answer, shadow: &Answer) -> Option<Mismatch> {
        stable.status?;
        let m = compare(stable, shadow);
        self.pairs += 1;
        self.mismatch.record(&m);
        self.errors.record(stable.error(), shadow.error());
        if let (Some(s), Some(c)) = (stable.task(), shadow.task()) {
            self.task_failures.record(!s, !c);
        }
        self.violating.record(stable.violating(), shadow.violating());
        if let (Some(s), Some(c)) = (stable.cost, shadow.cost) {
            if s.is_finite() && c.is_finite() {
                let p = &mut self.cost;
                p.n += 1;
                p.stable_sum += s;
                p.shadow_sum += c;
                p.stable_sq += s * s;
                p.shadow_sq += c * c;
                p.cross += s * c;
            }
        }
        self.latency_shadow.record(shadow.total_us);
        self.latency_stable.record(stable.total_us);
        if !stable.body.is_empty() && shadow.status.is_some() {
            self.body_ratio_sum += shadow.body.len() as f64 / stable.body.len() as f64;
            self.body_ratio_count += 1;
        }
        Some(m)
    }

    pub fn merge(&mut self, o: &ShadowStats) {
        for (a, b) in [(&mut self.sent, o.sent), (&mut self.answered, o.answered), (&mut self.failed, o.failed), (&mut self.timeouts, o.timeouts), (&mut self.dropped, o.dropped), (&mut self.too_large, o.too_large), (&mut self.pairs, o.pairs), (&mut self.body_ratio_count, o.body_ratio_count)] {
            *a = a.saturating_add(b);
        }
        self.mismatch.merge(&o.mismatch);
        self.errors.merge(&o.errors);
        self.task_failures.merge(&o.task_failures);
        self.violating.merge(&o.violating);
        self.cost.merge(&o.cost);
        self.latency_shadow.merge(&o.latency_shadow);
        self.latency_stable.merge(&o.latency_stable);
        self.body_ratio_sum += o.body_ratio_sum;
    }

    pub fn is_empty(&self) -> bool {
        *self == ShadowStats::default()
    }

    /// Stable's answers to the shadowed requests, as version counts (for the unpaired parts of the
    /// judgement: latency quantiles, displays).
    pub fn stable_view(&self) -> VersionStats {
        self.view(false)
    }

    /// The canary's answers to the copies, as version counts.
    pub fn canary_view(&self) -> VersionStats {
        self.view(true)
    }

    fn view(&self, shadow: bool) -> VersionStats {
        let pick = |p: &Paired| if shadow { p.shadow_events() } else { p.stable_events() };
        let failures = pick(&self.task_failures);
        let (cost_sum, cost_sq) = if shadow { (self.cost.shadow_sum, self.cost.shadow_sq) } else { (self.cost.stable_sum, self.cost.stable_sq) };
        VersionStats {
            requests: self.errors.n,
            errors: pick(&self.errors),
            outcome_success: self.task_failures.n.saturating_sub(failures),
            outcome_failure: failures,
            cost_count: self.cost.n,
            cost_sum,
            cost_sum_sq: cost_sq,
            policy_violating_requests: pick(&self.violating),
            latency_total: if shadow { self.latency_shadow.clone() } else { self.latency_stable.clone() },
            ..VersionStats::default()
        }
    }
}

/// [`ShadowStats`] as the controller receives it: histograms sparse (see `report`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct WireShadowStats {
    pub sent: u64,
    pub answered: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub dropped: u64,
    pub too_large: u64,
    pub pairs: u64,
    pub mismatch: MismatchCounts,
    pub errors: Paired,
    pub task_failures: Paired,
    pub violating: Paired,
    pub cost: PairedSums,
    pub latency_shadow: SparseHistogram,
    pub latency_stable: SparseHistogram,
    pub body_ratio_sum: f64,
    pub body_ratio_count: u64,
}

impl WireShadowStats {
    /// Consistency a well-behaved filter always keeps: the tables fit their counts, sums are finite.
    pub fn check(&self) -> Result<(), String> {
        for (name, p) in [("errors", &self.errors), ("task_failures", &self.task_failures), ("violating", &self.violating)] {
            if !p.is_consistent() || p.n > self.pairs {
                return Err(format!("shadow.{name}: the cells do not fit n, or n exceeds pairs"));
            }
        }
        let c = &self.cost;
        if c.n > self.pairs || ![c.stable_sum, c.shadow_sum, c.stable_sq, c.shadow_sq, c.cross, self.body_ratio_sum].iter().all(|v| v.is_finite()) {
            return Err("shadow.cost: sums must be finite and n at most pairs".into());
        }
        for (name, h) in [("latency_shadow", &self.latency_shadow), ("latency_stable", &self.latency_stable)] {
            h.validate().map_err(|e| format!("shadow.{name}: {e}"))?;
        }
        Ok(())
    }

    pub fn merge_into(&self, into: &mut ShadowStats) {
        let mut s = ShadowStats {
            sent: self.sent,
            answered: self.answered,
            failed: self.failed,
            timeouts: self.timeouts,
            dropped: self.dropped,
            too_large: self.too_large,
            pairs: self.pairs,
            mismatch: self.mismatch,
            errors: self.errors,
            task_failures: self.task_failures,
            violating: self.violating,
            cost: self.cost,
            body_ratio_sum: self.body_ratio_sum,
            body_ratio_count: self.body_ratio_count,
            ..ShadowStats::default()
        };
        let _ = s.latency_shadow.merge_sparse(&self.latency_shadow);
        let _ = s.latency_stable.merge_sparse(&self.latency_stable);
        into.merge(&s);
    }
}

/// One side of a stored sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SampleSide {
    pub status: Option<u16>,
    pub outcome: Option<String>,
    pub cost: Option<f64>,
    pub violations: Option<u32>,
    pub latency_ms: f64,
    pub body_bytes: u64,
    /// The first 4 KiB of the body, only with `capture.bodies`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl SampleSide {
    pub fn of(a: &Answer, body: Option<String>) -> Self {
        let outcome = a.result.map(|r| match r {
            TaskResult::Success => "success".to_string(),
            TaskResult::Failure => "failure".to_string(),
            TaskResult::Malformed => "malformed".to_string(),
        });
        Self { status: a.status, outcome, cost: a.cost, violations: a.violations, latency_ms: a.total_us as f64 / 1000.0, body_bytes: a.body.len(), body }
    }
}

/// A mismatching pair, as kept for people. Request headers the spec redacts are never in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowSample {
    pub at_ms: u64,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub mismatch: Vec<String>,
    pub stable: SampleSide,
    pub shadow: SampleSide,
}

impl ShadowSample {
    /// Within the bounds the controller accepts.
    pub fn check(&self) -> Result<(), String> {
        let long = self.method.len() > 32 || self.path.len() > 4096 || self.headers.len() > 128 || self.mismatch.len() > 6;
        let long_header = self.headers.iter().any(|(k, v)| k.len() > 256 || v.len() > 8192);
        let long_body = [&self.stable.body, &self.shadow.body].iter().any(|b| b.as_ref().is_some_and(|b| b.len() > SAMPLE_BODY_BYTES));
        if long || long_header || long_body {
            return Err("shadow sample exceeds its bounds (method 32, path 4096, 128 headers, bodies 4 KiB)".into());
        }
        Ok(())
    }
}

/// The first 4 KiB of a body, as text.
pub fn sample_body(bytes: &[u8]) -> String {
    let cut = bytes.get(..SAMPLE_BODY_BYTES).unwrap_or(bytes);
    let mut s = String::from_utf8_lossy(cut).into_owned();
    while s.len() > SAMPLE_BODY_BYTES {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, result: TaskResult, body: &[u8], ms: u64) -> Answer {
        let mut h = BodyHasher::default();
        h.update(body);
        Answer { status: Some(status), result: Some(result), cost: Some(0.01), violations: None, total_us: ms * 1000, body: h }
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(ShadowSpec::new("support_agent_v2", 10.0).validate(), Ok(()));
        assert!(ShadowSpec::new("outbound|8080|v2|support.default.svc.cluster.local", 0.5).validate().is_ok());
        let cases: [(ShadowSpec, &str); 6] = [
            (ShadowSpec::new("", 10.0), "shadow.cluster"),
            (ShadowSpec::new("a b", 10.0), "shadow.cluster"),
            (ShadowSpec::new("c", 0.0), "shadow.percent"),
            (ShadowSpec::new("c", 10.001), "shadow.percent"),
            (ShadowSpec { timeout_ms: 0, ..ShadowSpec::new("c", 1.0) }, "shadow.timeout_ms"),
            (ShadowSpec { capture: CaptureSpec { redact_headers: vec!["a b".into()], ..CaptureSpec::default() }, ..ShadowSpec::new("c", 1.0) }, "shadow.capture.redact_headers"),
        ];
        for (spec, want) in cases {
            let e = spec.validate().unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
        let s = ShadowSpec { capture: CaptureSpec { redact_headers: vec!["X-Api-Key".into()], ..CaptureSpec::default() }, ..ShadowSpec::new("c", 1.0) };
        assert!(s.redacts("authorization") && s.redacts("Cookie") && s.redacts("x-api-key") && !s.redacts("x-user-id"));
    }

    #[test]
    fn a_pair_compares_every_dimension() {
        let s = answer(200, TaskResult::Success, b"hello", 100);
        assert_eq!(compare(&s, &s.clone()), Mismatch::default());
        let mut c = answer(503, TaskResult::Failure, b"hello!", 400);
        c.cost = Some(0.02);
        c.violations = Some(1);
        let m = compare(&s, &c);
        assert_eq!(m.names(), ["status", "outcome", "cost", "policy", "latency", "body"]);
        let failed = Answer { total_us: 10_000_000, ..Answer::default() };
        assert!(compare(&s, &failed).status);
    }

    #[test]
    fn stats_keep_the_pairing_and_views_give_each_side() {
        let mut st = ShadowStats::default();
        let ok = answer(200, TaskResult::Success, b"a", 10);
        let bad = answer(500, TaskResult::Failure, b"a", 10);
        st.record_pair(&ok, &ok);
        st.record_pair(&ok, &bad);
        st.record_pair(&bad, &bad);
        st.record_pair(&bad, &ok);
        assert_eq!(st.record_pair(&Answer::default(), &ok), None, "no user answer: not a pair");
        assert_eq!(st.pairs, 4);
        assert_eq!(st.errors, Paired { n: 4, both: 1, stable_only: 1, shadow_only: 1 });
        assert_eq!(st.mismatch.any, 2);
        let (c, s) = (st.canary_view(), st.stable_view());
        assert_eq!((c.requests, c.errors, c.outcome_failure, c.outcome_success), (4, 2, 2, 2));
        assert_eq!(s.errors, 2);
        assert_eq!(st.cost.difference(1.0, 0.0).map(|(m, _)| (m * 1e9).round()), Some(0.0));
        // The wire form round-trips.
        let json = serde_json::to_string(&st).unwrap();
        let wire: WireShadowStats = serde_json::from_str(&json).unwrap();
        wire.check().unwrap();
        let mut back = ShadowStats::default();
        wire.merge_into(&mut back);
        assert_eq!(back, st);
        let broken = WireShadowStats { errors: Paired { n: 1, both: 2, ..Paired::default() }, pairs: 1, ..WireShadowStats::default() };
        assert!(broken.check().is_err());
    }

    #[test]
    fn sample_bodies_stop_at_4_kib_on_a_char_boundary() {
        let body = "é".repeat(3000);
        let s = sample_body(body.as_bytes());
        assert!(s.len() <= SAMPLE_BODY_BYTES);
    }
}
