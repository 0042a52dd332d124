//! Retry delays for the config poll (and the controller's webhook deliveries): doubling from a floor
//! to a ceiling, with the caller's randomness spreading proxies apart so a restarted controller is not
//! hit by all of them in the same instant.

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
        let delay = delay_ms(self.floor_ms, self.ceiling_ms, self.failures, jitter);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    pub fn succeed(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The wait after the `failures`-th failure in a row (0 for the first): `floor · 2^failures`, at most
/// `ceiling`, plus up to 25 % of it by `jitter` (0..=u32::MAX).
pub fn delay_ms(floor_ms: u64, ceiling_ms: u64, failures: u32, jitter: u32) -> u64 {
    let floor_ms = floor_ms.max(1);
    let base = floor_ms.saturating_mul(1u64 << failures.min(20)).min(ceiling_ms.max(floor_ms));
    base + base / 4 * u64::from(jitter) / u64::from(u32::MAX)
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
        assert_eq!(delay_ms(500, 5_000, 3, 0), 4_000);
        assert_eq!(delay_ms(500, 5_000, 4, 0), 5_000);
        assert_eq!(delay_ms(500, 5_000, u32::MAX, u32::MAX), 6_250, "capped, plus at most a quarter");
    }
}
