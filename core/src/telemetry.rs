//! Per-request telemetry: what one request contributes to its version's stats, and the per-worker
//! aggregate that is drained to the controller as a [`Report`] of deltas.
//!
//! Recording is pure arithmetic on counters and a histogram bucket: the filter calls it once per
//! request (in `on_log`) with values it already read, and sends nothing until the next drain.

use std::collections::{BTreeMap, HashMap};

use crate::analysis::VersionStats;
use crate::outcome::TaskResult;
use crate::report::{Report, ShadowReport, VersionReport};
use crate::shadow::{ShadowSample, ShadowStats};

/// A signal that may be absent, present, or present but unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Signal<T> {
    #[default]
    Absent,
    Value(T),
    Malformed,
}

impl<T> Signal<T> {
    pub fn from_parsed(raw: Option<&[u8]>, parse: impl FnOnce(&[u8]) -> Option<T>) -> Self {
        match raw {
            None => Signal::Absent,
            Some(v) => parse(v).map_or(Signal::Malformed, Signal::Value),
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Signal::Absent)
    }
}

/// What the filter observed about one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Response status; None when no response headers were seen (reset before headers).
    pub status: Option<u16>,
    /// Envoy flagged an upstream failure (connect failure, reset, timeout, overflow).
    pub upstream_failure: bool,
    pub headers_us: Option<u64>,
    pub total_us: Option<u64>,
    /// Time to the first response body byte (absent for an answer without a body).
    pub ttft_us: Option<u64>,
    pub result: Option<TaskResult>,
    pub cost: Signal<f64>,
    pub violations: Signal<u32>,
}

/// Adds one request to `stats`. An error is a 5xx or an upstream failure, counted once.
pub fn record(stats: &mut VersionStats, s: &Sample) {
    stats.requests += 1;
    match s.status.map(|c| c / 100) {
        Some(2) => stats.status_2xx += 1,
        Some(3) => stats.status_3xx += 1,
        Some(4) => stats.status_4xx += 1,
        Some(5) => stats.status_5xx += 1,
        _ => {}
    }
    // No status and no upstream failure means the client went away: not the version's fault.
    if s.status.is_some_and(|c| c >= 500) || s.upstream_failure {
        stats.errors += 1;
    }
    if let Some(us) = s.headers_us {
        stats.latency_headers.record(us);
    }
    if let Some(us) = s.total_us {
        stats.latency_total.record(us);
    }
    if let Some(us) = s.ttft_us {
        stats.latency_ttft.record(us);
    }
    match s.result {
        Some(TaskResult::Success) => stats.outcome_success += 1,
        Some(TaskResult::Failure) => stats.outcome_failure += 1,
        Some(TaskResult::Malformed) => stats.outcome_malformed += 1,
        None => {}
    }
    match s.cost {
        Signal::Value(c) => {
            stats.cost_count += 1;
            stats.cost_sum += c;
            stats.cost_sum_sq += c * c;
        }
        Signal::Malformed => stats.cost_malformed += 1,
        Signal::Absent => {}
    }
    match s.violations {
        Signal::Value(n) => {
            stats.policy_violations += u64::from(n);
            if n > 0 {
                stats.policy_violating_requests += 1;
            }
        }
        Signal::Malformed => stats.policy_malformed += 1,
        Signal::Absent => {}
    }
}

/// One version's counts since the last drain: its stats and its requests per segment.
#[derive(Debug, Default)]
struct Entry {
    stats: VersionStats,
    segments: BTreeMap<String, u64>,
}

/// One worker's stats since the last drain, by rollout and version.
#[derive(Debug, Default)]
pub struct Telemetry {
    by_rollout: HashMap<String, HashMap<String, Entry>>,
    /// Stats of a report that never left the proxy: already exported to Envoy's counters, so they ride
    /// along with the next report but are not exported again.
    carried: HashMap<(String, String), Entry>,
    /// Shadow counts and samples by rollout (carried ones merged in on restore).
    shadow: HashMap<String, ShadowEntry>,
    seq: u64,
}

/// One rollout's shadow counts since the last drain, and the mismatching pairs kept for people.
#[derive(Debug, Default)]
pub struct ShadowEntry {
    pub stats: ShadowStats,
    pub samples: Vec<ShadowSample>,
}

impl ShadowEntry {
    /// Keeps `sample` if fewer than `limit` are held (the rest of the interval's are counted only).
    pub fn keep_sample(&mut self, limit: u32, sample: impl FnOnce() -> ShadowSample) {
        if self.samples.len() < limit as usize {
            self.samples.push(sample());
        }
    }
}

/// The rollout/version pair's entry: one hash lookup per map when it exists, and the keys allocated
/// only the first time a pair is seen in an interval (the entry API would allocate every time). A
/// macro, not a method: a method returning the borrow from either arm does not pass the borrow checker.
macro_rules! entry {
    ($t:expr, $rollout:expr, $version:expr) => {{
        let versions = match $t.by_rollout.get_mut($rollout) {
            Some(v) => v,
            None => $t.by_rollout.entry($rollout.to_string()).or_default(),
        };
        match versions.get_mut($version) {
            Some(s) => s,
            None => versions.entry($version.to_string()).or_default(),
        }
    }};
}

impl Telemetry {
    /// Allocates only the first time a rollout/version pair (or segment) is seen in an interval.
    /// `segment` names the segment that decided the request, if any.
    pub fn record(&mut self, rollout: &str, version: &str, segment: Option<&str>, sample: &Sample) {
        let entry = entry!(self, rollout, version);
        record(&mut entry.stats, sample);
        Self::count_segment(entry, segment);
    }

    /// A request routed to `version` but not measured (stable's sampling): counted, nothing else.
    pub fn unmeasured(&mut self, rollout: &str, version: &str, segment: Option<&str>) {
        let entry = entry!(self, rollout, version);
        entry.stats.unmeasured = entry.stats.unmeasured.saturating_add(1);
        Self::count_segment(entry, segment);
    }

    fn count_segment(entry: &mut Entry, segment: Option<&str>) {
        if let Some(name) = segment {
            match entry.segments.get_mut(name) {
                Some(n) => *n += 1,
                None => {
                    entry.segments.insert(name.to_string(), 1);
                }
            }
        }
    }

    /// The shadow counts of `rollout` since the last drain, to add to (always `Some`; allocates
    /// only the first time a rollout shadows in an interval).
    pub fn shadow(&mut self, rollout: &str) -> Option<&mut ShadowEntry> {
        if !self.shadow.contains_key(rollout) {
            self.shadow.insert(rollout.to_string(), ShadowEntry::default());
        }
        self.shadow.get_mut(rollout)
    }

    /// Everything since the last drain, as the next report. Sent even when empty: it is also the
    /// proxy's heartbeat and its confirmation of the applied generation.
    ///
    /// `export` sees only the requests recorded since the last drain — each request exactly once,
    /// whatever becomes of the report — before the carried stats of an undelivered report are added.
    pub fn drain(&mut self, proxy: &str, worker: &str, generation: Option<u64>, export: impl FnOnce(&Report)) -> Report {
        self.seq += 1;
        let mut versions = Vec::new();
        for (rollout, by_version) in self.by_rollout.drain() {
            for (version, e) in by_version {
                versions.push(VersionReport { rollout: rollout.clone(), version, stats: e.stats, segments: e.segments });
            }
        }
        let shadow = self
            .shadow
            .drain()
            .filter(|(_, e)| !e.stats.is_empty() || !e.samples.is_empty())
            .map(|(rollout, e)| ShadowReport { rollout, stats: e.stats, samples: e.samples })
            .collect();
        let mut report = Report { proxy: proxy.to_string(), worker: worker.to_string(), seq: self.seq, generation, epoch: None, versions, shadow, fallbacks: Vec::new() };
        export(&report);
        for ((rollout, version), e) in self.carried.drain() {
            match report.versions.iter_mut().find(|v| v.rollout == rollout && v.version == version) {
                Some(v) => {
                    v.stats.merge(&e.stats);
                    for (name, n) in e.segments {
                        *v.segments.entry(name).or_default() += n;
                    }
                }
                None => report.versions.push(VersionReport { rollout, version, stats: e.stats, segments: e.segments }),
            }
        }
        report
    }

    /// Takes back the stats of a report that never left (its dispatch failed), so nothing is lost:
    /// they go out with the next drain, without being exported again. A report that did leave is
    /// resent as is instead (see `outbox`).
    pub fn restore(&mut self, report: Report) {
        for s in report.shadow {
            if let Some(e) = self.shadow(&s.rollout) {
                e.stats.merge(&s.stats);
                e.samples.extend(s.samples);
            }
        }
        for v in report.versions {
            let e = self.carried.entry((v.rollout, v.version)).or_default();
            e.stats.merge(&v.stats);
            for (name, n) in v.segments {
                *e.segments.entry(name).or_default() += n;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_rollout.is_empty() && self.carried.is_empty() && self.shadow.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{parse_cost, parse_violations};

    fn ok(status: u16) -> Sample {
        Sample { status: Some(status), headers_us: Some(1_000), total_us: Some(2_000), ..Sample::default() }
    }

    #[test]
    fn classes_errors_and_outcomes() {
        let mut s = VersionStats::default();
        record(&mut s, &ok(200));
        record(&mut s, &ok(302));
        record(&mut s, &ok(404));
        record(&mut s, &ok(503));
        record(&mut s, &Sample { status: Some(503), upstream_failure: true, ..Sample::default() });
        record(&mut s, &Sample { status: None, ..Sample::default() });
        assert_eq!((s.requests, s.status_2xx, s.status_3xx, s.status_4xx, s.status_5xx), (6, 1, 1, 1, 2));
        assert_eq!(s.errors, 2, "5xx and upstream failure counted once each; a client reset is no error");
        assert_eq!(s.latency_total.count(), 4);

        let mut s = VersionStats::default();
        let sample = |result, cost: &[u8], viol: &[u8]| Sample {
            status: Some(200),
            result: Some(result),
            cost: Signal::from_parsed(Some(cost), parse_cost),
            violations: Signal::from_parsed(Some(viol), parse_violations),
            ..Sample::default()
        };
        record(&mut s, &sample(TaskResult::Success, b"0.5", b"0"));
        record(&mut s, &sample(TaskResult::Failure, b"1.5", b"2"));
        record(&mut s, &sample(TaskResult::Malformed, b"abc", b"-1"));
        assert_eq!((s.outcome_success, s.outcome_failure, s.outcome_malformed), (1, 1, 1));
        assert_eq!((s.cost_count, s.cost_sum, s.cost_sum_sq, s.cost_malformed), (2, 2.0, 2.5, 1));
        assert_eq!((s.policy_violations, s.policy_violating_requests, s.policy_malformed), (2, 1, 1));
    }

    #[test]
    fn drain_restore_loses_nothing_and_exports_each_request_once() {
        let mut t = Telemetry::default();
        let exported = std::cell::Cell::new(0u64);
        let count = |r: &Report| exported.set(exported.get() + r.versions.iter().map(|v| v.stats.requests).sum::<u64>());
        for _ in 0..3 {
            t.record("r", "v1", None, &ok(200));
        }
        t.record("r", "v2", Some("employees"), &ok(500));
        let report = t.drain("p", "w", Some(4), count);
        assert_eq!((report.seq, report.generation, report.versions.len()), (1, Some(4), 2));
        assert!(t.is_empty());
        // The dispatch failed: the report goes back, and comes out with the next drain.
        t.restore(report);
        assert!(!t.is_empty());
        t.record("r", "v1", None, &ok(200));
        t.record("r", "v2", Some("employees"), &ok(200));
        let again = t.drain("p", "w", Some(4), count);
        assert_eq!(again.seq, 2);
        let v1 = again.versions.iter().find(|v| v.version == "v1").map(|v| v.stats.requests);
        assert_eq!(v1, Some(4), "nothing lost");
        let segs = again.versions.iter().find(|v| v.version == "v2").map(|v| v.segments.clone()).unwrap_or_default();
        assert_eq!(segs.get("employees"), Some(&2), "segment counts are carried too");
        assert!(again.versions.iter().find(|v| v.version == "v1").is_some_and(|v| v.segments.is_empty()));
        t.restore(again);
        let third = t.drain("p", "w", None, count);
        assert_eq!(third.versions.iter().map(|v| v.stats.requests).sum::<u64>(), 6);
        assert_eq!(exported.get(), 6, "Envoy's counters saw each of the 6 requests once");
        assert_eq!(t.drain("p", "w", None, |_| {}).versions.len(), 0, "an empty drain is a heartbeat");
    }

    #[test]
    fn shadow_counts_drain_and_restore() {
        let mut t = Telemetry::default();
        let e = t.shadow("r").unwrap();
        e.stats.sent += 3;
        e.keep_sample(1, ShadowSample::default);
        e.keep_sample(1, ShadowSample::default);
        let report = t.drain("p", "w", Some(1), |_| {});
        assert_eq!((report.shadow.len(), report.shadow[0].stats.sent, report.shadow[0].samples.len()), (1, 3, 1));
        t.restore(report);
        t.shadow("r").unwrap().stats.sent += 1;
        let again = t.drain("p", "w", Some(1), |_| {});
        assert_eq!(again.shadow[0].stats.sent, 4, "nothing lost");
        let parsed = crate::report::parse(&crate::report::encode(&again).unwrap()).unwrap();
        assert_eq!(parsed.shadow[0].stats.sent, 4);
        assert!(t.drain("p", "w", None, |_| {}).shadow.is_empty());
    }
}
