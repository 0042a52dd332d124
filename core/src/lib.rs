//! fledge-core: the pure logic shared by the fledge filter (wasm32) and controller (native).
//!
//! No I/O, no clocks, no global randomness: time and random numbers come in as arguments, so every
//! decision here is a function of its inputs and is tested natively. Nothing here may panic: the filter
//! runs this code on every request inside Envoy.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod analysis;
pub mod backoff;
pub mod bucket;
pub mod cookie;
pub mod fallback;
pub mod histogram;
pub mod lease;
pub mod murmur3;
pub mod outbox;
pub mod outcome;
pub mod plugin;
pub mod report;
pub mod rng;
pub mod rollout;
pub mod sampling;
pub mod route;
pub mod segment;
pub mod session;
pub mod shadow;
pub mod snapshot;
pub mod stats;
pub mod telemetry;

pub use bucket::{Bucket, Weight};
pub use route::{Decision, RouteTable, Side};
pub use snapshot::{ConfigSnapshot, RouteSpec};
