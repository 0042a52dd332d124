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

/// A replica on the database at `url`, with its cluster tasks (lease, log) running, once it leads.
async fn state_on(url: &str) -> AppState {
    let store = Store::postgres(url, Durability::Full).unwrap();
    let s = AppState::new(store, Settings { poll_hold: Duration::from_millis(50), ..Settings::default() }).unwrap();
    fledge_controller::cluster::spawn(s.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.cluster().role() != fledge_controller::cluster::Role::Leader {
        assert!(std::time::Instant::now() < deadline, "no leadership within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s
}

/// Stops a replica's tasks (its lease released) before it is dropped.
async fn stop(s: AppState) {
    s.begin_shutdown();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s.cluster().role() == fledge_controller::cluster::Role::Leader {
        assert!(std::time::Instant::now() < deadline, "did not step down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    let s = state_on(&url).await;
    assert_eq!(call(&s, "GET", "/readyz", None).await.0, StatusCode::OK);
    let (st, ev) = common::promote_healthy(&s).await;
    let lines = export(&s).await;
    assert!(lines.iter().any(|l| l["type"] == "interval"), "the judged intervals are stored: {lines:?}");
    assert_eq!(lines.iter().filter(|l| l["type"] == "event").count(), 4);
    let before = (s.current().epoch.clone(), s.current().generation);
    stop(s).await;
    // It is in the database, read without the controller.
    let direct = Store::postgres(&url, Durability::Full).unwrap();
    assert_eq!(direct.describe(), format!("postgres {url}"));
    assert_eq!((direct.events("support").unwrap().len(), direct.load().unwrap().generation), (4, before.1));
    drop(direct);

    // A restarted controller on the same database resumes from what was committed.
    let s = state_on(&url).await;
    assert_eq!((s.current().epoch.clone(), s.current().generation), before);
    let again = status(&s).await;
    assert_eq!(again["status"], st["status"], "the status as it was");
    assert_eq!(call(&s, "GET", "/v1/rollouts/support/events", None).await.1, ev);
    assert_eq!(export(&s).await.len(), lines.len());
    assert_eq!(call(&s, "DELETE", "/v1/rollouts/support", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&s, "GET", "/v1/rollouts", None).await.1["rollouts"], json!([]));
}

/// Two replicas on one database, without their background tasks: the lease and the log driven by
/// hand, so each rule is shown alone.
fn replica(url: &str, id: &str) -> AppState {
    let store = Store::postgres(url, Durability::Full).unwrap();
    AppState::new(store, Settings { poll_hold: Duration::from_millis(50), replica: id.into(), ..Settings::default() }).unwrap()
}

fn fence(s: &AppState, epoch: u64) -> fledge_controller::store::Fence {
    fledge_controller::store::Fence { replica: s.cluster().replica().to_string(), epoch }
}

#[tokio::test]
async fn a_leader_that_lost_its_lease_commits_nothing() {
    let url = pg::database();
    let (a, b) = (replica(&url, "a"), replica(&url, "b"));
    let (ia, ib) = (a.cluster().instance().to_string(), b.cluster().instance().to_string());
    let took = a.lease_tick("a", &ia, 60_000).unwrap();
    assert_eq!((took.mine, took.holder.clone()), (Some(1), Some(("a".to_string(), 1))));
    // b cannot take a live lease, and sees who holds it.
    let seen = b.lease_tick("b", &ib, 60_000).unwrap();
    assert_eq!((seen.mine, seen.holder), (None, Some(("a".to_string(), 1))));
    // A renewal keeps the epoch.
    assert_eq!(a.lease_tick("a", &ia, 60_000).unwrap().mine, Some(1));
    common::call(&a, "PUT", "/v1/rollouts/support", Some(serde_json::from_str(common::SPEC).unwrap())).await;
    let start = |s: &AppState, f| s.apply_as("support", 1_000, f, fledge_controller::machine::Input::Start, |_| true);

    // a's lease runs out (it was paused past it) and b takes over with a new epoch.
    a.lease_tick("a", &ia, 1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let took = b.lease_tick("b", &ib, 60_000).unwrap();
    assert_eq!(took.mine, Some(2));
    b.refresh().unwrap();
    // a, waking, still believes its epoch 1: its decision is refused, and nothing is written.
    let refused = start(&a, Some(fence(&a, 1))).unwrap_err().to_string();
    assert!(refused.contains("no longer leads") && refused.contains("epoch 1"), "{refused}");
    let events = |s: &AppState| s.events("support").unwrap().into_iter().map(|(_, e)| e["kind"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(events(&b), ["created"]);
    // A stale epoch of the right replica is refused too; the holder's own epoch commits.
    assert!(start(&b, Some(fence(&b, 1))).is_err());
    let started = start(&b, Some(fence(&b, 2))).unwrap().unwrap();
    assert_eq!(started.status.decided_by, Some(fledge_controller::model::DecidedBy { replica: "b".into(), epoch: 2 }));
    let stored = b.events("support").unwrap();
    assert_eq!((stored[1].1["kind"].clone(), stored[1].1["replica"].clone(), stored[1].1["lease_epoch"].clone()), (json!("started"), json!("b"), json!(2)));
    // The restarted a (another process, same id) gets a new epoch when it takes the lease.
    b.lease_tick("b", &ib, 1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let again = replica(&url, "a");
    assert_eq!(again.lease_tick("a", again.cluster().instance(), 60_000).unwrap().mine, Some(3));
}

#[tokio::test]
async fn a_change_decided_on_an_old_view_is_decided_again_on_the_database() {
    let url = pg::database();
    let (a, b) = (replica(&url, "a"), replica(&url, "b"));
    let manual = |w: f64| json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "weight": w});
    assert_eq!(common::call(&a, "PUT", "/v1/rollouts/support", Some(manual(10.0))).await.0, StatusCode::CREATED);
    // b has not heard of it (no listener here): its view is old. Its PUT is still a replacement of
    // the rollout a created, decided again on what the database holds, and numbered after it.
    assert!(b.view().rollout("support").is_none());
    let (code, body) = common::call(&b, "PUT", "/v1/rollouts/support", Some(manual(30.0))).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!((body["status"]["revision"].clone(), body["status"]["generation"].clone()), (json!(2), json!(2)));
    // a, behind now, deletes: decided on the database too, and the generation keeps counting.
    assert_eq!(common::call(&a, "DELETE", "/v1/rollouts/support", None).await.0, StatusCode::NO_CONTENT);
    b.refresh().unwrap();
    assert!(b.view().rollout("support").is_none());
    assert_eq!((a.current().generation, b.current().generation), (3, 3));
    let kinds: Vec<String> = Store::postgres(&url, Durability::Full).unwrap().load().unwrap().rollouts.iter().map(|r| r.name.clone()).collect();
    assert!(kinds.is_empty());
}

#[tokio::test]
async fn the_data_log_counts_a_report_once_whichever_replica_it_reaches() {
    let url = pg::database();
    let (a, b) = (replica(&url, "a"), replica(&url, "b"));
    for s in [&a, &b] {
        fledge_controller::cluster::spawn(s.clone());
    }
    common::call(&a, "PUT", "/v1/rollouts/support", Some(json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "weight": 50}))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.view().rollout("support").is_none() {
        assert!(std::time::Instant::now() < deadline, "b never saw the rollout");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let post = |seq| Some(common::report(seq, "v2", 10, 1));
    assert_eq!(common::call(&a, "POST", "/v1/reports", post(1)).await.1["duplicate"], json!(false));
    let again = common::call(&b, "POST", "/v1/reports", post(1)).await.1;
    assert_eq!(again["duplicate"], json!(true), "the same (proxy, worker, seq) through another replica");
    assert_eq!(common::call(&b, "POST", "/v1/reports", post(2)).await.1["duplicate"], json!(false));
    for s in [&a, &b] {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let w = status(s).await["live"]["window"]["canary"].clone();
            if w["requests"] == json!(20) {
                assert_eq!(w["errors"], json!(2));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{w}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    a.begin_shutdown();
    b.begin_shutdown();
}

/// A report waiting for its flush holds no ingest slot: three times as many reports as there are
/// slots all wait in the flush queue at once, every slot free, and are acknowledged by one flush.
/// (Holding a slot across the wait made 1,000 proxies on 3 replicas queue behind eight flushes.)
#[tokio::test]
async fn reports_waiting_for_the_shared_log_hold_no_ingest_slot() {
    let url = pg::database();
    let s = replica(&url, "a");
    common::call(
        &s,
        "PUT",
        "/v1/rollouts/support",
        Some(json!({"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "weight": 50})),
    )
    .await;
    let slots = fledge_controller::api::INGEST_CONCURRENCY;
    let n = 3 * slots;
    let posts: Vec<_> = (1..=n as u64)
        .map(|seq| {
            let s = s.clone();
            tokio::spawn(async move {
                common::call(
                    &s,
                    "POST",
                    "/v1/reports",
                    Some(common::report(seq, "v2", 10, 1)),
                )
                .await
            })
        })
        .collect();
    // No flush task runs yet: every report parsed so far waits in the queue.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.cluster().queued().0 < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?} queued of {n}",
            s.cluster().queued()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        s.ingest_slots().available_permits(),
        slots,
        "no slot is held while waiting"
    );
    fledge_controller::cluster::spawn(s.clone());
    for p in posts {
        let (code, body) = p.await.unwrap();
        assert_eq!(
            (code, body["duplicate"].clone()),
            (StatusCode::ACCEPTED, json!(false)),
            "{body}"
        );
    }
    assert_eq!(
        status(&s).await["live"]["window"]["canary"]["requests"],
        json!(10 * n)
    );
    s.begin_shutdown();
}
