//! fledge-empty-filter: the baseline of `make bench`. A proxy-wasm filter that does nothing: one root
//! context, and an HTTP context per request whose callbacks all return `Continue` (the trait defaults).
//! Its cost in Envoy is the price of having a wasm VM in the chain at all (context creation, the
//! per-callback crossings into V8), which is what the fledge filter is compared against.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http))
    }
}

struct Http;

impl Context for Http {}

impl HttpContext for Http {}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}
