//! Sending requests through Envoy as users would, and summarising where they went.

use std::net::SocketAddr;

use futures_util::{stream, StreamExt};

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The route header the filter added to the response (None: request passed untouched).
    pub routed: Option<String>,
    /// The backend that actually answered.
    pub served_by: Option<String>,
}

#[derive(Clone)]
pub struct Traffic {
    http: reqwest::Client,
    url: String,
    host: String,
}

impl Traffic {
    pub fn new(envoy: SocketAddr, host: &str) -> Self {
        Self::with_timeout(envoy, host, std::time::Duration::from_secs(30))
    }

    /// With a per-request timeout, for answers that may never finish.
    pub fn with_timeout(envoy: SocketAddr, host: &str, timeout: std::time::Duration) -> Self {
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).timeout(timeout).build().unwrap_or_default();
        Self { http, url: format!("http://{envoy}/task"), host: host.into() }
    }

    /// One request, keyed by `user` in `x-user-id` when given.
    pub async fn send(&self, user: Option<&str>) -> anyhow::Result<Reply> {
        self.send_with(user.map(|u| ("x-user-id", u))).await
    }

    pub async fn send_with(&self, header: Option<(&str, &str)>) -> anyhow::Result<Reply> {
        let mut rb = self.http.get(&self.url).header("host", &self.host);
        if let Some((k, v)) = header {
            rb = rb.header(k, v);
        }
        let resp = rb.send().await?;
        let get = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let reply = Reply { status: resp.status().as_u16(), routed: get("x-fledge-version"), served_by: get("x-served-by") };
        let _ = resp.bytes().await?;
        Ok(reply)
    }

    /// One request per user, `concurrency` in flight; results in the order of `users`.
    pub async fn send_users(&self, users: &[String], concurrency: usize) -> anyhow::Result<Vec<Reply>> {
        let replies: Vec<anyhow::Result<Reply>> = stream::iter(users.iter())
            .map(|u| self.send(Some(u)))
            .buffered(concurrency)
            .collect()
            .await;
        replies.into_iter().collect()
    }
}

/// Share of replies served by `version`.
pub fn share(replies: &[Reply], version: &str) -> f64 {
    let n = replies.iter().filter(|r| r.served_by.as_deref() == Some(version)).count();
    n as f64 / replies.len().max(1) as f64
}

pub fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Background load at a fixed rate from a pool of users, until dropped.
pub struct Load {
    task: tokio::task::JoinHandle<()>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Load {
    pub fn start(traffic: Traffic, rps: u64, users: u64) -> Self {
        use std::sync::atomic::Ordering;
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_micros(1_000_000 / rps.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                n += 1;
                let t = traffic.clone();
                let user = format!("load-{}", n.wrapping_mul(7919) % users.max(1));
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _ = t.send(Some(&user)).await;
                });
            }
        });
        Self { task, sent }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.task.abort();
    }
}
