//! One held config poll per proxy, enforced where polls are counted.
//!
//! A proxy's root contexts elect one fetcher with a lease in shared data (`core::lease`). When the
//! holder stalls past the lease's lifetime (a worker busy for a second on a loaded host), another
//! context takes the lease over and polls, but the stalled context's poll is still held here, for up
//! to the whole hold time, and proxy-wasm cannot cancel an HTTP call. So the controller answers it:
//! a poll naming its proxy (`x-fledge-proxy`) supersedes that proxy's held poll, which gets its 304 at
//! once (with `x-fledge-superseded: true`). The context that lost the lease does not poll again.
//!
//! Only a held poll at least [`MIN_AGE`] old is superseded. A takeover always comes a lease lifetime
//! (≥ 1 s) after the old holder's last poll, so this never spares a stale poll; and two Envoys
//! misconfigured with the same proxy id cannot answer each other's polls in a loop: their polls,
//! re-sent at once after a 304, are younger than that and simply both stay held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How old a held poll must be before a newer one from the same proxy supersedes it.
pub const MIN_AGE: Duration = Duration::from_millis(500);
/// Proxies tracked at once; beyond that a poll is held untracked (it cannot be superseded).
pub const MAX_TRACKED: usize = 100_000;

struct Held {
    id: u64,
    since: Instant,
    supersede: oneshot::Sender<()>,
}

/// The held poll of each proxy that named itself.
#[derive(Default)]
pub struct Pollers {
    held: Mutex<HashMap<String, Held>>,
    next_id: AtomicU64,
    superseded: AtomicU64,
}

/// A tracked poll. Dropping it (the poll answered, or its connection gone) forgets it.
pub struct Ticket<'a> {
    pollers: &'a Pollers,
    proxy: String,
    id: u64,
    superseded: oneshot::Receiver<()>,
}

impl Ticket<'_> {
    /// Completes when a newer poll of the same proxy supersedes this one; never otherwise.
    pub async fn superseded(&mut self) {
        // A dropped sender (the entry replaced by a poll too young to supersede) is no reason to answer.
        if (&mut self.superseded).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.pollers.release(&self.proxy, self.id);
    }
}

impl Pollers {
    /// Registers the poll of `proxy` starting at `now`, superseding that proxy's older held poll.
    /// `None` when the registry is full.
    pub fn hold(&self, proxy: &str, now: Instant) -> Option<Ticket<'_>> {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= MAX_TRACKED && !held.contains_key(proxy) {
            return None;
        }
        let mine = Held {
            id,
            since: now,
            supersede: tx,
        };
        if let Some(old) = held.insert(proxy.to_string(), mine) {
            if now.saturating_duration_since(old.since) >= MIN_AGE && old.supersede.send(()).is_ok()
            {
                self.superseded.fetch_add(1, Ordering::Relaxed);
            }
        }
        Some(Ticket {
            pollers: self,
            proxy: proxy.to_string(),
            id,
            superseded: rx,
        })
    }

    /// The poll `id` of `proxy` ended; forgets it unless a newer one took its place.
    fn release(&self, proxy: &str, id: u64) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.get(proxy).is_some_and(|h| h.id == id) {
            held.remove(proxy);
        }
    }

    /// Held polls answered early because a newer poll of their proxy arrived.
    pub fn superseded(&self) -> u64 {
        self.superseded.load(Ordering::Relaxed)
    }

    pub fn tracked(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(t: &mut Option<Ticket<'_>>) -> bool {
        t.as_mut().is_some_and(|t| t.superseded.try_recv().is_ok())
    }

    #[test]
    fn a_newer_poll_supersedes_an_older_one_of_the_same_proxy() {
        let p = Pollers::default();
        let t0 = Instant::now();
        let mut a = p.hold("envoy-a", t0);
        let mut b = p.hold("envoy-b", t0 + Duration::from_secs(1));
        let c = p.hold("envoy-a", t0 + Duration::from_secs(2));
        assert!(fired(&mut a), "the stalled context's poll is answered");
        assert!(!fired(&mut b) && c.is_some());
        assert_eq!((p.superseded(), p.tracked()), (1, 2));
        drop(a);
        assert_eq!(
            p.tracked(),
            2,
            "the superseded poll's end does not forget the newer one"
        );
        drop(c);
        assert_eq!(p.tracked(), 1);
    }

    #[test]
    fn young_polls_are_not_superseded_so_shared_ids_cannot_loop() {
        let p = Pollers::default();
        let t0 = Instant::now();
        let mut a = p.hold("dup", t0);
        let b = p.hold("dup", t0 + MIN_AGE / 2);
        assert!(!fired(&mut a));
        assert_eq!(p.superseded(), 0);
        drop((a, b));
        assert_eq!(p.tracked(), 0);
    }
}
