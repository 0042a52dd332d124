//! Issue 9: the sidecar's exact config. A real Envoy gets fledge the way an Istio sidecar does — over
//! an extension config source (`config_discovery`, here `path_config_source`: a file swapped
//! atomically, where istio-agent would serve ECDS) — as the `TypedExtensionConfig` that istiod builds
//! from `manifests/istio/wasmplugin.yaml` and istio-agent rewrites. That resource is generated here from
//! the committed file, by the same rules (see `istiod` and `istio_agent` below), never written by hand.
//! The controller is the real one, reached through Istio's cluster name for its Service.
//!
//! Also: `GET /v1/filter.wasm` serves the built module, and the EnvoyFilter's patch, spliced into a
//! bootstrap, passes `envoy --mode validate`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fledge_core::rollout::default_salt;
use fledge_core::{Bucket, Weight};
use fledge_integration::{assert_eventually, envoy_bin, wasm_path, workspace_root, Agent, Behaviour, Controller, Envoy};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CONTROLLER_CLUSTER: &str = "outbound|7070||fledge.fledge-system.svc.cluster.local";
/// The caller's sidecar, as Istio names its Envoy node.
const NODE_ID: &str = "sidecar~10.244.0.17~support-frontend-7d9f8-abcde.agents~agents.svc.cluster.local";
const HOST: &str = "support-agent";
const ROLLOUT: &str = "support";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// The first document of a manifest file, as JSON.
fn manifest(file: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join("manifests/istio").join(file)).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text.split("\n---").next().unwrap()).unwrap();
    serde_json::to_value(doc).unwrap()
}

/// What istiod sends for a WasmPlugin over ECDS: `TypedExtensionConfig` named
/// `extensions.istio.io/wasmplugin/<ns>.<name>` holding a Wasm filter whose code is still remote.
fn istiod(plugin: &Value) -> Value {
    let (ns, name) = (plugin["metadata"]["namespace"].as_str().unwrap(), plugin["metadata"]["name"].as_str().unwrap());
    let spec = &plugin["spec"];
    assert!(spec["type"].is_null() || spec["type"] == "HTTP", "an HTTP plugin");
    let mut config = json!({
        "name": format!("{ns}.{name}"),
        "root_id": spec["pluginName"],
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"remote": {"http_uri": {"uri": spec["url"], "timeout": "30s", "cluster": "_"},
                                "sha256": spec["sha256"].as_str().unwrap_or("")}},
        },
    });
    // pluginConfig as compact JSON in a StringValue (istiod: protomarshal.ToJSON of the Struct).
    if spec["pluginConfig"].as_object().is_some_and(|o| !o.is_empty()) {
        config["configuration"] = json!({
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": serde_json::to_string(&spec["pluginConfig"]).unwrap(),
        });
    }
    let policy = match spec["failStrategy"].as_str() {
        Some("FAIL_CLOSE") => Some("FAIL_CLOSED"),
        Some("FAIL_OPEN") => Some("FAIL_OPEN"),
        Some("FAIL_RELOAD") => Some("FAIL_RELOAD"),
        None => None,
        Some(other) => panic!("failStrategy {other}"),
    };
    if let Some(p) = policy {
        config["failure_policy"] = json!(p);
    }
    json!({
        "name": format!("extensions.istio.io/wasmplugin/{ns}.{name}"),
        "typed_config": {"@type": WASM_TYPE, "config": config},
    })
}

/// What istio-agent makes of it: fetches the remote module (here `fledge.fledge-system:7070` is the
/// real controller on loopback), checks its sha256, stores it and points the code at the local file.
/// When the module cannot be had, the filter becomes RBAC: allow-all for FAIL_OPEN, deny-all otherwise.
async fn istio_agent(resource: &Value, controller: &Controller, cache: &Path) -> Value {
    let mut out = resource.clone();
    let config = &resource["typed_config"]["config"];
    let remote = &config["vm_config"]["code"]["remote"];
    let uri = remote["http_uri"]["uri"].as_str().unwrap();
    let path = uri.strip_prefix("http://fledge.fledge-system:7070").expect("the module comes from the controller");
    let want = remote["sha256"].as_str().unwrap_or("");
    let fetched = match reqwest::get(controller.url(path)).await {
        Ok(r) if r.status().is_success() => r.bytes().await.ok(),
        _ => None,
    };
    let module = fetched.filter(|m| want.is_empty() || hex(&Sha256::digest(m)) == want);
    match module {
        Some(m) => {
            let file = cache.join(format!("{}.wasm", hex(&Sha256::digest(&m))));
            std::fs::write(&file, &m).unwrap();
            out["typed_config"]["config"]["vm_config"]["code"] = json!({"local": {"filename": file}});
        }
        None => {
            let open = config["failure_policy"] == "FAIL_OPEN";
            out["typed_config"] = if open {
                json!({"@type": RBAC_TYPE, "rules_stat_prefix": "wasm-default-allow"})
            } else {
                json!({"@type": RBAC_TYPE, "rules": {}, "rules_stat_prefix": "wasm-default-deny"})
            };
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes the extension config where Envoy watches for it: to a temporary name, then renamed over the
/// old one, as istio-agent and the kubelet swap files (Envoy sees one atomic move).
fn publish(file: &Path, resource: &Value) {
    let mut r = resource.clone();
    r["@type"] = json!("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig");
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&json!({"resources": [r]})).unwrap()).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// Stand-ins for a sidecar's own HTTP filters (pass-through CORS filters under Istio's names), with
/// fledge's placed where the WasmPlugin's `phase` puts it: AUTHN first, AUTHZ before the authorization
/// filter, STATS before Istio's stats, unspecified last before the router.
fn istio_chain(phase: Option<&str>) -> (Vec<Value>, Vec<Value>) {
    let standin = |name: &str| json!({"name": name, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}});
    let chain = ["istio.metadata_exchange", "istio_authn", "envoy.filters.http.rbac", "istio.stats"];
    let at = match phase {
        Some("AUTHN") => 1,
        Some("AUTHZ") => 2,
        Some("STATS") => 3,
        None | Some("UNSPECIFIED_PHASE") => 4,
        Some(other) => panic!("phase {other}"),
    };
    (chain[..at].iter().map(|n| standin(n)).collect(), chain[at..].iter().map(|n| standin(n)).collect())
}

/// The inclusion prefixes of the shipped `proxyStatsMatcher` (manifests/istio/mesh-config.yaml).
fn proxy_stats_prefixes() -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join("manifests/istio/mesh-config.yaml")).unwrap();
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let v = serde_json::to_value(v).unwrap();
    v["meshConfig"]["defaultConfig"]["proxyStatsMatcher"]["inclusionPrefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

fn predicted(key: &str, weight: f64) -> &'static str {
    let w = Weight::try_from_percent(weight).unwrap();
    if w.admits(Bucket::of_key(key.as_bytes(), default_salt(ROLLOUT))) {
        "v2"
    } else {
        "v1"
    }
}

struct Sidecar {
    ctl: Controller,
    envoy: Envoy,
    ecds_file: PathBuf,
    cache: tempfile::TempDir,
    _v1: Agent,
    _v2: Agent,
    http: reqwest::Client,
}

impl Sidecar {
    async fn start(plugin: &Value) -> Self {
        let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
        let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
        let ctl = Controller::builder().start().await.unwrap();
        let cache = tempfile::tempdir().unwrap();
        let ecds_dir = cache.path().join("ecds");
        std::fs::create_dir(&ecds_dir).unwrap();
        let ecds_file = ecds_dir.join("fledge.json");
        let resource = istio_agent(&istiod(plugin), &ctl, cache.path()).await;
        publish(&ecds_file, &resource);
        let (before, after) = istio_chain(plugin["spec"]["phase"].as_str());
        let envoy = Envoy::builder()
            .route(HOST, &[("v1", v1.addr), ("v2", v2.addr)])
            .controller(ctl.addr)
            .controller_cluster(CONTROLLER_CLUSTER)
            .node_id(NODE_ID)
            .wasm_from_discovery(resource["name"].as_str().unwrap(), ecds_file.clone())
            .filters_around(before, after)
            .stats_inclusion_prefixes(proxy_stats_prefixes())
            .start()
            .await
            .unwrap();
        Sidecar { ctl, envoy, ecds_file, cache, _v1: v1, _v2: v2, http: reqwest::Client::new() }
    }

    /// One request keyed by the given headers: (status, served by).
    async fn send(&self, headers: &[(&str, &str)]) -> anyhow::Result<(u16, Option<String>)> {
        let mut rb = self.http.get(format!("http://{}/task", self.envoy.listener)).header("host", HOST);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await?;
        let served = r.headers().get("x-served-by").and_then(|v| v.to_str().ok()).map(str::to_string);
        let status = r.status().as_u16();
        r.bytes().await?;
        Ok((status, served))
    }

    /// The HTTP filter chain as Envoy holds it (admin config dump).
    async fn filter_names(&self) -> Vec<String> {
        let all: Value = reqwest::get(format!("http://{}/config_dump", self.envoy.admin)).await.unwrap().json().await.unwrap();
        let listeners = all["configs"].as_array().unwrap().iter().find(|c| c["@type"].as_str().unwrap_or("").contains("ListenersConfigDump")).unwrap();
        let hcm = &listeners["static_listeners"][0]["listener"]["filter_chains"][0]["filters"][0]["typed_config"];
        hcm["http_filters"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect()
    }
}

/// Routing, push, telemetry, the proxy id and an updated pluginConfig, through the WasmPlugin as a
/// sidecar receives it.
#[tokio::test]
async fn sidecar_runs_the_wasmplugin_from_its_extension_config() {
    let mut plugin = manifest("wasmplugin.yaml");
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_OPEN");
    assert_eq!(plugin["spec"]["pluginConfig"]["controller"]["cluster"], CONTROLLER_CLUSTER);
    assert!(plugin["spec"]["pluginConfig"]["proxy_id"].is_null(), "the proxy id comes from the node id");
    // Pinned as docs/istio.md says: the sha256 the controller publishes, which istio-agent checks.
    let probe = Controller::builder().start().await.unwrap();
    let sum = reqwest::get(probe.url("/v1/filter.wasm.sha256")).await.unwrap().text().await.unwrap();
    plugin["spec"]["sha256"] = json!(sum.trim());
    // Reports every 100 ms keep the test short; everything else is the committed pluginConfig.
    plugin["spec"]["pluginConfig"]["report_interval_ms"] = json!(100);

    let generated = istiod(&plugin);
    assert_eq!(generated["name"], "extensions.istio.io/wasmplugin/agents.fledge");
    assert_eq!(generated["typed_config"]["config"]["root_id"], "fledge");
    assert_eq!(generated["typed_config"]["config"]["failure_policy"], "FAIL_OPEN");
    let s = Sidecar::start(&plugin).await;
    let served = &s.ecds_file;
    let on_disk: Value = serde_json::from_slice(&std::fs::read(served).unwrap()).unwrap();
    let cfg = &on_disk["resources"][0]["typed_config"]["config"];
    assert_eq!(cfg["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert!(cfg["vm_config"]["code"]["local"]["filename"].as_str().unwrap().starts_with(s.cache.path().to_str().unwrap()));
    let configuration: Value = serde_json::from_str(cfg["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(configuration, plugin["spec"]["pluginConfig"]);

    // The phase's position: after Istio's authorization, before its stats.
    let names = s.filter_names().await;
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap_or_else(|| panic!("{n} not in {names:?}"));
    let fledge = pos("extensions.istio.io/wasmplugin/agents.fledge");
    assert!(pos("envoy.filters.http.rbac") < fledge && fledge < pos("istio.stats"), "{names:?}");

    // Routing and push: a weight set at the controller reaches the filter and routes by the sticky key.
    s.ctl.put_rollout(ROLLOUT, json!({"hosts": [HOST], "stable": "v1", "canary": "v2", "weight": 50})).await.unwrap();
    let contexts = s.envoy.contexts;
    let confirmed = s.ctl.wait_confirmed(ROLLOUT, contexts, Duration::from_secs(15)).await.unwrap();
    let details = confirmed["live"]["confirmation"]["details"].as_array().unwrap().clone();
    assert_eq!(details.len(), 1, "{details:?}");
    assert_eq!(details[0]["proxy"], NODE_ID, "the filter names itself by the sidecar's node id");
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    assert_eventually!(Duration::from_secs(10), "routing by x-user-id at 50 %", async {
        for u in &users {
            let (status, by) = s.send(&[("x-user-id", u)]).await?;
            anyhow::ensure!(status == 200 && by.as_deref() == Some(predicted(u, 50.0)), "{u}: {status} {by:?}");
        }
        Ok(())
    });

    // Telemetry: the controller counts both versions, and the counters survive Istio's stats matcher.
    assert_eventually!(Duration::from_secs(10), "per-version telemetry at the controller", async {
        let v = s.ctl.get(&format!("/v1/rollouts/{ROLLOUT}")).await?;
        let w = &v["live"]["window"];
        let (a, b) = (w["stable"]["requests"].as_u64().unwrap_or(0), w["canary"]["requests"].as_u64().unwrap_or(0));
        anyhow::ensure!(a + b >= users.len() as u64 && a > 0 && b > 0, "{w}");
        Ok(())
    });
    assert_eventually!(Duration::from_secs(10), "fledge counters kept by proxyStatsMatcher", async {
        let prom = s.envoy.prometheus().await?;
        anyhow::ensure!(prom.contains(r#"fledge_requests_total{fledge_rollout="support",fledge_version="v2"}"#), "no fledge counters");
        anyhow::ensure!(!prom.contains("envoy_cluster_upstream_rq_total"), "the matcher drops what it does not include");
        Ok(())
    });

    // An updated resource (new pluginConfig: sticky by tenant), swapped atomically under traffic.
    let pairs: Vec<(String, String)> = (0..400)
        .map(|i| (format!("u{i}"), format!("tenant-{i}")))
        .filter(|(u, t)| predicted(u, 50.0) != predicted(t, 50.0))
        .take(20)
        .collect();
    let failed = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (failed, sent, stop) = (failed.clone(), sent.clone(), stop.clone());
        let (url, http) = (format!("http://{}/task", s.envoy.listener), s.http.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let ok = matches!(http.get(&url).header("host", HOST).header("x-user-id", "load").send().await, Ok(r) if r.status() == 200);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    plugin["spec"]["pluginConfig"]["sticky"] = json!(["header:x-tenant-id"]);
    let updated = istio_agent(&istiod(&plugin), &s.ctl, s.cache.path()).await;
    publish(&s.ecds_file, &updated);
    assert_eventually!(Duration::from_secs(15), "the new pluginConfig applies (sticky by tenant)", async {
        for (u, t) in &pairs {
            let (status, by) = s.send(&[("x-user-id", u), ("x-tenant-id", t)]).await?;
            anyhow::ensure!(status == 200 && by.as_deref() == Some(predicted(t, 50.0)), "{u}/{t}: {status} {by:?}");
        }
        Ok(())
    });
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("{sent} requests during the update, {failed} failed");
    assert!(sent > 10, "load ran: {sent}");
    assert_eq!(failed, 0, "requests failed while the extension config was swapped");
    assert!(!s.envoy.log().contains("[critical]"), "{}", s.envoy.log_tail(30));
}

/// A module that cannot be fetched (here: its sha256 does not match) is replaced as istio-agent does:
/// FAIL_OPEN gives RBAC allow-all — requests pass without fledge and take the default route, stable —
/// and FAIL_CLOSE gives RBAC deny-all: 403.
#[tokio::test]
async fn unfetchable_module_fails_open_or_closed_like_istio_agent() {
    for (strategy, want_status) in [("FAIL_OPEN", 200), ("FAIL_CLOSE", 403)] {
        let mut plugin = manifest("wasmplugin.yaml");
        plugin["spec"]["failStrategy"] = json!(strategy);
        plugin["spec"]["sha256"] = json!("0".repeat(64));
        let s = Sidecar::start(&plugin).await;
        let on_disk: Value = serde_json::from_slice(&std::fs::read(&s.ecds_file).unwrap()).unwrap();
        assert_eq!(on_disk["resources"][0]["typed_config"]["@type"], RBAC_TYPE, "{strategy}");
        s.ctl.put_rollout(ROLLOUT, json!({"hosts": [HOST], "stable": "v1", "canary": "v2", "weight": 100})).await.unwrap();
        for u in ["alice", "bob", "carol"] {
            let (status, by) = s.send(&[("x-user-id", u)]).await.unwrap();
            assert_eq!(status, want_status, "{strategy}: {u}");
            if want_status == 200 {
                assert_eq!(by.as_deref(), Some("v1"), "{strategy}: without fledge the default route is stable");
            }
        }
        let prom = s.envoy.prometheus().await.unwrap();
        assert!(!prom.contains("fledge_requests_total"), "{strategy}: no filter ran");
    }
}

/// `GET /v1/filter.wasm` is the built module, and both published digests are its sha256.
#[tokio::test]
async fn controller_serves_the_module_it_was_built_with() {
    let ctl = Controller::builder().start().await.unwrap();
    let r = reqwest::get(ctl.url("/v1/filter.wasm")).await.unwrap();
    assert_eq!(r.status(), 200, "built without the filter? run `make build`");
    assert_eq!(r.headers()["content-type"], "application/wasm");
    let header = r.headers()["x-fledge-sha256"].to_str().unwrap().to_string();
    let body = r.bytes().await.unwrap();
    let built = std::fs::read(wasm_path()).unwrap();
    assert!(body[..] == built[..], "served {} bytes, built {} bytes", body.len(), built.len());
    let sum = hex(&Sha256::digest(&built));
    assert_eq!(header, sum);
    let text = reqwest::get(ctl.url("/v1/filter.wasm.sha256")).await.unwrap().text().await.unwrap();
    assert_eq!(text, format!("{sum}\n"));
}

/// `envoy --mode validate` on a sidecar-like bootstrap whose outbound HTTP connection manager runs
/// `filter` before the router (where the EnvoyFilter's INSERT_BEFORE puts it): (valid, Envoy's output).
fn validate_with_filter(filter: Value) -> (bool, String) {
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    let bootstrap = json!({
        "node": {"id": NODE_ID, "cluster": "support-frontend.agents"},
        "static_resources": {
            "listeners": [{
                "name": "0.0.0.0_8080",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "outbound_0.0.0.0_8080",
                        "route_config": {"name": "8080", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "route": {"cluster": "outbound|8080|v1|support-agent.agents.svc.cluster.local"}}]}]},
                        "http_filters": [filter, router]
                    }
                }]}]
            }],
            "clusters": [
                {"name": CONTROLLER_CLUSTER, "type": "STRICT_DNS", "connect_timeout": "1s",
                 "load_assignment": {"cluster_name": CONTROLLER_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "fledge.fledge-system.svc.cluster.local", "port_value": 7070}}}}]}]}},
                {"name": "outbound|8080|v1|support-agent.agents.svc.cluster.local", "type": "STRICT_DNS", "connect_timeout": "1s",
                 "load_assignment": {"cluster_name": "outbound|8080|v1|support-agent.agents.svc.cluster.local", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "support-agent.agents.svc.cluster.local", "port_value": 8080}}}}]}]}}
            ]
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bootstrap.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&bootstrap).unwrap()).unwrap();
    let out = std::process::Command::new(envoy_bin())
        .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The EnvoyFilter's patch, spliced into a sidecar-like bootstrap as istiod would (INSERT_BEFORE the
/// router of the HTTP connection manager), passes `envoy --mode validate`. The module path is the one
/// the image volume provides in the pod; here it is the built module.
#[test]
fn envoyfilter_patch_validates_in_envoy() {
    let ef = manifest("envoyfilter.yaml");
    let patch = &ef["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "HTTP_FILTER");
    assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
    assert_eq!(patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"], "envoy.filters.http.router");
    let mut filter = patch["patch"]["value"].clone();
    let code = &mut filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"];
    assert_eq!(code, "/var/local/lib/fledge/plugin.wasm");
    *code = json!(wasm_path());
    let configuration = filter["typed_config"]["config"]["configuration"]["value"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(configuration).unwrap();
    assert_eq!(parsed["controller"]["cluster"], CONTROLLER_CLUSTER);
    let (ok, text) = validate_with_filter(filter.clone());
    assert!(ok, "the EnvoyFilter patch does not validate:\n{text}");
    // A broken patch is refused by the same check (the validation can fail).
    filter["typed_config"]["config"]["failure_policy"] = json!("FAIL_SOMETIMES");
    let (ok, _) = validate_with_filter(filter);
    assert!(!ok, "a bad failure_policy must not validate");
}

/// Every failStrategy maps to the failure_policy istiod sets, and Envoy accepts each resulting filter.
#[test]
fn fail_strategies_map_to_envoy_failure_policies() {
    for (strategy, policy) in [("FAIL_CLOSE", "FAIL_CLOSED"), ("FAIL_OPEN", "FAIL_OPEN"), ("FAIL_RELOAD", "FAIL_RELOAD")] {
        let mut plugin = manifest("wasmplugin.yaml");
        plugin["spec"]["failStrategy"] = json!(strategy);
        let mut resource = istiod(&plugin);
        assert_eq!(resource["typed_config"]["config"]["failure_policy"], policy);
        resource["typed_config"]["config"]["vm_config"]["code"] = json!({"local": {"filename": wasm_path()}});
        let (ok, text) = validate_with_filter(json!({"name": resource["name"], "typed_config": resource["typed_config"]}));
        assert!(ok, "{strategy}: {text}");
    }
}

/// `trafficextension.yaml` (Istio ≥ 1.30) declares the same filter as `wasmplugin.yaml`: the same Wasm
/// config once istiod has built it (only the extension config's name differs), and Envoy accepts it.
#[test]
fn trafficextension_declares_the_same_filter() {
    let te = manifest("trafficextension.yaml");
    let wp = manifest("wasmplugin.yaml");
    // A TrafficExtension carries the WasmPlugin's module fields under `wasm`; selection and phase stay
    // at the top.
    let mut as_plugin = te.clone();
    let spec = as_plugin["spec"].as_object_mut().unwrap();
    let wasm = spec.remove("wasm").unwrap();
    for (k, v) in wasm.as_object().unwrap() {
        spec.insert(k.clone(), v.clone());
    }
    for k in ["selector", "match", "phase"] {
        assert_eq!(te["spec"][k], wp["spec"][k], "{k}");
    }
    let (from_te, from_wp) = (istiod(&as_plugin), istiod(&wp));
    assert_eq!(from_te["typed_config"], from_wp["typed_config"]);
    let mut filter = json!({"name": "extensions.istio.io/trafficextension/agents.fledge", "typed_config": from_te["typed_config"]});
    filter["typed_config"]["config"]["vm_config"]["code"] = json!({"local": {"filename": wasm_path()}});
    let (ok, text) = validate_with_filter(filter);
    assert!(ok, "{text}");
}
