//! The `fledge` binary at its edges: a corrupt or newer-schema data file is a clear error and a clean
//! exit, not a panic or a crash loop; SIGTERM is a graceful shutdown; the CLI drives the API.

use std::process::Command;

use fledge_integration::fledge_bin;

fn serve(data: &std::path::Path) -> (bool, String) {
    let out = Command::new(fledge_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn corrupt_data_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fledge.db"), vec![0x42u8; 8192]).unwrap();
    let (ok, err) = serve(dir.path());
    assert!(!ok);
    assert!(err.contains("corrupt or not a fledge database"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn newer_schema_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fledge.db");
    let status = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version = 99'); c.commit()"])
        .arg(&db)
        .status()
        .unwrap();
    assert!(status.success());
    let (ok, err) = serve(dir.path());
    assert!(!ok);
    assert!(err.contains("newer than this fledge supports"), "{err}");
}

fn cli(ctl: &fledge_integration::Controller, args: &[&str]) -> (bool, String) {
    let out = Command::new(fledge_bin())
        .arg("rollouts")
        .args(["--server", &ctl.url("")])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn cli_drives_the_api() {
    let ctl = fledge_integration::Controller::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(&spec, r#"{"hosts": ["support-agent"], "stable": "v1", "canary": "v2", "steps": [5, 100]}"#).unwrap();
    let (ok, out) = cli(&ctl, &["apply", "support", "--file", spec.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&ctl, &["list"]);
    assert!(ok && out.contains("support") && out.contains("v2"), "{out}");
    let (ok, out) = cli(&ctl, &["resume", "support"]);
    assert!(!ok && out.contains("409") && out.contains("cannot resume"), "API errors reach the user: {out}");
    let (ok, out) = cli(&ctl, &["set-weight", "support", "12.5"]);
    assert!(ok, "{out}");
    assert_eq!(ctl.get("/v1/rollouts/support").await.unwrap()["status"]["weight"], serde_json::json!(12.5));
    let (ok, out) = cli(&ctl, &["events", "support"]);
    assert!(ok && out.contains("created") && out.contains("replaced"), "{out}");
    let (ok, out) = cli(&ctl, &["set-weight", "support", "101"]);
    assert!(!ok && out.contains("between 0 and 100"), "{out}");
}

/// SIGTERM answers the held long-polls at once (304: proxies keep their config and poll again) instead
/// of leaving them to time out, and the process exits cleanly with its state on disk.
#[tokio::test]
async fn sigterm_answers_held_polls_and_exits_cleanly() {
    use fledge_integration::assert_eventually;
    use std::time::{Duration, Instant};
    let mut ctl = fledge_integration::Controller::builder().poll_hold_secs(30.0).start().await.unwrap();
    ctl.put_rollout("support", serde_json::json!({"hosts": ["a"], "stable": "v1", "canary": "v2", "weight": 5})).await.unwrap();
    let generation = ctl.get("/healthz").await.unwrap()["generation"].as_u64().unwrap();
    let url = ctl.url(&format!("/v1/config?since={generation}"));
    let polls: Vec<_> = (0..3).map(|_| tokio::spawn(reqwest::get(url.clone()))).collect();
    assert_eventually!(Duration::from_secs(5), "polls held", async {
        let held = ctl.get("/healthz").await?["held_polls"].as_u64().unwrap_or(0);
        anyhow::ensure!(held == 3, "{held} held");
        Ok(())
    });
    let start = Instant::now();
    let status = ctl.terminate(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "exit status {status}");
    for p in polls {
        let r = p.await.unwrap().unwrap();
        assert_eq!(r.status(), 304);
        assert_eq!(r.headers()["x-fledge-generation"], generation.to_string().as_str());
    }
    println!("shutdown with 3 held polls took {:?}", start.elapsed());
    assert!(ctl.log().contains("shutting down"), "{}", ctl.log());
    ctl.restart().await.unwrap();
    assert_eq!(ctl.get("/v1/rollouts/support").await.unwrap()["status"]["weight"], serde_json::json!(5.0));
}

/// `watch` in a pipeline: exit 0 when the rollout is promoted, 1 when it is rolled back; `get` is
/// readable without `-o` and parses with `-o json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exits_with_the_outcome_and_get_reads_well() {
    use fledge_integration::traffic::{Load, Traffic};
    use fledge_integration::{Agent, Behaviour, Envoy};
    use serde_json::json;
    const HOST: &str = "support-agent";
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let ctl = fledge_integration::Controller::builder().start().await.unwrap();
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    let _load = Load::start(Traffic::new(envoy.listener, HOST), 150, 1_000);
    let spec = |name_gates: serde_json::Value| {
        json!({"hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 1, "min_requests": 30,
               "analysis": {"interval_seconds": 0.25, "failure_limit": 1}, "gates": name_gates})
    };
    let gates = json!([{"metric": "error_rate", "max_increase": 0.05}, {"metric": "error_rate", "max": 0.2, "critical": true}]);
    ctl.put_rollout("support", spec(gates.clone())).await.unwrap();
    // Not a TTY here: one line per change, and the exit code says how it ended.
    let watch = |ctl: &fledge_integration::Controller| {
        let url = ctl.url("");
        tokio::task::spawn_blocking(move || {
            Command::new(fledge_bin()).args(["rollouts", "--server", &url, "watch", "support", "--interval", "0.2"]).output().unwrap()
        })
    };
    let out = watch(&ctl).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.lines().last().unwrap_or_default().starts_with("support: succeeded"), "{text}");
    assert!(text.lines().count() >= 2 && text.contains("support: progressing step 1 weight 50%"), "{text}");

    let (ok, human) = cli(&ctl, &["get", "support"]);
    assert!(ok, "{human}");
    assert!(human.starts_with("support  succeeded  weight 0%"), "{human}");
    assert!(human.contains("(stable) →") && human.contains("confirmed by") && human.contains("GATE"), "{human}");
    assert!(!human.trim_start().starts_with('{'), "not JSON by default: {human}");
    let (ok, raw) = cli(&ctl, &["get", "support", "-o", "json"]);
    assert!(ok, "{raw}");
    let parsed: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(parsed["status"]["phase"], "succeeded");
    let (ok, yaml) = cli(&ctl, &["get", "support", "-o", "yaml"]);
    assert!(ok && yaml.contains("phase: succeeded"), "{yaml}");

    // The new canary (v1 after the swap) fails: watch exits 1.
    v1.update(|b| b.error_rate = 0.5);
    let mut again = spec(gates);
    again["stable"] = json!("v2");
    again["canary"] = json!("v1");
    ctl.put_rollout("support", again).await.unwrap();
    let out = watch(&ctl).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.lines().last().unwrap_or_default().starts_with("support: rolled_back"), "{text}");
}
