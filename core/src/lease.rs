//! The fetcher lease: which of an Envoy process's root contexts long-polls the controller.
//!
//! `on_tick` fires in every worker's root context and in the main thread's. They share one shared-data
//! key holding `"<owner> <expires_ms>"`; whoever holds an unexpired lease fetches, the others only read
//! the stored config. The holder renews on **every tick, whether or not its poll is in flight**: a long
//! poll is held by the controller for up to 30 s, far longer than the lease's time to live, and a lease
//! renewed only between polls lapses mid-poll and lets every context start a poll of its own. If the
//! holder stops ticking (its worker is gone), the lease lapses after its TTL and another context takes
//! it over. The caller writes with compare-and-swap, so two contexts can never both win the same round.
//!
//! [`Fetcher`] is the whole policy, free of hostcalls: the root context feeds it what it read from
//! shared data and the time, writes what it returns, and tells it whether the write won.

/// A decoded lease value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: u64,
    pub expires_ms: u64,
}

impl Lease {
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(bytes).ok()?;
        let (owner, expires) = s.split_once(' ')?;
        Some(Self { owner: u64::from_str_radix(owner, 16).ok()?, expires_ms: expires.parse().ok()? })
    }

    pub fn encode(&self) -> String {
        format!("{:x} {}", self.owner, self.expires_ms)
    }
}

/// The value a context writes to give the lease up at once (it decodes as lapsed).
pub const RELEASED: &[u8] = b"-";

/// What a context should write, given the lease it read. `None`: someone else holds it.
/// An unreadable value is treated as lapsed so a corrupt key cannot stop fetching forever.
pub fn claim(current: Option<&[u8]>, me: u64, now_ms: u64, ttl_ms: u64) -> Option<Lease> {
    let mine = Lease { owner: me, expires_ms: now_ms.saturating_add(ttl_ms) };
    match current.and_then(Lease::decode) {
        Some(l) if l.owner != me && l.expires_ms > now_ms => None,
        _ => Some(mine),
    }
}

/// How long a lease lives without renewal: ten ticks, and at least a second, so that a worker busy
/// with a burst of requests for a few ticks does not lose it. Independent of the poll's duration,
/// because renewal does not wait for the poll.
pub fn ttl_ms(tick_ms: u64) -> u64 {
    tick_ms.saturating_mul(10).max(1_000)
}

/// One root context's side of the lease.
#[derive(Debug, Clone)]
pub struct Fetcher {
    owner: u64,
    ttl_ms: u64,
    held: bool,
    /// After giving the lease up (a failed dispatch), stay away until then so another context tries.
    blocked_until_ms: u64,
}

/// What to do this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Write this value with the CAS read alongside `current`, then report the outcome to [`Fetcher::written`].
    Write(String),
    /// Leave shared data alone: another context holds the lease, or this one is backing off.
    Stay,
}

impl Fetcher {
    pub fn new(owner: u64, tick_ms: u64) -> Self {
        Self { owner, ttl_ms: ttl_ms(tick_ms), held: false, blocked_until_ms: 0 }
    }

    pub fn owner(&self) -> u64 {
        self.owner
    }

    pub fn ttl(&self) -> u64 {
        self.ttl_ms
    }

    /// Called on every tick with the stored lease, poll in flight or not.
    pub fn tick(&mut self, current: Option<&[u8]>, now_ms: u64) -> Renewal {
        if now_ms < self.blocked_until_ms {
            self.held = false;
            return Renewal::Stay;
        }
        match claim(current, self.owner, now_ms, self.ttl_ms) {
            Some(lease) => Renewal::Write(lease.encode()),
            None => {
                self.held = false;
                Renewal::Stay
            }
        }
    }

    /// Whether the CAS write returned by [`Fetcher::tick`] won.
    pub fn written(&mut self, won: bool) {
        self.held = won;
    }

    /// This context holds the lease (as of its last tick) and may poll.
    pub fn holds(&self) -> bool {
        self.held
    }

    /// The poll could not even be dispatched from this context: give the lease up and keep away for
    /// `backoff_ms`, so that another context (a worker rather than the main thread, say) takes over.
    /// Returns the value to write (unconditionally) to shared data.
    pub fn give_up(&mut self, now_ms: u64, backoff_ms: u64) -> &'static [u8] {
        self.held = false;
        self.blocked_until_ms = now_ms.saturating_add(backoff_ms);
        RELEASED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let l = Lease { owner: 0xdead_beef, expires_ms: 1234 };
        assert_eq!(Lease::decode(l.encode().as_bytes()), Some(l));
        assert_eq!(Lease::decode(b"garbage"), None);
        assert_eq!(Lease::decode(RELEASED), None);
    }

    #[test]
    fn claims() {
        let other = Lease { owner: 2, expires_ms: 1_000 }.encode();
        assert_eq!(claim(None, 1, 0, 500), Some(Lease { owner: 1, expires_ms: 500 }));
        assert_eq!(claim(Some(other.as_bytes()), 1, 999, 500), None, "held by another");
        assert!(claim(Some(other.as_bytes()), 1, 1_000, 500).is_some(), "lapsed");
        let mine = Lease { owner: 1, expires_ms: 1_000 }.encode();
        assert_eq!(claim(Some(mine.as_bytes()), 1, 10, 500), Some(Lease { owner: 1, expires_ms: 510 }));
        assert!(claim(Some(b"\xff"), 1, 0, 500).is_some(), "corrupt value lapses");
    }

    /// Shared data with CAS, as Envoy keeps it: a write wins only if nobody wrote since the read.
    #[derive(Default)]
    struct Shared {
        value: Option<Vec<u8>>,
        cas: u32,
    }

    impl Shared {
        /// One context's tick: read, decide, CAS-write.
        fn tick(&mut self, f: &mut Fetcher, now: u64) {
            let (read, cas) = (self.value.clone(), self.cas);
            if let Renewal::Write(v) = f.tick(read.as_deref(), now) {
                let won = cas == self.cas;
                if won {
                    self.value = Some(v.into_bytes());
                    self.cas += 1;
                }
                f.written(won);
            }
        }
    }

    /// Four workers and the main thread ticking every 50 ms: exactly one holds the lease at any time.
    #[test]
    fn one_holder_renewing_while_its_poll_is_in_flight() {
        let tick = 50;
        let mut shared = Shared::default();
        let mut contexts: Vec<Fetcher> = (1..=5).map(|o| Fetcher::new(o, tick)).collect();
        // A 40 s long poll is in flight from the first holder the whole time: renewal must not wait for it.
        for t in 0..(40_000 / tick) {
            for c in contexts.iter_mut() {
                shared.tick(c, t * tick);
            }
            let holders: Vec<u64> = contexts.iter().filter(|c| c.holds()).map(Fetcher::owner).collect();
            assert_eq!(holders, [1], "at {} ms", t * tick);
        }
        assert!(ttl_ms(tick) < 40_000, "the TTL is far shorter than a held poll, so renewal per tick matters");
    }

    #[test]
    fn handover_when_the_holder_stops_renewing() {
        let tick = 50;
        let mut shared = Shared::default();
        let (mut a, mut b) = (Fetcher::new(1, tick), Fetcher::new(2, tick));
        shared.tick(&mut a, 0);
        shared.tick(&mut b, 0);
        assert!(a.holds() && !b.holds());
        // `a`'s worker stops ticking at 0 ms; `b` ticks on and takes over once the lease lapsed.
        let mut took_over_at = None;
        for t in 1..100 {
            shared.tick(&mut b, t * tick);
            if b.holds() {
                took_over_at = Some(t * tick);
                break;
            }
        }
        assert_eq!(took_over_at, Some(ttl_ms(tick)), "exactly when the TTL ran out");
        // `a` comes back while `b`'s lease is live: it finds the lease taken and does not poll.
        shared.tick(&mut a, ttl_ms(tick) + 500);
        assert!(!a.holds());
    }

    #[test]
    fn giving_up_hands_the_lease_to_another_context() {
        let mut shared = Shared::default();
        let (mut a, mut b) = (Fetcher::new(1, 50), Fetcher::new(2, 50));
        shared.tick(&mut a, 0);
        assert!(a.holds());
        shared.value = Some(a.give_up(10, 5_000).to_vec());
        shared.cas += 1;
        shared.tick(&mut a, 50);
        shared.tick(&mut b, 50);
        assert!(!a.holds() && b.holds(), "the released lease goes to the other context at once");
        shared.tick(&mut b, 5_100);
        shared.tick(&mut a, 5_100);
        assert!(!a.holds() && b.holds(), "after its backoff `a` finds the lease held");
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(ttl_ms(50), 1_000);
        assert_eq!(ttl_ms(500), 5_000);
        assert_eq!(ttl_ms(u64::MAX), u64::MAX);
    }
}
