//! fledge-controller: the `fledge` daemon's library.
//!
//! Holds the rollouts (SQLite under `--data`), publishes each change as a config generation that proxies
//! pick up by long poll, and serves the REST API. `main.rs` is only the CLI edge.

pub mod api;
pub mod error;
pub mod model;
pub mod poll;
pub mod state;
pub mod store;

pub use api::app;
pub use state::{AppState, Settings};
