//! Weights and buckets: the integer arithmetic of the cohort decision.
//!
//! Traffic is split into 10,000 buckets so a weight with two decimals (12.34 %) is exact. A key's bucket
//! never depends on the weight, which is what makes a ramp monotonic: raising the weight only moves the
//! threshold, so every key already below it stays below it.

use serde::{Deserialize, Serialize};

use crate::murmur3::murmur3_x86_32;

/// Number of buckets; a weight of 100 % covers all of them.
pub const BUCKETS: u16 = 10_000;

/// A bucket in `0..BUCKETS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bucket(u16);

impl Bucket {
    /// The bucket of a sticky key under a rollout's salt.
    pub fn of_key(key: &[u8], salt: u32) -> Self {
        Self((murmur3_x86_32(key, salt) % u32::from(BUCKETS)) as u16)
    }

    /// A bucket from a random number (requests without a sticky key).
    pub fn of_random(r: u32) -> Self {
        Self((r % u32::from(BUCKETS)) as u16)
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// Canary share of traffic, held as basis points (0..=10,000) so it has exactly two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Weight(u16);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightError {
    #[error("weight must be between 0 and 100 (percent), got {0}")]
    OutOfRange(f64),
    #[error("weight has at most two decimals, got {0}")]
    TooPrecise(f64),
}

impl Weight {
    pub const ZERO: Weight = Weight(0);
    pub const FULL: Weight = Weight(BUCKETS);

    /// From a percentage such as `12.5`.
    pub fn try_from_percent(percent: f64) -> Result<Self, WeightError> {
        if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
            return Err(WeightError::OutOfRange(percent));
        }
        let bp = (percent * 100.0).round();
        if (percent * 100.0 - bp).abs() > 1e-6 {
            return Err(WeightError::TooPrecise(percent));
        }
        Ok(Self(bp as u16))
    }

    pub fn from_basis_points(bp: u16) -> Self {
        Self(bp.min(BUCKETS))
    }

    pub fn basis_points(self) -> u16 {
        self.0
    }

    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// True unless every bucket gets the same version (0 % or 100 %).
    pub fn is_split(self) -> bool {
        self.0 != 0 && self.0 != BUCKETS
    }

    /// True when `bucket` falls in the canary's share.
    pub fn admits(self, bucket: Bucket) -> bool {
        bucket.0 < self.0
    }
}

impl Serialize for Weight {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.percent())
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Weight::try_from_percent(v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn weight_parsing() {
        assert_eq!(Weight::try_from_percent(12.34).map(Weight::basis_points), Ok(1234));
        assert_eq!(Weight::try_from_percent(100.0), Ok(Weight::FULL));
        assert!(matches!(Weight::try_from_percent(100.01), Err(WeightError::OutOfRange(_))));
        assert!(matches!(Weight::try_from_percent(-1.0), Err(WeightError::OutOfRange(_))));
        assert!(matches!(Weight::try_from_percent(f64::NAN), Err(WeightError::OutOfRange(_))));
        assert!(matches!(Weight::try_from_percent(1.234), Err(WeightError::TooPrecise(_))));
    }

    #[test]
    fn extremes() {
        assert!(!Weight::ZERO.is_split() && !Weight::FULL.is_split());
        assert!(Weight::from_basis_points(1).is_split());
        for key in ["a", "b", "user-42", ""] {
            let b = Bucket::of_key(key.as_bytes(), 7);
            assert!(!Weight::ZERO.admits(b));
            assert!(Weight::FULL.admits(b));
        }
    }

    proptest! {
        // A key admitted at weight w is admitted at every weight above w.
        #[test]
        fn membership_is_monotonic(key in ".{0,40}", salt: u32, lo in 0u16..=10_000, hi in 0u16..=10_000) {
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let b = Bucket::of_key(key.as_bytes(), salt);
            if Weight::from_basis_points(lo).admits(b) {
                prop_assert!(Weight::from_basis_points(hi).admits(b));
            }
        }

        // Over many distinct keys the admitted share converges to the weight.
        #[test]
        fn share_converges_to_weight(bp in 0u16..=10_000, salt: u32) {
            let n = 20_000u32;
            let w = Weight::from_basis_points(bp);
            let hits = (0..n).filter(|i| w.admits(Bucket::of_key(format!("user-{i}").as_bytes(), salt))).count();
            let share = hits as f64 / f64::from(n);
            // 5 standard deviations of a binomial proportion at n = 20,000 is at most 1.8 pp.
            prop_assert!((share - w.percent() / 100.0).abs() < 0.018, "share {share} weight {}", w.percent());
        }
    }
}
