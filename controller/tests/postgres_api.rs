//! The state machine, unchanged, on a PostgreSQL store: a rollout driven through `AppState` and the
//! API (time and reports injected, as in rollouts_api.rs) to its promotion, then read back by a
//! restarted controller on the same database. The server is this binary's throwaway cluster
//! (tests/common/pg.rs); these tests fail, never skip, when it cannot be started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use axum::http::StatusCode;
use fledge_controller::store::{Durability, Store};
use fledge_controller::{AppState, Settings};
use serde_json::{json, Value};

mod common;
#[path = "common/pg.rs"]
mod pg;

use common::{call, status};

fn state_on(url: &str) -> AppState {
    let store = Store::postgres(url, Durability::Full).unwrap();
    AppState::new(store, Settings { poll_hold: Duration::from_millis(50), ..Settings::default() }).unwrap()
}

/// The export's lines, each parsed.
async fn export(state: &AppState) -> Vec<Value> {
    let (code, _, lines) = common::export(state, "support").await;
    assert_eq!(code, StatusCode::OK);
    lines
}

#[tokio::test]
async fn healthy_data_advances_then_promotes_on_postgres_and_survives_a_restart() {
    let url = pg::database();
    let s = state_on(&url);
    assert_eq!(call(&s, "GET", "/readyz", None).await.0, StatusCode::OK);
    let (st, ev) = common::promote_healthy(&s).await;
    let lines = export(&s).await;
    assert!(lines.iter().any(|l| l["type"] == "interval"), "the judged intervals are stored: {lines:?}");
    assert_eq!(lines.iter().filter(|l| l["type"] == "event").count(), 4);
    let before = (s.current().epoch.clone(), s.current().generation);
    drop(s);
    // It is in the database, read without the controller.
    let direct = Store::postgres(&url, Durability::Full).unwrap();
    assert_eq!(direct.describe(), format!("postgres {url}"));
    assert_eq!((direct.events("support").unwrap().len(), direct.load().unwrap().generation), (4, before.1));
    drop(direct);

    // A restarted controller on the same database resumes from what was committed.
    let s = state_on(&url);
    assert_eq!((s.current().epoch.clone(), s.current().generation), before);
    let again = status(&s).await;
    assert_eq!(again["status"], st["status"], "the status as it was");
    assert_eq!(call(&s, "GET", "/v1/rollouts/support/events", None).await.1, ev);
    assert_eq!(export(&s).await.len(), lines.len());
    assert_eq!(call(&s, "DELETE", "/v1/rollouts/support", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&s, "GET", "/v1/rollouts", None).await.1["rollouts"], json!([]));
}
