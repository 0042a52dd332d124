//! fledge-controller: the `fledge` daemon's library.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]
//!
//! Holds the rollouts (SQLite under `--data`, or PostgreSQL with `--database`), publishes each change as a config generation that proxies
//! pick up by long poll, and serves the REST API. `main.rs` is only the CLI edge.

pub mod actions;
pub mod api;
pub mod approval;
pub mod cli;
pub mod cluster;
mod cli_apply;
pub mod cli_view;
pub mod driver;
pub mod error;
pub mod events;
pub mod export;
pub mod gitops;
pub mod ingest;
pub mod live;
pub mod manifest;
pub mod metrics;
pub mod machine;
pub mod model;
pub mod otlp;
pub mod module;
pub mod notify;
pub mod poll;
pub mod pollers;
pub mod readiness;
pub mod scrape;
pub mod segments;
pub mod series;
pub mod shadow;
pub mod state;
pub mod store;
pub mod stream;
pub mod totals;
pub mod ui;

pub use api::app;
pub use state::{AppState, Settings};
