//! Mann–Whitney U test (x = canary, y = stable), on raw samples or on two latency histograms.
//!
//! Ranks are computed per group of equal values (midranks), so a histogram bucket is simply a
//! tie group at its representative value. Two-sided p-values: exact (no ties, small samples)
//! from the Gaussian-binomial counting distribution, or normal with tie correction and an
//! optional continuity correction, as scipy's `mannwhitneyu`.
//! Fixed-sample test: valid for one look, reported for context only.

use super::{normal, StatsError};
use crate::histogram::Histogram;
use std::cmp::Ordering;
use std::iter::Peekable;

/// Largest n₁ + n₂ for the exact distribution: C(120, 60) still fits an i128 with room to spare.
const EXACT_MAX_TOTAL: u64 = 120;

/// The U statistic with what its p-values need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U for the first sample (x): pairs (xᵢ, yⱼ) with xᵢ > yⱼ, ties counting ½.
    pub u1: f64,
    pub n1: u64,
    pub n2: u64,
    /// Σ (t³ − t) over tie groups of size t.
    pub tie_term: f64,
}

impl MannWhitney {
    pub fn from_samples(x: &[f64], y: &[f64]) -> Result<Self, StatsError> {
        if x.iter().chain(y).any(|v| v.is_nan()) {
            return Err(StatsError::OutOfDomain {
                name: "sample value",
                value: f64::NAN,
                domain: "numbers",
            });
        }
        let mut all: Vec<(f64, bool)> = x
            .iter()
            .map(|&v| (v, true))
            .chain(y.iter().map(|&v| (v, false)))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let groups = all.chunk_by(|a, b| a.0 == b.0).map(|group| {
            let from_x = group.iter().filter(|(_, is_x)| *is_x).count() as u64;
            (from_x, group.len() as u64 - from_x)
        });
        Self::from_groups(groups)
    }

    /// Each bucket is a tie group at its representative value.
    pub fn from_histograms(x: &Histogram, y: &Histogram) -> Result<Self, StatsError> {
        Self::from_groups(MergedBuckets {
            x: x.buckets().peekable(),
            y: y.buckets().peekable(),
        })
    }

    /// From (count in x, count in y) per distinct value, ascending by value.
    fn from_groups(groups: impl Iterator<Item = (u64, u64)>) -> Result<Self, StatsError> {
        let (mut n1, mut n2, mut rank_sum, mut tie_term, mut seen) = (0u64, 0u64, 0.0, 0.0, 0.0);
        for (cx, cy) in groups {
            let t = (cx + cy) as f64;
            rank_sum += cx as f64 * (seen + (t + 1.0) / 2.0);
            tie_term += t * t * t - t;
            seen += t;
            n1 += cx;
            n2 += cy;
        }
        if n1 == 0 || n2 == 0 {
            return Err(StatsError::Empty("Mann–Whitney sample"));
        }
        let n1f = n1 as f64;
        Ok(Self {
            u1: rank_sum - n1f * (n1f + 1.0) / 2.0,
            n1,
            n2,
            tie_term,
        })
    }

    pub fn u2(&self) -> f64 {
        (self.n1 as f64) * (self.n2 as f64) - self.u1
    }

    pub fn has_ties(&self) -> bool {
        self.tie_term > 0.0
    }

    /// Exact two-sided p = min(1, 2·P(U ≥ max(U₁, U₂))); no ties and n₁ + n₂ ≤ 120.
    pub fn p_exact_two_sided(&self) -> Result<f64, StatsError> {
        if self.has_ties() {
            return Err(StatsError::ExactUnavailable("samples have ties"));
        }
        if self.n1 + self.n2 > EXACT_MAX_TOTAL {
            return Err(StatsError::ExactUnavailable("n1 + n2 > 120"));
        }
        let counts = u_distribution(self.n1.min(self.n2) as usize, self.n1.max(self.n2) as usize);
        let u = self.u1.max(self.u2()).round() as usize;
        let total: i128 = counts.iter().sum();
        let upper: i128 = counts.iter().skip(u).sum();
        Ok((2.0 * upper as f64 / total as f64).min(1.0))
    }

    /// Normal approximation with tie-corrected variance; `continuity` subtracts ½ from |U − μ|.
    pub fn p_asymptotic_two_sided(&self, continuity: bool) -> Result<f64, StatsError> {
        let (n1, n2) = (self.n1 as f64, self.n2 as f64);
        let n = n1 + n2;
        let variance = n1 * n2 / 12.0 * ((n + 1.0) - self.tie_term / (n * (n - 1.0)));
        if variance.is_nan() || variance <= 0.0 {
            return Err(StatsError::ZeroVariance("U when all values are tied"));
        }
        let correction = if continuity { 0.5 } else { 0.0 };
        let z = (self.u1.max(self.u2()) - n1 * n2 / 2.0 - correction) / variance.sqrt();
        Ok((2.0 * normal::sf(z)).clamp(0.0, 1.0))
    }
}

/// Number of arrangements giving each U = 0..=m·n: the coefficients of the Gaussian binomial
/// [m+n choose m]_q = Π_{i=1..m} (1 − q^{n+i}) / (1 − q^i), built one factor at a time.
fn u_distribution(m: usize, n: usize) -> Vec<i128> {
    let len = m * n + 1;
    let mut c = vec![0i128; len];
    if let Some(first) = c.first_mut() {
        *first = 1;
    }
    for i in 1..=m {
        let before = c.clone();
        for (dst, src) in c.iter_mut().skip(n + i).zip(before.iter()) {
            *dst -= *src;
        }
        for k in i..len {
            let lower = c.get(k - i).copied().unwrap_or(0);
            if let Some(dst) = c.get_mut(k) {
                *dst += lower;
            }
        }
    }
    c
}

/// Walks two ascending (bucket, count) lists together, yielding (count in x, count in y).
struct MergedBuckets<X: Iterator<Item = (usize, u64)>, Y: Iterator<Item = (usize, u64)>> {
    x: Peekable<X>,
    y: Peekable<Y>,
}

impl<X: Iterator<Item = (usize, u64)>, Y: Iterator<Item = (usize, u64)>> Iterator
    for MergedBuckets<X, Y>
{
    type Item = (u64, u64);

    fn next(&mut self) -> Option<Self::Item> {
        let order = match (self.x.peek(), self.y.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(a), Some(b)) => a.0.cmp(&b.0),
        };
        let take_x = order != Ordering::Greater;
        let take_y = order != Ordering::Less;
        let cx = if take_x {
            self.x.next().map_or(0, |(_, n)| n)
        } else {
            0
        };
        let cy = if take_y {
            self.y.next().map_or(0, |(_, n)| n)
        } else {
            0
        };
        Some((cx, cy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testutil::assert_close;

    #[test]
    fn golden_no_ties() {
        let t = MannWhitney::from_samples(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0])
            .unwrap();
        assert_eq!(t.u1, 0.0);
        assert_close(
            t.p_exact_two_sided().unwrap(),
            0.007_936_507_936_507_936,
            1e-14,
        );
        assert_close(
            t.p_asymptotic_two_sided(true).unwrap(),
            0.012_185_780_355_344_813,
            1e-12,
        );
        assert_close(
            t.p_asymptotic_two_sided(false).unwrap(),
            0.009_023_438_818_080_326,
            1e-12,
        );
    }

    #[test]
    fn golden_ties() {
        let t = MannWhitney::from_samples(
            &[1.0, 2.0, 2.0, 3.0, 4.0, 4.0],
            &[2.0, 3.0, 3.0, 5.0, 6.0, 7.0],
        )
        .unwrap();
        assert_eq!(t.u1, 9.0);
        assert!(t.has_ties());
        assert_close(
            t.p_asymptotic_two_sided(true).unwrap(),
            0.166_657_470_320_907_6,
            1e-12,
        );
        assert!(t.p_exact_two_sided().is_err());
    }

    #[test]
    fn exact_distribution_is_symmetric_and_complete() {
        let c = u_distribution(4, 7);
        assert_eq!(c.iter().sum::<i128>(), 330); // C(11, 4)
        assert!(c.iter().zip(c.iter().rev()).all(|(a, b)| a == b));
        let big = u_distribution(60, 60);
        assert!(big.iter().all(|&v| v >= 0));
        // Identical samples interleaved: U = n1·n2/2, two-sided p = 1.
        let t = MannWhitney::from_samples(&[1.0, 4.0], &[2.0, 3.0]).unwrap();
        assert_close(t.p_exact_two_sided().unwrap(), 1.0, 1e-15);
    }

    #[test]
    fn histogram_version_matches_samples_at_bucket_values() {
        let mut hx = Histogram::new();
        let mut hy = Histogram::new();
        let xs = [150u64, 150, 900, 2_000, 2_000, 40_000];
        let ys = [150u64, 700, 900, 900, 10_000];
        xs.iter().for_each(|&v| hx.record(v));
        ys.iter().for_each(|&v| hy.record(v));
        let from_h = MannWhitney::from_histograms(&hx, &hy).unwrap();
        let rep =
            |v: u64| crate::histogram::bucket_value(crate::histogram::bucket_index(v)).unwrap();
        let xr: Vec<f64> = xs.iter().map(|&v| rep(v)).collect();
        let yr: Vec<f64> = ys.iter().map(|&v| rep(v)).collect();
        let from_s = MannWhitney::from_samples(&xr, &yr).unwrap();
        assert_eq!(from_h, from_s);
        assert_close(from_h.u1 + from_h.u2(), 30.0, 1e-15);
    }

    #[test]
    fn rejects_empty_and_all_tied() {
        assert!(MannWhitney::from_samples(&[], &[1.0]).is_err());
        assert!(MannWhitney::from_samples(&[f64::NAN], &[1.0]).is_err());
        let t = MannWhitney::from_samples(&[1.0, 1.0], &[1.0]).unwrap();
        assert!(t.p_asymptotic_two_sided(true).is_err());
    }
}
