//! `fledge rollouts apply -f FILE`: Rollout documents (see [`crate::manifest`]) applied the way
//! `kubectl apply` does — created, replaced, or left alone when the declared spec is what is stored
//! (a PUT restarts a rollout, so an unchanged document is not sent). Every file is parsed and validated
//! before the first request, so a bad document changes nothing.

use std::path::Path;

use anyhow::Context;

use crate::cli::Client;
use crate::manifest::{self, RolloutDoc};
use crate::model::Rollout;

pub(crate) async fn documents(c: &Client, file: &str) -> anyhow::Result<()> {
    let docs = read(file)?;
    for doc in &docs {
        let what = apply(c, doc).await.with_context(|| format!("rollout {} (document {})", doc.name, doc.index))?;
        println!("rollout/{} {what}", doc.name);
    }
    Ok(())
}

/// `-` (stdin), a file, or every rollout file of a directory; all parsed before anything is sent.
fn read(file: &str) -> anyhow::Result<Vec<RolloutDoc>> {
    if file == "-" {
        return Ok(manifest::parse("<stdin>", &std::io::read_to_string(std::io::stdin())?)?);
    }
    let path = Path::new(file);
    if !path.is_dir() {
        return Ok(manifest::read(path)?);
    }
    let mut all: Vec<RolloutDoc> = Vec::new();
    for f in manifest::files_in(path).with_context(|| format!("cannot read directory {file}"))? {
        for d in manifest::read(&f)? {
            anyhow::ensure!(!all.iter().any(|a| a.name == d.name), "{}: rollout {:?} is declared twice in {file}", f.display(), d.name);
            all.push(d);
        }
    }
    Ok(all)
}

async fn apply(c: &Client, doc: &RolloutDoc) -> anyhow::Result<&'static str> {
    let url = format!("{}/v1/rollouts/{}", c.base, doc.name);
    let current = send(c, c.http.get(&url)).await?;
    if let (200, Some(body)) = &current {
        let stored: Rollout = serde_json::from_value(body.clone()).context("unexpected rollout from the controller")?;
        if manifest::unchanged(&doc.spec, &stored) {
            return Ok("unchanged");
        }
    }
    let (status, body) = send(c, c.http.put(&url).json(&doc.spec_json)).await?;
    match status {
        201 => Ok("created"),
        200 => Ok("replaced"),
        _ => anyhow::bail!("{status}: {}", message(body.as_ref())),
    }
}

async fn send(c: &Client, rb: reqwest::RequestBuilder) -> anyhow::Result<(u16, Option<serde_json::Value>)> {
    let rb = match &c.token {
        Some(t) => rb.bearer_auth(t),
        None => rb,
    };
    let resp = rb.send().await.with_context(|| format!("cannot reach the controller at {}", c.base))?;
    let status = resp.status().as_u16();
    let body = resp.json::<serde_json::Value>().await.ok();
    if status != 404 && !(200..300).contains(&status) {
        anyhow::bail!("{status}: {}", message(body.as_ref()));
    }
    Ok((status, body))
}

fn message(body: Option<&serde_json::Value>) -> &str {
    body.and_then(|b| b.pointer("/error/message")).and_then(|m| m.as_str()).unwrap_or("(no message)")
}
