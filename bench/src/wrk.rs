//! Saturation load with wrk (Debian's package): one thread, `-c16`, every request to `bench-agent`
//! with a rotating `x-user-id`, the same for every variant so the client's cost is identical.
//!
//! The Lua script formats all requests once in `init` and `request()` only hands back the next
//! string: formatting per request in Lua would make wrk, not Envoy, the bottleneck at ~70k rps.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

const SCRIPT: &str = r#"-- fledge-bench: rotate through pre-formatted requests, one per user id.
local reqs = {}
local n = 0
init = function(args)
  local users = tonumber(args[1]) or 1000
  local host = args[2] or "bench-agent"
  for i = 1, users do
    reqs[i] = wrk.format("GET", "/task", {["Host"] = host, ["x-user-id"] = "user-" .. i})
  end
end
request = function()
  n = n + 1
  if n > #reqs then n = 1 end
  return reqs[n]
end
"#;

pub struct Wrk {
    script: PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub struct WrkResult {
    pub requests: u64,
    pub seconds: f64,
    /// Non-2xx/3xx answers plus socket errors.
    pub errors: u64,
}

pub fn available() -> bool {
    std::process::Command::new("wrk").arg("-v").output().is_ok()
}

impl Wrk {
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("fledge-bench-wrk-").tempdir()?;
        let script = dir.path().join("users.lua");
        std::fs::write(&script, SCRIPT)?;
        Ok(Self { script, _dir: dir })
    }

    /// Runs wrk against `target` for `duration` and parses its summary.
    pub async fn run(&self, target: SocketAddr, host: &str, connections: usize, duration: Duration) -> anyhow::Result<WrkResult> {
        self.run_users(target, host, connections, duration, 1000).await
    }

    /// As [`run`](Self::run), rotating through `users` distinct `x-user-id` values.
    pub async fn run_users(&self, target: SocketAddr, host: &str, connections: usize, duration: Duration, users: usize) -> anyhow::Result<WrkResult> {
        let secs = duration.as_secs().max(1);
        let out = tokio::process::Command::new("wrk")
            .args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s"), "--timeout", "5s", "-s"])
            .arg(&self.script)
            .arg(format!("http://{target}/task"))
            .args(["--", &users.to_string(), host])
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run wrk (apt-get install -y wrk)")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        anyhow::ensure!(out.status.success(), "wrk failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
        parse(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
    }
}

/// Reads "N requests in 3.00s, ..." and the error lines of wrk's summary.
pub fn parse(text: &str) -> anyhow::Result<WrkResult> {
    let line = text.lines().find(|l| l.contains(" requests in ")).context("no request count")?;
    let mut words = line.split_whitespace();
    let requests: u64 = words.next().context("count")?.parse()?;
    let secs_word = words.nth(2).context("duration")?.trim_end_matches(',');
    let seconds = parse_duration(secs_word).context("duration unit")?;
    let mut errors = 0;
    for l in text.lines() {
        let l = l.trim();
        if let Some(n) = l.strip_prefix("Non-2xx or 3xx responses:") {
            errors += n.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(rest) = l.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += rest.split(',').filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok()).sum::<u64>();
        }
    }
    Ok(WrkResult { requests, seconds, errors })
}

/// wrk durations: "3.00s", "1.00m", "250.00ms".
fn parse_duration(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_summary() {
        let out = "Running 3s test @ http://127.0.0.1:1/task\n  1 threads and 16 connections\n\
                   Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   250.00us  100.00us   5.00ms   90.00%\n\
                   \x20 165000 requests in 3.00s, 20.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
                   \x20 Non-2xx or 3xx responses: 4\nRequests/sec:  55000.00\nTransfer/sec:      6.67MB\n";
        let r = super::parse(out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.requests, 165_000);
        assert_eq!(r.seconds, 3.0);
        assert_eq!(r.errors, 7);
    }
}
