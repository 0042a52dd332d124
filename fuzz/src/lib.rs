//! The invariant checks behind every fuzz target, one `check_<target>(data: &[u8])` per target.
//!
//! This file is compiled twice: as the library of the `fledge-fuzz` crate (nightly, libFuzzer, one
//! `fuzz_target!` per check under `fuzz_targets/`) and, through `#[path]`, as a module of the
//! replay test `integration/tests/fuzz_corpus.rs` (stable, `cargo test --workspace`), which runs
//! every committed corpus file through the same function. One source, so the fuzzer and the replay
//! cannot drift. It may therefore use only crates both have: `fledge_core`, `fledge_controller`,
//! `serde` and `serde_json`.
//!
//! A check calls the product's entry point (which must not panic on any input) and then asserts
//! invariants of the result; a violated invariant is an `assert!` failure, which is what libFuzzer
//! reports as a crash and what makes the replay test fail.

use fledge_controller::error::ApiError;
use fledge_core::analysis::VersionStats;
use fledge_core::bucket::{Weight, BUCKETS};
use fledge_core::histogram::{
    bucket_index, Histogram, HistogramError, SparseHistogram, BUCKET_COUNT, MAX_MICROS, MIN_MICROS,
};
use fledge_core::outcome::{parse_cost, parse_result, parse_violations, TaskResult};
use fledge_core::plugin::{PluginConfig, StickySource};
use fledge_core::report::{self, valid_identifier, MAX_VERSION_ENTRIES};
use fledge_core::rollout::{self, Mode, RolloutSpec};
use fledge_core::route::{strip_port, CompiledRollout, KeySource, RouteTable, Side};
use fledge_core::snapshot::ConfigSnapshot;

/// A check: panics when `data` breaks an invariant of the code under test.
pub type Check = fn(&[u8]);

/// Every target, by name: the corpus directory is `fuzz/corpus/<name>/`.
pub const TARGETS: [(&str, Check); 7] = [
    ("plugin_config", check_plugin_config),
    ("rollout_spec", check_rollout_spec),
    ("report", check_report),
    ("outcomes", check_outcomes),
    ("config_snapshot", check_config_snapshot),
    ("outcome_headers", check_outcome_headers),
    ("sparse_histogram", check_sparse_histogram),
];

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_lower_token(s: &str) -> bool {
    is_token(s) && !s.bytes().any(|b| b.is_ascii_uppercase())
}

/// `PluginConfig::parse`: an accepted configuration has every field in its documented range, its
/// header names are lower-case tokens, it re-encodes to JSON that parses back to the same value,
/// and the proxy id it sets is one the controller's report parser accepts (the filter sends
/// `proxy_id` verbatim as the report's `proxy`).
pub fn check_plugin_config(data: &[u8]) {
    let Ok(c) = PluginConfig::parse(data) else { return };
    assert!((10..=10_000).contains(&c.tick_ms), "tick_ms {}", c.tick_ms);
    assert!((100..=60_000).contains(&c.report_interval_ms), "report_interval_ms {}", c.report_interval_ms);
    assert!(
        (1_000..=600_000).contains(&c.controller.poll_timeout_ms),
        "poll_timeout_ms {}",
        c.controller.poll_timeout_ms
    );
    assert!(!c.controller.cluster.trim().is_empty() && !c.controller.authority.trim().is_empty());
    if let Some(t) = &c.controller.token {
        assert!(!t.trim().is_empty(), "empty token accepted");
    }
    for h in [&c.route_header, &c.outcome.result, &c.outcome.cost, &c.outcome.policy_violations] {
        assert!(is_lower_token(h), "header name {h:?}");
    }
    for s in &c.sticky {
        match s {
            StickySource::Header(n) => assert!(is_lower_token(n), "sticky header {n:?}"),
            StickySource::Cookie(n) => assert!(is_token(n), "sticky cookie {n:?}"),
        }
    }
    if let Some(id) = &c.proxy_id {
        assert!(
            valid_identifier(id),
            "plugin accepts proxy_id {id:?}, which every report would carry and the controller refuses"
        );
    }

    let sticky: Vec<String> = c
        .sticky
        .iter()
        .map(|s| match s {
            StickySource::Header(n) => format!("header:{n}"),
            StickySource::Cookie(n) => format!("cookie:{n}"),
        })
        .collect();
    let encoded = serde_json::json!({
        "controller": {
            "cluster": c.controller.cluster,
            "authority": c.controller.authority,
            "token": c.controller.token,
            "poll_timeout_ms": c.controller.poll_timeout_ms,
        },
        "route_header": c.route_header,
        "sticky": sticky,
        "tick_ms": c.tick_ms,
        "report_interval_ms": c.report_interval_ms,
        "outcome": {
            "result_header": c.outcome.result,
            "cost_header": c.outcome.cost,
            "policy_violations_header": c.outcome.policy_violations,
        },
        "proxy_id": c.proxy_id,
    });
    let bytes = serde_json::to_vec(&encoded).unwrap_or_default();
    match PluginConfig::parse(&bytes) {
        Ok(back) => assert_eq!(back, c, "parse → encode → parse changed the configuration"),
        Err(e) => panic!("re-encoded configuration is refused: {e}"),
    }
}

/// `RolloutSpec` from JSON, `validate`, `mode`, and `validate_name` on the input: a valid spec has a
/// mode, a manual weight is within 0-100 %, an automated spec's steps strictly increase within
/// (0, 100] and its options are in range; a spec and an analysis spec survive a JSON round trip
/// with the same verdict.
pub fn check_rollout_spec(data: &[u8]) {
    if let Ok(name) = std::str::from_utf8(data) {
        if rollout::validate_name(name).is_ok() {
            assert!((1..=63).contains(&name.len()));
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
                "name {name:?}"
            );
        }
        let _ = rollout::default_salt(name);
    }
    let Ok(spec) = serde_json::from_slice::<RolloutSpec>(data) else { return };
    let verdict = spec.validate();
    let mode = spec.mode();
    let _ = spec.salt_for("fuzz");

    let encoded = serde_json::to_vec(&spec).unwrap_or_default();
    match serde_json::from_slice::<RolloutSpec>(&encoded) {
        Ok(back) => {
            assert_same_json(&back, &spec, "parse → encode → parse changed the spec");
            if back == spec {
                assert_eq!(back.validate(), verdict);
            }
        }
        Err(e) => panic!("re-encoded spec is refused: {e}"),
    }

    if verdict.is_ok() {
        assert!(mode.is_ok(), "validate() is Ok but mode() is {mode:?}");
        let mut hosts: Vec<String> = spec.hosts.iter().map(|h| rollout::normalize_host(h)).collect();
        hosts.sort();
        hosts.dedup();
        assert_eq!(hosts.len(), spec.hosts.len(), "a valid spec lists a host twice");
        assert_ne!(spec.stable, spec.canary);
        // Notifications: at most 8, each to an http(s) URL with a host and no credentials, for known
        // events only.
        let notifications = spec.notifications.as_deref().unwrap_or_default();
        assert!(notifications.len() <= rollout::MAX_NOTIFICATIONS);
        for n in notifications {
            let rest = n.url.strip_prefix("https://").or_else(|| n.url.strip_prefix("http://"));
            let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
            assert!(authority.is_some_and(|a| !a.is_empty() && !a.contains('@')), "notification url {:?}", n.url);
            assert!(!n.events.is_empty() && n.events.iter().all(|e| rollout::EVENT_KINDS.contains(&e.as_str())), "events {:?}", n.events);
        }
    }
    match mode {
        Ok(Mode::Manual(w)) => {
            assert!(w.basis_points() <= BUCKETS);
            assert_eq!(Some(w), spec.weight);
        }
        Ok(Mode::Automated(a)) => {
            assert!(spec.weight.is_none());
            let steps = a.steps();
            assert!(!steps.is_empty());
            // Only a blue-green preview or a shadow phase is a step at 0 %.
            let zero_ok = |i: usize| a.is_preview(i) || a.is_shadow(i);
            assert!(steps.iter().enumerate().all(|(i, s)| s.is_finite() && (*s > 0.0 || (*s == 0.0 && zero_ok(i))) && *s <= 100.0), "steps {steps:?}");
            assert!(steps.windows(2).all(|w| w.first() < w.last()), "steps {steps:?} do not increase");
            assert!(a.interval_seconds() > 0.0 && a.interval_seconds() <= 3_600.0);
            assert!(a.failure_limit() >= 1 && a.min_requests() >= 1);
            assert!(!a.gates().is_empty());
            for g in a.gates() {
                let _ = g.describe();
            }
            // Every step of an accepted spec is a weight the data plane can carry, above zero: the
            // controller routes a step through `Weight::try_from_percent` (controller/src/machine.rs
            // `weight_of`, which falls back to 0 % on an error).
            for s in steps.iter().filter(|s| verdict.is_ok() && **s > 0.0) {
                match Weight::try_from_percent(*s) {
                    Ok(w) => assert!(w.basis_points() > 0, "step {s} % is accepted but routes 0 basis points"),
                    Err(e) => panic!("step {s} % is accepted by the analysis spec but is not a weight: {e}"),
                }
            }
            let encoded = serde_json::to_vec(&a).unwrap_or_default();
            match serde_json::from_slice::<fledge_core::analysis::AnalysisSpec>(&encoded) {
                Ok(back) => assert_same_json(&back, &a, "analysis spec changed in a JSON round trip"),
                Err(e) => panic!("re-encoded analysis spec is refused: {e}"),
            }
        }
        Err(_) => {}
    }
}

/// Whether two JSON values are equal, floats within a few ULP: serde_json's default float parser is
/// best-effort (exact only with its `float_roundtrip` feature), so a float may come back one ULP off
/// after a round trip; that is serde_json's documented precision, not a fledge bug.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn assert_same_json<T: serde::Serialize + std::fmt::Debug>(a: &T, b: &T, what: &str) {
    let (x, y) = (serde_json::to_value(a), serde_json::to_value(b));
    match (x, y) {
        (Ok(x), Ok(y)) => assert!(same_json(&x, &y), "{what}: {a:?} vs {b:?}"),
        (x, y) => panic!("{what}: cannot serialise: {x:?} {y:?}"),
    }
}

/// Adds `b` to `a`, saturating, as the counters do.
fn sat(a: u64, b: u64) -> u64 {
    a.saturating_add(b)
}

/// `report::parse`: an accepted report has at most `MAX_VERSION_ENTRIES` entries, valid identifiers
/// and in-range histograms; merging every entry with `WireStats::merge_into` (as the controller's
/// ingest does) adds the counters and histogram totals and keeps the cost sums finite.
pub fn check_report(data: &[u8]) {
    let Ok(r) = report::parse(data) else { return };
    assert!(r.versions.len() <= MAX_VERSION_ENTRIES, "{} entries accepted", r.versions.len());
    assert!(valid_identifier(&r.proxy) && valid_identifier(&r.worker));
    if let Some(e) = &r.epoch {
        assert!(valid_identifier(e), "epoch {e:?}");
    }
    let mut merged = VersionStats::default();
    let (mut requests, mut latency_total, mut latency_headers) = (0u64, 0u64, 0u64);
    for v in &r.versions {
        assert!(valid_identifier(&v.rollout) && valid_identifier(&v.version));
        assert_eq!(v.stats.latency_total.validate(), Ok(()));
        assert_eq!(v.stats.latency_headers.validate(), Ok(()));
        let mut alone = VersionStats::default();
        v.stats.merge_into(&mut alone);
        assert!(alone.cost_sum.is_finite() && alone.cost_sum_sq.is_finite(), "one entry's cost sums are not finite");
        assert_eq!(alone.latency_total.count(), v.stats.latency_total.total());
        v.stats.merge_into(&mut merged);
        requests = sat(requests, v.stats.requests);
        latency_total = sat(latency_total, v.stats.latency_total.total());
        latency_headers = sat(latency_headers, v.stats.latency_headers.total());
    }
    assert_eq!(merged.requests, requests);
    assert_eq!(merged.latency_total.count(), latency_total);
    assert_eq!(merged.latency_headers.count(), latency_headers);
    assert!(
        merged.cost_sum.is_finite() && merged.cost_sum_sq.is_finite(),
        "merging one report's entries made the cost sums non-finite: cost_sum {:e}, cost_sum_sq {:e}",
        merged.cost_sum,
        merged.cost_sum_sq
    );
    let _ = merged.cost_per_task();
    let _ = merged.latency_p99_ms();
}

/// `parse_outcomes(body, "v1", "v2")`: every accepted item names v1 or v2 and carries exactly one
/// task's worth of finite, non-negative signals; a refusal is a 400 or a 422, never a 5xx.
pub fn check_outcomes(data: &[u8]) {
    match fledge_controller::ingest::parse_outcomes(data, "v1", "v2") {
        Ok(items) => {
            assert!(
                !items.is_empty() || data.trim_ascii_start().first() == Some(&b'['),
                "an object body gave no outcome"
            );
            assert!(items.len() <= fledge_controller::ingest::MAX_OUTCOMES);
            for (version, s) in &items {
                assert!(version == "v1" || version == "v2", "version {version:?}");
                assert_eq!(s.requests, 0);
                assert!(s.outcome_success + s.outcome_failure <= 1);
                assert!(s.cost_count <= 1);
                assert!(s.cost_sum.is_finite() && s.cost_sum >= 0.0, "cost_sum {:e}", s.cost_sum);
                assert!(
                    s.cost_sum_sq.is_finite() && s.cost_sum_sq >= 0.0,
                    "cost {:e} gives cost_sum_sq {:e}",
                    s.cost_sum,
                    s.cost_sum_sq
                );
                assert_eq!(s.policy_violating_requests, u64::from(s.policy_violations > 0));
            }
        }
        Err(ApiError::BadRequest(_) | ApiError::Invalid(_)) => {}
        Err(other) => panic!("parse_outcomes refused with an unexpected error kind: {other:?}"),
    }
}

/// The rollout a host should map to, by Istio's rules, computed independently of `RouteTable`:
/// exact host, else the longest matching `*.suffix`, else `*`.
fn expected_owner(snap: &ConfigSnapshot, authority: &str) -> Option<usize> {
    let host = strip_port(authority).to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let patterns =
        || snap.rollouts.iter().enumerate().flat_map(|(i, r)| r.hosts.iter().map(move |h| (i, h.to_ascii_lowercase())));
    if let Some((i, _)) = patterns().find(|(_, h)| !h.starts_with('*') && *h == host) {
        return Some(i);
    }
    let wildcard = patterns()
        .filter_map(|(i, h)| {
            h.strip_prefix("*.").map(|s| (i, s.len())).filter(|_| host.ends_with(&h[1..]) && host.len() > h.len() - 1)
        })
        .max_by_key(|(_, len)| *len);
    if let Some((i, _)) = wildcard {
        return Some(i);
    }
    patterns().find(|(_, h)| h == "*").map(|(i, _)| i)
}

fn check_decision(r: &CompiledRollout, key: &[u8], random: u32) {
    let keyed = r.decide(Some((1, key)), || panic!("decide() drew randomness for a keyed request"));
    let again = r.decide(Some((0, key)), || panic!("decide() drew randomness for a keyed request"));
    assert_eq!((keyed.side, keyed.bucket), (again.side, again.bucket), "same key, different decision");
    assert_eq!(keyed.source, KeySource::Sticky(1));
    let unkeyed = r.decide(None, || random);
    assert_eq!(unkeyed.source, KeySource::Random);
    for d in [keyed, unkeyed] {
        assert!(d.bucket.get() < BUCKETS);
        let canary = d.bucket.get() < r.weight.basis_points();
        assert_eq!(d.side == Side::Canary, canary, "bucket {} weight {}", d.bucket.get(), r.weight.basis_points());
        if r.weight == Weight::ZERO {
            assert_eq!(d.side, Side::Stable);
        }
        if r.weight == Weight::FULL {
            assert_eq!(d.side, Side::Canary);
        }
    }
    assert_eq!(r.version(Side::Stable), r.stable);
    assert_eq!(r.version(Side::Canary), r.canary);
}

/// `ConfigSnapshot::parse`, `RouteTable::compile`, `lookup` and `decide`: an accepted snapshot
/// compiles, survives a JSON round trip, and routes every host exactly as Istio's rules say
/// (checked against an independent matcher) for hosts built from its own patterns and the input.
pub fn check_config_snapshot(data: &[u8]) {
    let Ok(snap) = ConfigSnapshot::parse(data) else { return };
    let table = match RouteTable::compile(&snap) {
        Ok(t) => t,
        Err(e) => panic!("a parsed (validated) snapshot does not compile: {e}"),
    };
    assert!(table.is(&snap.epoch, snap.generation));
    assert_eq!(table.rollouts().len(), snap.rollouts.len());
    let encoded = serde_json::to_vec(&snap).unwrap_or_default();
    match ConfigSnapshot::parse(&encoded) {
        Ok(back) => assert_eq!(back, snap, "parse → encode → parse changed the snapshot"),
        Err(e) => panic!("re-encoded snapshot is refused: {e}"),
    }

    let mut probes: Vec<String> =
        vec![String::new(), "other.invalid".into(), "a".into(), ":80".into(), "[::1]:80".into()];
    for r in snap.rollouts.iter().take(16) {
        for h in r.hosts.iter().take(16) {
            match h.strip_prefix('*') {
                Some("") => probes.push("catch-all.example".into()),
                Some(suffix) => {
                    probes.push(format!("fz{suffix}"));
                    probes.push(format!("a.b{suffix}:8443"));
                    probes.push(suffix.to_string());
                    probes.push(suffix.trim_start_matches('.').to_string());
                    probes.push(format!("FZ{}", suffix.to_ascii_uppercase()));
                }
                None => {
                    probes.push(h.clone());
                    probes.push(h.to_ascii_uppercase());
                    probes.push(format!("{h}:8080"));
                    probes.push(format!("x.{h}"));
                    probes.push(h.split_once('.').map(|(_, rest)| rest.to_string()).unwrap_or_default());
                }
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    probes.extend(text.split(['"', ',', ' ']).filter(|s| s.len() <= 300).take(32).map(str::to_string));

    for (n, probe) in probes.iter().enumerate() {
        let got = table.lookup(probe);
        let want = expected_owner(&snap, probe);
        assert_eq!(
            got.map(|r| r.index),
            want,
            "lookup({probe:?}) gave {:?}, Istio's rules give {want:?}",
            got.map(|r| &r.name)
        );
        if let Some(r) = got {
            let rs = snap.rollouts.get(r.index);
            assert_eq!(
                rs.map(|s| (&s.name, &s.stable, &s.canary, s.weight, s.salt)),
                Some((&r.name, &r.stable, &r.canary, r.weight, r.salt))
            );
            check_decision(r, probe.as_bytes(), (n as u32) ^ (snap.generation as u32));
        }
    }
}

/// `parse_result`, `parse_cost`, `parse_violations` on arbitrary bytes: total functions; a cost is
/// finite and non-negative; results ignore case and surrounding spaces.
pub fn check_outcome_headers(data: &[u8]) {
    let result = parse_result(data);
    let lowered = data.to_ascii_lowercase();
    let expected = match lowered.trim_ascii() {
        b"success" => TaskResult::Success,
        b"failure" => TaskResult::Failure,
        _ => TaskResult::Malformed,
    };
    assert_eq!(result, expected);
    if let Some(c) = parse_cost(data) {
        assert!(c.is_finite() && c >= 0.0, "cost {c}");
    }
    if let Some(v) = parse_violations(data) {
        let text = std::str::from_utf8(data.trim_ascii()).unwrap_or_default();
        assert!(!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()), "violations {v} from {text:?}");
    }
    // The same value with surrounding whitespace parses the same.
    let mut padded = b" \t".to_vec();
    padded.extend_from_slice(data);
    padded.extend_from_slice(b"\t ");
    assert_eq!(parse_result(&padded), result);
    assert_eq!(parse_cost(&padded).map(f64::to_bits), parse_cost(data).map(f64::to_bits));
    assert_eq!(parse_violations(&padded), parse_violations(data));
}

/// The bytes as a wire-form histogram: 10-byte records of (index: u16 LE, count: u64 LE); a
/// shorter tail is ignored.
pub fn sparse_from_bytes(data: &[u8]) -> SparseHistogram {
    let buckets = data
        .chunks_exact(10)
        .map(|c| {
            let mut i = [0u8; 2];
            let mut n = [0u8; 8];
            i.copy_from_slice(c.get(..2).unwrap_or(&[0; 2]));
            n.copy_from_slice(c.get(2..10).unwrap_or(&[0; 8]));
            (u16::from_le_bytes(i), u64::from_le_bytes(n))
        })
        .collect();
    SparseHistogram { buckets }
}

/// `Histogram::try_from(sparse)`, `merge_sparse`, `quantile`, `count_above`, `to_sparse`: an
/// out-of-range index is an error that changes nothing; otherwise the totals and per-bucket counts
/// are kept, quantiles are monotone bucket values within the layout, and the sparse and JSON forms
/// round-trip.
pub fn check_sparse_histogram(data: &[u8]) {
    let sparse = sparse_from_bytes(data);
    let first_bad = sparse.buckets.iter().find(|(i, _)| usize::from(*i) >= BUCKET_COUNT).map(|&(index, _)| index);
    let h = match Histogram::try_from(sparse.clone()) {
        Ok(h) => {
            assert_eq!(first_bad, None, "index {first_bad:?} accepted");
            h
        }
        Err(HistogramError::IndexOutOfRange { index }) => {
            assert_eq!(Some(index), first_bad);
            let mut before = Histogram::new();
            before.record_n(1_000, 3);
            let mut after = before.clone();
            assert!(after.merge_sparse(&sparse).is_err());
            assert_eq!(after, before, "a refused merge changed the histogram");
            assert_eq!(after.count(), 3);
            return;
        }
    };

    assert_eq!(h.count(), sparse.total());
    let mut expected = vec![0u64; BUCKET_COUNT];
    for &(i, n) in &sparse.buckets {
        if let Some(c) = expected.get_mut(usize::from(i)) {
            *c = c.saturating_add(n);
        }
    }
    let round = h.to_sparse();
    assert!(
        round.buckets.windows(2).all(|w| w.first().map(|a| a.0) < w.last().map(|b| b.0)),
        "to_sparse is not ascending"
    );
    assert!(round.buckets.iter().all(|&(i, n)| n > 0 && usize::from(i) < BUCKET_COUNT));
    let nonzero: Vec<(u16, u64)> =
        expected.iter().enumerate().filter(|(_, &n)| n > 0).map(|(i, &n)| (i as u16, n)).collect();
    assert_eq!(round.buckets, nonzero, "per-bucket counts changed");
    assert_eq!(round.total(), h.count(), "to_sparse lost count");
    match Histogram::try_from(round.clone()) {
        Ok(back) => assert_eq!(back, h, "to_sparse → try_from changed the histogram"),
        Err(e) => panic!("to_sparse produced a refused histogram: {e}"),
    }
    let json = serde_json::to_vec(&h).unwrap_or_default();
    match serde_json::from_slice::<Histogram>(&json) {
        Ok(back) => assert_eq!(back, h, "JSON round trip changed the histogram"),
        Err(e) => panic!("serialised histogram is refused: {e}"),
    }

    // Merging equals adding the counts.
    let mut twice = h.clone();
    assert_eq!(twice.merge_sparse(&round), Ok(()));
    let mut dense = h.clone();
    dense.merge(&h);
    assert_eq!(twice, dense);
    assert_eq!(twice.count(), h.count().saturating_add(h.count()));

    // Quantiles.
    let tail = data.len() / 10 * 10;
    let q_from_input = data.get(tail).map_or(0.5, |&b| f64::from(b) / 255.0);
    let qs = [0.0, 0.001, 0.25, 0.5, q_from_input, 0.9, 0.99, 0.999, 1.0];
    assert_eq!(h.quantile(f64::NAN), None);
    let mut previous = f64::MIN;
    let mut sorted = qs;
    sorted.sort_by(f64::total_cmp);
    for q in sorted {
        match h.quantile(q) {
            None => assert!(h.is_empty(), "quantile({q}) is None on a histogram of {}", h.count()),
            Some(v) => {
                assert!(v.is_finite() && v >= MIN_MICROS as f64 && v <= MAX_MICROS as f64, "quantile({q}) = {v}");
                assert!(v >= previous, "quantile is not monotone at q={q}: {v} < {previous}");
                previous = v;
            }
        }
    }
    assert_eq!(h.quantile(-1.0), h.quantile(0.0));
    assert_eq!(h.quantile(2.0), h.quantile(1.0));
    let value = |i: u16| fledge_core::histogram::bucket_value(usize::from(i));
    if let (Some(first), Some(last)) = (round.buckets.first(), round.buckets.last()) {
        assert_eq!(h.quantile(0.0), value(first.0));
        // Nearest rank on f64 is exact only while the total is (2^53); above it the top rank rounds.
        if h.count() < (1u64 << 53) {
            assert_eq!(h.quantile(1.0), value(last.0));
        }
    }

    // count_above against the counts.
    let mut probes = vec![0, MIN_MICROS, 1_000, 250_000, MAX_MICROS, u64::MAX];
    probes.extend(
        round
            .buckets
            .iter()
            .take(8)
            .filter_map(|&(i, _)| fledge_core::histogram::bucket_bounds(usize::from(i)))
            .flat_map(|(lo, hi)| [lo, hi, hi.saturating_add(1)]),
    );
    if let Some(c) = data.get(tail..).filter(|t| t.len() >= 8).and_then(|t| t.get(..8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        probes.push(u64::from_le_bytes(b));
    }
    for micros in probes {
        let edge = bucket_index(micros);
        let want =
            round.buckets.iter().filter(|(i, _)| usize::from(*i) > edge).fold(0u64, |a, (_, n)| a.saturating_add(*n));
        assert_eq!(h.count_above(micros), want, "count_above({micros})");
        assert!(h.count_above(micros) <= h.count());
    }
    assert_eq!(h.count_above(u64::MAX), 0);
}
