//! fledge-filter: the proxy-wasm filter that puts each request on a version (stable or canary).
//!
//! Layout, after Kuadrant's wasm-shim: all logic lives in `fledge-core`; this crate adapts hostcalls to
//! it. The parts that decide without touching the host ([`headers`], [`poller`]) build and test natively;
//! the parts that call hostcalls (`root`, `http`) exist only on wasm32.
//!
//! Per request: one lookup of the host in a route table compiled when the config last changed, the
//! sticky header reads, one murmur3 hash and one header write. Config arrives through shared data,
//! fetched by a single long-polling context per Envoy process.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod headers;
pub mod poller;
pub mod shadow;

#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod root;
#[cfg(target_arch = "wasm32")]
mod worker;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    // A panic aborts the VM; make sure the reason reaches Envoy's log first.
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(proxy_wasm::types::LogLevel::Critical, &format!("fledge: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| Box::new(root::Root::new()));
}}
