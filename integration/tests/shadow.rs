//! Issue 11 (dark launch) acceptance in a real Envoy with the real filter, controller and agents: in
//! `shadowing` every user answer comes from stable while the canary gets a marked copy of each
//! request (bodies intact up to the limit, a larger one counted); a canary failing its tasks in the
//! shadow is rolled back before any user saw it, a healthy one starts its first step; a hung canary
//! does not slow users and its copies are counted as timeouts; mismatch samples leave out redacted
//! headers.

use std::time::{Duration, Instant};

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{assert_eventually, Agent, Behaviour, Controller, Envoy};
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};

const HOST: &str = "support-agent";
/// The canary's cluster in the harness's Envoy config (`<host>_<version>`).
const CANARY_CLUSTER: &str = "support-agent_v2";

struct Env {
    ctl: Controller,
    envoy: Envoy,
    v1: Agent,
    v2: Agent,
    http: reqwest::Client,
}

async fn setup(v2: Behaviour) -> Env {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(v2).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    let http = reqwest::Client::builder().pool_max_idle_per_host(32).timeout(Duration::from_secs(30)).build().unwrap();
    Env { ctl, envoy, v1, v2, http }
}

/// One user request; returns (status, served_by, body).
async fn send(env: &Env, method: reqwest::Method, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> anyhow::Result<(u16, String, String)> {
    let mut rb = env.http.request(method, format!("http://{}/task", env.envoy.listener)).header("host", HOST);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let resp = rb.send().await?;
    let status = resp.status().as_u16();
    let served = resp.headers().get("x-served-by").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    Ok((status, served, resp.text().await?))
}

async fn shadow_status(env: &Env) -> Value {
    env.ctl.get("/v1/rollouts/support/shadow").await.unwrap()
}

fn shadow_copies(agent: &Agent) -> Vec<fledge_integration::agent::Received> {
    agent.received().into_iter().filter(|r| r.shadow).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadowing_copies_every_request_and_users_only_ever_see_stable() {
    let env = setup(Behaviour::version("v2")).await;
    env.ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [10, 100], "step_seconds": 600, "min_requests": 20,
        "shadow": {"cluster": CANARY_CLUSTER, "percent": 100, "max_body_bytes": 65536, "timeout_ms": 5000, "max_in_flight": 64,
                   "capture": {"samples": 5, "bodies": true, "redact_headers": ["x-api-key"]}},
        "shadow_seconds": 3600,
        "gates": [{"metric": "shadow_error_rate", "max_ratio": 1.5}]
    })).await.unwrap();
    env.ctl.wait_phase("support", "shadowing", Duration::from_secs(5)).await.unwrap();
    env.ctl.wait_confirmed("support", env.envoy.contexts, Duration::from_secs(5)).await.unwrap();

    // 200 users, 8 at a time: every answer is stable's.
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let replies: Vec<_> = stream::iter(users.iter())
        .map(|u| {
            let env = &env;
            async move {
                let headers = [("x-user-id", u.as_str()), ("authorization", "Bearer secret-token"), ("cookie", "sid=abc"), ("x-api-key", "k-123")];
                send(env, reqwest::Method::GET, &headers, None).await
            }
        })
        .buffered(8)
        .collect()
        .await;
    for r in &replies {
        let (status, served, body) = r.as_ref().unwrap();
        assert_eq!((*status, served.as_str(), body.as_str()), (200, "v1", r#"{"version":"v1"}"#), "a user saw something other than stable");
    }
    // The canary gets one marked copy per request, less the counted drops.
    let (status, _) = assert_eventually!(Duration::from_secs(10), "every copy answered and reported", async {
        let s = shadow_status(&env).await;
        let w = &s["window"];
        let (sent, dropped, pairs) = (w["sent"].as_u64().unwrap_or(0), w["dropped"].as_u64().unwrap_or(0), w["pairs"].as_u64().unwrap_or(0));
        anyhow::ensure!(sent + dropped == 200 && pairs == sent, "{w}");
        Ok(s)
    });
    let copies = shadow_copies(&env.v2);
    let dropped = status["window"]["dropped"].as_u64().unwrap();
    assert_eq!(copies.len() as u64, 200 - dropped, "one copy per request");
    assert_eq!(env.v2.received().len(), copies.len(), "the canary received nothing but copies");
    assert!(copies.iter().all(|c| c.headers.iter().any(|(k, v)| k == "x-fledge-version" && v == "v2")));
    println!("shadow: 200 user requests, {} copies, {dropped} dropped; every user answer from v1", copies.len());

    // A 10 KiB body arrives intact; a 100 KiB one (limit 64 KiB) is not shadowed, and is counted.
    let small: Vec<u8> = (0..10 * 1024).map(|i| (i % 251) as u8).collect();
    let (status, served, _) = send(&env, reqwest::Method::POST, &[("x-user-id", "poster")], Some(small.clone())).await.unwrap();
    assert_eq!((status, served.as_str()), (200, "v1"));
    assert_eventually!(Duration::from_secs(5), "the 10 KiB copy arrived", async {
        anyhow::ensure!(shadow_copies(&env.v2).iter().any(|c| c.method == "POST" && c.body == small), "not yet");
        Ok(())
    });
    let large = vec![7u8; 100 * 1024];
    let (status, served, _) = send(&env, reqwest::Method::POST, &[("x-user-id", "poster")], Some(large)).await.unwrap();
    assert_eq!((status, served.as_str()), (200, "v1"), "a body over the shadow limit still reaches stable");
    assert_eventually!(Duration::from_secs(5), "the 100 KiB body counted as too large", async {
        let w = shadow_status(&env).await["window"].clone();
        anyhow::ensure!(w["too_large"] == json!(1), "{w}");
        Ok(())
    });
    assert!(!shadow_copies(&env.v2).iter().any(|c| c.body.len() > 64 * 1024), "an oversized body was shadowed");

    // Both versions answer with their own name: every pair mismatches on the body, and samples come
    // back without the redacted headers.
    let s = shadow_status(&env).await;
    let samples = s["samples"].as_array().unwrap();
    assert!(!samples.is_empty() && samples.len() <= 5, "{s}");
    for sample in samples {
        let names: Vec<&str> = sample["headers"].as_array().unwrap().iter().filter_map(|h| h[0].as_str()).collect();
        assert!(names.contains(&"x-user-id"), "{names:?}");
        for secret in ["authorization", "cookie", "x-api-key"] {
            assert!(!names.contains(&secret), "{secret} was stored: {names:?}");
        }
        assert!(sample["mismatch"].as_array().unwrap().contains(&json!("body")), "{sample}");
        assert_eq!((sample["stable"]["body"].as_str(), sample["shadow"]["body"].as_str()), (Some(r#"{"version":"v1"}"#), Some(r#"{"version":"v2"}"#)));
    }
    let raw = serde_json::to_string(&s).unwrap();
    assert!(!raw.contains("secret-token") && !raw.contains("k-123") && !raw.contains("sid=abc"), "a redacted value was stored");
    assert_eq!(s["window"]["mismatches"]["status"], json!(0));
    assert_eq!(env.ctl.phase("support").await.unwrap(), "shadowing");
    let _ = &env.v1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_failing_its_tasks_rolls_back_unseen_and_a_healthy_one_starts_its_first_step() {
    let env = setup(Behaviour { success_rate: 0.7, ..Behaviour::version("v2") }).await;
    // Only a live task-success gate: the spec gets its shadow counterpart.
    let spec = |shadow_seconds: u64| json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [10, 100], "step_seconds": 600, "min_requests": 30,
        "analysis": {"interval_seconds": 0.25, "failure_limit": 1},
        "shadow": {"cluster": CANARY_CLUSTER, "percent": 50},
        "shadow_seconds": shadow_seconds,
        "gates": [{"metric": "task_success_rate", "max_decrease": 0.05}]
    });
    env.ctl.put_rollout("support", spec(600)).await.unwrap();
    let load = Load::start(Traffic::new(env.envoy.listener, HOST), 150, 1_000);
    let rolled = env.ctl.wait_phase("support", "rolled_back", Duration::from_secs(30)).await.unwrap();
    let message = rolled["status"]["message"].as_str().unwrap();
    assert!(message.contains("shadow_task_success_rate"), "{message}");
    let kinds: Vec<String> = env.ctl.events("support").await.unwrap().iter().map(|e| e["kind"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(kinds, ["created", "started", "rolled_back"], "rolled back from shadowing");
    assert!(env.v2.received().iter().all(|r| r.shadow), "a user request reached the failing canary");
    assert!(env.v2.requests() > 30, "the canary was judged on its copies");
    println!("failing shadow: rolled back after {} copies; {message}", env.v2.requests());

    // A healthy canary: through the shadow phase to its first step.
    env.v2.update(|b| b.success_rate = 1.0);
    env.ctl.put_rollout("support", spec(3)).await.unwrap();
    env.ctl.wait_phase("support", "shadowing", Duration::from_secs(5)).await.unwrap();
    let started = env.ctl.wait_phase("support", "progressing", Duration::from_secs(60)).await.unwrap();
    assert_eq!(started["status"]["weight"], json!(10.0));
    let events = env.ctl.events("support").await.unwrap();
    let advanced = events.iter().find(|e| e["kind"] == "advanced").unwrap();
    assert!(advanced["message"].as_str().unwrap().starts_with("the shadow passed"), "{advanced}");
    drop(load);
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn user_latencies(env: &Env, n: usize) -> Vec<Duration> {
    let mut all: Vec<Duration> = stream::iter(0..n)
        .map(|i| async move {
            let user = format!("u-{i}");
            let t = Instant::now();
            let (status, served, _) = send(env, reqwest::Method::GET, &[("x-user-id", user.as_str())], None).await.unwrap();
            assert_eq!((status, served.as_str()), (200, "v1"));
            t.elapsed()
        })
        .buffered(4)
        .collect()
        .await;
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_shadow_does_not_slow_users_and_its_copies_time_out() {
    // The canary never answers within the copies' timeout.
    let env = setup(Behaviour { latency_ms: 60_000, ..Behaviour::version("v2") }).await;
    env.ctl.put_manual("support", HOST, 0.0).await.unwrap();
    env.ctl.wait_confirmed("support", env.envoy.contexts, Duration::from_secs(5)).await.unwrap();
    let without = user_latencies(&env, 300).await;

    env.ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "weight": 0,
        "shadow": {"cluster": CANARY_CLUSTER, "percent": 100, "timeout_ms": 1000, "max_in_flight": 16}
    })).await.unwrap();
    env.ctl.wait_confirmed("support", env.envoy.contexts, Duration::from_secs(5)).await.unwrap();
    let with = user_latencies(&env, 300).await;
    println!(
        "user latency without shadow: p50 {:?} p99 {:?}; with a hung shadow (every request copied): p50 {:?} p99 {:?}",
        quantile(&without, 0.5),
        quantile(&without, 0.99),
        quantile(&with, 0.5),
        quantile(&with, 0.99)
    );
    // A user request that waited on its copy would take the copy's whole 1 s timeout (or the
    // canary's 60 s); none did.
    let slowest = with.last().copied().unwrap_or_default();
    assert!(slowest < Duration::from_millis(1000), "a user request took {slowest:?}: it waited on the shadow");
    let (w, _) = assert_eventually!(Duration::from_secs(10), "hung copies counted as timeouts", async {
        let w = shadow_status(&env).await["window"].clone();
        anyhow::ensure!(w["timeouts"].as_u64().unwrap_or(0) >= 16, "{w}");
        Ok(w)
    });
    assert!(w["dropped"].as_u64().unwrap_or(0) > 0, "beyond max_in_flight copies are dropped and counted: {w}");
    assert_eq!(w["answered"], json!(0), "{w}");
    println!("hung shadow: {w}");
}
