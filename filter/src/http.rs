//! The HTTP context: picks the version for a request and stamps it on request and response.

use std::cell::RefCell;
use std::rc::Rc;

use fledge_core::plugin::PluginConfig;
use fledge_core::route::{RouteTable, Side};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::headers::{sticky_key, HeaderSource};
use crate::root::Worker;

pub struct Http {
    worker: Rc<RefCell<Worker>>,
    /// The table, rollout index and side chosen for this request, kept for the response.
    picked: Option<(Rc<RouteTable>, Rc<PluginConfig>, usize, Side)>,
}

impl Http {
    pub fn new(worker: Rc<RefCell<Worker>>) -> Self {
        Self { worker, picked: None }
    }
}

struct RequestHeaders;

impl HeaderSource for RequestHeaders {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name).ok().flatten()
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (table, config) = {
            let w = self.worker.borrow();
            match &w.table {
                Some(t) if !t.is_empty() => (t.clone(), w.config.clone()),
                _ => return Action::Continue,
            }
        };
        let Some(authority) = RequestHeaders.header(":authority") else { return Action::Continue };
        let Some(rollout) = std::str::from_utf8(&authority).ok().and_then(|a| table.lookup(a)) else {
            return Action::Continue;
        };
        let key = sticky_key(&config.sticky, &RequestHeaders);
        let worker = &self.worker;
        let decision = rollout.decide(key.as_ref().map(|(i, k)| (*i, k.as_slice())), || worker.borrow_mut().rng.next_u32());
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, &config.route_header, Some(rollout.version(decision.side)));
        let index = rollout.index;
        self.picked = Some((table, config, index, decision.side));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some((table, config, index, side)) = &self.picked {
            if let Some(r) = table.rollouts().get(*index) {
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, &config.route_header, Some(r.version(*side)));
            }
        }
        Action::Continue
    }
}
