//! A sample agent for trying fledge by hand with manifests/envoy/envoy.yaml:
//!
//!   fledge-sample-agent --listen 127.0.0.1:18001 --version v1
//!   fledge-sample-agent --listen 127.0.0.1:18002 --version v2 --error-rate 0.1 --latency-ms 150
//!
//! Options: --error-rate F, --latency-ms N, --success-rate F, --cost F, --violation-rate F, --trailers.
//!
//! One process for several versions (a prompt or model canary without new pods), answering each request
//! as the version its `x-fledge-version` header names (manifests/envoy/envoy-one-backend.yaml):
//!
//!   fledge-sample-agent --listen 127.0.0.1:18001 --serve v1 --serve v2:success-rate=0.7,latency-ms=100

use fledge_integration::{Agent, Behaviour, MultiAgent};

/// `v2:success-rate=0.7,latency-ms=100`: a version and its behaviour.
fn serve(spec: &str) -> anyhow::Result<Behaviour> {
    let (version, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let mut b = Behaviour::version(version);
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        let (k, v) = opt.split_once('=').ok_or_else(|| anyhow::anyhow!("{opt}: give option=value"))?;
        match k {
            "error-rate" => b.error_rate = v.parse()?,
            "latency-ms" => b.latency_ms = v.parse()?,
            "success-rate" => b.success_rate = v.parse()?,
            "cost" => b.cost = v.parse()?,
            "violation-rate" => b.violation_rate = v.parse()?,
            "first-byte-ms" => b.first_byte_ms = v.parse()?,
            other => anyhow::bail!("unknown option {other} in --serve {spec}"),
        }
    }
    Ok(b)
}

fn parse(args: &[String]) -> anyhow::Result<(std::net::SocketAddr, Behaviour, Vec<Behaviour>)> {
    let mut listen = "127.0.0.1:18001".parse()?;
    let mut b = Behaviour::default();
    let mut served = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = val()?.parse()?,
            "--version" => b.version = val()?.clone(),
            "--error-rate" => b.error_rate = val()?.parse()?,
            "--latency-ms" => b.latency_ms = val()?.parse()?,
            "--success-rate" => b.success_rate = val()?.parse()?,
            "--cost" => b.cost = val()?.parse()?,
            "--violation-rate" => b.violation_rate = val()?.parse()?,
            "--trailers" => b.outcome_in_trailers = true,
            "--serve" => served.push(serve(val()?)?),
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    Ok((listen, b, served))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, behaviour, served) = parse(&args)?;
    if !served.is_empty() {
        let names: Vec<String> = served.iter().map(|b| b.version.clone()).collect();
        let agent = MultiAgent::start_on(listen, served).await?;
        println!("sample agent serving {} on http://{} (by x-fledge-version)", names.join(", "), agent.addr);
        tokio::signal::ctrl_c().await?;
        return Ok(());
    }
    let agent = Agent::start_on(listen, behaviour.clone()).await?;
    println!("sample agent {} on http://{} ({:?})", behaviour.version, agent.addr, behaviour);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
