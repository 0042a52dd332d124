//! The real `fledge` controller as a child process, with a data directory that outlives restarts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Default)]
pub struct ControllerBuilder {
    token: Option<String>,
    poll_hold_secs: Option<f64>,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl ControllerBuilder {
    pub fn token(mut self, t: &str) -> Self {
        self.token = Some(t.into());
        self
    }

    pub fn poll_hold_secs(mut self, s: f64) -> Self {
        self.poll_hold_secs = Some(s);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// An extra argument to `fledge serve` (e.g. `--rollouts-dir DIR`).
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub async fn start(self) -> anyhow::Result<Controller> {
        let dir = tempfile::Builder::new().prefix("fledge-ctl-").tempdir()?;
        let mut c = Controller {
            addr: "127.0.0.1:0".parse()?,
            child: None,
            data: dir.path().to_path_buf(),
            _dir: dir,
            builder: self,
            http: reqwest::Client::new(),
        };
        c.spawn().await?;
        Ok(c)
    }
}

pub struct Controller {
    pub addr: SocketAddr,
    child: Option<Child>,
    data: PathBuf,
    _dir: tempfile::TempDir,
    builder: ControllerBuilder,
    http: reqwest::Client,
}

impl Controller {
    pub fn builder() -> ControllerBuilder {
        ControllerBuilder::default()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = crate::fledge_bin();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data.join("controller.log"))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data")
            .arg(&self.data)
            // FLEDGE_TEST_LOG (e.g. "info,fledge_controller::cluster=debug") sets the controllers' log filter.
            .env("FLEDGE_LOG", std::env::var("FLEDGE_TEST_LOG").as_deref().unwrap_or("info"))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if let Some(t) = &self.builder.token {
            cmd.arg("--token").arg(t);
        }
        if let Some(s) = self.builder.poll_hold_secs {
            cmd.arg("--poll-hold-secs").arg(s.to_string());
        }
        cmd.args(&self.builder.args);
        for (k, v) in &self.builder.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start {} (run `make build`)", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("controller did not start within 20 s")??
            .with_context(|| format!("controller exited; see {}", self.data.join("controller.log").display()))?;
        let url = line.strip_prefix("fledge listening on http://").with_context(|| format!("unexpected line {line:?}"))?;
        self.addr = url.parse()?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no graceful shutdown, nothing flushed beyond what was committed.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`, …) to the process: `SIGSTOP` freezes it as a long GC pause
    /// or a partition would, its sockets open and its timers not firing.
    pub async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("controller not running")?;
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().await?;
        anyhow::ensure!(sent.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// SIGTERM, then waits up to `within` for the process to exit; returns its exit status.
    pub async fn terminate(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("controller not running")?;
        let pid = c.id().context("controller already exited")?;
        let sent = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(within, c.wait()).await.context("controller did not exit after SIGTERM")?.map_err(Into::into)
    }

    /// Starts again on the same address and data directory.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        self.spawn().await
    }

    /// Starts again on the same address with an empty data directory (a data reset, a lost volume).
    pub async fn restart_empty(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        for entry in std::fs::read_dir(&self.data)? {
            let p = entry?.path();
            if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("fledge.db")) {
                std::fs::remove_file(p)?;
            }
        }
        self.spawn().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("controller.log")).unwrap_or_default()
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.builder.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends a request and returns status and JSON body (Null when empty).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let mut rb = self.authed(self.http.request(method, self.url(path)));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes)? };
        Ok((status, v))
    }

    /// The rollout's `status.phase`.
    pub async fn phase(&self, name: &str) -> anyhow::Result<String> {
        let v = self.get(&format!("/v1/rollouts/{name}")).await?;
        v["status"]["phase"].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("no phase in {v}"))
    }

    /// Waits until the rollout reaches `phase`; fails at once if it ends in another terminal phase.
    pub async fn wait_phase(&self, name: &str, phase: &str, within: std::time::Duration) -> anyhow::Result<Value> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let v = self.get(&format!("/v1/rollouts/{name}")).await?;
            let now = v["status"]["phase"].as_str().unwrap_or_default().to_string();
            if now == phase {
                return Ok(v);
            }
            if ["succeeded", "rolled_back", "aborted"].contains(&now.as_str()) {
                anyhow::bail!("rollout {name} ended {now} instead of {phase}: {}", v["status"]["message"]);
            }
            if std::time::Instant::now() >= deadline {
                anyhow::bail!("rollout {name} not {phase} within {within:?}: {now}: {}", v["status"]["message"]);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Waits until every active proxy has applied the rollout's current generation in all its workers,
    /// and at least `contexts` workers have reported (a worker not yet heard from cannot be counted;
    /// `Envoy::contexts` gives the number for one Envoy). From reports only; sends no traffic.
    pub async fn wait_confirmed(&self, name: &str, contexts: usize, within: std::time::Duration) -> anyhow::Result<Value> {
        let (v, _) = crate::eventually(within, "proxies confirmed the generation", || async {
            let v = self.get(&format!("/v1/rollouts/{name}")).await?;
            let c = &v["live"]["confirmation"];
            let workers: u64 = c["details"].as_array().into_iter().flatten().filter_map(|d| d["workers"].as_u64()).sum();
            anyhow::ensure!(c["proxies"].as_u64().unwrap_or(0) > 0 && c["confirmed"] == c["proxies"], "{c}");
            anyhow::ensure!(workers >= contexts as u64, "{workers} of {contexts} workers reported: {c}");
            Ok(v)
        })
        .await?;
        Ok(v)
    }

    pub async fn events(&self, name: &str) -> anyhow::Result<Vec<Value>> {
        let v = self.get(&format!("/v1/rollouts/{name}/events")).await?;
        Ok(v["events"].as_array().cloned().unwrap_or_default())
    }

    /// PUT rollout `name` on `host`, v1 → v2, at a manual `weight`, and insist on success.
    pub async fn put_manual(&self, name: &str, host: &str, weight: f64) -> anyhow::Result<Value> {
        self.put_rollout(name, serde_json::json!({"hosts": [host], "stable": "v1", "canary": "v2", "weight": weight})).await
    }

    /// PUT a rollout and insist on success.
    pub async fn put_rollout(&self, name: &str, spec: Value) -> anyhow::Result<Value> {
        let (status, body) = self.call(reqwest::Method::PUT, &format!("/v1/rollouts/{name}"), Some(spec)).await?;
        anyhow::ensure!(status == 200 || status == 201, "PUT rollout {name}: {status} {body}");
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        anyhow::ensure!(status == 200, "GET {path}: {status} {body}");
        Ok(body)
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, resp) = self.call(reqwest::Method::POST, path, Some(body)).await?;
        anyhow::ensure!((200..300).contains(&status), "POST {path}: {status} {resp}");
        Ok(resp)
    }
}
