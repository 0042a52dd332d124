//! A sample agent for trying fledge by hand with manifests/envoy/envoy.yaml:
//!
//!   fledge-sample-agent --listen 127.0.0.1:18001 --version v1
//!   fledge-sample-agent --listen 127.0.0.1:18002 --version v2 --error-rate 0.1 --latency-ms 150
//!
//! Options: --error-rate F, --latency-ms N, --success-rate F, --cost F, --violation-rate F, --trailers.

use fledge_integration::{Agent, Behaviour};

fn parse(args: &[String]) -> anyhow::Result<(std::net::SocketAddr, Behaviour)> {
    let mut listen = "127.0.0.1:18001".parse()?;
    let mut b = Behaviour::default();
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
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    Ok((listen, b))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, behaviour) = parse(&args)?;
    let agent = Agent::start_on(listen, behaviour.clone()).await?;
    println!("sample agent {} on http://{} ({:?})", behaviour.version, agent.addr, behaviour);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
