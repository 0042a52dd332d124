//! Stable's telemetry, sampled: every canary request is measured, and of stable's only enough to keep
//! its sample a set multiple of the canary's, never below a floor.
//!
//! Stable carries 95-99 % of a rollout's traffic, but its rates are known far more precisely than
//! the canary's; measuring every one of its requests costs each of them the response-side hostcalls
//! (the response header map, two clock reads) for evidence the judgement barely needs. Per rollout and
//! report interval a worker counts the requests it routed to each side; for the next interval a
//! stable request is measured with probability `p = min(1, (multiple · canary + floor) / stable)`,
//! drawn at request start, before anything about the answer is known — so a sampled request is
//! like any other and the measured rates and quantiles stay unbiased. The rule is the one the
//! judgement's simulations check (`analysis::simulation::StableSample`, "A design under study" in
//! docs/analysis-method.md): at 4 × + 50 every decision-quality bound still holds.
//!
//! Requests not measured are still counted (`unmeasured`), so the traffic each version carried stays
//! visible. Pure: the caller brings the random draw.

use crate::route::Side;

/// The configured rule (`"stable_sampling": {"multiple": 4, "floor": 50}` in the plugin config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StableSampling {
    multiple: f64,
    floor: u64,
}

impl StableSampling {
    /// `multiple` in [1, 1000] (a stable sample smaller than the canary's would cost the judgement
    /// more precision than it saves), `floor` at most 1,000,000.
    pub fn new(multiple: f64, floor: u64) -> Result<Self, String> {
        if !(multiple.is_finite() && (1.0..=1_000.0).contains(&multiple)) {
            return Err(format!("stable_sampling.multiple must be from 1 to 1000, got {multiple}"));
        }
        if floor > 1_000_000 {
            return Err(format!("stable_sampling.floor must be at most 1000000, got {floor}"));
        }
        Ok(Self { multiple, floor })
    }

    pub fn multiple(&self) -> f64 {
        self.multiple
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The share of stable's requests to measure after an interval with these routed counts.
    pub fn probability(&self, canary: u64, stable: u64) -> f64 {
        if stable == 0 {
            return 1.0;
        }
        ((self.multiple * canary as f64 + self.floor as f64) / stable as f64).clamp(0.0, 1.0)
    }
}

/// One rollout's counts this interval and the probability in force.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    /// Stable's measure probability as a threshold on a 32-bit draw (`u32::MAX`-scaled; 2^32: all).
    threshold: u64,
    canary: u64,
    stable: u64,
}

impl Default for Slot {
    fn default() -> Self {
        Self { threshold: 1 << 32, canary: 0, stable: 0 }
    }
}

/// One worker's sampler: a slot per rollout of the current route table, by index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampler {
    rule: Option<StableSampling>,
    slots: Vec<Slot>,
}

impl Sampler {
    /// A sampler for `rollouts` rollouts (everything measured without a rule). A new route table
    /// starts a new sampler: its first interval measures every request.
    pub fn new(rule: Option<StableSampling>, rollouts: usize) -> Self {
        Self { rule, slots: if rule.is_some() { vec![Slot::default(); rollouts] } else { Vec::new() } }
    }

    /// A rule is in force: the caller needs a random draw per request (none otherwise).
    pub fn is_active(&self) -> bool {
        self.rule.is_some()
    }

    /// Whether to measure a request of rollout `index` routed to `side`; `draw` is a uniform random
    /// 32-bit number, taken before the answer. Canary requests are always measured.
    pub fn measure(&mut self, index: usize, side: Side, draw: u32) -> bool {
        let Some(slot) = self.slots.get_mut(index) else { return true };
        match side {
            Side::Canary => {
                slot.canary = slot.canary.saturating_add(1);
                true
            }
            Side::Stable => {
                slot.stable = slot.stable.saturating_add(1);
                u64::from(draw) < slot.threshold
            }
        }
    }

    /// Closes the interval (at each report): every rollout's probability for the next one from the
    /// counts of this one.
    pub fn end_interval(&mut self) {
        let Some(rule) = self.rule else { return };
        for slot in &mut self.slots {
            // An interval without traffic keeps the probability it had.
            if slot.canary > 0 || slot.stable > 0 {
                let p = rule.probability(slot.canary, slot.stable);
                slot.threshold = if p >= 1.0 { 1 << 32 } else { (p * 4_294_967_296.0) as u64 };
            }
            slot.canary = 0;
            slot.stable = 0;
        }
    }

    /// The probability a stable request of rollout `index` is measured now (for logs and tests).
    pub fn probability(&self, index: usize) -> f64 {
        self.slots.get(index).map_or(1.0, |s| s.threshold as f64 / 4_294_967_296.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn the_rule_is_validated() {
        assert!(StableSampling::new(0.5, 50).is_err());
        assert!(StableSampling::new(f64::NAN, 50).is_err());
        assert!(StableSampling::new(4.0, 2_000_000).is_err());
        assert!(StableSampling::new(4.0, 50).is_ok());
    }

    #[test]
    fn without_a_rule_everything_is_measured() {
        let mut s = Sampler::new(None, 3);
        for i in 0..100 {
            assert!(s.measure(0, Side::Stable, i));
        }
        s.end_interval();
        assert!(s.measure(0, Side::Stable, u32::MAX));
    }

    #[test]
    fn the_first_interval_measures_all_then_stable_follows_the_rule() {
        let rule = StableSampling::new(4.0, 50).unwrap();
        let mut s = Sampler::new(Some(rule), 1);
        let mut rng = SplitMix64::new(7);
        // 5 % canary: 500 canary, 9,500 stable in the first interval, all measured.
        let (mut measured, mut total) = (0u64, 0u64);
        for i in 0..10_000u64 {
            let side = if i % 20 == 0 { Side::Canary } else { Side::Stable };
            if s.measure(0, side, rng.next_u32()) && side == Side::Stable {
                measured += 1;
            }
            total += u64::from(side == Side::Stable);
        }
        assert_eq!((measured, total), (9_500, 9_500));
        s.end_interval();
        let p = s.probability(0);
        assert!((p - (4.0 * 500.0 + 50.0) / 9_500.0).abs() < 1e-9, "{p}");
        // The next interval: about 4 × 500 + 50 of stable's 9,500 measured, every canary request.
        let (mut stable, mut canary) = (0u64, 0u64);
        for i in 0..10_000u64 {
            let side = if i % 20 == 0 { Side::Canary } else { Side::Stable };
            if s.measure(0, side, rng.next_u32()) {
                match side {
                    Side::Stable => stable += 1,
                    Side::Canary => canary += 1,
                }
            }
        }
        assert_eq!(canary, 500);
        assert!((1_900..=2_200).contains(&stable), "{stable}");
    }

    #[test]
    fn a_quiet_interval_keeps_the_probability_and_the_floor_holds() {
        let rule = StableSampling::new(4.0, 50).unwrap();
        let mut s = Sampler::new(Some(rule), 2);
        for _ in 0..1_000 {
            s.measure(1, Side::Stable, 0);
        }
        s.end_interval();
        // No canary traffic: the floor alone, 50 of 1,000.
        assert!((s.probability(1) - 0.05).abs() < 1e-9);
        s.end_interval();
        assert!((s.probability(1) - 0.05).abs() < 1e-9, "kept through an empty interval");
        assert_eq!(s.probability(0), 1.0, "rollout 0 never saw traffic");
        // An index past the table (a config swapped mid-request) is measured.
        assert!(s.measure(9, Side::Stable, u32::MAX));
    }
}
