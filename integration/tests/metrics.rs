//! `GET /metrics` of the real controller, with a real Envoy and the real filter reporting a judged
//! automated rollout: `promtool check metrics` (Prometheus' own linter) accepts it, and its values are
//! the status's — phase, weight, step, proxies confirmed and active, every gate's statistic and
//! threshold — and the counters move with what happened.

use std::collections::BTreeMap;
use std::time::Duration;

use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{assert_eventually, Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};

const HOST: &str = "support-agent";

/// One sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The text format's samples (comments skipped). Label values here need no unescaping beyond `\"`.
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {l:?}"))),
                None => (series, ""),
            };
            let mut map = BTreeMap::new();
            let mut rest = labels;
            while let Some((key, after)) = rest.split_once("=\"") {
                let mut value = String::new();
                let mut chars = after.char_indices();
                let mut end = after.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                map.insert(key.trim_start_matches(',').to_string(), value);
                rest = &after[end..];
            }
            Sample { name: name.to_string(), labels: map, value: value.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")) }
        })
        .collect()
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let found: Vec<&Sample> = all
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.value),
        other => anyhow::bail!("{} samples of {name}{labels:?}", other.len()),
    }
}

fn promtool() -> std::path::PathBuf {
    let found = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("promtool")).find(|p| p.exists()));
    found.expect("promtool is missing: run `make setup-promtool` (make test installs it)")
}

/// `promtool check metrics` on `text`: its verdict and what it printed.
fn check_metrics(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

async fn scrape(ctl: &Controller) -> anyhow::Result<String> {
    let resp = reqwest::get(ctl.url("/metrics")).await?;
    anyhow::ensure!(resp.status() == 200, "GET /metrics: {}", resp.status());
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    anyhow::ensure!(ct == "text/plain; version=0.0.4", "content-type {ct}");
    Ok(resp.text().await?)
}

/// The scrape agrees with the status taken around it: the rollout's phase (one phase at 1), weight as
/// a ratio, step, proxies, and each gate's detector and proof with their thresholds.
fn matches_status(all: &[Sample], status: &Value, health: &Value) -> anyhow::Result<()> {
    let r = [("rollout", "support")];
    let s = &status["status"];
    let phase = s["phase"].as_str().unwrap_or_default();
    anyhow::ensure!(value(all, "fledge_rollout_phase", &[("rollout", "support"), ("phase", phase)])? == 1.0, "phase {phase} not 1");
    let ones = all.iter().filter(|x| x.name == "fledge_rollout_phase" && x.value == 1.0).count();
    anyhow::ensure!(ones == 1, "{ones} phases at 1");
    let weight = s["weight"].as_f64().unwrap_or(-1.0) / 100.0;
    anyhow::ensure!(value(all, "fledge_rollout_canary_weight_ratio", &r)? == weight, "weight ratio vs {weight}");
    anyhow::ensure!(Some(value(all, "fledge_rollout_step", &r)?) == s["step"].as_f64(), "step vs {}", s["step"]);
    anyhow::ensure!(value(all, "fledge_rollout_steps", &r)? == 2.0);
    anyhow::ensure!(Some(value(all, "fledge_rollout_generation", &r)?) == s["generation"].as_f64());
    anyhow::ensure!(Some(value(all, "fledge_rollout_consecutive_failures", &r)?) == s["consecutive_failures"].as_f64());
    let c = &status["live"]["confirmation"];
    anyhow::ensure!(Some(value(all, "fledge_rollout_proxies_active", &r)?) == c["proxies"].as_f64(), "proxies vs {c}");
    anyhow::ensure!(Some(value(all, "fledge_rollout_proxies_confirmed", &r)?) == c["confirmed"].as_f64(), "confirmed vs {c}");
    anyhow::ensure!(Some(value(all, "fledge_config_polls_held", &[])?) == health["held_polls"].as_f64(), "held polls vs {health}");
    anyhow::ensure!(Some(value(all, "fledge_proxy_workers", &[])?) == health["workers"].as_f64(), "workers vs {health}");
    let gates = s["last_verdict"]["gates"].as_array().cloned().unwrap_or_default();
    anyhow::ensure!(!gates.is_empty(), "not judged yet");
    for (i, g) in gates.iter().enumerate() {
        let gate = format!("{}_{i}", g["metric"].as_str().unwrap_or_default());
        let failing = f64::from(u8::from(g["status"] == "fail"));
        anyhow::ensure!(value(all, "fledge_gate_failing", &[("rollout", "support"), ("gate", &gate)])? == failing, "{gate} failing");
        for (kind, field) in [("detector", "evidence"), ("proof", "proof")] {
            let Some(e) = g.get(field).filter(|e| !e.is_null()) else { continue };
            let labels = [("rollout", "support"), ("gate", gate.as_str()), ("kind", kind), ("test", e["test"].as_str().unwrap_or_default())];
            if [&e["value"], &e["threshold"]].iter().any(|v| v.as_f64().is_none_or(|v| v.abs() == f64::MAX)) {
                // Not bounded yet (the verdict holds it at f64::MAX): left out of the scrape.
                anyhow::ensure!(value(all, "fledge_gate_statistic", &labels).is_err(), "{gate} {kind} shown unbounded");
                continue;
            }
            anyhow::ensure!(Some(value(all, "fledge_gate_statistic", &labels)?) == e["value"].as_f64(), "{gate} {kind} statistic vs {e}");
            anyhow::ensure!(Some(value(all, "fledge_gate_threshold", &labels)?) == e["threshold"].as_f64(), "{gate} {kind} threshold vs {e}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_and_they_match_the_status() {
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let ctl = Controller::builder().start().await.unwrap();
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, json!({"report_interval_ms": 200})).start().await.unwrap();
    ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [50, 100], "step_seconds": 3600,
        "min_requests": 50, "analysis": {"interval_seconds": 0.2},
    })).await.unwrap();
    let load = Load::start(Traffic::new(envoy.listener, HOST), 100, 1_000);
    ctl.wait_phase("support", "progressing", Duration::from_secs(5)).await.unwrap();
    ctl.wait_confirmed("support", envoy.contexts, Duration::from_secs(10)).await.unwrap();
    ctl.post("/v1/rollouts/support/outcomes", json!([{"version": "v2", "outcome": "success"}, {"version": "v1", "outcome": "success"}])).await.unwrap();
    // Judged on real traffic: every gate has a detector statistic.
    assert_eventually!(Duration::from_secs(10), "the canary is judged on both versions' traffic", async {
        let s = ctl.get("/v1/rollouts/support").await?;
        let gates = s["status"]["last_verdict"]["gates"].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(gates.len() == 4 && gates.iter().all(|g| g["canary_n"].as_u64() > Some(0) && !g["evidence"].is_null()), "{gates:?}");
        Ok(())
    });
    // Paused, the verdict stands still while the proxies keep reporting: the scrape must say what the
    // status says.
    ctl.post("/v1/rollouts/support/pause", json!({})).await.unwrap();
    let (text, _) = assert_eventually!(Duration::from_secs(10), "a scrape between two identical statuses matches them", async {
        let before = ctl.get("/v1/rollouts/support").await?;
        let health = ctl.get("/healthz").await?;
        let text = scrape(&ctl).await?;
        let after = ctl.get("/v1/rollouts/support").await?;
        anyhow::ensure!(before["status"] == after["status"] && before["live"]["confirmation"]["confirmed"] == after["live"]["confirmation"]["confirmed"], "the status moved");
        matches_status(&samples(&text), &after, &health)?;
        Ok(text)
    });
    let (ok, lint) = check_metrics(&text);
    assert!(ok && lint.trim().is_empty(), "promtool check metrics:\n{lint}\n---\n{text}");
    let all = samples(&text);
    assert_eq!(value(&all, "fledge_rollout_phase", &[("phase", "paused")]).unwrap(), 1.0);
    assert_eq!(value(&all, "fledge_rollout_info", &[("rollout", "support"), ("stable", "v1"), ("canary", "v2")]).unwrap(), 1.0);
    assert_eq!(value(&all, "fledge_rollout_proxies_confirmed", &[("rollout", "support")]).unwrap(), 1.0, "one Envoy");
    assert!(value(&all, "fledge_reports_received_total", &[]).unwrap() > 0.0);
    assert_eq!(value(&all, "fledge_outcomes_received_total", &[]).unwrap(), 2.0);
    assert_eq!(value(&all, "fledge_promotions_total", &[("rollout", "support")]).unwrap(), 0.0);
    drop(load);

    // A promotion counts, and the new phase and versions show at the next scrape.
    ctl.post("/v1/rollouts/support/promote", json!({})).await.unwrap();
    let all = samples(&scrape(&ctl).await.unwrap());
    assert_eq!(value(&all, "fledge_promotions_total", &[("rollout", "support")]).unwrap(), 1.0);
    assert_eq!(value(&all, "fledge_rollbacks_total", &[("rollout", "support")]).unwrap(), 0.0);
    assert_eq!(value(&all, "fledge_rollout_phase", &[("phase", "succeeded")]).unwrap(), 1.0);
    assert_eq!(value(&all, "fledge_rollout_canary_weight_ratio", &[("rollout", "support")]).unwrap(), 0.0);
    assert_eq!(value(&all, "fledge_rollout_info", &[("stable", "v2"), ("canary", "v1")]).unwrap(), 1.0);
    println!("{}", text.lines().filter(|l| l.starts_with("fledge_gate_") || l.starts_with("fledge_rollout_")).collect::<Vec<_>>().join("\n"));
}

/// promtool's linter is not a rubber stamp: a counter without `_total` and a millisecond unit fail it.
#[test]
fn promtool_refuses_what_prometheus_naming_forbids() {
    let (ok, lint) = check_metrics("# HELP fledge_rollbacks Rollbacks.\n# TYPE fledge_rollbacks counter\nfledge_rollbacks 1\n");
    assert!(!ok && lint.contains("_total"), "{lint}");
    let (ok, lint) = check_metrics("# HELP fledge_latency_milliseconds Latency.\n# TYPE fledge_latency_milliseconds gauge\nfledge_latency_milliseconds 1\n");
    assert!(!ok && lint.contains("base unit"), "{lint}");
}
