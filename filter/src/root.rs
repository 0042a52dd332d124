//! The root context: configuration, the fetcher lease, the config long-poll and the per-worker refresh
//! of the compiled route table from shared data.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use fledge_core::lease;
use fledge_core::outbox::{Delivery, Outbox};
use fledge_core::report::Report;
use fledge_core::telemetry::Telemetry;
use fledge_core::plugin::PluginConfig;
use fledge_core::rng::SplitMix64;
use fledge_core::route::RouteTable;
use fledge_core::snapshot::ConfigSnapshot;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::http::Http;
use crate::metrics::Metrics;
use crate::poller::{PollResult, Poller};

const CONFIG_KEY: &str = "fledge.config";
const LEASE_KEY: &str = "fledge.lease";
const PROXY_ID_KEY: &str = "fledge.proxy_id";
/// After a failed dispatch this context stays away from the lease so another can fetch.
const LEASE_BACKOFF_MS: u64 = 5_000;
/// Unacknowledged reports kept per worker (a minute at the default interval), and how many go out
/// per report tick.
const OUTBOX_CAPACITY: usize = 64;
const SENDS_PER_TICK: usize = 8;

/// Per-VM (per worker) state shared by the root context and the HTTP contexts it creates.
pub struct Worker {
    pub config: Rc<PluginConfig>,
    pub table: Option<Rc<RouteTable>>,
    pub rng: SplitMix64,
    pub telemetry: Telemetry,
}

pub struct Root {
    worker: Rc<RefCell<Worker>>,
    owner: u64,
    poller: Poller,
    poll_token: Option<u32>,
    config_cas: Option<u32>,
    lease_blocked_until: u64,
    proxy_id: String,
    worker_id: String,
    next_report_ms: u64,
    /// Reports until acknowledged; an unknown fate means a resend under the same sequence number.
    outbox: Outbox,
    /// The status of the last refused report, logged once until a report is accepted again.
    refused: Option<u16>,
    metrics: Metrics,
}

impl Root {
    pub fn new() -> Self {
        let seed = getrandom::u64().unwrap_or_else(|_| now_ms());
        let worker = Worker {
            config: Rc::new(PluginConfig::default()),
            table: None,
            rng: SplitMix64::new(seed),
            telemetry: Telemetry::default(),
        };
        Self {
            owner: SplitMix64::new(seed ^ 0x5eed).next_u64(),
            worker: Rc::new(RefCell::new(worker)),
            poller: Poller::new(),
            poll_token: None,
            config_cas: None,
            lease_blocked_until: 0,
            proxy_id: String::new(),
            worker_id: format!("{:08x}", SplitMix64::new(seed ^ 0x3017).next_u32()),
            next_report_ms: 0,
            outbox: Outbox::new(OUTBOX_CAPACITY),
            refused: None,
            metrics: Metrics::default(),
        }
    }

    /// The process-wide proxy id: the plugin's `proxy_id`, else Envoy's node id, else a random id that
    /// the first worker stores in shared data for the others.
    fn resolve_proxy_id(&self, cfg: &PluginConfig) -> String {
        if let Some(id) = &cfg.proxy_id {
            return id.clone();
        }
        // Envoy 1.40 exposes the node as the attribute `xds.node`; older Envoys (and Istio's proxies
        // before the attribute move) as `node`. Without this, every sidecar got a random id.
        let node = [vec!["xds", "node", "id"], vec!["node", "id"]]
            .into_iter()
            .find_map(|path| hostcalls::get_property(path).ok().flatten().filter(|b| !b.is_empty()));
        if let Some(id) = node.and_then(|b| String::from_utf8(b).ok()).filter(|s| !s.is_empty()) {
            return id;
        }
        // Shared data has no create-if-absent: racing workers may each write, and the last write wins.
        // `current_proxy_id` re-reads it at every report, so all workers converge on that value.
        if let Ok((Some(b), _)) = hostcalls::get_shared_data(PROXY_ID_KEY) {
            if let Ok(id) = String::from_utf8(b) {
                return id;
            }
        }
        let mine = format!("envoy-{:012x}", self.owner >> 16);
        let _ = hostcalls::set_shared_data(PROXY_ID_KEY, Some(mine.as_bytes()), None);
        mine
    }

    fn current_proxy_id(&mut self) -> &str {
        let derived = self.config().proxy_id.is_none() && self.proxy_id.starts_with("envoy-");
        if derived {
            if let Ok((Some(b), _)) = hostcalls::get_shared_data(PROXY_ID_KEY) {
                if let Ok(id) = String::from_utf8(b) {
                    self.proxy_id = id;
                }
            }
        }
        &self.proxy_id
    }

    /// Drains this worker's telemetry into the outbox and Envoy's counters, then sends what waits.
    fn report(&mut self, now: u64) {
        let cfg = self.config();
        self.next_report_ms = now + cfg.report_interval_ms;
        let generation = self.applied_generation();
        let proxy = self.current_proxy_id().to_string();
        let report = self.worker.borrow_mut().telemetry.drain(&proxy, &self.worker_id, generation);
        self.metrics.export(&report);
        if let Some(lost) = self.outbox.push(report) {
            let requests: u64 = lost.versions.iter().map(|v| v.stats.requests).sum();
            self.metrics.reports_dropped(1);
            log(LogLevel::Warn, &format!("controller has not acknowledged {OUTBOX_CAPACITY} reports: dropped report {} ({requests} requests)", lost.seq));
        }
        for seq in self.outbox.waiting(SENDS_PER_TICK) {
            self.send_report(&cfg, seq);
        }
        self.metrics.reports_unacknowledged(self.outbox.unconfirmed());
    }

    fn send_report(&mut self, cfg: &PluginConfig, seq: u64) {
        let Some(body) = self.outbox.get(seq).and_then(|r| serde_json_body(r).ok()) else { return };
        let timeout = Duration::from_millis(cfg.report_interval_ms.max(1_000));
        match call_controller(cfg, "POST", "/v1/reports", Some(&body), timeout) {
            Ok(token) => self.outbox.sent(seq, token),
            Err(_) => {
                if let Some(report) = self.outbox.not_sent(seq) {
                    self.worker.borrow_mut().telemetry.restore(report);
                }
            }
        }
    }

    /// 2xx: counted; 4xx: refused for good (a wrong token, a malformed report), logged once; otherwise
    /// resent as is.
    fn on_report_response(&mut self, token: u32, num_headers: usize) -> bool {
        let status: Option<u16> = if num_headers == 0 {
            None
        } else {
            self.get_http_call_response_header(":status").and_then(|s| s.parse().ok())
        };
        let delivery = Delivery::from_status(status);
        let ours = self.outbox.answered(token, delivery);
        if !ours {
            return false;
        }
        self.metrics.reports_unacknowledged(self.outbox.unconfirmed());
        match delivery {
            Delivery::Refused if self.refused != status => {
                self.refused = status;
                let hint = if matches!(status, Some(401 | 403)) { " (check controller.token)" } else { "" };
                log(LogLevel::Warn, &format!("controller refused a report with status {}{hint}; its counts are dropped", status.unwrap_or(0)));
            }
            Delivery::Acknowledged if self.refused.is_some() => {
                self.refused = None;
                log(LogLevel::Info, "controller accepts reports again");
            }
            _ => {}
        }
        true
    }

    fn config(&self) -> Rc<PluginConfig> {
        self.worker.borrow().config.clone()
    }

    fn applied_generation(&self) -> Option<u64> {
        self.worker.borrow().table.as_ref().map(|t| t.generation)
    }

    fn jitter(&self) -> u32 {
        self.worker.borrow_mut().rng.next_u32()
    }

    fn install(&self, table: RouteTable) {
        self.worker.borrow_mut().table = Some(Rc::new(table));
    }

    /// Re-reads the stored config only when its CAS moved: a tick costs one shared-data read.
    fn refresh_from_shared(&mut self) {
        let Ok((Some(bytes), cas)) = hostcalls::get_shared_data(CONFIG_KEY) else { return };
        if cas == self.config_cas {
            return;
        }
        self.config_cas = cas;
        match ConfigSnapshot::parse(&bytes).and_then(|s| RouteTable::compile(&s)) {
            Ok(table) if Some(table.generation) != self.applied_generation() => self.install(table),
            Ok(_) => {}
            Err(e) => log(LogLevel::Error, &format!("stored config rejected, keeping the last good one: {e}")),
        }
    }

    fn hold_lease(&mut self, now: u64) -> bool {
        if now < self.lease_blocked_until {
            return false;
        }
        let ttl = (self.config().tick_ms * 10).max(1_000);
        let Ok((current, cas)) = hostcalls::get_shared_data(LEASE_KEY) else { return false };
        match lease::claim(current.as_deref(), self.owner, now, ttl) {
            Some(l) => hostcalls::set_shared_data(LEASE_KEY, Some(l.encode().as_bytes()), cas).is_ok(),
            None => false,
        }
    }

    fn poll(&mut self, now: u64) {
        let cfg = self.config();
        let path = Poller::path(self.applied_generation());
        let timeout = Duration::from_millis(cfg.controller.poll_timeout_ms);
        match call_controller(&cfg, "GET", &path, None, timeout) {
            Ok(token) => {
                self.poll_token = Some(token);
                self.poller.dispatched();
            }
            Err(status) => {
                let reason = format!("cannot call cluster {:?}: {status:?}", cfg.controller.cluster);
                let jitter = self.jitter();
                if let Some(line) = self.poller.dispatch_failed(now, reason, jitter) {
                    log(LogLevel::Warn, &line);
                }
                // Let another context (e.g. a worker rather than the main thread) try.
                let _ = hostcalls::set_shared_data(LEASE_KEY, Some(b"-"), None);
                self.lease_blocked_until = now + LEASE_BACKOFF_MS;
            }
        }
    }

    fn on_poll_response(&mut self, num_headers: usize, body_size: usize) {
        let now = now_ms();
        let status = if num_headers == 0 {
            None
        } else {
            self.get_http_call_response_header(":status").and_then(|s| s.parse().ok())
        };
        let body = self.get_http_call_response_body(0, body_size);
        let result = Poller::classify(status, body.as_deref(), self.applied_generation());
        if let (PollResult::Apply { .. }, Some(bytes)) = (&result, &body) {
            let _ = hostcalls::set_shared_data(CONFIG_KEY, Some(bytes), None);
            self.config_cas = hostcalls::get_shared_data(CONFIG_KEY).ok().and_then(|(_, cas)| cas);
        }
        let jitter = self.jitter();
        if let Some(line) = self.poller.finished(now, &result, jitter) {
            let level = if matches!(result, PollResult::Failed(_)) { LogLevel::Warn } else { LogLevel::Info };
            log(level, &line);
        }
        if let PollResult::Apply { table, generation } = result {
            log(LogLevel::Info, &format!("applied config generation {generation} ({} rollouts)", table.rollouts().len()));
            self.install(table);
        }
        if self.poller.due(now) && self.hold_lease(now) {
            self.poll(now);
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _trailers: usize) {
        if self.poll_token == Some(token) {
            self.poll_token = None;
            self.on_poll_response(num_headers, body_size);
        } else {
            self.on_report_response(token, num_headers);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = if size == 0 { Vec::new() } else { self.get_plugin_configuration().unwrap_or_default() };
        match PluginConfig::parse(&bytes) {
            Ok(cfg) => {
                let _ = hostcalls::set_tick_period(Duration::from_millis(cfg.tick_ms));
                self.proxy_id = self.resolve_proxy_id(&cfg);
                self.worker.borrow_mut().config = Rc::new(cfg);
                true
            }
            Err(e) => {
                log(LogLevel::Critical, &format!("invalid plugin configuration: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        self.refresh_from_shared();
        if self.poller.due(now) && self.hold_lease(now) {
            self.poll(now);
        }
        if now >= self.next_report_ms {
            self.report(now);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One call to the controller cluster, with the bearer token when one is configured.
fn call_controller(cfg: &PluginConfig, method: &str, path: &str, body: Option<&[u8]>, timeout: Duration) -> Result<u32, proxy_wasm::types::Status> {
    let bearer = cfg.controller.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers = vec![(":method", method), (":path", path), (":authority", cfg.controller.authority.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    hostcalls::dispatch_http_call(&cfg.controller.cluster, headers, body, vec![], timeout)
}

pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

fn serde_json_body(report: &Report) -> Result<Vec<u8>, ()> {
    fledge_core::report::encode(report).map_err(|e| log(LogLevel::Error, &format!("cannot encode report: {e}")))
}

pub fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}
