//! Issue 3, filter telemetry: per-version counts reach the controller exactly, from headers and from
//! trailers, and Envoy exports them as tagged Prometheus counters.

use std::time::Duration;

use fledge_integration::relay::LossyRelay;
use fledge_integration::traffic::{users, Traffic};
use fledge_integration::{assert_eventually, Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};

const HOST: &str = "support-agent";

#[tokio::test]
async fn per_version_stats_reach_the_controller_exactly() {
    let v1 = Agent::start(Behaviour { cost: 0.01, ..Behaviour::version("v1") }).await.unwrap();
    let v2 = Agent::start(Behaviour {
        error_rate: 0.1,
        success_rate: 0.5,
        cost: 0.25,
        violation_rate: 0.2,
        outcome_in_trailers: true,
        ..Behaviour::version("v2")
    })
    .await
    .unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = envoy_for(v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 200}))
        .start()
        .await
        .unwrap();
    manual_rollout(&ctl, 50.0).await;
    let t = Traffic::new(envoy.listener, HOST);
    // Every worker has the config (known from heartbeats), so every request from here on is routed
    // and recorded, and the agents' own counts are the truth to compare with.
    ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(10)).await.unwrap();
    let replies = t.send_users(&users("tele", 600), 16).await.unwrap();
    assert!(replies.iter().any(|r| r.status == 500), "the canary's 5xx passed through");

    let (status, _) = assert_eventually!(Duration::from_secs(10), "all requests reported", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        let w = &s["live"]["window"];
        let (a, b) = (w["stable"]["requests"].as_u64().unwrap_or(0), w["canary"]["requests"].as_u64().unwrap_or(0));
        anyhow::ensure!(a == v1.requests() && b == v2.requests(), "reported {a}/{b}, agents saw {}/{}", v1.requests(), v2.requests());
        Ok(s)
    });
    let canary = &status["live"]["window"]["canary"];
    let stable = &status["live"]["window"]["stable"];
    let n = v2.requests();
    // The sample agent applies rates as exact fractions of its requests (every k-th).
    let every = |rate: f64| (n as f64 * rate).floor() as u64;
    assert_eq!(canary["errors"].as_u64(), Some(every(0.1)), "{canary}");
    assert_eq!(stable["errors"].as_u64(), Some(0));
    assert_eq!(canary["outcomes"].as_u64(), Some(n), "outcomes read from trailers");
    let success = canary["task_success_rate"].as_f64().unwrap();
    assert!((success - 0.5).abs() < 0.01, "{success}");
    assert!((canary["cost_per_task"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    assert!((stable["cost_per_task"].as_f64().unwrap() - 0.01).abs() < 1e-9);
    let viol = canary["policy_violation_rate"].as_f64().unwrap();
    assert!((viol - every(0.2) as f64 / n as f64).abs() < 1e-9, "{viol}");
    assert!(canary["latency_p50_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(status["live"]["confirmation"]["proxies"], json!(1), "{}", status["live"]);
    assert_eq!(status["live"]["confirmation"]["confirmed"], json!(1));

    // Envoy's own metrics, labelled by rollout and version.
    let (prom, _) = assert_eventually!(Duration::from_secs(5), "prometheus counters", async {
        let p = envoy.prometheus().await?;
        anyhow::ensure!(p.contains("fledge_rollout=\"support\""), "no fledge counters yet: {}", p.lines().filter(|l| (l.contains("requests_total") || l.contains("fledge")) && !l.starts_with('#') && !l.contains("cluster")).take(5).collect::<Vec<_>>().join(" | "));
        Ok(p)
    });
    let line = prom
        .lines()
        .find(|l| l.starts_with("fledge_requests_total{") && l.contains("fledge_version=\"v2\""))
        .unwrap_or_else(|| panic!("no tagged requests counter in:\n{}", prom.lines().filter(|l| l.contains("fledge")).collect::<Vec<_>>().join("\n")));
    let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value > 0 && value <= n, "{line}");
    println!("prometheus: {line}");
}

#[tokio::test]
async fn malformed_outcome_values_are_counted_not_fatal() {
    let ctl = Controller::builder().start().await.unwrap();
    manual_rollout(&ctl, 50.0).await;
    let report = json!({"proxy": "p", "worker": "w", "seq": 1, "generation": 1, "versions": [
        {"rollout": "support", "version": "v2", "stats": {"requests": 3, "outcome_malformed": 2, "cost_malformed": 1}}]});
    ctl.post("/v1/reports", report.clone()).await.unwrap();
    let dup: Value = ctl.post("/v1/reports", report).await.unwrap();
    assert_eq!(dup["duplicate"], json!(true));
    let s = ctl.get("/v1/rollouts/support").await.unwrap();
    assert_eq!(s["live"]["window"]["canary"]["requests"], json!(3));
    assert_eq!(s["live"]["window"]["canary"]["malformed"]["outcome"], json!(2));
}

#[tokio::test]
async fn upstream_connect_failures_count_as_errors() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    // A port nothing listens on: Envoy's connect fails and it answers 503 itself (flag UF).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = envoy_for(v1.addr, closed, ctl.addr, json!({"report_interval_ms": 200}))
        .start()
        .await
        .unwrap();
    manual_rollout(&ctl, 100.0).await;
    ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(10)).await.unwrap();
    let replies = Traffic::new(envoy.listener, HOST).send_users(&users("down", 40), 8).await.unwrap();
    assert!(replies.iter().all(|r| r.status == 503), "{:?}", replies.first());
    assert_eventually!(Duration::from_secs(10), "connect failures reported as errors", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        let c = &s["live"]["window"]["canary"];
        anyhow::ensure!(c["requests"] == json!(40) && c["errors"] == json!(40), "{c}");
        Ok(())
    });
}

#[tokio::test]
async fn upstream_timeout_after_headers_counts_as_error() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour { stall_after_headers: true, ..Behaviour::version("v2") }).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = envoy_for(v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 200}))
        .route_timeout_ms(500)
        .start()
        .await
        .unwrap();
    manual_rollout(&ctl, 100.0).await;
    ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(10)).await.unwrap();
    let t = Traffic::with_timeout(envoy.listener, HOST, Duration::from_secs(3));
    // The client sees a 200 whose body breaks off when Envoy's route timeout fires; that is all it can see.
    let sends: Vec<_> = (0..20)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move { t.send(Some(&format!("stall-{i}"))).await.is_err() })
        })
        .collect();
    for s in sends {
        assert!(s.await.unwrap(), "the broken body is an error for the client too");
    }
    assert_eventually!(Duration::from_secs(10), "timeouts reported as errors", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        let c = &s["live"]["window"]["canary"];
        anyhow::ensure!(c["requests"] == json!(20) && c["errors"] == json!(20), "{c}");
        // The errors came from Envoy's upstream-timeout flag, not the status: every one was a 200.
        anyhow::ensure!(c["responses"]["2xx"] == json!(20), "{c}");
        Ok(())
    });
}

/// A lost acknowledgement: the controller counted a report, the filter never heard back. The filter
/// resends the report as is, under its sequence number, so the controller's dedup keeps every request
/// counted exactly once.
#[tokio::test]
async fn lost_acknowledgements_do_not_count_twice() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let relay = LossyRelay::start(ctl.addr).await.unwrap();
    let envoy = envoy_for(v1.addr, v2.addr, relay.addr, json!({"report_interval_ms": 100}))
        .start()
        .await
        .unwrap();
    manual_rollout(&ctl, 100.0).await;
    ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(10)).await.unwrap();

    relay.lose_answers(true);
    Traffic::new(envoy.listener, HOST).send_users(&users("lost", 300), 16).await.unwrap();
    let canary_requests = || async {
        let s = ctl.get("/v1/rollouts/support").await?;
        anyhow::Ok(s["live"]["window"]["canary"]["requests"].as_u64().unwrap_or(0))
    };
    assert_eventually!(Duration::from_secs(10), "reports counted while their acknowledgements are lost", async {
        let counted = canary_requests().await?;
        let p = envoy.prometheus().await?;
        let unacked = metric(&p, "fledge_reports_unacknowledged");
        anyhow::ensure!(counted == v2.requests() && unacked > 0.0, "counted {counted} of {}, {unacked} unacknowledged", v2.requests());
        anyhow::ensure!(relay.lost() >= 3, "{} answers lost", relay.lost());
        Ok(())
    });

    relay.lose_answers(false);
    assert_eventually!(Duration::from_secs(10), "resent reports acknowledged", async {
        let unacked = metric(&envoy.prometheus().await?, "fledge_reports_unacknowledged");
        anyhow::ensure!(unacked == 0.0, "{unacked} unacknowledged");
        Ok(())
    });
    assert_eq!(canary_requests().await.unwrap(), v2.requests(), "each request counted once");
    assert_eq!(v2.requests(), 300);
}

/// With `--token`, the filter's bearer token gets its polls and reports through; a wrong one gets
/// neither (requests pass untouched), says so once in Envoy's log, and the token itself is never logged.
#[tokio::test]
async fn bearer_token_guards_the_data_plane_endpoints() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let ctl = Controller::builder().token("s3cret-token").start().await.unwrap();
    let start = |token: &'static str| {
        envoy_for(v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 100, "controller": {"token": token}}))
            .start()
    };
    let (good, bad) = (start("s3cret-token").await.unwrap(), start("wrong-token").await.unwrap());
    manual_rollout(&ctl, 100.0).await;
    let v = ctl.wait_confirmed("support", good.contexts, Duration::from_secs(10)).await.unwrap();
    assert_eq!(v["live"]["confirmation"]["proxies"], json!(1), "only the proxy with the right token reports");
    let r = Traffic::new(good.listener, HOST).send(Some("u-1")).await.unwrap();
    assert_eq!(r.served_by.as_deref(), Some("v2"));

    assert_eventually!(Duration::from_secs(10), "the refusals are logged", async {
        let log = bad.log();
        anyhow::ensure!(log.contains("controller refused a report with status 401 (check controller.token)"), "no report refusal logged");
        anyhow::ensure!(log.contains("config poll failing (controller answered HTTP 401; check controller.token)"), "no poll failure logged");
        Ok(())
    });
    let r = Traffic::new(bad.listener, HOST).send(Some("u-1")).await.unwrap();
    assert_eq!((r.routed, r.served_by.as_deref()), (None, Some("v1")), "no config: untouched, default route");
    // Many refusals later (Envoy counts the controller cluster's 401s), still one line per worker.
    assert_eventually!(Duration::from_secs(10), "many reports refused", async {
        let refused = metric(&bad.prometheus().await?, "envoy_cluster_upstream_rq{envoy_response_code=\"401\",envoy_cluster_name=\"fledge_controller\"}");
        anyhow::ensure!(refused >= 30.0, "{refused} refused");
        Ok(())
    });
    let lines = bad.log().matches("controller refused a report").count();
    assert!((1..=bad.contexts).contains(&lines), "{lines} lines: once per worker, not per report");
    for envoy in [&good, &bad] {
        assert!(!envoy.log().contains("s3cret-token") && !envoy.log().contains("wrong-token"), "a token in Envoy's log");
    }
    assert!(!ctl.log().contains("s3cret-token") && !ctl.log().contains("wrong-token"), "a token in the controller's log");
}

/// Envoy routing HOST by the fledge header to v1 and v2, with the filter reporting to `controller`.
fn envoy_for(v1: std::net::SocketAddr, v2: std::net::SocketAddr, controller: std::net::SocketAddr, plugin_config: Value) -> fledge_integration::envoy::EnvoyBuilder {
    Envoy::for_versions(HOST, v1, v2, controller, plugin_config)
}

/// The rollout "support" on HOST, v1 → v2, at a manual `weight`.
async fn manual_rollout(ctl: &Controller, weight: f64) {
    ctl.put_manual("support", HOST, weight).await.unwrap();
}

/// The value of one Prometheus series (`name` with its labels, as Envoy prints them); NaN if absent.
fn metric(prom: &str, name: &str) -> f64 {
    prom.lines()
        .find_map(|l| l.strip_prefix(name).map(|rest| rest.trim_start_matches("{}")).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Issue 13, stable's telemetry sampled (`stable_sampling`): every canary request is measured, of
/// stable's only about `multiple` × the canary's plus `floor` per worker and report interval; the rest
/// are counted as `unmeasured`, so measured + unmeasured is exactly the traffic each version carried.
#[tokio::test]
async fn stable_sampling_measures_every_canary_request_and_counts_the_rest_of_stable() {
    let (v1, v2) = (Agent::start(Behaviour::version("v1")).await.unwrap(), Agent::start(Behaviour::version("v2")).await.unwrap());
    let ctl = Controller::builder().start().await.unwrap();
    let plugin = json!({"report_interval_ms": 200, "stable_sampling": {"multiple": 1, "floor": 2}});
    let envoy = envoy_for(v1.addr, v2.addr, ctl.addr, plugin).start().await.unwrap();
    manual_rollout(&ctl, 10.0).await;
    ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(10)).await.unwrap();
    let t = Traffic::new(envoy.listener, HOST);
    // Several report intervals of traffic: the first of each worker's tables measures everything,
    // the following ones sample stable.
    for round in 0..6 {
        t.send_users(&users(&format!("sample-{round}"), 300), 8).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, _) = assert_eventually!(Duration::from_secs(10), "all requests reported", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        let w = &s["live"]["window"];
        let count = |v: &str, f: &str| w[v][f].as_u64().unwrap_or(0);
        let (stable, canary) = (count("stable", "requests") + count("stable", "unmeasured"), count("canary", "requests") + count("canary", "unmeasured"));
        anyhow::ensure!(stable == v1.requests() && canary == v2.requests(), "reported {stable}/{canary}, agents saw {}/{}", v1.requests(), v2.requests());
        Ok(s)
    });
    let w = &status["live"]["window"];
    let (measured, unmeasured) = (w["stable"]["requests"].as_u64().unwrap(), w["stable"]["unmeasured"].as_u64().unwrap());
    assert_eq!(w["canary"]["unmeasured"], json!(0), "every canary request measured: {w}");
    assert_eq!(w["canary"]["requests"].as_u64(), Some(v2.requests()));
    assert!(unmeasured > measured, "most of stable's requests unmeasured at 1 × + 2: {measured} measured, {unmeasured} not");
    assert!(measured >= v2.requests(), "stable's sample at least the canary's: {measured} < {}", v2.requests());
    // A measured request is measured whole: its answers are all counted as 2xx.
    assert_eq!(w["stable"]["responses"]["2xx"].as_u64(), Some(measured));
    // Envoy's counters split them the same way.
    let (prom, _) = assert_eventually!(Duration::from_secs(5), "the unmeasured counter", async {
        let p = envoy.prometheus().await?;
        anyhow::ensure!(p.lines().any(|l| l.starts_with("fledge_unmeasured_total{") && l.contains("fledge_version=\"v1\"")), "not yet");
        Ok(p)
    });
    let line = prom.lines().find(|l| l.starts_with("fledge_unmeasured_total{") && l.contains("fledge_version=\"v1\"")).unwrap();
    assert_eq!(line.rsplit(' ').next().unwrap().parse::<u64>().unwrap(), unmeasured, "{line}");
    println!("stable_sampling 1 × + 2 at 10 %: stable {measured} measured, {unmeasured} unmeasured; canary {} measured", v2.requests());
}
