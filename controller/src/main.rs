//! The `fledge` binary: `fledge serve` runs the controller daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fledge_controller::notify::{Secret, WebhookSettings};
use fledge_controller::store::{Durability, Store};
use fledge_controller::{app, AppState, Settings};
use std::io::Write;

#[derive(Parser)]
#[command(name = "fledge", version, about = "Progressive delivery for AI-agent services behind Envoy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller daemon.
    Serve(ServeArgs),
    /// Inspect and steer rollouts through the REST API.
    Rollouts(fledge_controller::cli::ClientArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the bound address is printed on stdout).
    #[arg(long, env = "FLEDGE_LISTEN", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Directory for the SQLite data file (unused with --database).
    #[arg(long, env = "FLEDGE_DATA", default_value = "./fledge-data")]
    data: PathBuf,
    /// Keep the state in this PostgreSQL database instead of SQLite under --data:
    /// `postgres://user[:password]@host[:port]/db` (no TLS: sslmode=disable or prefer). Prefer the
    /// environment variable when the URL holds a password.
    #[arg(long, env = "FLEDGE_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// This replica's id among the replicas sharing a --database (shown by /healthz and in the
    /// events it commits). Default: the host's name with a random suffix.
    #[arg(long, env = "FLEDGE_REPLICA_ID")]
    replica_id: Option<String>,
    /// Bearer token required on mutating and data-plane endpoints (unset: no auth).
    #[arg(long, env = "FLEDGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How long `GET /v1/config` holds a request when nothing changed, in seconds.
    #[arg(long, env = "FLEDGE_POLL_HOLD_SECS", default_value_t = 30.0)]
    poll_hold_secs: f64,
    /// How hard each commit is pushed to disk: `full` (survives power loss) or `normal` (survives a
    /// crash of the process; may lose the last commits on power loss, with fewer fsyncs). With
    /// --database, `normal` turns `synchronous_commit` off and `full` keeps the server's setting.
    #[arg(long, env = "FLEDGE_SYNC", default_value = "full")]
    sync: Durability,
    /// Directory of Rollout documents to apply as they change (a mounted ConfigMap; see docs/kubernetes.md).
    #[arg(long, env = "FLEDGE_ROLLOUTS_DIR")]
    rollouts_dir: Option<PathBuf>,
    /// With --rollouts-dir: delete rollouts that no file there declares.
    #[arg(long, requires = "rollouts_dir")]
    prune: bool,
    /// Signs every webhook notification: `x-fledge-signature: sha256=<hex HMAC-SHA256 of the body>`.
    /// Prefer the environment variable (a command line is visible to other users of the machine).
    #[arg(long, env = "FLEDGE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// The longest wait between two attempts of a failing notification, in seconds (retries start at
    /// 0.5 s and double up to this).
    #[arg(long, env = "FLEDGE_WEBHOOK_BACKOFF_CAP_SECS", default_value_t = 60.0)]
    webhook_backoff_cap_secs: f64,
    /// Time limit of one notification attempt, in seconds.
    #[arg(long, env = "FLEDGE_WEBHOOK_TIMEOUT_SECS", default_value_t = 10.0)]
    webhook_timeout_secs: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLEDGE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await.map(|()| std::process::ExitCode::SUCCESS),
        Command::Rollouts(args) => fledge_controller::cli::run(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = match args.database.as_deref().filter(|url| !url.is_empty()) {
        Some(url) => Store::postgres(url, args.sync)?,
        None => Store::open_with(&args.data, args.sync)?,
    };
    let store_description = store.describe();
    let settings = Settings {
        poll_hold: Duration::try_from_secs_f64(args.poll_hold_secs).context("--poll-hold-secs must be a positive number")?,
        token: args.token.filter(|t| !t.is_empty()),
        webhooks: WebhookSettings {
            secret: args.webhook_secret.filter(|s| !s.is_empty()).map(|s| Secret::new(&s)),
            backoff_cap: positive_secs(args.webhook_backoff_cap_secs).context("--webhook-backoff-cap-secs must be a positive number")?,
            timeout: positive_secs(args.webhook_timeout_secs).context("--webhook-timeout-secs must be a positive number")?,
        },
        replica: match args.replica_id.filter(|r| !r.is_empty()) {
            Some(r) if fledge_core::report::valid_identifier(&r) && r.len() <= 200 => r,
            Some(r) => anyhow::bail!("--replica-id {r:?}: use 1-200 printable characters without spaces"),
            None => String::new(),
        },
    };
    let state = AppState::new(store, settings)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let current = state.current();
    tracing::info!(%addr, store = %store_description, epoch = %current.epoch, generation = current.generation, replica = %state.cluster().replica(), "fledge controller started");
    // A machine-readable line for scripts and tests that start fledge on port 0.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "fledge listening on http://{addr}")?;
        out.flush()?;
    }
    let cluster = fledge_controller::cluster::spawn(state.clone());
    let driver = fledge_controller::driver::spawn(state.clone());
    let prober = fledge_controller::readiness::spawn(state.clone());
    let approver = fledge_controller::approval::spawn(state.clone());
    let notifier = fledge_controller::notify::spawn(state.clone());
    let sampler = fledge_controller::series::spawn(state.clone());
    let gitops = args.rollouts_dir.map(|dir| fledge_controller::gitops::spawn(state.clone(), dir, args.prune));
    let shutdown_state = state.clone();
    // TCP_NODELAY: config pushes and report acknowledgements are small writes that must not wait on Nagle.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown().await;
            tracing::info!("shutting down");
            shutdown_state.begin_shutdown();
        })
        .await?;
    driver.abort();
    // The cluster's tasks end on the shutdown signal (the lease is released); wait for them briefly.
    for task in cluster {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    prober.abort();
    approver.abort();
    notifier.abort();
    sampler.abort();
    if let Some(g) = gitops {
        g.abort();
    }
    Ok(())
}

fn positive_secs(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s).ok().filter(|d| !d.is_zero())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
