//! The in-process load generator: `connections` HTTP/1.1 keep-alive connections on loopback, each
//! sending `GET /task` with `Host: bench-agent` and a rotating `x-user-id`, either back to back or
//! paced to a fixed total rate.
//!
//! Used where wrk does not fit: latency at a fixed rate (wrk2 is not packaged in Debian; wrk's own
//! latency at saturation is queueing, not service time), the rollback run's steady 500 rps, and as the
//! smoke test's stand-in when wrk is not installed. It runs on its own thread and single-threaded
//! runtime so its timers are not delayed by the benchmark's other tasks.
//!
//! Pacing: connection `k` of `C` sends at `t0 + (k + i·C)/rate`. Latency is measured from the moment a
//! request is written, like wrk's; if the target fell behind, sends would bunch up and `achieved_rps`
//! would drop below the asked rate, which the report shows.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

#[derive(Clone)]
pub struct LoadSpec {
    pub target: SocketAddr,
    pub host: String,
    pub connections: usize,
    /// Total requests per second over all connections; None: as fast as responses come back.
    pub rate: Option<f64>,
    /// Upper bound of the run; `stop` may end it earlier.
    pub duration: Duration,
    /// Distinct `x-user-id` values to rotate through (0: send no sticky key).
    pub users: usize,
    pub user_prefix: String,
    pub stop: Option<Arc<AtomicBool>>,
}

#[derive(Debug, Default)]
pub struct LoadResult {
    pub ok: u64,
    /// Non-2xx answers.
    pub bad_status: u64,
    /// Connection or protocol errors.
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency of each answered request, µs, sorted.
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn achieved_rps(&self) -> f64 {
        (self.ok + self.bad_status) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile_us(&self, q: f64) -> f64 {
        crate::stats::quantile_sorted(&self.latencies_us, q)
    }
}

/// Runs the load on a dedicated thread; resolves when it is done.
pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadResult> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("fledge-bench-load".into()).spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(drive(spec)));
        let _ = tx.send(result);
    })?;
    rx.await.context("load thread died")?
}

async fn drive(spec: LoadSpec) -> anyhow::Result<LoadResult> {
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..spec.connections).map(|k| tokio::spawn(connection(spec.clone(), k, start))).collect();
    let mut total = LoadResult::default();
    for t in tasks {
        let r = t.await??;
        total.ok += r.ok;
        total.bad_status += r.bad_status;
        total.errors += r.errors;
        total.latencies_us.extend(r.latencies_us);
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    anyhow::ensure!(total.ok + total.bad_status > 0, "no request was answered ({} errors)", total.errors);
    Ok(total)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(target: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn connection(spec: LoadSpec, k: usize, start: tokio::time::Instant) -> anyhow::Result<LoadResult> {
    let mut r = LoadResult::default();
    let end = start + spec.duration;
    let interval = spec.rate.map(|rate| Duration::from_secs_f64(spec.connections as f64 / rate.max(1e-3)));
    let mut next = start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(k as f64 / spec.connections as f64));
    let mut sender = connect(spec.target).await?;
    let mut i: usize = 0;
    loop {
        if let Some(iv) = interval {
            if next >= end {
                break;
            }
            tokio::time::sleep_until(next).await;
            next += iv;
        }
        if tokio::time::Instant::now() >= end || spec.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
            break;
        }
        let mut req = hyper::Request::get("/task").header(hyper::header::HOST, &spec.host);
        if spec.users > 0 {
            let user = (k + i * spec.connections) % spec.users;
            req = req.header("x-user-id", format!("{}-{user}", spec.user_prefix));
        }
        i += 1;
        let req = req.body(Empty::<Bytes>::new())?;
        if sender.ready().await.is_err() {
            r.errors += 1;
            sender = connect(spec.target).await?;
            continue;
        }
        let t = Instant::now();
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.into_body().collect().await;
                if body.is_err() {
                    r.errors += 1;
                    continue;
                }
                r.latencies_us.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                if status.is_success() {
                    r.ok += 1;
                } else {
                    r.bad_status += 1;
                }
            }
            Err(_) => {
                r.errors += 1;
                sender = connect(spec.target).await?;
            }
        }
    }
    Ok(r)
}
