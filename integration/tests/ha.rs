//! Issue 14, several controllers on one PostgreSQL database (docs/ha.md), with real Envoys, the real
//! filter and the real `fledge` binary on a throwaway cluster (`controller/tests/common/pg.rs`):
//!
//! 1. three replicas, each Envoy polling another: a PUT on one replica reaches every proxy within 1 s,
//!    and reports sent to different replicas add up exactly in the status on every replica;
//! 2. `kill -9` of the leader while a failing canary is at 25 %: another replica takes over and rolls
//!    back (the time from the kill to the canary's last request is printed);
//! 3. `SIGSTOP` of the leader for longer than its lease, then `SIGCONT`: the old leader commits
//!    nothing after losing the lease (one decision per transition, none from the stale epoch);
//! 4. a healthy rollout started before a leader change is promoted after it, at the right steps;
//! 5. a report retried to a second replica is counted once;
//! 6. every replica killed under `on_controller_loss: stable`: users on stable, then paused by the
//!    new leader until a user acts.

use std::time::{Duration, Instant};

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{assert_eventually, Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};

#[path = "../../controller/tests/common/pg.rs"]
mod pg;

const HOST: &str = "support-agent";

/// `n` replicas on the database at `url`, named r1…rn; r1 is started first and leads.
async fn replicas(url: &str, n: usize) -> Vec<Controller> {
    let mut all = Vec::new();
    for i in 1..=n {
        let c = Controller::builder().arg("--database").arg(url).arg("--replica-id").arg(format!("r{i}")).start().await.unwrap();
        if i == 1 {
            assert_eventually!(Duration::from_secs(10), "r1 leads", async {
                let h = c.get("/healthz").await?;
                anyhow::ensure!(h["role"] == "leader" && h["leader"] == "r1", "{h}");
                Ok(())
            });
        }
        all.push(c);
    }
    for c in &all {
        assert_eventually!(Duration::from_secs(10), "every replica knows the leader", async {
            let h = c.get("/healthz").await?;
            anyhow::ensure!(h["leader"] == "r1" && h["lease_epoch"].as_u64().is_some(), "{h}");
            Ok(())
        });
    }
    all
}

/// The replica that leads now, by asking each survivor.
async fn leader_of(ctls: &[&Controller]) -> anyhow::Result<String> {
    for c in ctls {
        let h = c.get("/healthz").await?;
        if h["role"] == "leader" {
            return Ok(h["replica"].as_str().unwrap_or_default().to_string());
        }
    }
    anyhow::bail!("no replica leads")
}

async fn canary_share(traffic: &Traffic, n: usize) -> f64 {
    let mut canary = 0;
    for i in 0..n {
        if traffic.send(Some(&format!("probe-{i}"))).await.map(|r| r.served_by.as_deref() == Some("v2")).unwrap_or(false) {
            canary += 1;
        }
    }
    canary as f64 / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_serves_config_and_reports_add_up_on_every_replica() {
    let url = pg::database();
    let ctls = replicas(&url, 3).await;
    let (v1, v2) = (Agent::start(Behaviour::version("v1")).await.unwrap(), Agent::start(Behaviour::version("v2")).await.unwrap());
    let mut envoys = Vec::new();
    for c in &ctls {
        envoys.push(Envoy::for_versions(HOST, v1.addr, v2.addr, c.addr, json!({"report_interval_ms": 100})).start().await.unwrap());
    }
    ctls[0].put_manual("support", HOST, 0.0).await.unwrap();
    for c in &ctls {
        c.wait_confirmed("support", envoys.iter().map(|e| e.contexts).sum(), Duration::from_secs(10)).await.unwrap();
    }

    // 1. A PUT on r2 moves every Envoy, each polling its own replica, within 1 s.
    let put = Instant::now();
    ctls[1].put_manual("support", HOST, 100.0).await.unwrap();
    let mut reached = Vec::new();
    for (i, e) in envoys.iter().enumerate() {
        let traffic = Traffic::new(e.listener, HOST);
        loop {
            if traffic.send(Some("u")).await.map(|r| r.served_by.as_deref() == Some("v2")).unwrap_or(false) {
                reached.push(put.elapsed());
                break;
            }
            assert!(put.elapsed() < Duration::from_secs(5), "envoy {i} (polling r{}) still on v1 after 5 s", i + 1);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    println!("PUT on r2 reached the Envoys polling r1, r2, r3 after {reached:?}");
    for (i, t) in reached.iter().enumerate() {
        assert!(*t <= Duration::from_secs(1), "the Envoy polling r{} took {t:?}", i + 1);
    }

    // Reports to different replicas add up exactly, on every replica. The window starts empty on
    // every replica when nothing is in flight at its start (data in flight at a window's restart may
    // land on either side of it, differently on different replicas: docs/ha.md), so first let the
    // last reports arrive, then restart the window (weight 50 %) and send a known number of requests
    // through each Envoy.
    let quiet = || async {
        let mut last = Vec::new();
        for c in &ctls {
            last.push(c.get("/v1/rollouts/support").await?["live"]["window"].clone());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (c, before) in ctls.iter().zip(&last) {
            anyhow::ensure!(c.get("/v1/rollouts/support").await?["live"]["window"] == *before, "still counting");
        }
        Ok(())
    };
    fledge_integration::eventually(Duration::from_secs(10), "no report in flight", quiet).await.unwrap();
    ctls[2].put_manual("support", HOST, 50.0).await.unwrap();
    for c in &ctls {
        assert_eventually!(Duration::from_secs(5), "the new weight on every replica", async {
            anyhow::ensure!(c.get("/v1/rollouts/support").await?["status"]["weight"] == json!(50.0), "not yet");
            Ok(())
        });
        let st = c.wait_confirmed("support", envoys.iter().map(|e| e.contexts).sum(), Duration::from_secs(10)).await.unwrap();
        let w = &st["live"]["window"];
        assert_eq!((&w["stable"]["requests"], &w["canary"]["requests"]), (&json!(0), &json!(0)), "a new window: {w}");
    }
    let sent = [120usize, 70, 45];
    for (e, n) in envoys.iter().zip(sent) {
        let traffic = Traffic::new(e.listener, HOST);
        for i in 0..n {
            assert_eq!(traffic.send(Some(&format!("user-{i}"))).await.unwrap().status, 200);
        }
    }
    let want = sent.iter().sum::<usize>() as u64;
    let mut seen = Vec::new();
    for (i, c) in ctls.iter().enumerate() {
        let (st, _) = fledge_integration::eventually(Duration::from_secs(10), "every request counted", || async {
            let st = c.get("/v1/rollouts/support").await?;
            let w = &st["live"]["window"];
            let total = w["stable"]["requests"].as_u64().unwrap_or(0) + w["canary"]["requests"].as_u64().unwrap_or(0);
            anyhow::ensure!(total == want, "r{}: {total} of {want} requests", i + 1);
            Ok(st)
        })
        .await
        .unwrap();
        seen.push((st["live"]["window"]["stable"]["requests"].clone(), st["live"]["window"]["canary"]["requests"].clone()));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "the same counts on every replica: {seen:?}");
    // Still exactly that a while later: nothing is counted twice by the replicas reading the log.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for c in &ctls {
        let w = c.get("/v1/rollouts/support").await.unwrap()["live"]["window"].clone();
        assert_eq!((w["stable"]["requests"].clone(), w["canary"]["requests"].clone()), seen[0]);
    }
    println!("{want} requests through 3 Envoys reporting to 3 replicas: {seen:?} (stable, canary) on each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_retried_to_another_replica_is_counted_once() {
    let url = pg::database();
    let ctls = replicas(&url, 3).await;
    ctls[0].put_manual("support", HOST, 50.0).await.unwrap();
    let st = ctls[0].get("/v1/rollouts/support").await.unwrap();
    let epoch = ctls[0].get("/healthz").await.unwrap()["epoch"].clone();
    let report = |seq: u64, requests: u64| {
        json!({"proxy": "envoy-a", "worker": "w1", "seq": seq, "generation": st["status"]["generation"], "epoch": epoch,
               "versions": [{"rollout": "support", "version": "v2", "stats": {"requests": requests, "status_2xx": requests,
               "latency_total": {"buckets": [[300, requests]]}}}]})
    };
    let (first, body) = ctls[0].call(reqwest::Method::POST, "/v1/reports", Some(report(7, 11))).await.unwrap();
    assert_eq!((first, &body["duplicate"]), (202, &json!(false)), "{body}");
    // Its acknowledgement was lost: the filter resends the same report, to another replica.
    let (again, body) = ctls[1].call(reqwest::Method::POST, "/v1/reports", Some(report(7, 11))).await.unwrap();
    assert_eq!((again, &body["duplicate"]), (202, &json!(true)), "{body}");
    let (third, body) = ctls[2].call(reqwest::Method::POST, "/v1/reports", Some(report(7, 11))).await.unwrap();
    assert_eq!((third, &body["duplicate"]), (202, &json!(true)), "{body}");
    let (next, _) = ctls[2].call(reqwest::Method::POST, "/v1/reports", Some(report(8, 5))).await.unwrap();
    assert_eq!(next, 202);
    for (i, c) in ctls.iter().enumerate() {
        assert_eventually!(Duration::from_secs(5), "counted once", async {
            let w = c.get("/v1/rollouts/support").await?["live"]["window"].clone();
            anyhow::ensure!(w["canary"]["requests"] == json!(16), "r{}: {w}", i + 1);
            Ok(())
        });
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for c in &ctls {
        assert_eq!(c.get("/v1/rollouts/support").await.unwrap()["live"]["window"]["canary"]["requests"], json!(16));
        let m = reqwest::get(c.url("/metrics")).await.unwrap().text().await.unwrap();
        assert!(m.contains("fledge_leader ") && m.contains("fledge_leadership_changes_total "), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_under_a_failing_canary_another_replica_rolls_back() {
    let url = pg::database();
    let mut ctls = replicas(&url, 3).await;
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour { error_rate: 0.5, ..Behaviour::version("v2") }).await.unwrap();
    // The Envoy polls and reports to r2, a follower, as an Envoy behind a Service would after r1 died.
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctls[1].addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    ctls[0]
        .put_rollout("support", json!({"hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [25, 50, 100], "step_seconds": 600,
            "min_requests": 20, "analysis": {"interval_seconds": 0.5}, "gates": [{"metric": "error_rate", "max_increase": 0.05, "critical": true}]}))
        .await
        .unwrap();
    // On r1, which committed it: r2 learns of it a notification later.
    ctls[0].wait_phase("support", "progressing", Duration::from_secs(15)).await.unwrap();
    let st = ctls[1].wait_confirmed("support", envoy.contexts, Duration::from_secs(15)).await.unwrap();
    assert_eq!((&st["status"]["phase"], &st["status"]["weight"]), (&json!("progressing"), &json!(25.0)), "{st}");
    assert_eq!(st["status"]["decided_by"]["replica"], "r1");

    // Traffic starts as the leader dies: every failing canary request is judged by a new leader.
    ctls[0].kill().await.unwrap();
    let killed = Instant::now();
    let _load = Load::start(Traffic::new(envoy.listener, HOST), 200, 1_000);
    let survivors = [&ctls[1], &ctls[2]];
    let done = ctls[1].wait_phase("support", "rolled_back", Duration::from_secs(30)).await.unwrap();
    let new_leader = leader_of(&survivors).await.unwrap();
    assert_ne!(new_leader, "r1");
    assert_eq!(done["status"]["decided_by"]["replica"], json!(new_leader), "{}", done["status"]);
    // The canary's last request, once the rollback reached the Envoy.
    assert_eventually!(Duration::from_secs(10), "the canary gets no more requests", async {
        let n = v2.requests();
        tokio::time::sleep(Duration::from_millis(500)).await;
        anyhow::ensure!(v2.requests() == n, "still reaching the canary");
        Ok(())
    });
    let last = v2.marks().last_request.unwrap();
    let failover = last.duration_since(killed);
    println!("leader r1 killed (kill -9) under a failing canary at 25 %: {new_leader} rolled back; last canary request {failover:?} after the kill");
    assert!(failover < Duration::from_secs(30));
    let events = ctls[2].events("support").await.unwrap();
    let rolled: Vec<&Value> = events.iter().filter(|e| e["kind"] == "rolled_back").collect();
    assert_eq!(rolled.len(), 1, "one rollback: {events:?}");
    assert_eq!(rolled[0]["replica"], json!(new_leader));
    assert!(rolled[0]["lease_epoch"].as_u64() > events.iter().find(|e| e["kind"] == "started").and_then(|e| e["lease_epoch"].as_u64()));
    assert_eq!(canary_share(&Traffic::new(envoy.listener, HOST), 50).await, 0.0);
    drop(ctls.remove(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_commits_nothing_after_its_lease_and_a_rollout_is_promoted_across_leaders() {
    let url = pg::database();
    let ctls = replicas(&url, 3).await;
    let (v1, v2) = (Agent::start(Behaviour::version("v1")).await.unwrap(), Agent::start(Behaviour::version("v2")).await.unwrap());
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctls[2].addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    let _load = Load::start(Traffic::new(envoy.listener, HOST), 200, 1_000);
    ctls[0]
        .put_rollout("support", json!({"hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [10, 20, 30, 40, 50, 100], "step_seconds": 1,
            "min_requests": 10, "analysis": {"interval_seconds": 0.5}}))
        .await
        .unwrap();
    assert_eventually!(Duration::from_secs(30), "advancing under r1", async {
        let st = ctls[2].get("/v1/rollouts/support").await?;
        anyhow::ensure!(st["status"]["step"].as_u64() >= Some(1), "{}", st["status"]);
        Ok(())
    });

    // 3. r1 freezes (SIGSTOP) for longer than its lease, mid-rollout; the others go on without it.
    ctls[0].signal("STOP").await.unwrap();
    let stopped = Instant::now();
    let survivors = [&ctls[1], &ctls[2]];
    assert_eventually!(Duration::from_secs(10), "another replica leads", async {
        let l = leader_of(&survivors).await?;
        anyhow::ensure!(l != "r1", "{l}");
        Ok(())
    });
    println!("r1 stopped; {} leads after {:?}", leader_of(&survivors).await.unwrap(), stopped.elapsed());
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(stopped.elapsed())).await;
    ctls[0].signal("CONT").await.unwrap();

    // 4. The rollout started under r1 is promoted under its successor, through every step.
    let done = ctls[2].wait_phase("support", "succeeded", Duration::from_secs(60)).await.unwrap();
    assert_eq!(done["spec"]["stable"], "v2");
    // r1, awake, learns it no longer leads and says so.
    assert_eventually!(Duration::from_secs(10), "r1 follows", async {
        let h = ctls[0].get("/healthz").await?;
        anyhow::ensure!(h["role"] == "follower" && h["leader"] != "r1", "{h}");
        Ok(())
    });
    let events = ctls[1].events("support").await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["created", "started", "advanced", "advanced", "advanced", "advanced", "advanced", "promoted"], "{events:#?}");
    let steps: Vec<u64> = events.iter().filter(|e| e["kind"] == "advanced").filter_map(|e| e["step"].as_u64()).collect();
    assert_eq!(steps, [1, 2, 3, 4, 5], "each step once, in order");
    // Every decision carries the epoch it was made under; epochs never go back, r1's old one never
    // reappears once a newer one decided, and r1 made nothing after it was stopped.
    let decisions: Vec<(String, u64, u64)> = events
        .iter()
        .filter(|e| e["kind"] != "created")
        .map(|e| (e["replica"].as_str().unwrap_or("").to_string(), e["lease_epoch"].as_u64().unwrap_or(0), e["at_ms"].as_u64().unwrap_or(0)))
        .collect();
    assert!(decisions.iter().all(|(r, e, _)| !r.is_empty() && *e > 0), "{decisions:?}");
    assert!(decisions.windows(2).all(|w| w[0].1 <= w[1].1), "epochs only grow: {decisions:?}");
    let r1_epoch = decisions.iter().find(|d| d.0 == "r1").map(|d| d.1).unwrap();
    let after: Vec<&(String, u64, u64)> = decisions.iter().filter(|d| d.1 > r1_epoch).collect();
    assert!(!after.is_empty(), "the successor decided: {decisions:?}");
    assert!(after.iter().all(|d| d.0 != "r1"), "{decisions:?}");
    assert!(decisions.iter().skip_while(|d| d.1 == r1_epoch).all(|d| d.1 != r1_epoch), "nothing from the stale epoch after a newer one: {decisions:?}");
    assert_eq!(done["status"]["decided_by"]["replica"], json!(after.last().unwrap().0));
    let log = ctls[0].log();
    assert!(log.contains("no longer the leader"), "{log}");
    println!("decisions (replica, lease epoch): {:?}", decisions.iter().map(|d| (d.0.as_str(), d.1)).collect::<Vec<_>>());
}

/// The share of 200 keyed users served by v2 right now.
async fn keyed_share(t: &Traffic, prefix: &str) -> anyhow::Result<f64> {
    let replies = t.send_users(&fledge_integration::traffic::users(prefix, 200), 16).await?;
    anyhow::ensure!(replies.iter().all(|r| r.status == 200), "a request failed");
    Ok(fledge_integration::traffic::share(&replies, "v2"))
}

/// 6. on PostgreSQL: every replica killed — `stable` rollouts go to stable after `after_seconds`,
/// `hold` ones keep their weights; the replicas restarted, the leader pauses the first with an event,
/// and nothing moves until a user resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_replica_gone_stable_rollouts_go_to_stable_and_the_new_leader_pauses_them() {
    let url = pg::database();
    let mut ctls = replicas(&url, 2).await;
    let (v1, v2) = (Agent::start(Behaviour::version("v1")).await.unwrap(), Agent::start(Behaviour::version("v2")).await.unwrap());
    let envoy = Envoy::builder()
        .route("support-agent", &[("v1", v1.addr), ("v2", v2.addr)])
        .route("billing-agent", &[("v1", v1.addr), ("v2", v2.addr)])
        .controller(ctls[1].addr)
        .plugin_config(json!({"report_interval_ms": 200}))
        .start()
        .await
        .unwrap();
    let spec = |host: &str, loss: Value| {
        json!({"hosts": [host], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 600, "min_requests": 10,
               "analysis": {"interval_seconds": 0.5}, "on_controller_loss": loss})
    };
    ctls[0].put_rollout("support", spec("support-agent", json!({"mode": "stable", "after_seconds": 3}))).await.unwrap();
    ctls[1].put_rollout("billing", spec("billing-agent", json!({"mode": "hold"}))).await.unwrap();
    let (safe, held) = (Traffic::new(envoy.listener, "support-agent"), Traffic::new(envoy.listener, "billing-agent"));
    for (name, t) in [("support", &safe), ("billing", &held)] {
        ctls[1].wait_confirmed(name, envoy.contexts, Duration::from_secs(15)).await.unwrap();
        assert_eventually!(Duration::from_secs(10), "the 50 % step applied", async {
            let s = keyed_share(t, name).await?;
            anyhow::ensure!((0.3..0.7).contains(&s), "{name}: {s:.2} on v2");
            Ok(())
        });
    }
    let before = ctls[1].events("support").await.unwrap().len();

    for c in ctls.iter_mut() {
        c.kill().await.unwrap();
    }
    let killed = Instant::now();
    let ((), _) = assert_eventually!(Duration::from_secs(15), "support's users all on stable", async {
        let s = keyed_share(&safe, "support").await?;
        anyhow::ensure!(s == 0.0, "{s:.2} still on v2");
        Ok(())
    });
    let waited = killed.elapsed();
    assert!(waited >= Duration::from_secs(2), "not before after_seconds, counted from the last answer: {waited:?}");
    let billing = keyed_share(&held, "billing").await.unwrap();
    assert!((0.3..0.7).contains(&billing), "hold keeps the weight: {billing:.2} on v2");
    println!("every replica killed: support (stable after 3 s) all on stable {:.1} s after the kill; billing (hold) {billing:.2} on v2", waited.as_secs_f64());

    // Back: the first replica up leads, learns of the fallback from the proxy's reports and pauses.
    ctls[1].restart().await.unwrap();
    ctls[0].restart().await.unwrap();
    let paused = ctls[0].wait_phase("support", "paused", Duration::from_secs(20)).await.unwrap();
    assert_eq!(paused["status"]["weight"], json!(0.0));
    let leader = leader_of(&[&ctls[0], &ctls[1]]).await.unwrap();
    assert_eq!(paused["status"]["decided_by"]["replica"], json!(leader));
    let events = ctls[0].events("support").await.unwrap();
    let why: Vec<&Value> = events.iter().skip(before).filter(|e| e["kind"] == "paused").collect();
    assert_eq!(why.len(), 1, "paused once, by the leader: {events:?}");
    assert_eq!(why[0]["input"]["kind"], "controller_lost", "{}", why[0]);
    assert_eq!(ctls[1].get("/v1/rollouts/billing").await.unwrap()["status"]["phase"], "progressing");
    ctls[1].wait_confirmed("support", envoy.contexts, Duration::from_secs(15)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ctls[1].get("/v1/rollouts/support").await.unwrap()["status"]["phase"], "paused", "nothing moves until a user acts");
    assert_eq!(keyed_share(&safe, "support").await.unwrap(), 0.0);
    let resumed = ctls[1].post("/v1/rollouts/support/resume", json!({})).await.unwrap();
    assert_eq!(resumed["status"]["weight"].as_f64(), Some(50.0));
    assert_eventually!(Duration::from_secs(10), "the 50 % split again", async {
        let s = keyed_share(&safe, "support").await?;
        anyhow::ensure!((0.3..0.7).contains(&s), "{s:.2} on v2");
        Ok(())
    });
}
