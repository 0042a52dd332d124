//! Shadow copies, the bookkeeping half (no hostcalls, tested natively): which requests are copied,
//! the copy's headers, the per-worker queue of copies waiting to leave, the copies in flight, and the
//! pairing of each copy's answer with the user's answer to the same request.
//!
//! Why a queue: a call dispatched from an HTTP context belongs to that stream, and Envoy cancels it
//! when the stream ends, usually long before an agent's copy answers. So the HTTP context only
//! queues the copy and wakes its worker's root context (a shared-queue notification); the root
//! dispatches it, owns the call, and gets the answer whatever became of the user's stream.

use std::collections::{BTreeMap, HashMap, VecDeque};

use fledge_core::shadow::{sample_body, Answer, BodyHasher, SampleSide, ShadowSample, ShadowSpec, NOT_FORWARDED, SHADOW_HEADER};
use fledge_core::telemetry::Telemetry;

/// Pairs kept waiting for their other half at most; beyond it the oldest is forgotten (a stream whose
/// log never came, say).
pub const MAX_PAIRS: usize = 8_192;

/// A copy ready to leave, or still collecting the request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub pair: u64,
    pub rollout: String,
    pub cluster: String,
    pub timeout_ms: u32,
    pub max_body_bytes: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Outgoing {
    /// Adds a chunk of the request body; false once the body is over the limit (the copy must be
    /// dropped as too large).
    pub fn push_body(&mut self, chunk: &[u8]) -> bool {
        if self.body.len().saturating_add(chunk.len()) > self.max_body_bytes as usize {
            return false;
        }
        self.body.extend_from_slice(chunk);
        true
    }
}

/// The request line and the headers a sample may keep.
#[derive(Debug, Clone, Default, PartialEq)]
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
struct Pair {
    rollout: String,
    at_ms: u64,
    samples: u32,
    head: Option<Head>,
    stable: Option<(Answer, Option<String>)>,
    shadow: Option<(Answer, Option<String>)>,
}

/// A dispatched copy, by its call token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InFlight {
    pub pair: u64,
    pub started_ns: u64,
    pub timeout_ms: u32,
}

/// One worker's shadow state.
#[derive(Debug, Default)]
pub struct Shadows {
    /// The shared queue that wakes this worker's root context, once registered.
    pub queue_id: Option<u32>,
    pub ready: VecDeque<Outgoing>,
    pub dispatched: HashMap<u32, InFlight>,
    pairs: BTreeMap<u64, Pair>,
    /// Copies queued or dispatched and not yet answered, per rollout (bounded by `max_in_flight`).
    in_flight: HashMap<String, u32>,
    next_pair: u64,
}

/// Which side of a pair an answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Stable,
    Shadow,
}

impl Shadows {
    /// Starts a copy of a request that went to stable, if the rollout's `max_in_flight` allows;
    /// counts a drop otherwise. `request` is the request's header map; `canary` the version the copy
    /// is stamped with in `route_header`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(&mut self, rollout: &str, spec: &ShadowSpec, request: &[(String, Vec<u8>)], route_header: &str, canary: &str, now_ms: u64, telemetry: &mut Telemetry) -> Option<Outgoing> {
        let in_flight = self.in_flight.get(rollout).copied().unwrap_or(0);
        if in_flight >= spec.max_in_flight {
            if let Some(e) = telemetry.shadow(rollout) {
                e.stats.dropped += 1;
            }
            return None;
        }
        *self.in_flight.entry(rollout.to_string()).or_default() += 1;
        self.next_pair += 1;
        let pair = self.next_pair;
        let text = |v: &[u8]| std::str::from_utf8(v).ok().map(str::to_string);
        let mut headers: Vec<(String, String)> = request
            .iter()
            .filter(|(k, _)| !NOT_FORWARDED.contains(&k.as_str()) && !k.eq_ignore_ascii_case(route_header) && k != SHADOW_HEADER)
            .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
            .collect();
        headers.push((route_header.to_string(), canary.to_string()));
        headers.push((SHADOW_HEADER.to_string(), "1".to_string()));
        let head = (spec.capture.samples > 0).then(|| Head {
            method: header(request, ":method").unwrap_or_default(),
            path: header(request, ":path").unwrap_or_default(),
            headers: request
                .iter()
                .filter(|(k, _)| !k.starts_with(':') && !spec.redacts(k))
                .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
                .collect(),
        });
        if self.pairs.len() >= MAX_PAIRS {
            self.pairs.pop_first();
        }
        self.pairs.insert(pair, Pair { rollout: rollout.to_string(), at_ms: now_ms, samples: spec.capture.samples, head, ..Pair::default() });
        Some(Outgoing {
            pair,
            rollout: rollout.to_string(),
            cluster: spec.cluster.clone(),
            timeout_ms: spec.timeout_ms,
            max_body_bytes: spec.max_body_bytes,
            headers,
            body: Vec::new(),
        })
    }

    /// A copy whose body outgrew `max_body_bytes`: not sent, counted, its pair forgotten.
    pub fn too_large(&mut self, copy: &Outgoing, telemetry: &mut Telemetry) {
        self.forget(copy.pair, &copy.rollout);
        if let Some(e) = telemetry.shadow(&copy.rollout) {
            e.stats.too_large += 1;
        }
    }

    /// The dispatch of a ready copy failed (no such cluster, say): counted as dropped.
    pub fn not_dispatched(&mut self, copy: &Outgoing, telemetry: &mut Telemetry) {
        self.forget(copy.pair, &copy.rollout);
        if let Some(e) = telemetry.shadow(&copy.rollout) {
            e.stats.dropped += 1;
        }
    }

    pub fn dispatched(&mut self, token: u32, copy: &Outgoing, started_ns: u64, telemetry: &mut Telemetry) {
        self.dispatched.insert(token, InFlight { pair: copy.pair, started_ns, timeout_ms: copy.timeout_ms });
        if let Some(e) = telemetry.shadow(&copy.rollout) {
            e.stats.sent += 1;
        }
    }

    /// The copy's answer (`answer.status` None: no answer within the timeout, or a failed call).
    /// Returns whether `token` was a shadow call.
    pub fn answered(&mut self, token: u32, answer: Answer, body: Option<String>, now_ms: u64, telemetry: &mut Telemetry) -> bool {
        let Some(call) = self.dispatched.remove(&token) else { return false };
        let Some(rollout) = self.pairs.get(&call.pair).map(|p| p.rollout.clone()) else { return true };
        if let Some(n) = self.in_flight.get_mut(&rollout) {
            *n = n.saturating_sub(1);
        }
        if let Some(e) = telemetry.shadow(&rollout) {
            if answer.status.is_some() {
                e.stats.answered += 1;
            } else {
                e.stats.failed += 1;
                // Envoy answers a call that ran out of time with no headers, as it does a failed one.
                if answer.total_us.saturating_add(50_000) >= u64::from(call.timeout_ms) * 1_000 {
                    e.stats.timeouts += 1;
                }
            }
        }
        self.complete(call.pair, Side::Shadow, answer, body, now_ms, telemetry);
        true
    }

    /// Records one side's answer; with both in, the pair is compared and counted (and sampled when
    /// it mismatches).
    pub fn complete(&mut self, pair: u64, side: Side, answer: Answer, body: Option<String>, _now_ms: u64, telemetry: &mut Telemetry) {
        let Some(p) = self.pairs.get_mut(&pair) else { return };
        match side {
            Side::Stable => p.stable = Some((answer, body)),
            Side::Shadow => p.shadow = Some((answer, body)),
        }
        if p.stable.is_none() || p.shadow.is_none() {
            return;
        }
        let Some(p) = self.pairs.remove(&pair) else { return };
        let (Some((stable, stable_body)), Some((shadow, shadow_body))) = (p.stable, p.shadow) else { return };
        let Some(entry) = telemetry.shadow(&p.rollout) else { return };
        let Some(m) = entry.stats.record_pair(&stable, &shadow) else { return };
        if m.any() {
            let head = p.head.unwrap_or_default();
            let at_ms = p.at_ms;
            entry.keep_sample(p.samples, || ShadowSample {
                at_ms,
                method: head.method,
                path: head.path,
                headers: head.headers,
                mismatch: m.names().into_iter().map(str::to_string).collect(),
                stable: SampleSide::of(&stable, stable_body),
                shadow: SampleSide::of(&shadow, shadow_body),
            });
        }
    }

    /// The user's stream ended without the copy ever leaving (e.g. reset mid-body): forget it.
    pub fn abandon(&mut self, copy: &Outgoing) {
        self.forget(copy.pair, &copy.rollout);
    }

    fn forget(&mut self, pair: u64, rollout: &str) {
        self.pairs.remove(&pair);
        if let Some(n) = self.in_flight.get_mut(rollout) {
            *n = n.saturating_sub(1);
        }
    }

    pub fn pairs_waiting(&self) -> usize {
        self.pairs.len()
    }
}

/// Whether an answer is Envoy's own reply for a call that got no answer from the canary: a timeout
/// (504) or a failed connection (503), told apart from the canary's own 503/504 by Envoy's body.
pub fn envoy_gave_up(status: Option<u16>, body_head: &[u8]) -> bool {
    const ENVOY: [&[u8]; 4] = [b"upstream request timeout", b"upstream connect error", b"no healthy upstream", b"upstream reset"];
    matches!(status, Some(503 | 504)) && ENVOY.iter().any(|p| body_head.starts_with(p))
}

fn header(map: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    map.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok()).map(str::to_string)
}

/// What the filter keeps of an answer's body as it streams past: its hash and length, and with
/// `capture.bodies` its first 4 KiB.
#[derive(Debug, Clone, Default)]
pub struct BodyTap {
    pub hasher: BodyHasher,
    pub head: Option<Vec<u8>>,
}

impl BodyTap {
    pub fn new(keep: bool) -> Self {
        Self { hasher: BodyHasher::default(), head: keep.then(Vec::new) }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        if let Some(head) = &mut self.head {
            let room = fledge_core::shadow::SAMPLE_BODY_BYTES.saturating_sub(head.len());
            head.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        }
    }

    pub fn sample(&self) -> Option<String> {
        self.head.as_deref().map(sample_body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_core::outcome::TaskResult;
    use fledge_core::shadow::CaptureSpec;

    fn request() -> Vec<(String, Vec<u8>)> {
        [(":method", "POST"), (":path", "/task"), (":authority", "support-agent"), ("authorization", "Bearer s3cret"), ("x-user-id", "u1"),
         ("connection", "keep-alive"), ("content-length", "10"), ("x-fledge-version", "v1"), ("cookie", "a=b")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn answer(status: u16, body: &[u8]) -> Answer {
        let mut tap = BodyTap::new(false);
        tap.update(body);
        Answer { status: Some(status), result: Some(TaskResult::Success), total_us: 1_000, body: tap.hasher, ..Answer::default() }
    }

    #[test]
    fn a_copy_carries_the_request_minus_hop_by_hop_and_is_marked() {
        let mut s = Shadows::default();
        let mut t = Telemetry::default();
        let spec = ShadowSpec::new("support-agent_v2", 10.0);
        let copy = s.start("r", &spec, &request(), "x-fledge-version", "v2", 0, &mut t).unwrap();
        let names: Vec<&str> = copy.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, [":method", ":path", ":authority", "authorization", "x-user-id", "cookie", "x-fledge-version", "x-fledge-shadow"]);
        assert!(copy.headers.contains(&("x-fledge-version".into(), "v2".into())), "the copy is stamped with the canary");
        assert!(copy.headers.contains(&("x-fledge-shadow".into(), "1".into())));
        assert_eq!(copy.cluster, "support-agent_v2");
    }

    #[test]
    fn envoys_own_timeout_reply_is_no_answer() {
        assert!(envoy_gave_up(Some(504), b"upstream request timeout"));
        assert!(envoy_gave_up(Some(503), b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"));
        assert!(!envoy_gave_up(Some(503), br#"{"error":"overloaded"}"#), "the canary's own 503 is an answer");
        assert!(!envoy_gave_up(Some(200), b"upstream request timeout"));
    }

    #[test]
    fn in_flight_bound_drops_and_counts() {
        let mut s = Shadows::default();
        let mut t = Telemetry::default();
        let spec = ShadowSpec { max_in_flight: 2, ..ShadowSpec::new("c", 10.0) };
        let a = s.start("r", &spec, &request(), "x-fledge-version", "v2", 0, &mut t).unwrap();
        let _b = s.start("r", &spec, &request(), "x-fledge-version", "v2", 0, &mut t).unwrap();
        assert!(s.start("r", &spec, &request(), "x-fledge-version", "v2", 0, &mut t).is_none());
        s.dispatched(7, &a, 0, &mut t);
        assert!(s.answered(7, Answer::default(), None, 0, &mut t));
        assert!(s.start("r", &spec, &request(), "x-fledge-version", "v2", 0, &mut t).is_some(), "an answered copy frees its slot");
        let stats = &t.shadow("r").unwrap().stats;
        assert_eq!((stats.dropped, stats.sent, stats.failed), (1, 1, 1));
        assert!(!s.answered(99, Answer::default(), None, 0, &mut t), "not a shadow token");
    }

    #[test]
    fn the_body_limit_and_the_timeout_are_counted() {
        let mut s = Shadows::default();
        let mut t = Telemetry::default();
        let spec = ShadowSpec { max_body_bytes: 8, timeout_ms: 100, ..ShadowSpec::new("c", 10.0) };
        let mut copy = s.start("r", &spec, &request(), "x-fledge-version", "v2", 0, &mut t).unwrap();
        assert!(copy.push_body(b"12345678"));
        assert!(!copy.push_body(b"9"));
        s.too_large(&copy, &mut t);
        assert_eq!(s.pairs_waiting(), 0);
        let copy = s.start("r", &spec, &request(), "x-fledge-version", "v2", 0, &mut t).unwrap();
        s.dispatched(1, &copy, 0, &mut t);
        s.answered(1, Answer { total_us: 100_000, ..Answer::default() }, None, 0, &mut t);
        let stats = &t.shadow("r").unwrap().stats;
        assert_eq!((stats.too_large, stats.failed, stats.timeouts), (1, 1, 1));
    }

    #[test]
    fn pairs_complete_in_either_order_and_samples_leave_out_redacted_headers() {
        let mut s = Shadows::default();
        let mut t = Telemetry::default();
        let spec = ShadowSpec { capture: CaptureSpec { samples: 5, bodies: true, redact_headers: vec!["x-user-id".into()] }, ..ShadowSpec::new("c", 10.0) };
        // Shadow first, then the user's answer: a mismatch on the body.
        let copy = s.start("r", &spec, &request(), "x-fledge-version", "v2", 42, &mut t).unwrap();
        s.dispatched(3, &copy, 0, &mut t);
        s.answered(3, answer(200, b"two"), Some("two".into()), 0, &mut t);
        s.complete(copy.pair, Side::Stable, answer(200, b"one"), Some("one".into()), 0, &mut t);
        // The user's answer first, then an equal copy: counted, not sampled.
        let copy = s.start("r", &spec, &request(), "x-fledge-version", "v2", 43, &mut t).unwrap();
        s.complete(copy.pair, Side::Stable, answer(200, b"same"), None, 0, &mut t);
        s.dispatched(4, &copy, 0, &mut t);
        s.answered(4, answer(200, b"same"), None, 0, &mut t);
        let e = t.shadow("r").unwrap();
        assert_eq!((e.stats.pairs, e.stats.mismatch.body, e.stats.mismatch.any), (2, 1, 1));
        assert_eq!(e.samples.len(), 1);
        let sample = &e.samples[0];
        assert_eq!((sample.method.as_str(), sample.path.as_str(), sample.at_ms), ("POST", "/task", 42));
        assert_eq!(sample.mismatch, ["body"]);
        let names: Vec<&str> = sample.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert!(!names.iter().any(|n| ["authorization", "cookie", "x-user-id"].contains(n)), "{names:?}");
        assert_eq!((sample.stable.body.as_deref(), sample.shadow.body.as_deref()), (Some("one"), Some("two")));
        assert_eq!(s.pairs_waiting(), 0);
    }
}
