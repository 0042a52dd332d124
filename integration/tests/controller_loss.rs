//! Issue 14's data-plane safety net, in real Envoys with the real filter and controller:
//! `on_controller_loss: stable` sends a rollout's users to stable once the controller has been gone
//! for `after_seconds`; `hold` rollouts keep their weights; the controller, back, shows the rollout
//! `paused` at 0 % with an event saying why, and nothing moves until a user resumes it.

use std::time::Duration;

use fledge_integration::traffic::{share, users, Traffic};
use fledge_integration::{assert_eventually, Agent, Behaviour, Controller, Envoy};
use serde_json::json;

fn spec(host: &str, loss: serde_json::Value) -> serde_json::Value {
    json!({"hosts": [host], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 600, "min_requests": 10,
           "analysis": {"interval_seconds": 0.5}, "on_controller_loss": loss})
}

/// The share of `n` keyed users served by v2 right now.
async fn canary_share(t: &Traffic, prefix: &str) -> anyhow::Result<f64> {
    let replies = t.send_users(&users(prefix, 200), 16).await?;
    anyhow::ensure!(replies.iter().all(|r| r.status == 200), "a request failed");
    Ok(share(&replies, "v2"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_controller_gone_stable_rollouts_go_to_stable_and_hold_rollouts_keep_their_weights() {
    let (v1, v2) = (Agent::start(Behaviour::version("v1")).await.unwrap(), Agent::start(Behaviour::version("v2")).await.unwrap());
    let mut ctl = Controller::builder().start().await.unwrap();
    let plugin = json!({"report_interval_ms": 200});
    let safe = Envoy::for_versions("support-agent", v1.addr, v2.addr, ctl.addr, plugin.clone()).start().await.unwrap();
    let held = Envoy::for_versions("billing-agent", v1.addr, v2.addr, ctl.addr, plugin).start().await.unwrap();
    ctl.put_rollout("support", spec("support-agent", json!({"mode": "stable", "after_seconds": 3}))).await.unwrap();
    ctl.put_rollout("billing", spec("billing-agent", json!({"mode": "hold"}))).await.unwrap();
    let (to_safe, to_held) = (Traffic::new(safe.listener, "support-agent"), Traffic::new(held.listener, "billing-agent"));
    let contexts = safe.contexts + held.contexts;
    for (name, t) in [("support", &to_safe), ("billing", &to_held)] {
        ctl.wait_confirmed(name, contexts, Duration::from_secs(15)).await.unwrap();
        assert_eventually!(Duration::from_secs(10), "the 50 % step applied", async {
            let s = canary_share(t, name).await?;
            anyhow::ensure!((0.3..0.7).contains(&s), "{name}: {s:.2} on v2");
            Ok(())
        });
    }
    let before = ctl.events("support").await.unwrap().len();

    // Every controller gone.
    ctl.kill().await.unwrap();
    let killed = std::time::Instant::now();
    // A second and a half in, well inside after_seconds: still split (silence counts from each
    // worker's last answer, at most a report interval, 200 ms, before the kill).
    tokio::time::sleep_until((killed + Duration::from_millis(1_500)).into()).await;
    let early = canary_share(&to_safe, "support").await.unwrap();
    assert!((0.3..0.7).contains(&early), "not before after_seconds: {early:.2} on v2 1.5 s after the kill");
    let ((), took) = assert_eventually!(Duration::from_secs(15), "support's users all on stable", async {
        let s = canary_share(&to_safe, "support").await?;
        anyhow::ensure!(s == 0.0, "{s:.2} still on v2");
        Ok(())
    });
    let waited = killed.elapsed();
    assert!(waited >= Duration::from_secs(2), "not before after_seconds, counted from the last answer: {waited:?}");
    println!("on_controller_loss: stable after 3 s — all of support's users on stable {:.1} s after the kill (check took {took:?})", waited.as_secs_f64());
    let billing = canary_share(&to_held, "billing").await.unwrap();
    assert!((0.3..0.7).contains(&billing), "hold keeps the weight: {billing:.2} on v2");
    assert!(safe.log().contains("on_controller_loss: stable"), "logged");

    // The controller is back: the rollout is paused at 0 % with an event saying why.
    ctl.restart().await.unwrap();
    let paused = ctl.wait_phase("support", "paused", Duration::from_secs(15)).await.unwrap();
    assert_eq!(paused["status"]["weight"], json!(0.0));
    let events = ctl.events("support").await.unwrap();
    let why = events.iter().skip(before).find(|e| e["kind"] == "paused").expect("a paused event");
    assert_eq!(why["input"]["kind"], "controller_lost", "{why}");
    assert!(why["message"].as_str().unwrap().contains("on_controller_loss"), "{why}");
    assert_eq!(ctl.get("/v1/rollouts/billing").await.unwrap()["status"]["phase"], "progressing", "a hold rollout goes on");

    // Nothing moves until a user acts: the proxies apply the paused rollout's generation, still stable.
    ctl.wait_confirmed("support", contexts, Duration::from_secs(15)).await.unwrap();
    assert_eq!(canary_share(&to_safe, "support").await.unwrap(), 0.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ctl.get("/v1/rollouts/support").await.unwrap()["status"]["phase"], "paused");
    assert_eq!(canary_share(&to_safe, "support").await.unwrap(), 0.0);
    // Resumed: back at the step's 50 %, the fallback lifted by the newer config.
    let resumed = ctl.post("/v1/rollouts/support/resume", json!({})).await.unwrap();
    assert_eq!((resumed["status"]["phase"].as_str(), resumed["status"]["weight"].as_f64()), (Some("progressing"), Some(50.0)));
    ctl.wait_confirmed("support", contexts, Duration::from_secs(15)).await.unwrap();
    assert_eventually!(Duration::from_secs(10), "the 50 % split again", async {
        let s = canary_share(&to_safe, "support").await?;
        anyhow::ensure!((0.3..0.7).contains(&s), "{s:.2} on v2");
        Ok(())
    });
}
