//! Filter cost in Envoy: the same Envoy (one worker, direct responses) with no filter, with the empty
//! proxy-wasm filter, with the fledge filter routing an active 50 % rollout with telemetry on, the
//! same filter bound to that rollout without the response stamp (`rollout`, `response_header: false`),
//! and with the same rollout shadowing 10 % of stable's requests to an in-process sink.
//!
//! Per round and variant, in an order that rotates every round (A B C, B C A, …) so drift on a
//! shared machine hits every variant alike:
//! - saturation: wrk `-t1 -c16` for a few seconds → requests/s, and Envoy's CPU µs per request from
//!   `/proc/<pid>/stat` before and after (all of Envoy's threads, so it includes the main thread);
//! - latency: the in-process generator at a fixed rate well below saturation → p50 and p99.
//!
//! All variants get identical requests (`Host: bench-agent`, rotating `x-user-id`), so the client's
//! work is the same and only Envoy's differs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use fledge_integration::Controller;
use serde_json::json;

use crate::envoy::{DirectEnvoy, Filter, BENCH_HOST, CANARY, SHADOW_CLUSTER, STABLE};
use crate::load::{self, LoadSpec};
use crate::procstat::CpuMeter;
use crate::wrk::Wrk;

pub const ROLLOUT: &str = "bench";
pub const WEIGHT: f64 = 50.0;
/// The weight issue 13's budget is set at: a canary's first steps.
pub const LOW_WEIGHT: f64 = 5.0;
/// `stable_sampling` of the sampled variant: the rule the judgement's simulations check.
pub const SAMPLE_MULTIPLE: f64 = 4.0;
pub const SAMPLE_FLOOR: u64 = 50;
/// Percent of stable's requests the shadow variant copies.
pub const SHADOW_PERCENT: f64 = 10.0;

#[derive(Clone)]
pub struct Settings {
    pub rounds: usize,
    pub saturate: Duration,
    pub latency: Duration,
    pub latency_rate: f64,
    pub connections: usize,
    pub warmup: Duration,
    /// Use wrk for saturation (else the in-process generator, e.g. in the smoke test without wrk).
    pub use_wrk: bool,
    /// The memory run: distinct users, and the request counts at which the VM memory is read.
    pub memory_users: usize,
    pub memory_early: u64,
    pub memory_late: u64,
    /// Envoy start-ups per module in the wasm-opt comparison.
    pub startup_trials: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub rps: f64,
    pub cpu_us_per_request: f64,
    /// Envoy's CPU over the saturation run, in cores (≈1.0: its worker was the bottleneck).
    pub envoy_cores: f64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub latency_rps: f64,
}

pub struct VariantResult {
    pub key: &'static str,
    pub label: String,
    pub samples: Vec<Sample>,
}

pub struct FilterCost {
    pub variants: Vec<VariantResult>,
    pub settings: Settings,
    pub saturation_tool: String,
    pub telemetry: String,
    pub fledge_wasm: WasmInfo,
    pub empty_wasm: WasmInfo,
    pub canary_share: f64,
    /// Copies the shadow variant's sink received while measuring (proof the variant shadowed).
    pub shadow_copies: u64,
    /// The filter's VM memory over a long run across many users (or why it could not be measured).
    pub memory: Result<Memory, String>,
    /// The module after `wasm-opt`: size and Envoy's start-up (or why it could not be measured).
    pub wasm_opt: Result<crate::wasm_opt::WasmOpt, String>,
}

/// The filter's wasm memory (the VMs of the one worker and of the main thread) after `early_requests`
/// and after `late_requests` of a run across `users` distinct users.
#[derive(Debug, Clone)]
pub struct Memory {
    pub users: usize,
    pub early_requests: u64,
    pub early_bytes: u64,
    pub late_requests: u64,
    pub late_bytes: u64,
}

pub struct WasmInfo {
    pub path: PathBuf,
    pub bytes: u64,
}

impl FilterCost {
    pub fn variant(&self, key: &str) -> Option<&VariantResult> {
        self.variants.iter().find(|v| v.key == key)
    }

    /// Median over rounds of the per-round ratio of `a`'s to `b`'s throughput: rounds run back to back,
    /// so a ratio within a round cancels the machine's slow drift.
    pub fn rps_ratio(&self, a: &str, b: &str) -> f64 {
        crate::stats::median(&self.round_ratios(a, b))
    }

    /// Median Envoy CPU µs per request of variant `key` (NaN if absent).
    pub fn cpu_us(&self, key: &str) -> f64 {
        self.variant(key).map_or(f64::NAN, |v| crate::stats::median(&v.samples.iter().map(|s| s.cpu_us_per_request).collect::<Vec<_>>()))
    }

    /// `a`'s throughput over `b`'s, round by round.
    pub fn round_ratios(&self, a: &str, b: &str) -> Vec<f64> {
        let (Some(a), Some(b)) = (self.variant(a), self.variant(b)) else { return Vec::new() };
        a.samples.iter().zip(&b.samples).map(|(x, y)| x.rps / y.rps).collect()
    }
}

pub fn empty_wasm_path() -> PathBuf {
    std::env::var_os("FLEDGE_EMPTY_WASM").map(PathBuf::from).unwrap_or_else(|| {
        fledge_integration::workspace_root().join("target/wasm32-wasip1/wasm/fledge_empty_filter.wasm")
    })
}

fn wasm_info(path: PathBuf) -> anyhow::Result<WasmInfo> {
    let bytes = std::fs::metadata(&path)
        .with_context(|| format!("{} is missing (make build; cargo build --target wasm32-wasip1 --profile wasm -p fledge-empty-filter)", path.display()))?
        .len();
    Ok(WasmInfo { path, bytes })
}

/// Whether this build of the filter sends telemetry reports (issue 3); older builds only route.
fn telemetry_state(wasm: &std::path::Path) -> String {
    let bytes = std::fs::read(wasm).unwrap_or_default();
    if bytes.windows(b"/v1/reports".len()).any(|w| w == b"/v1/reports") {
        "on (per-request telemetry, reports every 1 s)".into()
    } else {
        "not in this filter build (routing only)".into()
    }
}

/// Sends keyed requests until the fledge Envoy routes by the rollout, and returns the canary share
/// of 200 distinct users (≈ the weight when the filter works).
/// Waits until the filter routes the bench host (the direct response names the version the route
/// header selected, and with `stamped` the response carries the same header), then returns the canary
/// share of 200 users.
async fn wait_for_routing(envoy: &DirectEnvoy, stamped: bool) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let url = format!("http://{}/task", envoy.listener);
    let version = |user: String| {
        let rb = http.get(&url).header("host", BENCH_HOST).header("x-user-id", user);
        async move {
            let resp = rb.send().await?;
            let v = resp.headers().get("x-fledge-version").and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = resp.text().await?;
            anyhow::Ok((v, body))
        }
    };
    let (_, _) = fledge_integration::eventually(Duration::from_secs(20), "fledge routes the bench host", || async {
        let (_, body) = version("probe".into()).await?;
        anyhow::ensure!(body == STABLE || body == CANARY, "not routed yet: {body:?}");
        Ok(())
    })
    .await?;
    let mut canary = 0;
    for i in 0..200 {
        let (v, body) = version(format!("user-{i}")).await?;
        // The route the header selected answered: the direct response body is the version.
        if stamped {
            anyhow::ensure!(v.as_deref() == Some(body.as_str()), "header {v:?} but route answered {body:?}");
        } else {
            anyhow::ensure!(v.is_none(), "response_header: false, yet the answer carries {v:?}");
        }
        anyhow::ensure!(body == STABLE || body == CANARY, "unexpected route {body:?}");
        canary += usize::from(body == CANARY);
    }
    Ok(canary as f64 / 200.0)
}

struct Running {
    key: &'static str,
    label: String,
    envoy: DirectEnvoy,
}

async fn saturate(settings: &Settings, wrk: Option<&Wrk>, envoy: &DirectEnvoy, duration: Duration) -> anyhow::Result<Sample> {
    let meter = CpuMeter::start(envoy.pid()?)?;
    let (requests, seconds, errors) = match wrk {
        Some(w) => {
            let r = w.run(envoy.listener, BENCH_HOST, settings.connections, duration).await?;
            (r.requests, r.seconds, r.errors)
        }
        None => {
            let r = load::run(spec(envoy, settings.connections, None, duration)).await?;
            (r.ok + r.bad_status, r.elapsed.as_secs_f64(), r.bad_status + r.errors)
        }
    };
    let cpu = meter.stop()?;
    Ok(Sample {
        rps: requests as f64 / seconds.max(1e-9),
        cpu_us_per_request: cpu.seconds * 1e6 / (requests.max(1) as f64),
        envoy_cores: cpu.cores,
        errors,
        ..Sample::default()
    })
}

fn spec(envoy: &DirectEnvoy, connections: usize, rate: Option<f64>, duration: Duration) -> LoadSpec {
    LoadSpec {
        target: envoy.listener,
        host: BENCH_HOST.into(),
        connections,
        rate,
        duration,
        users: 1000,
        user_prefix: "user".into(),
        stop: None,
    }
}

/// The gauge the filter keeps of its VMs' linear memory (`fledge_vm_memory_bytes`), from Envoy's admin.
async fn vm_memory(envoy: &DirectEnvoy) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("http://{}/stats?filter=fledge.vm_memory_bytes", envoy.admin)).await?.text().await?;
    text.lines()
        // Envoy prefixes the stats a wasm module defines with `wasmcustom.`.
        .find_map(|l| l.trim().trim_start_matches("wasmcustom.").strip_prefix("fledge.vm_memory_bytes:").and_then(|v| v.trim().parse().ok()))
        .with_context(|| format!("no fledge.vm_memory_bytes in {text:?}"))
}

/// Sends requests across `memory_users` distinct users until `memory_early` have been sent, reads the
/// VM memory, goes on to `memory_late`, and reads it again (each after a report interval, when the
/// gauge is next set).
async fn memory_run(settings: &Settings, envoy: &DirectEnvoy) -> anyhow::Result<Memory> {
    let wrk = if settings.use_wrk { Some(Wrk::new()?) } else { None };
    let mut sent = 0u64;
    let read_after = |target: u64| {
        let wrk = wrk.as_ref();
        async move {
            let mut n = 0u64;
            while n < target {
                // Runs sized by what is left at about the expected rate; at least one second each.
                let run = Duration::from_secs(((target - n) / 40_000).clamp(1, 30));
                let requests = match wrk {
                    Some(w) => w.run_users(envoy.listener, BENCH_HOST, settings.connections, run, settings.memory_users).await?.requests,
                    None => {
                        let r = load::run(LoadSpec { users: settings.memory_users, ..spec(envoy, settings.connections, None, run) }).await?;
                        r.ok + r.bad_status
                    }
                };
                anyhow::ensure!(requests > 0, "no requests sent");
                n += requests;
            }
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            anyhow::Ok((n, vm_memory(envoy).await?))
        }
    };
    let (n, early_bytes) = read_after(settings.memory_early).await?;
    sent += n;
    let early_requests = sent;
    let (n, late_bytes) = read_after(settings.memory_late.saturating_sub(sent)).await?;
    sent += n;
    eprintln!("  memory: {early_bytes} bytes after {early_requests} requests, {late_bytes} after {sent} ({} users)", settings.memory_users);
    Ok(Memory { users: settings.memory_users, early_requests, early_bytes, late_requests: sent, late_bytes })
}

pub async fn run(settings: &Settings) -> anyhow::Result<FilterCost> {
    let fledge_wasm = wasm_info(fledge_integration::wasm_path())?;
    let empty_wasm = wasm_info(empty_wasm_path())?;
    let telemetry = telemetry_state(&fledge_wasm.path);

    let ctl = Controller::builder().start().await?;
    ctl.put_rollout(ROLLOUT, json!({"hosts": [BENCH_HOST], "stable": STABLE, "canary": CANARY, "weight": WEIGHT}))
        .await?;
    let fledge = Filter::Fledge {
        path: fledge_wasm.path.clone(),
        config: json!({"report_interval_ms": 1000}),
        controller: ctl.addr,
        shadow_sink: None,
    };
    // The shadow variant: its own controller (the same rollout plus `shadow`), copies to an
    // in-process agent. The sink's CPU is not Envoy's, but it shares the machine.
    let sink = fledge_integration::Agent::start(fledge_integration::Behaviour::version(CANARY)).await?;
    let shadow_ctl = Controller::builder().start().await?;
    shadow_ctl
        .put_rollout(ROLLOUT, json!({"hosts": [BENCH_HOST], "stable": STABLE, "canary": CANARY, "weight": WEIGHT,
                                     "shadow": {"cluster": SHADOW_CLUSTER, "percent": SHADOW_PERCENT}}))
        .await?;
    let shadowing = Filter::Fledge {
        path: fledge_wasm.path.clone(),
        config: json!({"report_interval_ms": 1000}),
        controller: shadow_ctl.addr,
        shadow_sink: Some(sink.addr),
    };
    // The same rollout with the filter bound to it (no `:authority` read) and no response stamp.
    let lean = Filter::Fledge {
        path: fledge_wasm.path.clone(),
        config: json!({"report_interval_ms": 1000, "rollout": ROLLOUT, "response_header": false}),
        controller: ctl.addr,
        shadow_sink: None,
    };
    // Issue 13's budget: a rollout at 5 %, default, then with each change of the lean path added.
    let low_ctl = Controller::builder().start().await?;
    low_ctl.put_rollout(ROLLOUT, json!({"hosts": [BENCH_HOST], "stable": STABLE, "canary": CANARY, "weight": LOW_WEIGHT})).await?;
    let at = |config: serde_json::Value| Filter::Fledge { path: fledge_wasm.path.clone(), config, controller: low_ctl.addr, shadow_sink: None };
    let low = at(json!({"report_interval_ms": 1000}));
    let low_lean = at(json!({"report_interval_ms": 1000, "rollout": ROLLOUT, "response_header": false}));
    let low_sampled = at(json!({"report_interval_ms": 1000, "rollout": ROLLOUT, "response_header": false,
                               "stable_sampling": {"multiple": SAMPLE_MULTIPLE, "floor": SAMPLE_FLOOR}}));
    // A host without a rollout: the filter on its route, the controller's only rollout elsewhere.
    let other_ctl = Controller::builder().start().await?;
    other_ctl.put_rollout("other", json!({"hosts": ["other-agent"], "stable": STABLE, "canary": CANARY, "weight": WEIGHT})).await?;
    let no_rollout = Filter::Fledge { path: fledge_wasm.path.clone(), config: json!({"report_interval_ms": 1000}), controller: other_ctl.addr, shadow_sink: None };
    let variants = [
        ("plain", "no filter".to_string(), Filter::None),
        ("empty", "empty proxy-wasm filter".to_string(), Filter::Wasm { name: "empty", path: empty_wasm.path.clone() }),
        ("fledge", format!("fledge filter, rollout at {WEIGHT} %"), fledge),
        ("lean", format!("fledge filter, rollout at {WEIGHT} %, bound to it (`rollout`), `response_header: false`"), lean),
        ("shadow", format!("fledge filter, rollout at {WEIGHT} %, shadow {SHADOW_PERCENT} % of stable's requests"), shadowing),
        ("low", format!("fledge filter, rollout at {LOW_WEIGHT} %"), low),
        ("low_lean", format!("fledge filter, rollout at {LOW_WEIGHT} %, bound, `response_header: false`"), low_lean),
        ("low_sampled", format!("fledge filter, rollout at {LOW_WEIGHT} %, bound, `response_header: false`, `stable_sampling` {SAMPLE_MULTIPLE} × + {SAMPLE_FLOOR}"), low_sampled),
        ("no_rollout", "fledge filter, a host without a rollout".to_string(), no_rollout),
        ("no_rollout_off", "fledge filter, a host without a rollout, the filter disabled on its route".to_string(),
            Filter::FledgeDisabledHere { path: fledge_wasm.path.clone(), controller: other_ctl.addr }),
    ];
    // Started together: each Envoy compiles its wasm on start-up, which takes a while.
    let starting: Vec<_> = variants
        .into_iter()
        .map(|(key, label, filter)| {
            tokio::spawn(async move {
                let envoy = DirectEnvoy::start(&filter, 1).await.with_context(|| format!("starting envoy ({label})"))?;
                anyhow::Ok(Running { key, label, envoy })
            })
        })
        .collect();
    let mut running = Vec::new();
    for s in starting {
        running.push(s.await??);
    }
    let fledge_envoy = &running.iter().find(|r| r.key == "fledge").context("no fledge variant")?.envoy;
    let canary_share = wait_for_routing(fledge_envoy, true).await?;
    let lean_envoy = &running.iter().find(|r| r.key == "lean").context("no lean variant")?.envoy;
    wait_for_routing(lean_envoy, false).await?;
    let shadow_envoy = &running.iter().find(|r| r.key == "shadow").context("no shadow variant")?.envoy;
    wait_for_routing(shadow_envoy, true).await?;
    for (key, stamped) in [("low", true), ("low_lean", false), ("low_sampled", false)] {
        let envoy = &running.iter().find(|r| r.key == key).with_context(|| format!("no {key} variant"))?.envoy;
        wait_for_routing(envoy, stamped).await?;
    }
    // The host without a rollout passes untouched once the filter has the config that says so.
    other_ctl.wait_confirmed("other", 1, Duration::from_secs(20)).await?;
    let copies_before = sink.requests();

    let wrk = if settings.use_wrk { Some(Wrk::new()?) } else { None };
    let saturation_tool = match &wrk {
        Some(_) => format!("wrk -t1 -c{} (Lua: {} rotating x-user-id values)", settings.connections, 1000),
        None => format!("in-process generator, {} connections, closed loop (wrk not installed)", settings.connections),
    };
    // Warm-up: V8 compiles wasm lazily and tiers up hot functions; the first seconds are not steady state.
    if !settings.warmup.is_zero() {
        for r in &running {
            saturate(settings, wrk.as_ref(), &r.envoy, settings.warmup).await?;
        }
    }

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); running.len()];
    for round in 0..settings.rounds {
        for j in 0..running.len() {
            let i = (round + j) % running.len();
            let r = &running[i];
            let mut s = saturate(settings, wrk.as_ref(), &r.envoy, settings.saturate).await?;
            let lat = load::run(spec(&r.envoy, settings.connections, Some(settings.latency_rate), settings.latency)).await?;
            s.p50_us = lat.percentile_us(0.50);
            s.p99_us = lat.percentile_us(0.99);
            s.latency_rps = lat.achieved_rps();
            s.errors += lat.bad_status + lat.errors;
            eprintln!(
                "  round {}/{} {:<6} {:>8.0} rps  {:>5.1} µs CPU/req  envoy {:.2} cores  p50 {:.0} µs  p99 {:.0} µs @ {:.0} rps",
                round + 1,
                settings.rounds,
                r.key,
                s.rps,
                s.cpu_us_per_request,
                s.envoy_cores,
                s.p50_us,
                s.p99_us,
                s.latency_rps
            );
            samples[i].push(s);
        }
    }
    let shadow_copies = sink.requests().saturating_sub(copies_before);
    let budget_envoy = &running.iter().find(|r| r.key == "low_sampled").context("no low_sampled variant")?.envoy;
    let memory = memory_run(settings, budget_envoy).await.map_err(|e| format!("{e:#}"));
    let wasm_opt = crate::wasm_opt::run(&fledge_wasm.path, ctl.addr, settings.startup_trials).await.map_err(|e| format!("{e:#}"));
    let variants = running
        .into_iter()
        .zip(samples)
        .map(|(r, samples)| VariantResult { key: r.key, label: r.label, samples })
        .collect();
    Ok(FilterCost { variants, settings: settings.clone(), saturation_tool, telemetry, fledge_wasm, empty_wasm, canary_share, shadow_copies, memory, wasm_opt })
}
