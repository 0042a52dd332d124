//! Issue 15, agent-native signals, in a real Envoy with the real filter and controller: time to first
//! token is recorded per version and gated on.

use std::time::Duration;

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{Agent, Behaviour, Controller, Envoy};
use serde_json::json;

const HOST: &str = "support-agent";

/// A streaming canary whose first token comes 300 ms later — headers at once, HTTP 200 throughout —
/// is rolled back on `latency_ttft_p99_ms`, while the same answers' status and task outcome are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_first_token_is_rolled_back_on_ttft() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour { first_byte_ms: 300, ..Behaviour::version("v2") }).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 600, "min_requests": 30,
        "analysis": {"interval_seconds": 0.25, "failure_limit": 1},
        "gates": [{"metric": "error_rate", "max_increase": 0.05}, {"metric": "latency_ttft_p99_ms", "max_increase": 100}]
    })).await.unwrap();
    let _load = Load::start(Traffic::new(envoy.listener, HOST), 150, 1_000);
    let rolled = ctl.wait_phase("support", "rolled_back", Duration::from_secs(30)).await.unwrap();
    let gates = rolled["status"]["last_verdict"]["gates"].as_array().unwrap();
    let ttft = gates.iter().find(|g| g["metric"] == "latency_ttft_p99_ms").unwrap();
    assert_eq!(ttft["status"], "fail", "{ttft}");
    let errors = gates.iter().find(|g| g["metric"] == "error_rate").unwrap();
    assert_ne!(errors["status"], "fail", "HTTP stayed healthy: {errors}");
    let (canary, stable) = (ttft["canary"].as_f64().unwrap(), ttft["stable"].as_f64().unwrap());
    assert!(canary >= 300.0 && stable < 100.0, "canary p99 TTFT {canary} ms vs stable {stable} ms");
    println!("late first token: canary p99 TTFT {canary:.1} ms vs stable {stable:.1} ms → {}", rolled["status"]["message"]);
}

fn otlp_evaluation(rollout: &str, version: &str, score: f64, label: &str) -> serde_json::Value {
    let kv = |k: &str, v: serde_json::Value| json!({"key": k, "value": v});
    json!({"eventName": "gen_ai.evaluation.result", "attributes": [
        kv("fledge.rollout", json!({"stringValue": rollout})), kv("fledge.version", json!({"stringValue": version})),
        kv("gen_ai.evaluation.name", json!({"stringValue": "helpfulness"})),
        kv("gen_ai.evaluation.score.value", json!({"doubleValue": score})), kv("gen_ai.evaluation.score.label", json!({"stringValue": label}))]})
}

/// Evaluations sent by the real OpenTelemetry Python SDK and OTLP/HTTP protobuf exporter reach the
/// status exactly: per-version count, mean and pass rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_from_the_opentelemetry_exporter_reach_the_status() {
    let ctl = Controller::builder().token("t0ken").start().await.unwrap();
    ctl.put_rollout("support", json!({"hosts": [HOST], "stable": "v1", "canary": "v2", "weight": 10})).await.unwrap();
    let python = fledge_integration::workspace_root().join(".venv/bin/python");
    let script = fledge_integration::workspace_root().join("integration/scripts/otel_evaluations.py");
    let url = ctl.url("");
    let send = |version: &str, results: &[&str]| {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args([url.as_str(), "t0ken", "support", version, "helpfulness"])
            .args(results)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    send("v2", &["4.0:pass", "3.0:fail", "5.0:pass", "4.5"]);
    send("v1", &["2.0:fail", "4.0:pass"]);
    let s = ctl.get("/v1/rollouts/support").await.unwrap();
    let e = |side: &str| s["live"]["window"][side]["evaluations"]["helpfulness"].clone();
    assert_eq!((e("canary")["count"].as_u64(), e("canary")["mean"].as_f64(), e("canary")["labelled"].as_u64()), (Some(4), Some(4.125), Some(3)));
    assert!((e("canary")["pass_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12, "{}", e("canary"));
    assert_eq!((e("stable")["count"].as_u64(), e("stable")["mean"].as_f64(), e("stable")["pass_rate"].as_f64()), (Some(2), Some(3.0), Some(0.5)));
    // Without the token: refused.
    let http = reqwest::Client::new();
    let resp = http.post(ctl.url("/v1/logs")).header("content-type", "application/json").body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

/// A canary whose judge scores drop (helpfulness 4.2 → 3.4) while HTTP and task success stay healthy
/// is rolled back on `evaluation_score`; one with equal scores is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_judge_scores_drop_is_rolled_back_and_an_equal_one_promoted() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    let _load = Load::start(Traffic::new(envoy.listener, HOST), 100, 1_000);
    let spec = json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 2, "min_requests": 20,
        "analysis": {"interval_seconds": 0.5, "failure_limit": 1},
        "gates": [{"metric": "error_rate", "max_increase": 0.05}, {"metric": "task_success_rate", "max_decrease": 0.05},
                  {"metric": "evaluation_score", "name": "helpfulness", "max_decrease": 0.3}]
    });
    // The judge: 20 scores a second per version, alternating mean ± 0.5, over OTLP JSON.
    let judge = |ctl_url: String, canary_mean: f64| {
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for n in 0u64.. {
                tick.tick().await;
                let spread = if n % 2 == 0 { 0.5 } else { -0.5 };
                let records = vec![otlp_evaluation("support", "v1", 4.2 + spread, "pass"), otlp_evaluation("support", "v2", canary_mean + spread, "pass")];
                let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]});
                let _ = http.post(format!("{ctl_url}/v1/logs")).header("content-type", "application/json").body(body.to_string()).send().await;
            }
        })
    };
    let scores = judge(ctl.url(""), 3.4);
    ctl.put_rollout("support", spec.clone()).await.unwrap();
    let rolled = ctl.wait_phase("support", "rolled_back", Duration::from_secs(30)).await.unwrap();
    let gates = rolled["status"]["last_verdict"]["gates"].as_array().unwrap();
    let score = gates.iter().find(|g| g["metric"] == "evaluation_score").unwrap();
    assert_eq!(score["status"], "fail", "{score}");
    for healthy in ["error_rate", "task_success_rate"] {
        assert_ne!(gates.iter().find(|g| g["metric"] == healthy).unwrap()["status"], "fail", "{healthy} stayed healthy");
    }
    println!("judge scores 4.2 → 3.4: {}", rolled["status"]["message"]);
    scores.abort();

    let scores = judge(ctl.url(""), 4.2);
    ctl.put_rollout("support", spec).await.unwrap();
    let done = ctl.wait_phase("support", "succeeded", Duration::from_secs(60)).await.unwrap();
    assert_eq!(done["spec"]["stable"], "v2");
    scores.abort();
}

/// A prompt canary served by one agent process (the version from `x-fledge-version`) is promoted,
/// and a failing one rolled back, exactly like two deployments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_canaries_in_one_process_are_promoted_and_rolled_back_like_deployments() {
    use fledge_integration::MultiAgent;
    let agent = MultiAgent::start(vec![Behaviour::version("v1"), Behaviour::version("v2")]).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    // Both versions route to the same backend.
    let envoy = Envoy::for_versions(HOST, agent.addr, agent.addr, ctl.addr, json!({"report_interval_ms": 100})).start().await.unwrap();
    let _load = Load::start(Traffic::new(envoy.listener, HOST), 150, 1_000);
    let spec = |stable: &str, canary: &str| json!({
        "hosts": [HOST], "stable": stable, "canary": canary, "steps": [50, 100], "step_seconds": 1, "min_requests": 30,
        "analysis": {"interval_seconds": 0.25, "failure_limit": 1},
        "gates": [{"metric": "error_rate", "max_increase": 0.05}, {"metric": "task_success_rate", "max_decrease": 0.1}]
    });
    ctl.put_rollout("support", spec("v1", "v2")).await.unwrap();
    let done = ctl.wait_phase("support", "succeeded", Duration::from_secs(60)).await.unwrap();
    assert_eq!(done["spec"]["stable"], "v2");
    assert!(agent.requests("v1") > 50 && agent.requests("v2") > 50, "one process answered as both versions");
    // Back to v1, now with a prompt that fails half its tasks: rolled back.
    agent.update("v1", |b| b.success_rate = 0.5);
    ctl.put_rollout("support", spec("v2", "v1")).await.unwrap();
    let rolled = ctl.wait_phase("support", "rolled_back", Duration::from_secs(30)).await.unwrap();
    assert!(rolled["status"]["message"].as_str().unwrap().contains("task_success_rate"), "{}", rolled["status"]["message"]);
}

/// `fledge rollouts export` of a finished rollout: every line parses, the interval lines add up to
/// the status's totals (requests, errors, outcomes, cost and the judge's scores per version), and
/// every event is there with its verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_of_a_finished_rollout_adds_up_to_its_status() {
    let v1 = Agent::start(Behaviour { cost: 0.02, success_rate: 0.9, ..Behaviour::version("v1") }).await.unwrap();
    let v2 = Agent::start(Behaviour { cost: 0.01, success_rate: 0.9, ..Behaviour::version("v2") }).await.unwrap();
    let ctl = Controller::builder().token("t0ken").start().await.unwrap();
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 100, "controller": {"token": "t0ken"}})).start().await.unwrap();
    let load = Load::start(Traffic::new(envoy.listener, HOST), 150, 1_000);
    // A judge scoring both versions alike, through the OTLP receiver.
    let url = ctl.url("/v1/logs");
    let judge = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for n in 0u64.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let score = if n % 2 == 0 { 4.5 } else { 3.5 };
            let records = vec![otlp_evaluation("support", "v1", score, "pass"), otlp_evaluation("support", "v2", score, "pass")];
            let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]});
            let _ = http.post(&url).bearer_auth("t0ken").header("content-type", "application/json").body(body.to_string()).send().await;
        }
    });
    ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 1, "min_requests": 30,
        "analysis": {"interval_seconds": 0.25, "failure_limit": 1},
        "gates": [{"metric": "error_rate", "max_increase": 0.05}, {"metric": "task_success_rate", "max_decrease": 0.1},
                  {"metric": "evaluation_score", "name": "helpfulness", "max_decrease": 0.5}]
    })).await.unwrap();
    let done = ctl.wait_phase("support", "succeeded", Duration::from_secs(60)).await.unwrap();
    judge.abort();
    drop(load);

    // `fledge rollouts export support > support.jsonl`
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("support.jsonl");
    let out = std::process::Command::new(fledge_integration::fledge_bin())
        .args(["rollouts", "--server", &ctl.url(""), "--token", "t0ken", "export", "support"])
        .stdout(std::fs::File::create(&file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line does not parse ({e}): {l}"))).collect();
    assert_eq!(lines.first().map(|l| l["type"].clone()), Some(json!("rollout")));
    assert_eq!(lines.last().map(|l| l["type"].clone()), Some(json!("end")));

    // The status, read now, is the one the export was taken of: a finished rollout judges no more.
    let status = ctl.get("/v1/rollouts/support").await.unwrap();
    assert_eq!(status["status"], done["status"]);
    let totals = &status["status"]["totals"];
    assert_eq!(&lines[0]["rollout"]["status"]["totals"], totals);
    let intervals: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "interval").collect();
    assert_eq!(intervals.len() as u64, 2 * totals["intervals"].as_u64().unwrap(), "a line per interval and version");
    for version in ["v1", "v2"] {
        let mine: Vec<&&serde_json::Value> = intervals.iter().filter(|l| l["version"] == version).collect();
        let sum = |field: &str| mine.iter().map(|l| l["counts"][field].as_f64().unwrap()).sum::<f64>();
        let eval_sum = |field: &str| mine.iter().filter_map(|l| l["counts"]["evaluations"]["helpfulness"][field].as_f64()).sum::<f64>();
        let want = &totals["versions"][version];
        for field in ["requests", "errors", "status_2xx", "outcome_success", "outcome_failure", "cost_count", "policy_violations", "latency_samples"] {
            assert_eq!(sum(field), want[field].as_f64().unwrap(), "{version} {field}");
        }
        assert!((sum("cost_sum") - want["cost_sum"].as_f64().unwrap()).abs() < 1e-9, "{version} cost_sum");
        for field in ["count", "labelled", "pass"] {
            assert_eq!(eval_sum(field), want["evaluations"]["helpfulness"][field].as_f64().unwrap(), "{version} helpfulness {field}");
        }
        assert!((eval_sum("score_sum") - want["evaluations"]["helpfulness"]["score_sum"].as_f64().unwrap()).abs() < 1e-9);
        assert!(sum("requests") > 30.0 && sum("outcome_success") > 0.0 && eval_sum("count") > 0.0, "{version} was judged on real traffic");
    }
    // The documented summing script agrees.
    let script = fledge_integration::workspace_root().join("integration/scripts/export_totals.py");
    let out = std::process::Command::new("python3").arg(&script).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summed["intervals"], totals["intervals"]);
    for version in ["v1", "v2"] {
        let (mine, want) = (&summed["versions"][version], &totals["versions"][version]);
        assert_eq!(mine["requests"].as_f64(), want["requests"].as_f64(), "{version}");
        assert_eq!(mine["evaluations.helpfulness.count"].as_f64(), want["evaluations"]["helpfulness"]["count"].as_f64(), "{version}");
    }
    // The judged requests are among those the agents answered (traffic after the end is not judged).
    let judged = |v: &str| totals["versions"][v]["requests"].as_u64().unwrap();
    assert!(judged("v1") <= v1.requests() && judged("v2") <= v2.requests());
    let events: Vec<&str> = lines.iter().filter(|l| l["type"] == "event").map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(events, ["created", "started", "advanced", "promoted"]);
    assert!(lines.iter().filter(|l| l["type"] == "event").all(|l| l.get("verdict").is_some()));
    let missing = std::process::Command::new(fledge_integration::fledge_bin())
        .args(["rollouts", "--server", &ctl.url(""), "export", "nope"])
        .output()
        .unwrap();
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    println!("export: {} lines, {} intervals; judged v1 {} / v2 {} requests", lines.len(), totals["intervals"], judged("v1"), judged("v2"));
}
