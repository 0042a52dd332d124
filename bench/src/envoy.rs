//! A real Envoy whose routes end in `direct_response`: no backend, so the benchmark measures Envoy and
//! the filter, not an upstream. The harness's `Envoy::builder()` routes to backend clusters, hence this
//! bootstrap of our own.
//!
//! Every version the filter can pick has its own direct-response route (matched on the route header),
//! so the filter's decision really re-selects a route, as in production, and whatever it picks is
//! answered locally.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// The `:authority` the rollout owns and the load generators send.
pub const BENCH_HOST: &str = "bench-agent";
pub const STABLE: &str = "v1";
pub const CANARY: &str = "v2";
/// The cluster a shadowing rollout copies to.
pub const SHADOW_CLUSTER: &str = "bench_shadow";

#[derive(Clone)]
pub enum Filter {
    /// Only the router.
    None,
    /// A wasm module that is not fledge (the empty baseline).
    Wasm { name: &'static str, path: PathBuf },
    /// The fledge filter, with its plugin config and the controller it polls; `shadow_sink` is the
    /// address behind cluster [`SHADOW_CLUSTER`], where shadow copies go.
    Fledge { path: PathBuf, config: Value, controller: SocketAddr, shadow_sink: Option<SocketAddr> },
    /// The fledge filter in the chain, disabled on the bench host's routes (`typed_per_filter_config`,
    /// `disabled: true`), as manifests/envoy/envoy.yaml does for a host without a rollout.
    FledgeDisabledHere { path: PathBuf, controller: SocketAddr },
}

pub struct DirectEnvoy {
    pub listener: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

fn wasm_filter(name: &str, path: &std::path::Path, config: &Value) -> Value {
    json!({
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name, "root_id": name,
                "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": path}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config.to_string()}
            }
        }
    })
}

fn direct(body: &str) -> Value {
    json!({"status": 200, "body": {"inline_string": body}})
}

pub fn bootstrap(filter: &Filter) -> Value {
    let mut routes: Vec<Value> = [STABLE, CANARY]
        .iter()
        .map(|v| {
            json!({"match": {"prefix": "/", "headers": [{"name": "x-fledge-version", "string_match": {"exact": v}}]},
                   "direct_response": direct(v)})
        })
        .collect();
    routes.push(json!({"match": {"prefix": "/"}, "direct_response": direct("default")}));
    let mut bench_vhost = json!({"name": BENCH_HOST, "domains": [BENCH_HOST, format!("{BENCH_HOST}:*")], "routes": routes});
    if matches!(filter, Filter::FledgeDisabledHere { .. }) {
        bench_vhost["typed_per_filter_config"] = json!({"fledge": {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": true}});
    }
    let vhosts = json!([
        bench_vhost,
        {"name": "other", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": direct("other")}]}
    ]);
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    let mut clusters = Vec::new();
    let http_filters = match filter {
        Filter::None => vec![router],
        Filter::Wasm { name, path } => vec![wasm_filter(name, path, &json!({})), router],
        Filter::FledgeDisabledHere { path, controller } => {
            clusters.push(json!({
                "name": "fledge_controller", "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "fledge_controller", "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
                    {"socket_address": {"address": controller.ip().to_string(), "port_value": controller.port()}}}}]}]}
            }));
            vec![wasm_filter("fledge", path, &json!({"report_interval_ms": 1000})), router]
        }
        Filter::Fledge { path, config, controller, shadow_sink } => {
            let cluster = |name: &str, a: &SocketAddr| json!({
                "name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
                    {"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}}}}]}]}
            });
            clusters.push(cluster("fledge_controller", controller));
            if let Some(sink) = shadow_sink {
                clusters.push(cluster(SHADOW_CLUSTER, sink));
            }
            vec![wasm_filter("fledge", path, config), router]
        }
    };
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "route_config": {"name": "bench", "virtual_hosts": vhosts},
                        "http_filters": http_filters
                    }
                }]}]
            }],
            "clusters": clusters
        }
    })
}

impl DirectEnvoy {
    pub async fn start(filter: &Filter, concurrency: u32) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("fledge-bench-envoy-").tempdir()?;
        let config = dir.path().join("envoy.json");
        std::fs::write(&config, serde_json::to_vec_pretty(&bootstrap(filter))?)?;
        let admin_path = dir.path().join("admin.addr");
        let log_path = dir.path().join("envoy.log");
        let child = Command::new(fledge_integration::envoy_bin())
            .arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .arg("--use-dynamic-base-id")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["-l", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log_path)?))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start envoy (run `make setup`)")?;
        let mut envoy = Self { listener: "0.0.0.0:0".parse()?, admin: "0.0.0.0:0".parse()?, child, log_path, _dir: dir };
        envoy.wait_ready(&admin_path).await.with_context(|| format!("envoy log:\n{}", envoy.log_tail(30)))?;
        Ok(envoy)
    }

    async fn wait_ready(&mut self, admin_path: &std::path::Path) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("envoy exited: {status}");
            }
            // The file exists before Envoy has written the address into it: unparsable means not yet.
            if let Some(admin) = std::fs::read_to_string(admin_path).ok().and_then(|s| s.trim().parse::<SocketAddr>().ok()) {
                let url = format!("http://{admin}/listeners?format=json");
                if let Ok(resp) = http.get(&url).send().await {
                    let v: Value = resp.json().await.unwrap_or_default();
                    if let Some(port) = v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"].as_u64() {
                        self.admin = admin;
                        self.listener = SocketAddr::from(([127, 0, 0, 1], port as u16));
                        return Ok(());
                    }
                }
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "envoy not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("envoy has exited")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
