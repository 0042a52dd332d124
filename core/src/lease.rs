//! The fetcher lease: which of an Envoy process's root contexts polls the controller.
//!
//! `on_tick` fires in every worker's root context and in the main thread's. They share one shared-data
//! key holding `"<owner> <expires_ms>"`; whoever holds an unexpired lease fetches, others only read the
//! stored config. The holder renews on every tick; if it dies, the lease lapses and another takes it.
//! Written with compare-and-swap by the caller, so two contexts can never both win the same round.

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

/// What a context should write, given the lease it read. `None`: someone else holds it.
/// An unreadable value is treated as lapsed so a corrupt key cannot stop fetching forever.
pub fn claim(current: Option<&[u8]>, me: u64, now_ms: u64, ttl_ms: u64) -> Option<Lease> {
    let mine = Lease { owner: me, expires_ms: now_ms.saturating_add(ttl_ms) };
    match current.and_then(Lease::decode) {
        Some(l) if l.owner != me && l.expires_ms > now_ms => None,
        _ => Some(mine),
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
}
