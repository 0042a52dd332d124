//! Retry delays for the config poll: doubling from a floor to a ceiling, with the caller's randomness
//! spreading proxies apart so a restarted controller is not hit by all of them in the same instant.

#[derive(Debug, Clone)]
pub struct Backoff {
    floor_ms: u64,
    ceiling_ms: u64,
    failures: u32,
}

impl Backoff {
    pub fn new(floor_ms: u64, ceiling_ms: u64) -> Self {
        Self { floor_ms: floor_ms.max(1), ceiling_ms: ceiling_ms.max(floor_ms.max(1)), failures: 0 }
    }

    /// Records a failure and returns how long to wait; `jitter` in 0..=u32::MAX adds up to 25%.
    pub fn fail(&mut self, jitter: u32) -> u64 {
        let base = self.floor_ms.saturating_mul(1u64 << self.failures.min(20)).min(self.ceiling_ms);
        self.failures = self.failures.saturating_add(1);
        base + base / 4 * u64::from(jitter) / u64::from(u32::MAX)
    }

    pub fn succeed(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_ceiling_and_resets() {
        let mut b = Backoff::new(100, 1_000);
        let d: Vec<u64> = (0..6).map(|_| b.fail(0)).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert!(b.fail(u32::MAX) <= 1_250);
        b.succeed();
        assert_eq!(b.fail(0), 100);
    }
}
