//! Webhook notifications from the real controller process to a real HTTP receiver on loopback: every
//! subscribed event arrives, signed, exactly once by its delivery id, across a kill -9 of the
//! controller while a delivery is on the wire and while the receiver is down, and after a receiver
//! outage of 30 s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use fledge_integration::{assert_eventually, Controller};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};

const SECRET: &str = "whsec-test-7f3a9c";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Arrival {
    /// `json` or `slack`: the path it was sent to.
    path: String,
    id: String,
    event: String,
    signature: Option<String>,
    body: Vec<u8>,
}

impl Arrival {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn signed(&self) -> bool {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&self.body);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        self.signature.as_deref() == Some(format!("sha256={hex}").as_str())
    }
}

#[derive(Default)]
struct Inner {
    arrivals: Mutex<Vec<Arrival>>,
    /// While set, a request is recorded and then left unanswered until `release`.
    hold: AtomicBool,
    release: Notify,
}

/// A webhook receiver on a fixed loopback port that can be taken down (connections refused) and
/// brought back.
struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
    server: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

async fn hook(State(inner): State<Arc<Inner>>, Path(path): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    inner.arrivals.lock().unwrap().push(Arrival {
        path,
        id: header("x-fledge-delivery").unwrap_or_default(),
        event: header("x-fledge-event").unwrap_or_default(),
        signature: header("x-fledge-signature"),
        body: body.to_vec(),
    });
    if inner.hold.load(Ordering::SeqCst) {
        inner.release.notified().await;
    }
    StatusCode::NO_CONTENT
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Receiver { addr: listener.local_addr().unwrap(), inner: Arc::default(), server: None };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new().route("/{path}", post(hook)).with_state(self.inner.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        self.server = Some((stop, task));
    }

    /// Closes the listener and every connection: deliveries are refused until [`up`](Self::up).
    async fn down(&mut self) {
        self.release();
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            task.await.unwrap();
        }
    }

    async fn up(&mut self) {
        let (listener, _) = assert_eventually!(Duration::from_secs(5), "the receiver's port is free again", async {
            Ok(tokio::net::TcpListener::bind(self.addr).await?)
        });
        self.serve(listener);
    }

    fn hold(&self, on: bool) {
        self.inner.hold.store(on, Ordering::SeqCst);
    }

    fn release(&self) {
        self.hold(false);
        self.inner.release.notify_waiters();
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.inner.arrivals.lock().unwrap().clone()
    }

    /// The first arrival of each delivery id, in order of arrival.
    fn unique(&self) -> Vec<Arrival> {
        let mut seen = std::collections::HashSet::new();
        self.arrivals().into_iter().filter(|a| seen.insert(a.id.clone())).collect()
    }

}

/// The events delivered to one path, once per delivery id, in order of first arrival.
fn events_at(receiver: &Receiver, path: &str) -> Vec<String> {
    receiver.unique().into_iter().filter(|a| a.path == path).map(|a| a.event).collect()
}

/// Every arrival is signed, the same id always carries the same body, and the JSON bodies name their
/// own delivery and event.
fn check_arrivals(receiver: &Receiver) {
    let arrivals = receiver.arrivals();
    for a in &arrivals {
        assert!(a.signed(), "bad signature {:?} on {} {}", a.signature, a.path, a.id);
        let first = arrivals.iter().find(|b| b.id == a.id).unwrap();
        assert_eq!(first.body, a.body, "delivery {} was resent with another body", a.id);
        if a.path == "json" {
            let body = a.json();
            assert_eq!((body["delivery"].as_str(), body["kind"].as_str()), (Some(a.id.as_str()), Some(a.event.as_str())), "{body}");
            assert_eq!(body["rollout"], "support");
            assert_eq!(body["event"]["kind"], body["kind"]);
        } else {
            assert!(a.json()["text"].as_str().is_some_and(|t| t.starts_with("fledge: rollout *support*")), "{}", String::from_utf8_lossy(&a.body));
        }
    }
}

async fn pending(ctl: &Controller) -> anyhow::Result<f64> {
    metric(ctl, "fledge_notifications_pending").await
}

async fn metric(ctl: &Controller, name: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(ctl.url("/metrics")).await?.text().await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
        .ok_or_else(|| anyhow::anyhow!("{name} not in /metrics"))
}

/// The receiver holds the `paused` deliveries unanswered and the controller is killed with them on
/// the wire; then, with the receiver down, the controller restarts (the retries are refused), commits
/// `resumed` and is killed again before it can deliver it. Once both are back, every subscribed event
/// has arrived, exactly once per id (the resent `paused` carries the same id and body), in order per
/// receiver, signed; nothing unsubscribed arrived.
#[tokio::test]
async fn every_subscribed_event_arrives_once_by_id_across_kill_9() {
    let mut receiver = Receiver::start().await;
    let mut ctl = Controller::builder()
        .env("FLEDGE_WEBHOOK_SECRET", SECRET)
        .arg("--webhook-backoff-cap-secs")
        .arg("2")
        .start()
        .await
        .unwrap();
    ctl.put_rollout("support", json!({
        "hosts": ["support-agent"], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 3600,
        "analysis": {"interval_seconds": 0.2},
        "notifications": [
            {"url": receiver.url("json"), "events": ["paused", "resumed", "aborted", "rolled_back", "promoted"]},
            {"url": receiver.url("slack"), "events": ["paused", "aborted"], "format": "slack"},
        ],
    })).await.unwrap();
    ctl.wait_phase("support", "progressing", Duration::from_secs(5)).await.unwrap();

    // The decision is committed and its deliveries are on the wire, unanswered: kill -9.
    receiver.hold(true);
    ctl.post("/v1/rollouts/support/pause", json!({})).await.unwrap();
    assert_eventually!(Duration::from_secs(5), "both paused deliveries reached the receiver", async {
        let n = receiver.arrivals().len();
        anyhow::ensure!(n == 2, "{n} arrivals");
        Ok(())
    });
    ctl.kill().await.unwrap();
    receiver.down().await;

    // Back with the receiver down: the retries are refused. A new event is committed, and the
    // controller is killed again before the receiver is up.
    ctl.restart().await.unwrap();
    ctl.post("/v1/rollouts/support/resume", json!({})).await.unwrap();
    assert_eventually!(Duration::from_secs(5), "the controller tried and failed", async {
        let failures = metric(&ctl, "fledge_notification_failures_total").await?;
        anyhow::ensure!(failures >= 2.0, "{failures} failed attempts");
        Ok(())
    });
    ctl.kill().await.unwrap();
    receiver.up().await;
    ctl.restart().await.unwrap();

    assert_eventually!(Duration::from_secs(10), "paused and resumed delivered after the restart", async {
        let (json, slack) = (events_at(&receiver, "json"), events_at(&receiver, "slack"));
        anyhow::ensure!(json == ["paused", "resumed"] && slack == ["paused"], "json {json:?}, slack {slack:?}");
        anyhow::ensure!(pending(&ctl).await? == 0.0, "outbox not empty");
        Ok(())
    });
    ctl.post("/v1/rollouts/support/abort", json!({})).await.unwrap();
    assert_eventually!(Duration::from_secs(5), "aborted delivered to both receivers", async {
        let n = receiver.unique().iter().filter(|a| a.event == "aborted").count();
        anyhow::ensure!(n == 2, "{n} aborted deliveries");
        anyhow::ensure!(pending(&ctl).await? == 0.0, "outbox not empty");
        Ok(())
    });

    // Exactly the subscribed events, once each by id, in event order per receiver.
    assert_eq!(events_at(&receiver, "json"), ["paused", "resumed", "aborted"]);
    assert_eq!(events_at(&receiver, "slack"), ["paused", "aborted"]);
    let arrivals = receiver.arrivals();
    let paused_json: Vec<&Arrival> = arrivals.iter().filter(|a| a.path == "json" && a.event == "paused").collect();
    assert!(paused_json.len() >= 2, "the delivery cut off by kill -9 was sent again ({} arrivals)", paused_json.len());
    assert!(paused_json.iter().all(|a| a.id == paused_json[0].id), "one id across the retries");
    check_arrivals(&receiver);
    // The JSON payload is the event with its place in the log and its verdict.
    let events = ctl.events("support").await.unwrap();
    for a in receiver.unique().iter().filter(|a| a.path == "json") {
        let body = a.json();
        let stored = events.iter().find(|e| e["seq"] == body["seq"]).unwrap_or_else(|| panic!("no event {}", body["seq"]));
        assert_eq!(stored["kind"], body["kind"]);
        assert_eq!((stored["phase"].clone(), stored["weight"].clone()), (body["event"]["phase"].clone(), body["event"]["weight"].clone()));
        assert!(body["event"].get("verdict").is_some(), "{body}");
    }
    assert!(!ctl.log().contains(SECRET), "the secret was logged");
    println!("{} arrivals for {} deliveries", arrivals.len(), receiver.unique().len());
}

/// The receiver is down for 30 s while a rollout is paused, resumed, fails a gate and is rolled
/// back; the controller keeps retrying with backoff (capped at 5 s here) and, once the receiver is
/// back, delivers every notification once, in order, the rollback's naming its failing gate.
#[tokio::test]
async fn a_receiver_down_for_30_s_gets_every_notification_afterwards() {
    let mut receiver = Receiver::start().await;
    receiver.down().await;
    let ctl = Controller::builder()
        .env("FLEDGE_WEBHOOK_SECRET", SECRET)
        .arg("--webhook-backoff-cap-secs")
        .arg("5")
        .start()
        .await
        .unwrap();
    let subscribed = ["started", "paused", "resumed", "gate_failing", "rolled_back"];
    ctl.put_rollout("support", json!({
        "hosts": ["support-agent"], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 3600,
        "min_requests": 20, "analysis": {"interval_seconds": 0.2, "failure_limit": 2},
        "gates": [{"metric": "task_success_rate", "min": 0.9}],
        "notifications": [
            {"url": receiver.url("json"), "events": subscribed},
            {"url": receiver.url("slack"), "events": ["gate_failing", "rolled_back"], "format": "slack"},
        ],
    })).await.unwrap();
    ctl.wait_phase("support", "progressing", Duration::from_secs(5)).await.unwrap();
    let outage = Instant::now();
    ctl.post("/v1/rollouts/support/pause", json!({})).await.unwrap();
    ctl.post("/v1/rollouts/support/resume", json!({})).await.unwrap();
    // The canary fails every task, judgement after judgement, until it is rolled back.
    let failures: Vec<Value> = (0..50).map(|_| json!({"version": "v2", "outcome": "failure"})).collect();
    let successes: Vec<Value> = (0..50).map(|_| json!({"version": "v1", "outcome": "success"})).collect();
    assert_eventually!(Duration::from_secs(20), "rolled back on task success", async {
        if ctl.phase("support").await? == "rolled_back" {
            return Ok(());
        }
        ctl.post("/v1/rollouts/support/outcomes", Value::Array(failures.clone())).await?;
        ctl.post("/v1/rollouts/support/outcomes", Value::Array(successes.clone())).await?;
        anyhow::bail!("not rolled back yet")
    });
    let kinds: Vec<String> = ctl.events("support").await.unwrap().iter().filter_map(|e| e["kind"].as_str().map(str::to_string)).collect();
    assert_eq!(kinds, ["created", "started", "paused", "resumed", "gate_failing", "rolled_back"]);
    assert_eq!(pending(&ctl).await.unwrap(), 7.0, "five JSON and two Slack deliveries wait in the outbox");

    // 30 s without a receiver.
    let down_for = Duration::from_secs(30);
    tokio::time::sleep(down_for.saturating_sub(outage.elapsed())).await;
    let failed_attempts = metric(&ctl, "fledge_notification_failures_total").await.unwrap();
    let outage_secs = outage.elapsed().as_secs_f64();
    receiver.up().await;

    let (_, took) = assert_eventually!(Duration::from_secs(15), "every notification delivered after the outage", async {
        let (json, slack) = (events_at(&receiver, "json"), events_at(&receiver, "slack"));
        anyhow::ensure!(json == subscribed && slack == ["gate_failing", "rolled_back"], "json {json:?}, slack {slack:?}");
        anyhow::ensure!(pending(&ctl).await? == 0.0, "outbox not empty");
        Ok(())
    });
    // Only each receiver's oldest delivery is retried while it is down, at 0.5 s doubling up to the
    // 5 s cap: about 1 + 4 + (outage − 7.5 s) / 5 attempts each. Delays are lower bounds, so a slow
    // machine tries less often, never more.
    let most = 2.0 * (5.0 + outage_secs / 5.0);
    assert!(failed_attempts >= 4.0 && failed_attempts <= most, "{failed_attempts} failed attempts in {outage_secs:.1} s (at most {most})");
    check_arrivals(&receiver);
    assert_eq!(receiver.arrivals().len(), receiver.unique().len(), "nothing was delivered twice");
    let unique = receiver.unique();
    let rolled = unique.iter().find(|a| a.path == "json" && a.event == "rolled_back").unwrap().json();
    let gate = &rolled["event"]["verdict"]["gates"][0];
    assert_eq!((gate["metric"].as_str(), gate["status"].as_str()), (Some("task_success_rate"), Some("fail")), "{rolled}");
    assert!(gate["canary"].as_f64().is_some() && gate["canary_n"].as_u64() > Some(0), "every gate's values: {gate}");
    let slack = unique.iter().find(|a| a.path == "slack" && a.event == "rolled_back").unwrap().json();
    let text = slack["text"].as_str().unwrap();
    assert!(text.contains("rolled back") && text.contains("• task_success_rate: canary 0.00%") && text.contains("vs stable 100.00%"), "{text}");
    println!("receiver down {outage_secs:.1} s, {failed_attempts} failed attempts meanwhile; all delivered {took:?} after it came back\n{text}");
}
