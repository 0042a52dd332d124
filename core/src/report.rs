//! `POST /v1/reports`: what each filter worker sends every report interval.
//!
//! Reports carry deltas. Each (proxy, worker) numbers its reports; the controller ignores a sequence
//! number it has already seen, so a duplicate or reordered delivery is harmless; the filter resends an
//! unacknowledged report unchanged (`outbox`), so a lost acknowledgement does not count it twice.
//! Unknown fields are accepted so that newer filters can report to an older controller.
//!
//! The filter builds a [`Report`] from its live [`VersionStats`]. The controller never deserialises
//! into that type: [`parse`] reads the same JSON into an [`IncomingReport`], whose histograms stay in
//! their sparse wire form, and checks its size and identifiers before anything dense is allocated — a
//! report of 20,000 tiny entries must cost what its bytes cost, not 20,000 × 23 KB.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::VersionStats;
use crate::histogram::{HistogramError, SparseHistogram};
use crate::outcome::MAX_COST;
use crate::shadow::{ShadowSample, ShadowStats, WireShadowStats};

/// Version entries one report may carry (a proxy reports two per rollout it serves).
pub const MAX_VERSION_ENTRIES: usize = 512;
/// Longest proxy, worker, rollout or version identifier accepted (a DNS name's length).
pub const MAX_ID_LEN: usize = 253;
/// Segment counts one version entry may carry (a rollout has at most 32 segments).
pub const MAX_SEGMENT_ENTRIES: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The Envoy process (node id, or `proxy_id` from the plugin config).
    pub proxy: String,
    /// The worker (VM) within that process.
    pub worker: String,
    pub seq: u64,
    /// The config generation this worker has applied (None before the first config).
    pub generation: Option<u64>,
    /// The epoch of the controller data that generation came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    #[serde(default)]
    pub versions: Vec<VersionReport>,
    /// Shadow counts and samples per rollout (absent when none). Older controllers ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<ShadowReport>,
    /// Rollouts this worker sent to stable after losing the controller (`on_controller_loss`),
    /// until a newer config lifts them (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<crate::fallback::FellBack>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    pub rollout: String,
    pub stats: ShadowStats,
    /// Mismatching pairs, at most `capture.samples` per report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<ShadowSample>,
}

/// The shadow entries one report may carry (one per rollout the proxy shadows).
pub const MAX_SHADOW_ENTRIES: usize = 64;
/// Fallback entries a report may carry (one per rollout the worker sent to stable).
pub const MAX_FALLBACK_ENTRIES: usize = 64;
/// Samples one shadow entry may carry (`capture.samples` is at most 100).
pub const MAX_SHADOW_SAMPLES: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionReport {
    pub rollout: String,
    pub version: String,
    pub stats: VersionStats,
    /// Requests of this version by the segment that decided them (requests outside every segment are
    /// not listed). Absent when empty; controllers that predate segments ignore it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub segments: BTreeMap<String, u64>,
}

/// The JSON body of `POST /v1/reports`.
pub fn encode(report: &Report) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(report)
}

/// Why a report was refused. `Json` is a malformed body (400); the others are well-formed JSON that
/// breaks a rule (422).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("malformed report: {0}")]
    Json(String),
    #[error("report does not match the report schema: {0}")]
    Schema(String),
    #[error("report has more than {MAX_VERSION_ENTRIES} version entries, the most accepted")]
    TooManyEntries,
    #[error("a version entry has more than {MAX_SEGMENT_ENTRIES} segment counts, the most accepted")]
    TooManySegments,
    #[error("{field} must be 1-{MAX_ID_LEN} bytes without control characters")]
    Identifier { field: String },
    #[error("versions[{entry}].stats.{field}: {source}")]
    Histogram { entry: usize, field: &'static str, source: HistogramError },
    #[error("versions[{entry}].stats.{field} is not a sum of cost_count costs of at most {MAX_COST:e} each")]
    Cost { entry: usize, field: &'static str },
    #[error("shadow[{entry}]: {why}")]
    Shadow { entry: usize, why: String },
    #[error("fallbacks[{entry}]: {why}")]
    Fallback { entry: usize, why: String },
}

/// A report as the controller receives it, validated, histograms still sparse.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IncomingReport {
    pub proxy: String,
    pub worker: String,
    pub seq: u64,
    pub generation: Option<u64>,
    #[serde(default)]
    pub epoch: Option<String>,
    /// Read with a bound: parsing stops at the first entry past [`MAX_VERSION_ENTRIES`], so an
    /// oversized list costs no more than the bound.
    #[serde(default, deserialize_with = "bounded_versions")]
    pub versions: Vec<IncomingVersion>,
    /// Checked against [`MAX_SHADOW_ENTRIES`] after parsing (entries are small and sparse; the body
    /// limit bounds them meanwhile).
    #[serde(default)]
    pub shadow: Vec<IncomingShadow>,
    /// Checked against [`MAX_FALLBACK_ENTRIES`] after parsing.
    #[serde(default)]
    pub fallbacks: Vec<crate::fallback::FellBack>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IncomingShadow {
    pub rollout: String,
    pub stats: WireShadowStats,
    #[serde(default)]
    pub samples: Vec<ShadowSample>,
}

/// The message that marks the bound's error, so `parse` can tell it from other schema errors.
const TOO_MANY: &str = "fledge: too many version entries";

fn bounded_versions<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IncomingVersion>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<IncomingVersion>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an array of at most {MAX_VERSION_ENTRIES} version entries")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_VERSION_ENTRIES));
            while let Some(v) = seq.next_element()? {
                if out.len() == MAX_VERSION_ENTRIES {
                    return Err(serde::de::Error::custom(TOO_MANY));
                }
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IncomingVersion {
    pub rollout: String,
    pub version: String,
    pub stats: WireStats,
    /// Per-segment request counts, read with a bound ([`MAX_SEGMENT_ENTRIES`]); names are not
    /// checked here — the controller keeps only the names its rollout defines.
    #[serde(default, deserialize_with = "bounded_segments")]
    pub segments: Vec<(String, u64)>,
}

const TOO_MANY_SEGMENTS: &str = "fledge: too many segment entries";

fn bounded_segments<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, u64)>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<(String, u64)>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an object of at most {MAX_SEGMENT_ENTRIES} segment names and request counts")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_SEGMENT_ENTRIES));
            while let Some((k, v)) = map.next_entry::<String, u64>()? {
                if out.len() == MAX_SEGMENT_ENTRIES {
                    return Err(serde::de::Error::custom(TOO_MANY_SEGMENTS));
                }
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(Bounded)
}

/// [`VersionStats`] in its wire form: the same fields, histograms sparse. Keep the two in step (a test
/// round-trips every field).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct WireStats {
    pub requests: u64,
    pub unmeasured: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub errors: u64,
    pub latency_headers: SparseHistogram,
    pub latency_total: SparseHistogram,
    pub latency_ttft: SparseHistogram,
    pub outcome_success: u64,
    pub outcome_failure: u64,
    pub outcome_malformed: u64,
    pub cost_count: u64,
    pub cost_sum: f64,
    pub cost_sum_sq: f64,
    pub cost_malformed: u64,
    pub policy_violations: u64,
    pub policy_violating_requests: u64,
    pub policy_malformed: u64,
}

impl WireStats {
    /// Adds these (validated) counts to `into`; histograms merge bucket by bucket.
    pub fn merge_into(&self, into: &mut VersionStats) {
        let mut scalars = VersionStats {
            requests: self.requests,
            unmeasured: self.unmeasured,
            status_2xx: self.status_2xx,
            status_3xx: self.status_3xx,
            status_4xx: self.status_4xx,
            status_5xx: self.status_5xx,
            errors: self.errors,
            outcome_success: self.outcome_success,
            outcome_failure: self.outcome_failure,
            outcome_malformed: self.outcome_malformed,
            cost_count: self.cost_count,
            cost_sum: finite_or_zero(self.cost_sum),
            cost_sum_sq: finite_or_zero(self.cost_sum_sq),
            cost_malformed: self.cost_malformed,
            policy_violations: self.policy_violations,
            policy_violating_requests: self.policy_violating_requests,
            policy_malformed: self.policy_malformed,
            ..VersionStats::default()
        };
        // Indexes were checked by `parse`; an unchecked caller loses only the bad histogram.
        let _ = scalars.latency_headers.merge_sparse(&self.latency_headers);
        let _ = scalars.latency_total.merge_sparse(&self.latency_total);
        let _ = scalars.latency_ttft.merge_sparse(&self.latency_ttft);
        into.merge(&scalars);
    }
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// An identifier the controller will keep as a map key: non-empty, bounded, printable.
pub fn valid_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control)
}

/// Parses and validates a report body. Nothing here allocates in proportion to anything but the
/// body's own size.
pub fn parse(bytes: &[u8]) -> Result<IncomingReport, ReportError> {
    let report: IncomingReport = serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data if e.to_string().starts_with(TOO_MANY) => ReportError::TooManyEntries,
            Category::Data if e.to_string().starts_with(TOO_MANY_SEGMENTS) => ReportError::TooManySegments,
            Category::Data => ReportError::Schema(e.to_string()),
            _ => ReportError::Json(e.to_string()),
        }
    })?;
    for (field, value) in [("proxy", &report.proxy), ("worker", &report.worker)] {
        if !valid_identifier(value) {
            return Err(ReportError::Identifier { field: field.into() });
        }
    }
    if report.epoch.as_deref().is_some_and(|e| !valid_identifier(e)) {
        return Err(ReportError::Identifier { field: "epoch".into() });
    }
    for (entry, v) in report.versions.iter().enumerate() {
        for (field, value) in [("rollout", &v.rollout), ("version", &v.version)] {
            if !valid_identifier(value) {
                return Err(ReportError::Identifier { field: format!("versions[{entry}].{field}") });
            }
        }
        for (field, h) in [("latency_headers", &v.stats.latency_headers), ("latency_total", &v.stats.latency_total), ("latency_ttft", &v.stats.latency_ttft)] {
            h.validate().map_err(|source| ReportError::Histogram { entry, field, source })?;
        }
        let n = v.stats.cost_count as f64;
        for (field, sum, bound) in [("cost_sum", v.stats.cost_sum, MAX_COST * n), ("cost_sum_sq", v.stats.cost_sum_sq, MAX_COST * MAX_COST * n)] {
            if !(sum.is_finite() && (0.0..=bound).contains(&sum)) {
                return Err(ReportError::Cost { entry, field });
            }
        }
    }
    if report.shadow.len() > MAX_SHADOW_ENTRIES {
        return Err(ReportError::Shadow { entry: MAX_SHADOW_ENTRIES, why: format!("more than {MAX_SHADOW_ENTRIES} shadow entries") });
    }
    for (entry, s) in report.shadow.iter().enumerate() {
        let bad = |why: String| ReportError::Shadow { entry, why };
        if !valid_identifier(&s.rollout) {
            return Err(bad("rollout must be 1-253 bytes without control characters".into()));
        }
        s.stats.check().map_err(bad)?;
        if s.samples.len() > MAX_SHADOW_SAMPLES {
            return Err(bad(format!("more than {MAX_SHADOW_SAMPLES} samples")));
        }
        for sample in &s.samples {
            sample.check().map_err(bad)?;
        }
    }
    if report.fallbacks.len() > MAX_FALLBACK_ENTRIES {
        return Err(ReportError::Fallback { entry: MAX_FALLBACK_ENTRIES, why: format!("more than {MAX_FALLBACK_ENTRIES} entries") });
    }
    for (entry, f) in report.fallbacks.iter().enumerate() {
        if !valid_identifier(&f.rollout) {
            return Err(ReportError::Fallback { entry, why: "rollout must be 1-253 bytes without control characters".into() });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_stats() -> VersionStats {
        let mut s = VersionStats {
            requests: 11,
            status_2xx: 1,
            status_3xx: 2,
            status_4xx: 3,
            status_5xx: 4,
            errors: 5,
            outcome_success: 6,
            outcome_failure: 7,
            outcome_malformed: 8,
            cost_count: 9,
            cost_sum: 1.5,
            cost_sum_sq: 2.5,
            cost_malformed: 10,
            policy_violations: 12,
            policy_violating_requests: 13,
            policy_malformed: 14,
            ..VersionStats::default()
        };
        s.latency_headers.record(1_000);
        s.latency_total.record_n(250_000, 3);
        s.latency_ttft.record_n(40_000, 2);
        s
    }

    #[test]
    fn the_wire_form_carries_every_field_of_version_stats() {
        let report = Report {
            proxy: "p".into(),
            worker: "w".into(),
            seq: 3,
            generation: Some(2),
            epoch: Some("e1".into()),
            shadow: Vec::new(),
            fallbacks: Vec::new(),
            versions: vec![VersionReport {
                rollout: "r".into(),
                version: "v2".into(),
                stats: full_stats(),
                segments: [("employees".to_string(), 7), ("beta".to_string(), 2)].into_iter().collect(),
            }],
        };
        let parsed = parse(&encode(&report).unwrap()).unwrap();
        assert_eq!(parsed.versions[0].segments, vec![("beta".to_string(), 2), ("employees".to_string(), 7)]);
        assert_eq!((parsed.seq, parsed.generation, parsed.epoch.as_deref()), (3, Some(2), Some("e1")));
        let mut merged = VersionStats::default();
        parsed.versions[0].stats.merge_into(&mut merged);
        assert_eq!(merged, full_stats());
    }

    #[test]
    fn refuses_oversized_and_malformed_reports() {
        let entry = r#"{"rollout":"r","version":"v","stats":{}}"#;
        let many = format!(r#"{{"proxy":"p","worker":"w","seq":1,"generation":null,"versions":[{}]}}"#, vec![entry; 10_000].join(","));
        assert_eq!(parse(many.as_bytes()), Err(ReportError::TooManyEntries));
        let at_the_bound = many.replacen(&format!("{entry},"), "", 10_000 - MAX_VERSION_ENTRIES);
        assert_eq!(parse(at_the_bound.as_bytes()).map(|r| r.versions.len()), Ok(MAX_VERSION_ENTRIES));
        assert!(matches!(parse(b"{"), Err(ReportError::Json(_))));
        assert!(matches!(parse(br#"{"proxy":1}"#), Err(ReportError::Schema(_))));
        let empty_proxy = br#"{"proxy":"","worker":"w","seq":1,"generation":null}"#;
        assert!(matches!(parse(empty_proxy), Err(ReportError::Identifier { .. })));
        let long = format!(r#"{{"proxy":"{}","worker":"w","seq":1,"generation":null}}"#, "x".repeat(300));
        assert!(matches!(parse(long.as_bytes()), Err(ReportError::Identifier { .. })));
        let bad_bucket = br#"{"proxy":"p","worker":"w","seq":1,"generation":1,
            "versions":[{"rollout":"r","version":"v","stats":{"latency_total":{"buckets":[[60000,1]]}}}]}"#;
        let e = parse(bad_bucket).unwrap_err().to_string();
        assert!(e.contains("versions[0].stats.latency_total") && e.contains("60000"), "{e}");
        let segs = |n: usize| {
            let entries: Vec<String> = (0..n).map(|i| format!(r#""s{i}":1"#)).collect();
            format!(r#"{{"proxy":"p","worker":"w","seq":1,"generation":1,"versions":[{{"rollout":"r","version":"v","stats":{{}},"segments":{{{}}}}}]}}"#, entries.join(","))
        };
        assert_eq!(parse(segs(MAX_SEGMENT_ENTRIES).as_bytes()).map(|r| r.versions[0].segments.len()), Ok(MAX_SEGMENT_ENTRIES));
        assert_eq!(parse(segs(10_000).as_bytes()), Err(ReportError::TooManySegments));
        let negative = br#"{"proxy":"p","worker":"w","seq":1,"generation":1,"versions":[{"rollout":"r","version":"v","stats":{},"segments":{"a":-1}}]}"#;
        assert!(matches!(parse(negative), Err(ReportError::Schema(_))));
        let old = br#"{"proxy":"p","worker":"w","seq":1,"generation":1,"versions":[{"rollout":"r","version":"v","stats":{}}]}"#;
        assert_eq!(parse(old).map(|r| r.versions[0].segments.len()), Ok(0), "reports without segments still parse");
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(deep.as_bytes()).is_err(), "deep nesting is refused, not a stack overflow");
    }

    #[test]
    fn cost_sums_must_fit_the_per_task_bound() {
        let report = |sum: &str, count: u64| {
            format!(r#"{{"proxy":"p","worker":"w","seq":1,"generation":1,"versions":[{{"rollout":"r","version":"v","stats":{{"cost_count":{count},"cost_sum":{sum}}}}}]}}"#)
        };
        assert!(parse(report("2.5", 2).as_bytes()).is_ok());
        assert_eq!(parse(report("1e308", 2).as_bytes()), Err(ReportError::Cost { entry: 0, field: "cost_sum" }));
        assert_eq!(parse(report("1", 0).as_bytes()), Err(ReportError::Cost { entry: 0, field: "cost_sum" }), "a cost without a task");
        assert_eq!(parse(report("-1", 1).as_bytes()), Err(ReportError::Cost { entry: 0, field: "cost_sum" }));
    }

    #[test]
    fn non_finite_costs_are_dropped() {
        let s = WireStats { cost_sum: f64::NAN, cost_sum_sq: f64::INFINITY, ..WireStats::default() };
        let mut into = VersionStats::default();
        s.merge_into(&mut into);
        assert_eq!((into.cost_sum, into.cost_sum_sq), (0.0, 0.0));
    }
}
