//! fledge-bench: the benchmarks behind `make bench`, written to BENCHMARKS.md.
//!
//! 1. filter cost in Envoy (no filter / empty proxy-wasm filter / fledge), `filter_cost`;
//! 2. the core decision natively (criterion), `decision`;
//! 3. push latency to K Envoys, `push`;
//! 4. rollback reaction, `rollback`;
//! 5. controller ingest of telemetry reports, `ingest`, and its memory under a hostile flood (`flood`);
//! 6. decision quality of the judgement (seeded simulations, 20,000 rollouts per row), `judgement`;
//! 7. several replicas on PostgreSQL: 1,000 proxies over 3 replicas, and the failover time, `ha`.
//!
//! `--smoke` runs every part with seconds-long settings (the test in tests/smoke.rs does, so the
//! harness cannot rot); its numbers are not measurements. Budgets are reported, never asserted.
//!
//! Usage: `fledge-bench [--smoke] [--out FILE] [--only filter,decision,push,rollback,ingest,judgement,ha]
//! [--rollback-healthy-secs S]`.
//! Binaries come from the harness's lookup (`FLEDGE_BIN`, `FLEDGE_WASM`, `FLEDGE_ENVOY`), plus
//! `FLEDGE_EMPTY_WASM` for the baseline filter.

mod decision;
mod envoy;
mod filter_cost;
mod flood;
mod ha;
mod hostcalls;
mod ingest;
mod judgement;
mod load;
mod machine;
mod procstat;
mod profile;
mod push;
mod report;
mod rollback;
mod stats;
mod wasm_opt;
mod wrk;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use report::{Part, Results};

const PARTS: [&str; 7] = ["filter", "decision", "push", "rollback", "ingest", "judgement", "ha"];

struct Args {
    smoke: bool,
    out: Option<PathBuf>,
    only: Vec<String>,
    /// Overrides the healthy canary time before the rollback trials' t0.
    rollback_healthy: Option<Duration>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args =
        Args { smoke: false, out: None, only: PARTS.iter().map(|s| s.to_string()).collect(), rollback_healthy: None };
    let mut it = std::env::args().skip(1);
    let mut out_given = false;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => args.smoke = true,
            "--out" => {
                args.out = Some(it.next().context("--out needs a file")?.into());
                out_given = true;
            }
            "--only" => {
                let list = it.next().context("--only needs a list")?;
                args.only = list.split(',').map(str::trim).map(str::to_string).collect();
                for p in &args.only {
                    anyhow::ensure!(PARTS.contains(&p.as_str()), "unknown part {p:?}; parts: {}", PARTS.join(","));
                }
            }
            "--rollback-healthy-secs" => {
                let secs: f64 = it.next().context("--rollback-healthy-secs needs a number")?.parse()?;
                args.rollback_healthy = Some(Duration::from_secs_f64(secs));
            }
            "-h" | "--help" => {
                println!("fledge-bench [--smoke] [--out FILE] [--only {}] [--rollback-healthy-secs S]", PARTS.join(","));
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    // A full run writes the repository's BENCHMARKS.md; a smoke or partial run writes only where told.
    if !out_given && !args.smoke && args.only.len() == PARTS.len() {
        args.out = Some(fledge_integration::workspace_root().join("BENCHMARKS.md"));
    }
    Ok(args)
}

/// Runs one part if selected; its failure is reported in the table rather than ending the run.
async fn part<T, F: Future<Output = anyhow::Result<T>>>(args: &Args, name: &str, f: impl FnOnce() -> F) -> Part<T> {
    if !args.only.iter().any(|p| p == name) {
        return Part::NotRun("not selected (--only)".into());
    }
    eprintln!("== {name}");
    let start = std::time::Instant::now();
    let result = f().await;
    eprintln!("== {name}: {:.1} s", start.elapsed().as_secs_f64());
    match result {
        Ok(v) => Part::Done(v),
        Err(e) => {
            eprintln!("{name} failed: {e:#}");
            // The whole chain, on one line: it goes in a table cell.
            Part::Failed(format!("{e:#}").lines().map(str::trim).collect::<Vec<_>>().join(" "))
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let smoke = args.smoke;
    let have_wrk = wrk::available();
    anyhow::ensure!(smoke || have_wrk, "wrk is not installed (apt-get install -y wrk, or run `make bench`)");

    let filter_settings = if smoke {
        filter_cost::Settings {
            rounds: 1,
            saturate: Duration::from_secs(1),
            latency: Duration::from_millis(500),
            latency_rate: 1_000.0,
            connections: 16,
            warmup: Duration::ZERO,
            use_wrk: have_wrk,
            memory_users: 1_000,
            memory_early: 2_000,
            memory_late: 10_000,
            startup_trials: 1,
        }
    } else {
        // Many short rounds rather than a few long ones: on a shared machine a neighbour's burst then
        // spoils one round, and the median of the per-round ratios shrugs it off.
        filter_cost::Settings {
            rounds: 7,
            saturate: Duration::from_secs(3),
            latency: Duration::from_secs(2),
            latency_rate: 5_000.0,
            connections: 16,
            warmup: Duration::from_secs(2),
            use_wrk: true,
            memory_users: 100_000,
            memory_early: 200_000,
            memory_late: 1_000_000,
            startup_trials: 5,
        }
    };
    let push_settings = if smoke {
        push::Settings { proxies: 2, concurrency: 1, changes: 3 }
    } else {
        push::Settings { proxies: 4, concurrency: 1, changes: 50 }
    };
    let mut rollback_settings = if smoke {
        rollback::Settings { trials: 1, healthy: Duration::from_millis(500), tail: Duration::from_millis(300) }
    } else {
        rollback::Settings { trials: 5, healthy: Duration::from_millis(1_500), tail: Duration::from_secs(1) }
    };
    if let Some(h) = args.rollback_healthy {
        rollback_settings.healthy = h;
    }
    let ingest_settings = if smoke {
        (ingest::Settings { proxies: 20, warmup: Duration::from_millis(300), duration: Duration::from_secs(1) },
         flood::Settings { connections: 4, duration: Duration::from_secs(1) })
    } else {
        (ingest::Settings { proxies: 1_000, warmup: Duration::from_secs(1), duration: Duration::from_secs(10) },
         flood::Settings { connections: 64, duration: Duration::from_secs(15) })
    };

    let judgement_settings = judgement::Settings { runs: if smoke { 20 } else { 20_000 } };
    let ha_settings = if smoke {
        ha::Settings { proxies: 30, warmup: Duration::from_millis(500), duration: Duration::from_secs(1), failovers: 1 }
    } else {
        ha::Settings { proxies: 1_000, warmup: Duration::from_secs(2), duration: Duration::from_secs(10), failovers: 5 }
    };

    let filter = part(&args, "filter", || filter_cost::run(&filter_settings)).await;
    let decision = if smoke && args.only.len() == PARTS.len() {
        // Criterion needs a release build and ~15 s: the smoke test covers its parser instead.
        Part::NotRun("smoke run".into())
    } else {
        part(&args, "decision", decision::run).await
    };
    let push = part(&args, "push", || push::run(&push_settings)).await;
    let rollback = part(&args, "rollback", || rollback::run(&rollback_settings)).await;
    let ingest = part(&args, "ingest", || ingest::run(&ingest_settings.0, &ingest_settings.1)).await;
    let judgement = part(&args, "judgement", || judgement::run(&judgement_settings)).await;
    let ha = part(&args, "ha", || ha::run(&ha_settings)).await;

    let results = Results {
        machine: machine::Machine::describe(&fledge_integration::envoy_bin()),
        smoke,
        filter,
        decision,
        push,
        rollback,
        ingest,
        judgement,
        ha,
        profile: if smoke { Vec::new() } else { profile::notes() },
    };
    let text = report::render(&results);
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    let failed = [
        matches!(results.filter, Part::Failed(_)),
        matches!(results.decision, Part::Failed(_)),
        matches!(results.push, Part::Failed(_)),
        matches!(results.rollback, Part::Failed(_)),
        matches!(results.ingest, Part::Failed(_)),
        matches!(results.judgement, Part::Failed(_)),
        matches!(results.ha, Part::Failed(_)),
    ];
    anyhow::ensure!(!failed.contains(&true), "some benchmarks failed (see the table)");
    Ok(())
}
