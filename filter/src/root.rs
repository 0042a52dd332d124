//! The root context: configuration, the fetcher lease, the config long-poll and the per-worker refresh
//! of the compiled route table from shared data.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use fledge_core::fallback::LossWatch;
use fledge_core::lease::{Fetcher, Renewal};
use fledge_core::outbox::{Delivery, Outbox};
use fledge_core::report::Report;
use fledge_core::plugin::PluginConfig;
use fledge_core::rng::SplitMix64;
use fledge_core::route::RouteTable;
use fledge_core::snapshot::ConfigSnapshot;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use fledge_core::outcome::{parse_cost, parse_result, parse_violations};
use fledge_core::shadow::Answer;
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};

use crate::http::Http;
use crate::metrics::Metrics;
use crate::poller::{PollResult, Poller};
use crate::shadow::BodyTap;
use crate::worker::{log, now_ms, now_ns, Worker};

const CONFIG_KEY: &str = "fledge.config";
const LEASE_KEY: &str = "fledge.lease";
const PROXY_ID_KEY: &str = "fledge.proxy_id";
/// After a failed dispatch this context stays away from the lease so another can fetch.
const LEASE_BACKOFF_MS: u64 = 5_000;
/// Unacknowledged reports kept per worker (a minute at the default interval), and how many go out
/// per report tick.
const OUTBOX_CAPACITY: usize = 64;
const SENDS_PER_TICK: usize = 8;

pub struct Root {
    worker: Rc<RefCell<Worker>>,
    owner: u64,
    fetcher: Fetcher,
    poller: Poller,
    poll_token: Option<u32>,
    config_cas: Option<u32>,
    proxy_id: String,
    worker_id: String,
    next_report_ms: u64,
    /// Reports until acknowledged; an unknown fate means a resend under the same sequence number.
    outbox: Outbox,
    /// The status of the last refused report, logged once until a report is accepted again.
    refused: Option<u16>,
    /// Shadow clusters a copy could not be sent to, each logged once.
    shadow_refused: std::collections::HashSet<String>,
    metrics: Metrics,
    /// The controller's silence, and the rollouts sent to stable because of it (`on_controller_loss`).
    loss: LossWatch,
}

impl Root {
    pub fn new() -> Self {
        let seed = getrandom::u64().unwrap_or_else(|_| now_ms());
        let owner = SplitMix64::new(seed ^ 0x5eed).next_u64();
        Self {
            owner,
            fetcher: Fetcher::new(owner, PluginConfig::default().tick_ms),
            worker: Rc::new(RefCell::new(Worker::new(seed))),
            poller: Poller::new(),
            poll_token: None,
            config_cas: None,
            proxy_id: String::new(),
            worker_id: format!("{:08x}", SplitMix64::new(seed ^ 0x3017).next_u32()),
            next_report_ms: 0,
            outbox: Outbox::new(OUTBOX_CAPACITY),
            refused: None,
            shadow_refused: Default::default(),
            metrics: Metrics::default(),
            loss: LossWatch::default(),
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
        match node.and_then(|b| String::from_utf8(b).ok()) {
            Some(id) if fledge_core::report::valid_identifier(&id) => return id,
            Some(id) => log(LogLevel::Warn, &format!("node id {id:?} cannot name this proxy in reports (1-253 bytes, no control characters); using a random id")),
            None => {}
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
        let metrics = &mut self.metrics;
        let mut report = {
            let mut w = self.worker.borrow_mut();
            // The report interval is the sampler's: the next one's share of stable from this one's counts.
            w.sampler.end_interval();
            w.telemetry.drain(&proxy, &self.worker_id, generation, |fresh| metrics.export(fresh))
        };
        report.epoch = self.applied_epoch();
        self.metrics.vm_memory(crate::worker::vm_memory_bytes());
        report.fallbacks = self.loss.fallen().to_vec();
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
        match call_controller(cfg, "POST", "/v1/reports", Some(&body), None, timeout) {
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
        if delivery == Delivery::Acknowledged {
            self.loss.contact(now_ms());
        }
        true
    }

    fn config(&self) -> Rc<PluginConfig> {
        self.worker.borrow().config.clone()
    }

    fn applied_generation(&self) -> Option<u64> {
        self.worker.borrow().table.as_ref().map(|t| t.generation)
    }

    fn applied_epoch(&self) -> Option<String> {
        self.worker.borrow().table.as_ref().map(|t| t.epoch.clone()).filter(|e| !e.is_empty())
    }

    /// The installed table, if any, for comparisons that need its epoch and generation together.
    fn table(&self) -> Option<Rc<RouteTable>> {
        self.worker.borrow().table.clone()
    }

    fn jitter(&self) -> u32 {
        self.worker.borrow_mut().rng.next_u32()
    }

    /// Installs a table from the controller's config: a newer one lifts every fallback to stable, the
    /// same one keeps them.
    fn install(&mut self, table: RouteTable) {
        for f in self.loss.lift_for(&table) {
            log(LogLevel::Info, &format!("rollout {:?}: config generation {} from the controller lifts the fallback to stable", f.rollout, table.generation));
        }
        let table = self.loss.apply(table);
        let mut w = self.worker.borrow_mut();
        w.sessions.retain(|name| table.rollouts().iter().any(|r| r.name == name));
        // A new table, a new sampler: its first interval measures every request.
        w.sampler = fledge_core::sampling::Sampler::new(w.config.stable_sampling, table.rollouts().len());
        w.table = Some(Rc::new(table));
    }

    /// `on_controller_loss: stable`: rollouts whose `after_seconds` of silence have passed go to
    /// stable now, each logged once (sending a rollout to stable twice changes nothing, so the
    /// installed table is simply re-applied).
    fn check_controller_loss(&mut self, now: u64) {
        let Some(table) = self.table() else { return };
        let newly = self.loss.check(&table, now);
        if newly.is_empty() {
            return;
        }
        for f in &newly {
            log(LogLevel::Warn, &format!(
                "rollout {:?}: no answer from the controller for {} s: every request to stable (on_controller_loss: stable) until a newer config",
                f.rollout, f.after_seconds
            ));
        }
        let rebuilt = self.worker.borrow().table.as_deref().cloned().map(|t| self.loss.apply(t));
        if let Some(t) = rebuilt {
            self.worker.borrow_mut().table = Some(Rc::new(t));
        }
    }

    /// Re-reads the stored config only when its CAS moved: a tick costs one shared-data read.
    fn refresh_from_shared(&mut self) {
        let Ok((Some(bytes), cas)) = hostcalls::get_shared_data(CONFIG_KEY) else { return };
        if cas == self.config_cas {
            return;
        }
        self.config_cas = cas;
        let installed = self.table();
        match ConfigSnapshot::parse(&bytes).and_then(|s| RouteTable::compile(&s)) {
            Ok(table) if !installed.is_some_and(|t| t.is(&table.epoch, table.generation)) => self.install(table),
            Ok(_) => {}
            Err(e) => log(LogLevel::Error, &format!("stored config rejected, keeping the last good one: {e}")),
        }
    }

    /// Renews (or tries to take) the fetcher lease; runs on every tick, poll in flight or not.
    fn renew_lease(&mut self, now: u64) {
        let Ok((current, cas)) = hostcalls::get_shared_data(LEASE_KEY) else { return };
        if let Renewal::Write(value) = self.fetcher.tick(current.as_deref(), now) {
            let won = hostcalls::set_shared_data(LEASE_KEY, Some(value.as_bytes()), cas).is_ok();
            self.fetcher.written(won);
        }
    }

    fn poll(&mut self, now: u64) {
        let cfg = self.config();
        let installed = self.table();
        let path = Poller::path(installed.as_ref().map(|t| (t.epoch.as_str(), t.generation)));
        let timeout = Duration::from_millis(cfg.controller.poll_timeout_ms);
        // Naming the proxy lets the controller answer at once a poll this Envoy left held from a
        // context that has since lost the lease (see controller/src/pollers.rs). Header values must be
        // visible ASCII; an id that is not goes unnamed, and its polls are simply never superseded.
        let proxy = self.current_proxy_id().to_string();
        let named = proxy
            .bytes()
            .all(|b| b == b' ' || b.is_ascii_graphic())
            .then_some(proxy.as_str());
        match call_controller(&cfg, "GET", &path, None, named, timeout) {
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
                let released = self.fetcher.give_up(now, LEASE_BACKOFF_MS);
                let _ = hostcalls::set_shared_data(LEASE_KEY, Some(released), None);
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
        if matches!(status, Some(200 | 304)) {
            self.loss.contact(now);
        }
        let installed = self.table();
        let result = Poller::classify(status, body.as_deref(), installed.as_ref().map(|t| (t.epoch.as_str(), t.generation)));
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
        if self.poller.due(now) && self.fetcher.holds() {
            self.poll(now);
        }
    }
}

impl Root {
    /// Registers this worker's shadow queue, whose notifications wake this context to send copies.
    fn register_shadow_queue(&mut self) {
        let mut w = self.worker.borrow_mut();
        if w.shadows.queue_id.is_none() {
            // One queue per worker: a notification reaches the context that registered the name.
            w.shadows.queue_id = hostcalls::register_shared_queue(&format!("fledge.shadow.{}", self.worker_id)).ok();
        }
    }

    /// Sends every queued copy. The worker is not borrowed across a dispatch, in case the host
    /// answers inline.
    fn send_copies(&mut self) {
        loop {
            let Some(copy) = self.worker.borrow_mut().shadows.ready.pop_front() else { return };
            let headers: Vec<(&str, &str)> = copy.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let body = (!copy.body.is_empty()).then_some(copy.body.as_slice());
            let timeout = Duration::from_millis(u64::from(copy.timeout_ms));
            let started = now_ns();
            let result = hostcalls::dispatch_http_call(&copy.cluster, headers, body, vec![], timeout);
            let mut w = self.worker.borrow_mut();
            let w = &mut *w;
            match result {
                Ok(token) => w.shadows.dispatched(token, &copy, started, &mut w.telemetry),
                Err(status) => {
                    w.shadows.not_dispatched(&copy, &mut w.telemetry);
                    if self.shadow_refused.insert(copy.cluster.clone()) {
                        log(LogLevel::Warn, &format!("cannot send shadow copies to cluster {:?} ({status:?}): counted as dropped; check shadow.cluster", copy.cluster));
                    }
                }
            }
        }
    }

    /// A copy's answer: read, hashed, and paired with the user's.
    fn on_shadow_response(&mut self, token: u32, num_headers: usize, body_size: usize) -> bool {
        let Some(call) = self.worker.borrow().shadows.dispatched.get(&token).copied() else { return false };
        let cfg = self.config();
        let total_us = now_ns().saturating_sub(call.started_ns) / 1_000;
        let (answer, body) = if num_headers == 0 {
            (Answer { total_us, ..Answer::default() }, None)
        } else {
            let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
            let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
            let keep = self.worker.borrow().table.as_ref().is_some_and(|t| t.rollouts().iter().any(|r| r.shadow.as_ref().is_some_and(|s| s.capture.bodies)));
            let mut tap = BodyTap::new(keep);
            let body = if body_size > 0 { hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten() } else { None };
            tap.update(body.as_deref().unwrap_or_default());
            let status = get(":status").and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
            if crate::shadow::envoy_gave_up(status, body.as_deref().unwrap_or_default()) {
                let mut w = self.worker.borrow_mut();
                let w = &mut *w;
                return w.shadows.answered(token, Answer { total_us, ..Answer::default() }, None, now_ms(), &mut w.telemetry);
            }
            let answer = Answer {
                status,
                result: get(&cfg.outcome.result).map(parse_result),
                cost: get(&cfg.outcome.cost).and_then(parse_cost),
                violations: get(&cfg.outcome.policy_violations).and_then(parse_violations),
                total_us,
                body: tap.hasher,
            };
            (answer, tap.sample())
        };
        let mut w = self.worker.borrow_mut();
        let w = &mut *w;
        w.shadows.answered(token, answer, body, now_ms(), &mut w.telemetry)
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _trailers: usize) {
        if self.on_shadow_response(token, num_headers, body_size) {
            return;
        }
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
                self.fetcher = Fetcher::new(self.owner, cfg.tick_ms);
                self.proxy_id = self.resolve_proxy_id(&cfg);
                // Silence counts from the start.
                self.loss.contact(now_ms());
                self.worker.borrow_mut().config = Rc::new(cfg);
                self.register_shadow_queue();
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
        self.check_controller_loss(now);
        self.renew_lease(now);
        if self.poller.due(now) && self.fetcher.holds() {
            self.poll(now);
        }
        if now >= self.next_report_ms {
            self.report(now);
        }
        // Copies left behind by a missed notification go out with the tick.
        self.send_copies();
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(_)) = hostcalls::dequeue_shared_queue(queue_id) {}
        self.send_copies();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One call to the controller cluster, with the bearer token when one is configured.
/// `proxy`, on a config poll, names this Envoy (`x-fledge-proxy`).
fn call_controller(
    cfg: &PluginConfig,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    proxy: Option<&str>,
    timeout: Duration,
) -> Result<u32, proxy_wasm::types::Status> {
    let bearer = cfg.controller.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        (":method", method),
        (":path", path),
        (":authority", cfg.controller.authority.as_str()),
    ];
    if let Some(p) = proxy {
        headers.push(("x-fledge-proxy", p));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    hostcalls::dispatch_http_call(&cfg.controller.cluster, headers, body, vec![], timeout)
}

fn serde_json_body(report: &Report) -> Result<Vec<u8>, ()> {
    fledge_core::report::encode(report).map_err(|e| log(LogLevel::Error, &format!("cannot encode report: {e}")))
}

