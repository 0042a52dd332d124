//! Waiting for a condition with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Ok`, or fails with the last error once `within` has
/// passed. Returns the value and how long it took.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<(T, Duration)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return Ok((v, start.elapsed())),
            Err(e) if start.elapsed() >= within => {
                anyhow::bail!("{what}: not true within {within:?}; last: {e:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// `assert_eventually!(within, "what", async { ... Ok(..) })` — panics with the last error on timeout.
#[macro_export]
macro_rules! assert_eventually {
    ($within:expr, $what:expr, $check:expr) => {
        match $crate::eventually($within, $what, || $check).await {
            Ok(v) => v,
            Err(e) => panic!("{e:#}"),
        }
    };
}
