//! The HTTP context: picks the version for a request, stamps it on request and response, and records
//! the request's telemetry when it ends. Reads only the headers it needs; no parsing of bodies.
//!
//! A request that went to stable may be shadowed: a share of them (`shadow.percent`) is copied —
//! headers, and the body as it passes (never paused or buffered in Envoy) — and the copy is queued
//! for the worker's root context to send (see `shadow`). Only shadowed requests pay for the header
//! map read and the body reads; the user's answer is hashed as it passes so the pair can be compared.

use std::cell::RefCell;
use std::rc::Rc;

use fledge_core::outcome::{parse_cost, parse_result, parse_violations};
use fledge_core::plugin::PluginConfig;
use fledge_core::route::{RouteTable, Side};
use fledge_core::shadow::Answer;
use fledge_core::Bucket;
use fledge_core::telemetry::{Sample, Signal};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::headers::{rollout_of, HeaderSource, Request};
use crate::shadow::{BodyTap, Outgoing};
use crate::worker::{now_ns, Worker};

/// The clock, read only when the request is measured.
fn now_ns_if(measured: bool) -> u64 {
    if measured {
        now_ns()
    } else {
        0
    }
}

/// Envoy's legacy response-flag bits that mean the upstream failed: no healthy upstream, upstream
/// request timeout, remote reset, connection failure, connection termination, overflow.
const UPSTREAM_FAILURE_FLAGS: u64 = 0x2 | 0x4 | 0x10 | 0x20 | 0x40 | 0x80;

struct Picked {
    table: Rc<RouteTable>,
    config: Rc<PluginConfig>,
    index: usize,
    side: Side,
    /// The segment that decided the request, by index in the rollout's segments.
    segment: Option<usize>,
    /// The `Set-Cookie` of a session minted for this request.
    set_cookie: Option<String>,
    start_ns: u64,
    sample: Sample,
    /// The response reached end of stream; if not, the upstream may have reset mid-answer.
    complete: bool,
    shadow: Option<Shadowed>,
    /// Measured (every canary request; stable's as `stable_sampling` draws): an unmeasured request
    /// is only counted, and skips every response-side read (the header map, the clock).
    measured: bool,
}

/// A request being shadowed: its copy until the request has passed, and the user's answer's body.
struct Shadowed {
    pair: u64,
    copy: Option<Outgoing>,
    answer: BodyTap,
}

pub struct Http {
    worker: Rc<RefCell<Worker>>,
    picked: Option<Picked>,
}

impl Http {
    pub fn new(worker: Rc<RefCell<Worker>>) -> Self {
        Self { worker, picked: None }
    }
}

/// Request headers read one by one: most requests need only `:authority` (hosts without a rollout stop
/// there) and one sticky header, and a single read (~2.5 µs in Envoy's V8, which re-enters the VM to
/// allocate the result) is cheaper than the whole map (~4.6 µs).
struct RequestHeaders;

impl HeaderSource for RequestHeaders {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).ok().flatten()
    }

    fn source_address(&self) -> Option<Vec<u8>> {
        hostcalls::get_property(vec!["source", "address"]).ok().flatten()
    }
}

/// A whole response header (or trailer) map fetched with one hostcall: `:status` and three outcome
/// headers would otherwise be four reads.
struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    fn fetch(map: MapType) -> Self {
        Self(hostcalls::get_map_bytes(map).unwrap_or_default())
    }

    fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
}

/// Fills the outcome signals still absent from `h` (response headers, then trailers).
fn read_outcome(sample: &mut Sample, config: &PluginConfig, h: &Headers) {
    if sample.result.is_none() {
        sample.result = h.get(&config.outcome.result).map(parse_result);
    }
    if sample.cost.is_absent() {
        sample.cost = Signal::from_parsed(h.get(&config.outcome.cost), parse_cost);
    }
    if sample.violations.is_absent() {
        sample.violations = Signal::from_parsed(h.get(&config.outcome.policy_violations), parse_violations);
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (table, config) = {
            let w = self.worker.borrow();
            match &w.table {
                Some(t) if !t.is_empty() => (t.clone(), w.config.clone()),
                _ => return Action::Continue,
            }
        };
        let Some(rollout) = rollout_of(&table, config.rollout.as_deref(), &RequestHeaders) else { return Action::Continue };
        // Segments, then the sticky or session key; reads only the headers the path needs (none for
        // the key at 0 % or 100 % without a session).
        let mut request = Request::new(&RequestHeaders);
        let routing = {
            let mut w = self.worker.borrow_mut();
            let w = &mut *w;
            rollout.route(&mut request, &config.sticky, &mut w.rng, &mut w.sessions)
        };
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &config.route_header, Some(rollout.version(routing.side)));
        let set_cookie = routing.new_session.and_then(|key| rollout.session.as_ref().map(|s| s.set_cookie(&key)));
        let index = rollout.index;
        // Drawn now, before anything about the answer is known (a shadowed request is always
        // measured: its pair compares the two answers).
        let sampled = {
            let mut w = self.worker.borrow_mut();
            let w = &mut *w;
            let draw = if w.sampler.is_active() { w.rng.next_u32() } else { 0 };
            w.sampler.measure(index, routing.side, draw)
        };
        let start_ns = now_ns_if(sampled || rollout.shadow.is_some());
        let shadow = match (routing.side, &rollout.shadow) {
            (Side::Stable, Some(spec)) => self.shadow(rollout, spec, &config.route_header, start_ns, end_of_stream),
            _ => None,
        };
        let measured = sampled || shadow.is_some();
        self.picked = Some(Picked {
            table,
            config,
            index,
            side: routing.side,
            segment: routing.segment,
            set_cookie,
            start_ns,
            sample: Sample::default(),
            complete: false,
            shadow,
            measured,
        });
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(s) = self.picked.as_mut().and_then(|p| p.shadow.as_mut()) else { return Action::Continue };
        let Some(copy) = s.copy.as_mut() else { return Action::Continue };
        let chunk = if body_size == 0 { None } else { hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size).ok().flatten() };
        if !copy.push_body(chunk.as_deref().unwrap_or_default()) {
            if let Some(copy) = s.copy.take() {
                let mut w = self.worker.borrow_mut();
                let w = &mut *w;
                w.shadows.too_large(&copy, &mut w.telemetry);
            }
        } else if end_of_stream {
            if let Some(copy) = s.copy.take() {
                self.send(copy);
            }
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if let Some(copy) = self.picked.as_mut().and_then(|p| p.shadow.as_mut()).and_then(|s| s.copy.take()) {
            self.send(copy);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(p) = &mut self.picked else { return Action::Continue };
        p.complete = end_of_stream;
        // No clock read here: no gate judges the time to response headers (total time and time to
        // first token are what the latency gates read), so it is not measured.
        if p.measured {
            let response = Headers::fetch(MapType::HttpResponseHeaders);
            p.sample.status = response.get(":status").and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
            read_outcome(&mut p.sample, &p.config, &response);
        }
        if let Some(r) = p.table.rollouts().get(p.index).filter(|_| p.config.response_header) {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, &p.config.route_header, Some(r.version(p.side)));
        }
        // Added, not set: the agent's own cookies stay.
        if let Some(cookie) = p.set_cookie.take() {
            let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, "set-cookie", &cookie);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(p) = &mut self.picked {
            p.complete |= end_of_stream;
            // Time to first token: one clock read, on the first chunk that carries bytes.
            if p.measured && body_size > 0 && p.sample.ttft_us.is_none() {
                p.sample.ttft_us = Some(now_ns().saturating_sub(p.start_ns) / 1_000);
            }
            if let (Some(s), true) = (&mut p.shadow, body_size > 0) {
                if let Ok(Some(chunk)) = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size) {
                    s.answer.update(&chunk);
                }
            }
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if let Some(p) = self.picked.as_mut().filter(|p| p.measured) {
            p.complete = true;
            read_outcome(&mut p.sample, &p.config, &Headers::fetch(MapType::HttpResponseTrailers));
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(mut p) = self.picked.take() else { return };
        if !p.measured {
            if let Some(r) = p.table.rollouts().get(p.index) {
                let segment = p.segment.and_then(|i| r.segments.get(i)).map(|s| s.name.as_str());
                self.worker.borrow_mut().telemetry.unmeasured(&r.name, r.version(p.side), segment);
            }
            return;
        }
        p.sample.total_us = Some(now_ns().saturating_sub(p.start_ns) / 1_000);
        // Only failed-looking requests pay for the flags lookup: a 5xx, no response, or a response cut
        // off before its end (an upstream reset after the headers).
        if !p.complete || p.sample.status.is_none_or(|s| s >= 500) {
            let flags = hostcalls::get_property(vec!["response", "flags"]).ok().flatten();
            let flags = flags.and_then(|b| b.get(..8).and_then(|b| b.try_into().ok())).map_or(0, u64::from_le_bytes);
            p.sample.upstream_failure = flags & UPSTREAM_FAILURE_FLAGS != 0;
        }
        if let Some(r) = p.table.rollouts().get(p.index) {
            let segment = p.segment.and_then(|i| r.segments.get(i)).map(|s| s.name.as_str());
            self.worker.borrow_mut().telemetry.record(&r.name, r.version(p.side), segment, &p.sample);
        }
        if let Some(s) = p.shadow.take() {
            let mut w = self.worker.borrow_mut();
            let w = &mut *w;
            match s.copy {
                // The request never finished passing: the copy never left.
                Some(copy) => w.shadows.abandon(&copy),
                None => {
                    let answer = stable_answer(&p.sample, s.answer.hasher);
                    let now = p.start_ns / 1_000_000;
                    w.shadows.complete(s.pair, crate::shadow::Side::Stable, answer, s.answer.sample(), now, &mut w.telemetry);
                }
            }
        }
    }
}

impl Http {
    /// Starts a copy of this request if the draw picks it (no hostcall when it does not).
    fn shadow(&mut self, rollout: &fledge_core::route::CompiledRollout, spec: &fledge_core::shadow::ShadowSpec, route_header: &str, start_ns: u64, end_of_stream: bool) -> Option<Shadowed> {
        let picked = {
            let mut w = self.worker.borrow_mut();
            spec.weight().admits(Bucket::of_random(w.rng.next_u32()))
        };
        if !picked {
            return None;
        }
        let request = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        let copy = {
            let mut w = self.worker.borrow_mut();
            let w = &mut *w;
            w.shadows.start(&rollout.name, spec, &request, route_header, &rollout.canary, start_ns / 1_000_000, &mut w.telemetry)?
        };
        let mut shadowed = Shadowed { pair: copy.pair, copy: Some(copy), answer: BodyTap::new(spec.capture.bodies) };
        if end_of_stream {
            if let Some(copy) = shadowed.copy.take() {
                self.send(copy);
            }
        }
        Some(shadowed)
    }

    /// Queues a finished copy and wakes the root context, which sends it.
    fn send(&self, copy: Outgoing) {
        let queue = {
            let mut w = self.worker.borrow_mut();
            w.shadows.ready.push_back(copy);
            w.shadows.queue_id
        };
        // Without a queue the root's next tick sends it.
        if let Some(id) = queue {
            let _ = hostcalls::enqueue_shared_queue(id, Some(b"1"));
        }
    }
}

/// The user's answer, as the shadow comparison takes it.
fn stable_answer(sample: &Sample, body: fledge_core::shadow::BodyHasher) -> Answer {
    let value = |s: &Signal<f64>| if let Signal::Value(v) = s { Some(*v) } else { None };
    let violations = if let Signal::Value(v) = sample.violations { Some(v) } else { None };
    Answer { status: sample.status, result: sample.result, cost: value(&sample.cost), violations, total_us: sample.total_us.unwrap_or(0), body }
}
