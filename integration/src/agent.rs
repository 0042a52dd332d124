//! A sample agent backend whose behaviour is set per version and can change while it runs: error
//! rate, added latency, task success, cost, policy violations. Rates are applied as exact fractions of
//! the requests seen (every k-th request), not coin flips, so tests measure fledge and not the dice.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Behaviour {
    pub version: String,
    /// Fraction of requests answered with HTTP 500.
    pub error_rate: f64,
    /// Delay before answering.
    pub latency_ms: u64,
    /// Fraction of answered tasks reported as `x-agent-outcome: success` (the rest: failure).
    pub success_rate: f64,
    /// `x-agent-cost` of each task.
    pub cost: f64,
    /// Fraction of requests reporting one policy violation.
    pub violation_rate: f64,
    /// Send the outcome headers as trailers (as a streamed answer would).
    pub outcome_in_trailers: bool,
    /// Send outcome signals at all (off: outcomes arrive later through the API).
    pub emit_outcome: bool,
    /// Send the headers (200) and a first chunk, then never finish (Envoy's route timeout ends it).
    pub stall_after_headers: bool,
    /// What `GET /healthz` answers: 200 when healthy, 503 otherwise. Health checks are not counted
    /// as requests.
    pub healthy: bool,
    /// Stream the answer: headers (and status) at once, the body this many ms later — a first token
    /// that comes late.
    pub first_byte_ms: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            version: "v1".into(),
            error_rate: 0.0,
            latency_ms: 0,
            success_rate: 1.0,
            cost: 0.01,
            violation_rate: 0.0,
            outcome_in_trailers: false,
            emit_outcome: true,
            stall_after_headers: false,
            healthy: true,
            first_byte_ms: 0,
        }
    }
}

impl Behaviour {
    pub fn version(v: &str) -> Self {
        Self { version: v.into(), ..Self::default() }
    }
}

/// Timestamps tests use to measure reaction times.
#[derive(Debug, Default, Clone, Copy)]
pub struct Marks {
    pub first_error: Option<Instant>,
    pub last_request: Option<Instant>,
    /// The last request's arrival on the wall clock (ms since the Unix epoch), to set beside the
    /// controller's event times.
    pub last_request_at_ms: Option<u64>,
}

struct Shared {
    behaviour: RwLock<Behaviour>,
    requests: AtomicU64,
    marks: Mutex<Marks>,
    received: Mutex<std::collections::VecDeque<Received>>,
}

/// What a request brought (the last [`RECEIVED`] are kept): for the shadow tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Carried `x-fledge-shadow: 1`.
    pub shadow: bool,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

const RECEIVED: usize = 4_096;

pub struct Agent {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// True for the n-th event (0-based) when events happen at `rate`: spreads them evenly.
fn every(n: u64, rate: f64) -> bool {
    let rate = rate.clamp(0.0, 1.0);
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

impl Agent {
    /// Starts on 127.0.0.1 with an ephemeral port.
    pub async fn start(behaviour: Behaviour) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?, behaviour).await
    }

    pub async fn start_on(addr: SocketAddr, behaviour: Behaviour) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            behaviour: RwLock::new(behaviour),
            requests: AtomicU64::new(0),
            marks: Mutex::new(Marks::default()),
            received: Mutex::new(Default::default()),
        });
        let s = shared.clone();
        let h = shared.clone();
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(move || health(h.clone())))
            .fallback(move |req: axum::extract::Request| handle(s.clone(), req));
        // TCP_NODELAY: without it, a lightly used connection (the canary's, at a small weight) waits on
        // Nagle and delayed ACKs and looks tens of milliseconds slower than a busy one.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    pub fn set(&self, b: Behaviour) {
        if let Ok(mut w) = self.shared.behaviour.write() {
            *w = b;
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut Behaviour)) {
        if let Ok(mut w) = self.shared.behaviour.write() {
            f(&mut w);
        }
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The last requests received, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn marks(&self) -> Marks {
        self.shared.marks.lock().map(|m| *m).unwrap_or_default()
    }

    pub fn reset_marks(&self) {
        if let Ok(mut m) = self.shared.marks.lock() {
            *m = Marks::default();
        }
    }
}

/// One process serving several versions (a prompt or model canary without new pods): each request is
/// answered as the version its `x-fledge-version` header names (the filter sets it), each version with
/// its own behaviour and counters; a request without the header is the first version's.
pub struct MultiAgent {
    pub addr: SocketAddr,
    versions: Vec<(String, Arc<Shared>)>,
    task: tokio::task::JoinHandle<()>,
}

impl MultiAgent {
    pub async fn start(behaviours: Vec<Behaviour>) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?, behaviours).await
    }

    pub async fn start_on(addr: SocketAddr, behaviours: Vec<Behaviour>) -> anyhow::Result<Self> {
        anyhow::ensure!(!behaviours.is_empty(), "a multi-version agent needs at least one version");
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let versions: Vec<(String, Arc<Shared>)> = behaviours
            .into_iter()
            .map(|b| {
                let v = b.version.clone();
                (v, Arc::new(Shared { behaviour: RwLock::new(b), requests: AtomicU64::new(0), marks: Mutex::new(Marks::default()), received: Mutex::new(Default::default()) }))
            })
            .collect();
        let routes = versions.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let wanted = req.headers().get("x-fledge-version").and_then(|v| v.to_str().ok()).map(str::to_string);
            let shared = wanted
                .and_then(|w| routes.iter().find(|(v, _)| *v == w))
                .or_else(|| routes.first())
                .map(|(_, s)| s.clone());
            async move {
                match shared {
                    Some(s) => handle(s, req).await,
                    None => Response::new(Body::from("no version")),
                }
            }
        });
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, versions, task })
    }

    fn shared(&self, version: &str) -> Option<&Arc<Shared>> {
        self.versions.iter().find(|(v, _)| v == version).map(|(_, s)| s)
    }

    /// Requests answered as `version`.
    pub fn requests(&self, version: &str) -> u64 {
        self.shared(version).map_or(0, |s| s.requests.load(Ordering::Relaxed))
    }

    pub fn update(&self, version: &str, f: impl FnOnce(&mut Behaviour)) {
        if let Some(mut w) = self.shared(version).and_then(|s| s.behaviour.write().ok()) {
            f(&mut w);
        }
    }
}

impl Drop for MultiAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn health(shared: Arc<Shared>) -> StatusCode {
    let healthy = shared.behaviour.read().map(|b| b.healthy).unwrap_or(false);
    if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn handle(shared: Arc<Shared>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 8 << 20).await.map(|b| b.to_vec()).unwrap_or_default();
    let headers: Vec<(String, String)> =
        parts.headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
    let shadow = parts.headers.get("x-fledge-shadow").is_some_and(|v| v == "1");
    if let Ok(mut r) = shared.received.lock() {
        if r.len() == RECEIVED {
            r.pop_front();
        }
        r.push_back(Received { method: parts.method.to_string(), path: parts.uri.path().to_string(), shadow, headers, body });
    }
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    let b = shared.behaviour.read().map(|b| b.clone()).unwrap_or_default();
    if b.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(b.latency_ms)).await;
    }
    let failed = every(n, b.error_rate);
    if let Ok(mut m) = shared.marks.lock() {
        let now = Instant::now();
        m.last_request = Some(now);
        m.last_request_at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64);
        if failed && m.first_error.is_none() {
            m.first_error = Some(now);
        }
    }
    let status = if failed { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    let outcome = if every(n, 1.0 - b.success_rate) { "failure" } else { "success" };
    let mut signals = vec![("x-agent-outcome", outcome.to_string()), ("x-agent-cost", b.cost.to_string())];
    if every(n, b.violation_rate) {
        signals.push(("x-agent-policy-violations", "1".to_string()));
    }
    let body = format!("{{\"version\":\"{}\"}}", b.version);
    if !b.emit_outcome {
        signals.clear();
    }
    let mut resp = if b.stall_after_headers {
        let first = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(http_body::Frame::data(
            axum::body::Bytes::from_static(b"partial"),
        ))]);
        let stalled = futures_util::StreamExt::chain(first, futures_util::stream::pending());
        Response::new(Body::new(http_body_util::StreamBody::new(stalled)))
    } else if b.first_byte_ms > 0 {
        let delay = Duration::from_millis(b.first_byte_ms);
        let late = futures_util::stream::once(async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(axum::body::Bytes::from(body)))
        });
        let mut r = Response::new(Body::new(http_body_util::StreamBody::new(late)));
        for (k, v) in signals {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(k, v);
            }
        }
        r
    } else if b.outcome_in_trailers {
        with_trailers(body, signals)
    } else {
        let mut r = Response::new(Body::from(body));
        for (k, v) in signals {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(k, v);
            }
        }
        r
    };
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&b.version) {
        resp.headers_mut().insert("x-served-by", v);
    }
    resp
}

/// A chunked body that ends with the agent signals as HTTP trailers.
fn with_trailers(body: String, signals: Vec<(&'static str, String)>) -> Response {
    use axum::http::HeaderMap;
    let mut trailers = HeaderMap::new();
    for (k, v) in signals {
        if let Ok(v) = HeaderValue::from_str(&v) {
            trailers.insert(k, v);
        }
    }
    let frames = vec![
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(axum::body::Bytes::from(body))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let stream = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let mut r = Response::new(Body::new(stream));
    r.headers_mut().insert("trailer", HeaderValue::from_static("x-agent-outcome, x-agent-cost, x-agent-policy-violations"));
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_spreads_exact_fractions() {
        let hits = (0..1000).filter(|n| super::every(*n, 0.1)).count();
        assert_eq!(hits, 100);
        assert_eq!((0..50).filter(|n| super::every(*n, 0.0)).count(), 0);
        assert_eq!((0..50).filter(|n| super::every(*n, 1.0)).count(), 50);
    }
}
