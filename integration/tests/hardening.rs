//! Issue 7, hardening, against a real Envoy, the real filter and the real controller: one poller per
//! Envoy, exact counts across an outage, a hostile flood beside a real rollout, a data reset, durable
//! status across kill -9, and wildcard hosts.

use std::time::{Duration, Instant};

use fledge_integration::traffic::{users, Load, Traffic};
use fledge_integration::{assert_eventually, Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};

const HOST: &str = "support-agent";

fn envoy_for(v1: std::net::SocketAddr, v2: std::net::SocketAddr, controller: std::net::SocketAddr, plugin_config: Value) -> fledge_integration::envoy::EnvoyBuilder {
    Envoy::for_versions(HOST, v1, v2, controller, plugin_config)
}

async fn manual(ctl: &Controller, weight: f64) -> Value {
    ctl.put_manual("support", HOST, weight).await.unwrap()
}

async fn held_polls(ctl: &Controller) -> u64 {
    ctl.get("/healthz").await.map(|h| h["held_polls"].as_u64().unwrap_or(u64::MAX)).unwrap_or(u64::MAX)
}

/// Two Envoys with four workers each (ten root contexts in all): one long poll per Envoy, across a
/// whole hold of the controller (30 s, more than 30 lease lifetimes) and across a controller restart.
#[tokio::test]
async fn one_poller_per_envoy_across_a_hold_and_a_restart() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let mut ctl = Controller::builder().start().await.unwrap();
    let config = json!({"report_interval_ms": 200});
    let a = envoy_for(v1.addr, v2.addr, ctl.addr, config.clone())
        .concurrency(4)
        .start()
        .await
        .unwrap();
    let b = envoy_for(v1.addr, v2.addr, ctl.addr, config)
        .concurrency(4)
        .node_id("envoy-b")
        .start()
        .await
        .unwrap();
    manual(&ctl, 0.0).await;
    ctl.wait_confirmed("support", a.contexts + b.contexts, Duration::from_secs(10)).await.unwrap();
    assert_eventually!(Duration::from_secs(5), "one poll per Envoy", async {
        let n = held_polls(&ctl).await;
        anyhow::ensure!(n == 2, "{n} polls held");
        Ok(())
    });
    // 40 s: a full 30 s hold, its 304 and the next poll. A sample may catch the instant between a 304
    // and the next poll (1); never more than one per Envoy.
    let (mut samples, mut two) = (0, 0);
    let until = Instant::now() + Duration::from_secs(40);
    while Instant::now() < until {
        let n = held_polls(&ctl).await;
        assert!(n <= 2, "{n} polls held at {:?} into the hold", Instant::now());
        samples += 1;
        two += u32::from(n == 2);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(two * 100 >= samples * 95, "held_polls was 2 in only {two} of {samples} samples");
    println!("held_polls = 2 in {two} of {samples} samples over 40 s");

    ctl.restart().await.unwrap();
    assert_eventually!(Duration::from_secs(10), "one poll per Envoy after the restart", async {
        let n = held_polls(&ctl).await;
        anyhow::ensure!(n == 2, "{n} polls held");
        Ok(())
    });
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let n = held_polls(&ctl).await;
        assert!(n <= 2, "{n} polls held after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Envoy's polls name their proxy: a poll with Envoy b's id (standing in for a context of b that
    // took the lease over) has the controller answer b's held poll at once, as it would answer one left
    // behind by a stalled context.
    let superseded = || async {
        let text = reqwest::get(ctl.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix("fledge_config_polls_superseded_total ")?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    let before = superseded().await.unwrap_or(f64::MAX);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let http = reqwest::Client::new();
    let takeover = tokio::spawn(
        http.get(ctl.url("/v1/config?since=0"))
            .header("x-fledge-proxy", "envoy-b")
            .send(),
    );
    assert_eventually!(Duration::from_secs(5), "b's held poll superseded", async {
        let n = superseded().await.unwrap_or(0.0);
        anyhow::ensure!(n > before, "{n} superseded");
        Ok(())
    });
    takeover.abort();
    // Routing still follows pushes.
    manual(&ctl, 100.0).await;
    ctl.wait_confirmed("support", a.contexts + b.contexts, Duration::from_secs(5)).await.unwrap();
    for envoy in [&a, &b] {
        let replies = Traffic::new(envoy.listener, HOST).send_users(&users("after", 20), 4).await.unwrap();
        assert!(replies.iter().all(|r| r.served_by.as_deref() == Some("v2")), "{:?}", replies.first());
    }
}

/// Sum of every `fledge_requests_total` series Envoy exports.
fn exported_requests(prom: &str) -> u64 {
    prom.lines()
        .filter(|l| l.starts_with("fledge_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The controller is gone for ten report intervals while users are served, then comes back: every
/// request is counted exactly once, in Envoy's counters and in the controller's window.
#[tokio::test]
async fn counts_stay_exact_across_a_controller_outage() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let mut ctl = Controller::builder().start().await.unwrap();
    let envoy = envoy_for(v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 200})).start().await.unwrap();
    manual(&ctl, 50.0).await;
    ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(10)).await.unwrap();

    ctl.kill().await.unwrap();
    let t = Traffic::new(envoy.listener, HOST);
    let outage = Instant::now();
    let mut served = 0;
    while outage.elapsed() < Duration::from_millis(10 * 200) {
        served += t.send_users(&users(&format!("outage-{served}"), 50), 8).await.unwrap().len() as u64;
    }
    ctl.restart().await.unwrap();
    assert_eq!(v1.requests() + v2.requests(), served);

    assert_eventually!(Duration::from_secs(15), "every request counted once, in Envoy and the controller", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        let w = &s["live"]["window"];
        let (stable, canary) = (w["stable"]["requests"].as_u64().unwrap_or(0), w["canary"]["requests"].as_u64().unwrap_or(0));
        anyhow::ensure!((stable, canary) == (v1.requests(), v2.requests()), "controller {stable}/{canary}, agents {}/{}", v1.requests(), v2.requests());
        let exported = exported_requests(&envoy.prometheus().await?);
        anyhow::ensure!(exported == served, "Envoy exported {exported} of {served}");
        Ok(())
    });
    // And it stays exact: nothing is exported or counted again later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(exported_requests(&envoy.prometheus().await.unwrap()), served);
    let s = ctl.get("/v1/rollouts/support").await.unwrap();
    assert_eq!(s["live"]["window"]["canary"]["requests"].as_u64(), Some(v2.requests()));
    println!("{served} requests served during a 2 s outage; counted exactly once");
}

/// The controller comes back on an empty data directory: its generation 1 is not the proxies'
/// generation 1. Every proxy applies the new data's config within a second of the change.
#[tokio::test]
async fn a_data_reset_is_applied_at_once() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let mut ctl = Controller::builder().start().await.unwrap();
    let envoy = envoy_for(v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    let before = manual(&ctl, 0.0).await;
    assert_eq!(before["status"]["generation"], json!(1));
    let old_epoch = ctl.get("/healthz").await.unwrap()["epoch"].clone();
    ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(10)).await.unwrap();

    ctl.restart_empty().await.unwrap();
    assert_ne!(ctl.get("/healthz").await.unwrap()["epoch"], old_epoch, "new data, new epoch");
    let put_at = fledge_controller_now_ms();
    let after = manual(&ctl, 100.0).await;
    assert_eq!(after["status"]["generation"], json!(1), "the same generation number as before the reset");
    let v = ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(5)).await.unwrap();
    let confirmed_at = v["live"]["confirmation"]["details"][0]["confirmed_at_ms"].as_u64().unwrap();
    let took = confirmed_at.saturating_sub(put_at);
    println!("every worker applied the new data's generation 1 within {took} ms of the change");
    assert!(took <= 1_000, "{took} ms");
    let replies = Traffic::new(envoy.listener, HOST).send_users(&users("reset", 20), 4).await.unwrap();
    assert!(replies.iter().all(|r| r.served_by.as_deref() == Some("v2")), "{:?}", replies.first());
}

fn fledge_controller_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// kill -9 of a progressing rollout with a failing gate: after the restart the status shows the same
/// step, weight, failure count and verdict, and the event log is the same.
#[tokio::test]
async fn kill_9_while_progressing_keeps_what_the_status_shows() {
    let mut ctl = Controller::builder().start().await.unwrap();
    ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [10, 100], "step_seconds": 600,
        "min_requests": 20, "analysis": {"interval_seconds": 2, "failure_limit": 50},
        "gates": [{"metric": "error_rate", "max_increase": 0.01}]
    })).await.unwrap();
    ctl.wait_phase("support", "progressing", Duration::from_secs(5)).await.unwrap();
    // Proxies' reports: a canary failing half its requests.
    let seq = std::sync::atomic::AtomicU64::new(0);
    let (status, _) = assert_eventually!(Duration::from_secs(15), "two failing intervals counted", async {
        let seq = seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let report = json!({"proxy": "p", "worker": "w", "seq": seq, "generation": 2, "versions": [
            {"rollout": "support", "version": "v1", "stats": {"requests": 400, "status_2xx": 400}},
            {"rollout": "support", "version": "v2", "stats": {"requests": 40, "errors": 20, "status_5xx": 20, "status_2xx": 20}}]});
        ctl.post("/v1/reports", report).await?;
        let s = ctl.get("/v1/rollouts/support").await?;
        anyhow::ensure!(s["status"]["consecutive_failures"].as_u64() >= Some(2), "{}", s["status"]["message"]);
        Ok(s["status"].clone())
    });
    let events = ctl.events("support").await.unwrap();
    if let Err(e) = ctl.restart().await { panic!("{e}: {}", ctl.log()); }
    let after = ctl.get("/v1/rollouts/support").await.unwrap()["status"].clone();
    for field in ["phase", "step", "weight", "generation", "consecutive_failures", "step_started_at_ms", "message", "last_verdict"] {
        assert_eq!(after[field], status[field], "{field} changed across kill -9");
    }
    assert_eq!(ctl.events("support").await.unwrap(), events, "the same events");
    assert_eq!(after["phase"], json!("progressing"));
    println!("after kill -9: step {} weight {} failures {}", after["step"], after["weight"], after["consecutive_failures"]);
}

/// Hosts with Istio's meaning: `*.example.com` covers any name under it, an exact host wins over it,
/// `*` takes the rest.
#[tokio::test]
async fn wildcard_hosts_route_the_most_specific_match() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let versions = [("v1", v1.addr), ("v2", v2.addr)];
    let envoy = Envoy::builder()
        .route("chat.example.com", &versions)
        .route("*.example.com", &versions)
        .route(HOST, &versions)
        .controller(ctl.addr)
        .plugin_config(json!({"report_interval_ms": 100}))
        .start()
        .await
        .unwrap();
    ctl.put_rollout("wild", json!({"hosts": ["*.example.com"], "stable": "v1", "canary": "v2", "weight": 100})).await.unwrap();
    ctl.put_rollout("chat", json!({"hosts": ["chat.example.com"], "stable": "v1", "canary": "v2", "weight": 0})).await.unwrap();
    ctl.wait_confirmed("chat", envoy.contexts, Duration::from_secs(10)).await.unwrap();
    let served = |host: &str| {
        let t = Traffic::new(envoy.listener, host);
        async move { t.send(Some("u-1")).await.unwrap() }
    };
    let r = served("voice.example.com").await;
    assert_eq!((r.routed.as_deref(), r.served_by.as_deref()), (Some("v2"), Some("v2")), "*.example.com at 100 %");
    let r = served("a.b.example.com").await;
    assert_eq!(r.served_by.as_deref(), Some("v2"), "any depth");
    let r = served("chat.example.com").await;
    assert_eq!((r.routed.as_deref(), r.served_by.as_deref()), (Some("v1"), Some("v1")), "the exact host wins");
    let r = served(HOST).await;
    assert_eq!(r.routed, None, "no rollout owns it: untouched");
    // Two rollouts may not claim the same pattern.
    let (code, body) = ctl.call(reqwest::Method::PUT, "/v1/rollouts/other", Some(json!({"hosts": ["*.Example.com"], "stable": "v1", "canary": "v2", "weight": 1}))).await.unwrap();
    assert_eq!(code, 409, "{body}");
    let (code, body) = ctl.call(reqwest::Method::PUT, "/v1/rollouts/bad", Some(json!({"hosts": ["chat.*.com"], "stable": "v1", "canary": "v2", "weight": 1}))).await.unwrap();
    assert_eq!(code, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("wildcard"), "{body}");
}

/// Hostile requests from many connections beside a real rollout: each gets a 4xx, none a 5xx, and the
/// rollout is still judged on its real traffic and promoted.
#[tokio::test]
async fn a_hostile_flood_gets_4xx_and_a_rollout_beside_it_is_promoted() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = envoy_for(v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 200})).start().await.unwrap();
    ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 3, "min_requests": 50,
        "gates": [{"metric": "error_rate", "max_increase": 0.05}]
    })).await.unwrap();
    let load = Load::start(Traffic::new(envoy.listener, HOST), 150, 5_000);

    let bodies = hostile_bodies();
    let url = ctl.url("/v1/reports");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let floods: Vec<_> = (0..16)
        .map(|i| {
            let (bodies, url, stop) = (bodies.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                // A client of its own: its own connections.
                let http = reqwest::Client::new();
                let mut statuses = Vec::new();
                let mut k = i;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (what, body) = &bodies[k % bodies.len()];
                    k += 1;
                    let status = match http.post(&url).header("content-type", "application/json").body(body.clone()).send().await {
                        Ok(r) => r.status().as_u16(),
                        Err(e) => panic!("{what}: {e}"),
                    };
                    statuses.push((*what, status));
                }
                statuses
            })
        })
        .collect();
    let promoted = ctl.wait_phase("support", "succeeded", Duration::from_secs(60)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for f in floods {
        for (what, status) in f.await.unwrap() {
            total += 1;
            assert!((400..500).contains(&status), "{what} got {status}");
        }
    }
    drop(load);
    let promoted = promoted.unwrap();
    assert_eq!(promoted["spec"]["stable"], json!("v2"));
    assert!(total > 100, "only {total} hostile requests");
    println!("{total} hostile requests, every one a 4xx; the rollout beside them was promoted");
}

/// One of each kind of hostile report body.
fn hostile_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let entry = r#"{"rollout":"support","version":"v2","stats":{"requests":1}}"#;
    let many = format!(r#"{{"proxy":"x","worker":"y","seq":1,"generation":1,"versions":[{}]}}"#, vec![entry; 10_000].join(","));
    vec![
        ("oversized", vec![b' '; 2 << 20]),
        ("10,000 entries", many.into_bytes()),
        ("deep nesting", format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)).into_bytes()),
        ("garbage", b"\x00\xff{{{not json".to_vec()),
        ("wrong types", br#"{"proxy":7,"worker":[],"seq":"one","generation":{}}"#.to_vec()),
        ("huge bucket index", br#"{"proxy":"x","worker":"y","seq":2,"generation":1,"versions":[{"rollout":"support","version":"v2","stats":{"latency_total":{"buckets":[[65535,1]]}}}]}"#.to_vec()),
        ("empty identifiers", br#"{"proxy":"","worker":"","seq":3,"generation":1}"#.to_vec()),
        ("negative counts", br#"{"proxy":"x","worker":"y","seq":4,"generation":1,"versions":[{"rollout":"support","version":"v2","stats":{"requests":-5}}]}"#.to_vec()),
    ]
}
