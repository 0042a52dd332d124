//! `fledge rollouts …`: a thin client of the REST API for people at a terminal.
// Reading `serde_json::Value` by key (`v["status"]["phase"]`) yields `Null` for anything missing and
// cannot panic; only assignment through an index can, and this module has none.
#![allow(clippy::indexing_slicing)]

use anyhow::Context;
use serde_json::Value;

#[derive(clap::Args)]
pub struct ClientArgs {
    /// Controller URL.
    #[arg(long, env = "FLEDGE_SERVER", default_value = "http://127.0.0.1:7070", global = true)]
    server: String,
    /// Bearer token, if the controller requires one.
    #[arg(long, env = "FLEDGE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(clap::Subcommand)]
enum RolloutCommand {
    /// List rollouts: phase, step, weight.
    List,
    /// Show one rollout: phase, steps, weight, its gates and the proxies' confirmation (`-o json|yaml`
    /// for the API's full answer).
    Get {
        name: String,
        #[arg(short, long, value_enum, default_value = "human")]
        output: Output,
    },
    /// Follow a rollout until it ends: redrawn on a terminal, one line per change otherwise. Exits 0
    /// when it succeeds, 1 when it is rolled back or aborted.
    Watch {
        name: String,
        /// Seconds between looks.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Create or replace rollouts: `apply -f FILE` takes Rollout documents (YAML or JSON, several per
    /// file, or a directory of them); `apply NAME --file SPEC.json` a bare JSON spec (`-` for stdin).
    Apply { name: Option<String>, #[arg(short, long)] file: String },
    /// Set a manual weight (percent) on a rollout, keeping its hosts and versions.
    SetWeight { name: String, weight: f64 },
    /// Show a rollout's events.
    Events { name: String },
    /// Write a rollout's judged intervals and events as JSON Lines to stdout (`> file.jsonl`).
    Export { name: String },
    /// Hold a progressing rollout at its weight.
    Pause { name: String },
    /// Continue a paused rollout (its analysis window restarts).
    Resume { name: String },
    /// Make the canary stable now.
    Promote { name: String },
    /// Stop: all traffic back on stable.
    Abort { name: String },
    /// Delete a rollout (its hosts pass untouched again).
    Delete { name: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Human,
    Json,
    Yaml,
}

/// Runs one command; the exit code is 0 but for `watch` of a rollout that failed.
pub async fn run(args: ClientArgs) -> anyhow::Result<std::process::ExitCode> {
    let c = Client { http: reqwest::Client::new(), base: args.server.trim_end_matches('/').to_string(), token: args.token };
    match args.command {
        RolloutCommand::List => {
            let v = c.send(reqwest::Method::GET, "/v1/rollouts", None).await?;
            println!("{:<24} {:<12} {:>5} {:>8}  {:<10} {:<10} message", "NAME", "PHASE", "STEP", "WEIGHT", "STABLE", "CANARY");
            for r in v["rollouts"].as_array().into_iter().flatten() {
                let step = r["status"]["step"].as_u64().map_or("-".into(), |s| (s + 1).to_string());
                println!(
                    "{:<24} {:<12} {:>5} {:>7.2}%  {:<10} {:<10} {}",
                    r["name"].as_str().unwrap_or(""),
                    r["status"]["phase"].as_str().unwrap_or(""),
                    step,
                    r["status"]["weight"].as_f64().unwrap_or(0.0),
                    r["spec"]["stable"].as_str().unwrap_or(""),
                    r["spec"]["canary"].as_str().unwrap_or(""),
                    r["status"]["message"].as_str().unwrap_or(""),
                );
            }
        }
        RolloutCommand::Get { name, output } => {
            let v = c.send(reqwest::Method::GET, &format!("/v1/rollouts/{name}"), None).await?;
            match output {
                Output::Human => print!("{}", crate::cli_view::summary(&v)),
                Output::Json => print(&v)?,
                Output::Yaml => print!("{}", serde_yaml_ng::to_string(&v)?),
            }
        }
        RolloutCommand::Watch { name, interval } => return watch(&c, &name, interval).await,
        RolloutCommand::Apply { name: None, file } => crate::cli_apply::documents(&c, &file).await?,
        RolloutCommand::Apply { name: Some(name), file } => {
            let text = if file == "-" { std::io::read_to_string(std::io::stdin())? } else { std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))? };
            let spec: Value = serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
            print(&c.send(reqwest::Method::PUT, &format!("/v1/rollouts/{name}"), Some(spec)).await?)?;
        }
        RolloutCommand::SetWeight { name, weight } => {
            let current = c.send(reqwest::Method::GET, &format!("/v1/rollouts/{name}"), None).await?;
            let spec = &current["spec"];
            let mut manual = serde_json::Map::new();
            for field in ["hosts", "stable", "canary", "salt"] {
                if let Some(v) = spec.get(field) {
                    manual.insert(field.into(), v.clone());
                }
            }
            manual.insert("weight".into(), weight.into());
            let manual = Value::Object(manual);
            print(&c.send(reqwest::Method::PUT, &format!("/v1/rollouts/{name}"), Some(manual)).await?)?;
        }
        RolloutCommand::Events { name } => {
            let v = c.send(reqwest::Method::GET, &format!("/v1/rollouts/{name}/events"), None).await?;
            for e in v["events"].as_array().into_iter().flatten() {
                println!("#{:<4} {:<12} {:<12} weight {:>6.2}%  {}", e["seq"], e["kind"].as_str().unwrap_or(""), e["phase"].as_str().unwrap_or(""),
                         e["weight"].as_f64().unwrap_or(0.0), e["message"].as_str().unwrap_or(""));
            }
        }
        RolloutCommand::Export { name } => export(&c, &name).await?,
        RolloutCommand::Pause { name } => action(&c, &name, "pause").await?,
        RolloutCommand::Resume { name } => action(&c, &name, "resume").await?,
        RolloutCommand::Promote { name } => action(&c, &name, "promote").await?,
        RolloutCommand::Abort { name } => action(&c, &name, "abort").await?,
        RolloutCommand::Delete { name } => {
            c.send(reqwest::Method::DELETE, &format!("/v1/rollouts/{name}"), None).await?;
            println!("deleted {name}");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Polls the rollout until it ends. On a terminal the summary is redrawn in place; otherwise a line
/// is printed whenever the phase, step, weight or message changes, so CI logs stay readable.
async fn watch(c: &Client, name: &str, interval: f64) -> anyhow::Result<std::process::ExitCode> {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal();
    let every = std::time::Duration::try_from_secs_f64(interval.clamp(0.1, 60.0)).unwrap_or(std::time::Duration::from_secs(1));
    let mut last = String::new();
    loop {
        let v = c.send(reqwest::Method::GET, &format!("/v1/rollouts/{name}"), None).await?;
        let s = &v["status"];
        let phase = s["phase"].as_str().unwrap_or("").to_string();
        if tty {
            // Clear the screen and home the cursor, then the summary.
            print!("\x1b[2J\x1b[H{}", crate::cli_view::summary(&v));
        } else {
            let line = format!(
                "{name}: {} step {} weight {}% — {}",
                phase,
                s["step"].as_u64().map_or("-".into(), |i| (i + 1).to_string()),
                s["weight"].as_f64().unwrap_or(0.0),
                s["message"].as_str().unwrap_or("")
            );
            if line != last {
                println!("{line}");
                last = line;
            }
        }
        if let Some(code) = crate::cli_view::final_exit(&phase) {
            return Ok(std::process::ExitCode::from(code));
        }
        tokio::time::sleep(every).await;
    }
}

/// Copies the export to stdout as it arrives. A stream that ends without its `end` line (the
/// connection dropped, or the controller wrote an `error` line) is an error, so a pipeline never takes
/// a partial file for a whole one.
async fn export(c: &Client, name: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut resp = c.request(reqwest::Method::GET, &format!("/v1/rollouts/{name}/export")).send().await.with_context(|| format!("cannot reach the controller at {}", c.base))?;
    let status = resp.status();
    if !status.is_success() {
        let v: Value = serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null);
        anyhow::bail!("{status}: {}", v["error"]["message"].as_str().unwrap_or("(no message)"));
    }
    let mut out = std::io::stdout().lock();
    // The last line seen, to check the stream's end.
    let mut tail: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await.context("the export was cut short")? {
        out.write_all(&chunk)?;
        tail.extend_from_slice(&chunk);
        let keep_from = tail[..tail.len().saturating_sub(1)].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        tail.drain(..keep_from);
    }
    out.flush()?;
    let last: Value = serde_json::from_slice(&tail).unwrap_or(Value::Null);
    match last["type"].as_str() {
        Some("end") => Ok(()),
        Some("error") => anyhow::bail!("{}", last["message"].as_str().unwrap_or("the export was cut short")),
        _ => anyhow::bail!("the export was cut short (no end line)"),
    }
}

async fn action(c: &Client, name: &str, what: &str) -> anyhow::Result<()> {
    let v = c.send(reqwest::Method::POST, &format!("/v1/rollouts/{name}/{what}"), None).await?;
    println!("{name}: {} — {}", v["status"]["phase"].as_str().unwrap_or(""), v["status"]["message"].as_str().unwrap_or(""));
    Ok(())
}

fn print(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: Option<String>,
}

impl Client {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the API's own message.
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.with_context(|| format!("cannot reach the controller at {}", self.base))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let v: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        if !status.is_success() {
            anyhow::bail!("{status}: {}", v["error"]["message"].as_str().unwrap_or("(no message)"));
        }
        Ok(v)
    }
}
