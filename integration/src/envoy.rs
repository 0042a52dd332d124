//! A real Envoy (from the PyPI wheel) with the built fledge filter, configured in code.
//!
//! Listener and admin bind port 0; the real ports are read back from the admin API, so tests run in
//! parallel without port clashes. `--use-dynamic-base-id` keeps their shared memory apart too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::process::{Child, Command};


struct HostRoute {
    host: String,
    /// (version, backend); the first is where requests without a route header go.
    versions: Vec<(String, SocketAddr)>,
    /// The fledge filter is switched off on this host's routes (`typed_per_filter_config`).
    filter_disabled: bool,
}

pub struct EnvoyBuilder {
    hosts: Vec<HostRoute>,
    controller: Option<SocketAddr>,
    plugin_config: Value,
    concurrency: u32,
    route_timeout_ms: Option<u64>,
    controller_cluster: String,
    node_id: Option<String>,
    discovery: Option<(String, PathBuf)>,
    filters_before: Vec<Value>,
    filters_after: Vec<Value>,
    stats_inclusion_prefixes: Option<Vec<String>>,
}

/// Type URLs an Istio sidecar accepts for a WasmPlugin's extension config: the Wasm filter, or the RBAC
/// filter istio-agent substitutes when the module cannot be fetched.
pub const ECDS_TYPE_URLS: [&str; 2] = [
    "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
];

impl EnvoyBuilder {
    /// Routes `host` by the fledge header to one backend per version; the first version is the default.
    pub fn route(mut self, host: &str, versions: &[(&str, SocketAddr)]) -> Self {
        self.hosts.push(HostRoute {
            host: host.into(),
            versions: versions.iter().map(|(v, a)| (v.to_string(), *a)).collect(),
            filter_disabled: false,
        });
        self
    }

    /// Like [`route`](Self::route), with the fledge filter switched off on the host's routes, as a
    /// config does for hosts without a rollout.
    pub fn route_without_filter(mut self, host: &str, versions: &[(&str, SocketAddr)]) -> Self {
        self = self.route(host, versions);
        if let Some(h) = self.hosts.last_mut() {
            h.filter_disabled = true;
        }
        self
    }

    pub fn controller(mut self, addr: SocketAddr) -> Self {
        self.controller = Some(addr);
        self
    }

    /// The filter's plugin configuration (JSON); defaults to `{}`.
    pub fn plugin_config(mut self, v: Value) -> Self {
        self.plugin_config = v;
        self
    }

    /// Envoy's route timeout (whole upstream response); Envoy's default is 15 s.
    pub fn route_timeout_ms(mut self, ms: u64) -> Self {
        self.route_timeout_ms = Some(ms);
        self
    }

    /// Name of the cluster that reaches the controller (default `fledge_controller`; Istio names it
    /// `outbound|7070||fledge.fledge-system.svc.cluster.local`).
    pub fn controller_cluster(mut self, name: &str) -> Self {
        self.controller_cluster = name.into();
        self
    }

    /// The bootstrap's `node.id` (an Istio sidecar's is `sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`).
    pub fn node_id(mut self, id: &str) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Instead of an inline filter: the HTTP filter `name` comes from a file-based extension config
    /// source (`config_discovery` + `path_config_source`, the directory watched for atomic renames),
    /// as a sidecar receives a WasmPlugin over ECDS. The file holds a `TypedExtensionConfig` named `name`
    /// (Wasm or RBAC, see [`ECDS_TYPE_URLS`]); `plugin_config` is then unused.
    pub fn wasm_from_discovery(mut self, name: &str, file: PathBuf) -> Self {
        self.discovery = Some((name.into(), file));
        self
    }

    /// HTTP filters around fledge's (the router stays last): stand-ins for a sidecar's own chain, to put
    /// the filter where a WasmPlugin's `phase` does.
    pub fn filters_around(mut self, before: Vec<Value>, after: Vec<Value>) -> Self {
        self.filters_before = before;
        self.filters_after = after;
        self
    }

    /// Keep only stats with these prefixes (bootstrap `stats_matcher`, what Istio's
    /// `proxyStatsMatcher.inclusionPrefixes` becomes).
    pub fn stats_inclusion_prefixes(mut self, prefixes: Vec<String>) -> Self {
        self.stats_inclusion_prefixes = Some(prefixes);
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    pub async fn start(self) -> anyhow::Result<Envoy> {
        let dir = tempfile::Builder::new().prefix("fledge-envoy-").tempdir()?;
        let config_path = dir.path().join("envoy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&self.bootstrap())?)?;
        let admin_path = dir.path().join("admin.addr");
        let log_path = dir.path().join("envoy.log");
        let child = Command::new(crate::envoy_bin())
            .arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(self.concurrency.to_string())
            .arg("--use-dynamic-base-id")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("-l")
            .arg("info")
            .stdout(Stdio::null())
            // stderr, not --log-path: Envoy's file log is flushed lazily, stderr at once.
            .stderr(Stdio::from(std::fs::File::create(&log_path)?))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start envoy (run `make setup`)")?;
        let contexts = self.concurrency as usize + 1;
        let mut envoy = Envoy { listener: "0.0.0.0:0".parse()?, admin: "0.0.0.0:0".parse()?, contexts, child, log_path, dir };
        envoy.wait_ready(&admin_path).await.with_context(|| format!("envoy log:\n{}", envoy.log_tail(40)))?;
        Ok(envoy)
    }

    fn bootstrap(&self) -> Value {
        let mut clusters = Vec::new();
        let mut vhosts = Vec::new();
        for h in &self.hosts {
            let mut routes = Vec::new();
            // `*.example.com` routes a wildcard virtual host (Envoy takes a port-less `*` suffix form only).
            let stem = h.host.replace('*', "star");
            for (version, addr) in &h.versions {
                let name = format!("{stem}_{version}");
                clusters.push(agent_cluster(&name, *addr));
                let mut route = json!({"cluster": name});
                if let Some(ms) = self.route_timeout_ms {
                    route["timeout"] = json!(format!("{}s", ms as f64 / 1000.0));
                }
                routes.push(json!({
                    "match": {"prefix": "/", "headers": [{"name": "x-fledge-version", "string_match": {"exact": version}}]},
                    "route": route
                }));
            }
            if let Some((v, _)) = h.versions.first() {
                routes.push(json!({"match": {"prefix": "/"}, "route": {"cluster": format!("{stem}_{v}")}}));
            }
            let domains = if h.host.contains('*') { json!([h.host]) } else { json!([h.host, format!("{}:*", h.host)]) };
            let mut vhost = json!({"name": stem, "domains": domains, "routes": routes});
            if h.filter_disabled {
                vhost["typed_per_filter_config"] = json!({"fledge": {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": true}});
            }
            vhosts.push(vhost);
        }
        vhosts.push(json!({"name": "other", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "untouched"}}}
        ]}));
        if let Some(c) = self.controller {
            clusters.push(static_cluster(&self.controller_cluster, c));
        }
        let inline = json!({
            "name": "fledge",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "fledge", "root_id": "fledge",
                    "vm_config": {"vm_id": "fledge", "runtime": "envoy.wasm.runtime.v8",
                                  "code": {"local": {"filename": crate::wasm_path()}}},
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                      "value": self.plugin_config.to_string()}
                }
            }
        });
        let wasm = match &self.discovery {
            None => inline,
            Some((name, file)) => json!({
                "name": name,
                "config_discovery": {
                    "config_source": {
                        "resource_api_version": "V3",
                        "path_config_source": {
                            "path": file,
                            "watched_directory": {"path": file.parent().unwrap_or(std::path::Path::new("."))}
                        }
                    },
                    "type_urls": ECDS_TYPE_URLS
                }
            }),
        };
        let router = json!({"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
        let http_filters: Vec<Value> = self.filters_before.iter().cloned()
            .chain([wasm])
            .chain(self.filters_after.iter().cloned())
            .chain([router])
            .collect();
        let mut stats_config = json!({"stats_tags": fledge_stats_tags()});
        if let Some(prefixes) = &self.stats_inclusion_prefixes {
            let patterns: Vec<Value> = prefixes.iter().map(|p| json!({"prefix": p})).collect();
            stats_config["stats_matcher"] = json!({"inclusion_list": {"patterns": patterns}});
        }
        let mut bootstrap = json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "stats_config": stats_config,
            "static_resources": {
                "listeners": [{
                    "name": "agents",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "agents",
                            "route_config": {"name": "agents", "virtual_hosts": vhosts},
                            "http_filters": http_filters
                        }
                    }]}]
                }],
                "clusters": clusters
            }
        });
        if let Some(id) = &self.node_id {
            bootstrap["node"] = json!({"id": id, "cluster": "fledge-test"});
        }
        bootstrap
    }
}

/// The stats_tags that turn `fledge.<rollout>.<version>.<counter>` into labels (see README).
pub fn fledge_stats_tags() -> Value {
    json!([
        {"tag_name": "fledge_rollout", "regex": "^wasmcustom\\.fledge\\.(([^.]+)\\.)[^.]+\\.[^.]+$"},
        {"tag_name": "fledge_version", "regex": "^wasmcustom\\.fledge\\.[^.]+\\.(([^.]+)\\.)[^.]+$"}
    ])
}

/// HTTP/2 (h2c) to the agent backends: streamed agent answers carry their outcome in trailers, which
/// HTTP/1 servers only send when asked with `TE: trailers`.
fn agent_cluster(name: &str, addr: SocketAddr) -> Value {
    let mut c = static_cluster(name, addr);
    c["typed_extension_protocol_options"] = json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}});
    c
}

fn static_cluster(name: &str, addr: SocketAddr) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
            {"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}}}}]}]}
    })
}

pub struct Envoy {
    pub listener: SocketAddr,
    pub admin: SocketAddr,
    /// Wasm root contexts, each reporting on its own: one per worker plus the main thread's.
    pub contexts: usize,
    child: Child,
    log_path: PathBuf,
    #[allow(dead_code)]
    dir: tempfile::TempDir,
}

impl Envoy {
    /// An Envoy routing `host` by the fledge header to `v1` (the default) and `v2`, with the filter
    /// reporting to `controller`: the setup most acceptance tests share.
    pub fn for_versions(host: &str, v1: SocketAddr, v2: SocketAddr, controller: SocketAddr, plugin_config: Value) -> EnvoyBuilder {
        Self::builder().route(host, &[("v1", v1), ("v2", v2)]).controller(controller).plugin_config(plugin_config)
    }

    pub fn builder() -> EnvoyBuilder {
        EnvoyBuilder {
            hosts: Vec::new(),
            controller: None,
            plugin_config: json!({}),
            concurrency: 2,
            route_timeout_ms: None,
            controller_cluster: "fledge_controller".into(),
            node_id: None,
            discovery: None,
            filters_before: Vec::new(),
            filters_after: Vec::new(),
            stats_inclusion_prefixes: None,
        }
    }

    /// Waits for the admin address, then the listener's port; fails at once when Envoy exits or logs a
    /// critical error (a rejected listener never comes up, so waiting longer cannot help).
    async fn wait_ready(&mut self, admin_path: &std::path::Path) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut admin = None;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("envoy exited: {status}");
            }
            if let Some(line) = self.log().lines().find(|l| l.contains("[critical]")) {
                anyhow::bail!("envoy logged a critical error: {line}");
            }
            if admin.is_none() {
                admin = std::fs::read_to_string(admin_path).ok().and_then(|s| s.trim().parse::<SocketAddr>().ok());
            }
            if let Some(a) = admin {
                let url = format!("http://{a}/listeners?format=json");
                let v: Option<Value> = match http.get(&url).send().await {
                    Ok(r) => r.json().await.ok(),
                    Err(_) => None,
                };
                let port = v.as_ref().and_then(|v| v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"].as_u64());
                if let Some(port) = port {
                    self.admin = a;
                    self.listener = SocketAddr::from(([127, 0, 0, 1], port as u16));
                    return Ok(());
                }
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "envoy not ready within 30 s (admin {admin:?})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The Envoy process id (or `None` once it has exited): stays the same across weight changes.
    pub fn pid(&mut self) -> Option<u32> {
        self.child.try_wait().ok().flatten().is_none().then(|| self.child.id()).flatten()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Envoy's admin stats in Prometheus format.
    pub async fn prometheus(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("http://{}/stats/prometheus", self.admin)).await?.text().await?)
    }
}
