//! Log-linear latency histogram (HDR-like), in microseconds, mergeable across proxies.
//!
//! Each power-of-two octave is split into 64 equal sub-buckets, so a bucket's midpoint is within
//! 1/128 (< 0.8%) of any value in it. The layout is fixed (100 µs – 10 min, 1444 buckets), so
//! histograms from any proxy merge by adding counts. Recording is integer-only (one
//! `leading_zeros`, shifts and an add) because it runs for every request inside Envoy.

use serde::{Deserialize, Serialize};

/// Smallest value kept apart; smaller values are counted in the first bucket.
pub const MIN_MICROS: u64 = 100;
/// Largest value kept apart (10 minutes); larger values are counted in the last bucket.
pub const MAX_MICROS: u64 = 600_000_000;

const SUB_BITS: u32 = 6;
const SUB_COUNT: u64 = 1 << SUB_BITS;
const FIRST_RAW: usize = raw_index(MIN_MICROS);
const LAST_RAW: usize = raw_index(MAX_MICROS);
/// Number of buckets in every histogram (the wire form's indexes are below this).
pub const BUCKET_COUNT: usize = LAST_RAW - FIRST_RAW + 1;

/// Index in an unclamped layout whose first octave is [64, 128); only called with v ≥ 64.
const fn raw_index(v: u64) -> usize {
    let exponent = 63 - v.leading_zeros();
    let octave = exponent - SUB_BITS;
    let sub = (v >> octave) - SUB_COUNT;
    (octave as usize) * (SUB_COUNT as usize) + sub as usize
}

/// The bucket a value falls in, after clamping it to [`MIN_MICROS`, `MAX_MICROS`].
pub fn bucket_index(micros: u64) -> usize {
    raw_index(micros.clamp(MIN_MICROS, MAX_MICROS)) - FIRST_RAW
}

/// Smallest and largest value (inclusive) a bucket holds, or `None` past the last bucket.
pub fn bucket_bounds(index: usize) -> Option<(u64, u64)> {
    if index >= BUCKET_COUNT {
        return None;
    }
    let raw = index + FIRST_RAW;
    let octave = (raw / SUB_COUNT as usize) as u32;
    let sub = (raw % SUB_COUNT as usize) as u64;
    let low = (SUB_COUNT + sub) << octave;
    let high = low + (1u64 << octave) - 1;
    Some((low.max(MIN_MICROS), high.min(MAX_MICROS)))
}

/// The value reported for a bucket: its midpoint, within 1/128 of anything recorded in it.
pub fn bucket_value(index: usize) -> Option<f64> {
    bucket_bounds(index).map(|(low, high)| (low as f64 + high as f64) / 2.0)
}

/// Why a wire-form histogram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    /// A bucket index past the fixed layout: the sender uses another layout or the data is corrupt.
    #[error("bucket index {index} out of range (histograms have {BUCKET_COUNT} buckets)")]
    IndexOutOfRange { index: u16 },
}

/// Compact wire form: the non-empty buckets as (bucket index, count), ascending by index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparseHistogram {
    pub buckets: Vec<(u16, u64)>,
}

impl SparseHistogram {
    /// Every index inside the layout. (Order and duplicates are harmless: counts add.)
    pub fn validate(&self) -> Result<(), HistogramError> {
        match self.buckets.iter().find(|(i, _)| usize::from(*i) >= BUCKET_COUNT) {
            Some(&(index, _)) => Err(HistogramError::IndexOutOfRange { index }),
            None => Ok(()),
        }
    }

    /// Sum of the counts (saturating).
    pub fn total(&self) -> u64 {
        self.buckets.iter().fold(0u64, |acc, (_, n)| acc.saturating_add(*n))
    }
}

/// Latency histogram with the fixed log-linear layout; serialises as [`SparseHistogram`].
///
/// The dense counts are allocated on the first recorded value, not before: an empty histogram (most
/// stats windows' `latency_headers` before traffic, every version entry of an idle report) costs no
/// heap.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "SparseHistogram", into = "SparseHistogram")]
pub struct Histogram {
    /// Empty, or exactly [`BUCKET_COUNT`] long.
    counts: Vec<u64>,
    total: u64,
}

impl PartialEq for Histogram {
    /// Equal when the same values were recorded, however the counts are held.
    fn eq(&self, other: &Self) -> bool {
        self.total == other.total && self.buckets().eq(other.buckets())
    }
}

impl Eq for Histogram {}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self { counts: Vec::new(), total: 0 }
    }

    pub fn record(&mut self, micros: u64) {
        self.record_n(micros, 1);
    }

    pub fn record_n(&mut self, micros: u64, n: u64) {
        self.add_to_bucket(bucket_index(micros), n);
    }

    fn add_to_bucket(&mut self, index: usize, n: u64) {
        if n == 0 || index >= BUCKET_COUNT {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKET_COUNT];
        }
        if let Some(count) = self.counts.get_mut(index) {
            *count = count.saturating_add(n);
            self.total = self.total.saturating_add(n);
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (index, &n) in other.counts.iter().enumerate() {
            if n > 0 {
                self.add_to_bucket(index, n);
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
    }

    /// The q-quantile in microseconds (nearest rank, reported as the bucket's midpoint).
    /// `None` when empty or when `q` is not a number; `q` is clamped to [0, 1].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 || q.is_nan() {
            return None;
        }
        let wanted = (q.clamp(0.0, 1.0) * self.total as f64).ceil();
        let rank = (wanted as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (index, &n) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return bucket_value(index);
            }
        }
        None
    }

    /// How many recorded values lie in buckets strictly above the bucket of `micros`.
    /// Both arms of a comparison use the same bucket edge, so the counts are comparable.
    pub fn count_above(&self, micros: u64) -> u64 {
        let edge = bucket_index(micros);
        self.counts
            .iter()
            .skip(edge + 1)
            .fold(0u64, |acc, &n| acc.saturating_add(n))
    }

    /// The bucket (as its smallest and largest value, µs) holding the k-th largest recorded value
    /// (k ≥ 1), or `None` when fewer than k values were recorded. Confidence bounds for quantiles
    /// read order statistics this way: a bucket edge is always on the conservative side.
    pub fn bucket_of_rank_from_top(&self, k: u64) -> Option<(u64, u64)> {
        if k == 0 || k > self.total {
            return None;
        }
        let mut seen = 0u64;
        for (index, &n) in self.counts.iter().enumerate().rev() {
            seen = seen.saturating_add(n);
            if seen >= k {
                return bucket_bounds(index);
            }
        }
        None
    }

    /// Non-empty buckets as (bucket index, count), ascending.
    pub fn buckets(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i, n))
    }

    /// Non-empty buckets as (representative value in µs, count), ascending: input for rank tests.
    pub fn values(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.buckets()
            .filter_map(|(i, n)| bucket_value(i).map(|v| (v, n)))
    }

    pub fn to_sparse(&self) -> SparseHistogram {
        let buckets = self
            .buckets()
            .filter_map(|(i, n)| u16::try_from(i).ok().map(|i| (i, n)));
        SparseHistogram {
            buckets: buckets.collect(),
        }
    }

    /// Adds a wire-form histogram. All indexes are checked first, so a bad one changes nothing.
    pub fn merge_sparse(&mut self, sparse: &SparseHistogram) -> Result<(), HistogramError> {
        sparse.validate()?;
        for &(index, n) in &sparse.buckets {
            self.add_to_bucket(usize::from(index), n);
        }
        Ok(())
    }
}

impl TryFrom<SparseHistogram> for Histogram {
    type Error = HistogramError;

    fn try_from(sparse: SparseHistogram) -> Result<Self, Self::Error> {
        let mut histogram = Histogram::new();
        histogram.merge_sparse(&sparse)?;
        Ok(histogram)
    }
}

impl From<Histogram> for SparseHistogram {
    fn from(histogram: Histogram) -> Self {
        histogram.to_sparse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_constants() {
        assert_eq!(BUCKET_COUNT, 1444);
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(100), 0);
        assert_eq!(bucket_index(u64::MAX), BUCKET_COUNT - 1);
        assert_eq!(bucket_bounds(0), Some((100, 100)));
        assert_eq!(bucket_bounds(BUCKET_COUNT - 1).unwrap().1, MAX_MICROS);
        assert_eq!(bucket_bounds(BUCKET_COUNT), None);
    }

    #[test]
    fn buckets_tile_the_range_without_gaps() {
        let mut expected_low = MIN_MICROS;
        for i in 0..BUCKET_COUNT {
            let (low, high) = bucket_bounds(i).unwrap();
            assert_eq!(low, expected_low, "bucket {i}");
            assert!(high >= low);
            assert_eq!(bucket_index(low), i);
            assert_eq!(bucket_index(high), i);
            expected_low = high + 1;
        }
        assert_eq!(expected_low, MAX_MICROS + 1);
    }

    fn relative_error(v: u64) -> f64 {
        let rep = bucket_value(bucket_index(v)).unwrap();
        (rep - v as f64).abs() / v as f64
    }

    #[test]
    fn relative_error_within_bound_over_whole_range() {
        // Every bucket edge (where the error peaks) plus a geometric sweep in between.
        let mut worst: f64 = 0.0;
        for i in 0..BUCKET_COUNT {
            let (low, high) = bucket_bounds(i).unwrap();
            worst = worst.max(relative_error(low)).max(relative_error(high));
        }
        let mut v = MIN_MICROS as f64;
        while v <= MAX_MICROS as f64 {
            worst = worst.max(relative_error(v as u64));
            v *= 1.000_37;
        }
        assert!(worst <= 1.0 / 128.0 + 1e-12, "worst relative error {worst}");
        assert!(worst < 0.02);
    }

    #[test]
    fn merge_equals_recording_both() {
        let (mut a, mut b, mut both) = (Histogram::new(), Histogram::new(), Histogram::new());
        for i in 0..5_000u64 {
            let v = (i * 7_919) % 2_000_000 + 50;
            if i % 3 == 0 {
                a.record(v);
            } else {
                b.record_n(v, 2);
            }
            both.record_n(v, if i % 3 == 0 { 1 } else { 2 });
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged, both);
        let mut via_wire = a.clone();
        via_wire.merge_sparse(&b.to_sparse()).unwrap();
        assert_eq!(via_wire, both);
    }

    #[test]
    fn quantiles_of_known_data() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=1000u64 {
            h.record(ms * 1000);
        }
        assert_eq!(h.count(), 1000);
        for (q, exact) in [
            (0.5, 500_000.0),
            (0.99, 990_000.0),
            (0.0, 1_000.0),
            (1.0, 1_000_000.0),
        ] {
            let got = h.quantile(q).unwrap();
            assert!(
                (got - exact).abs() / exact < 1.0 / 128.0,
                "q={q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(f64::NAN), None);
    }

    #[test]
    fn out_of_range_values_clamp() {
        let mut h = Histogram::new();
        h.record(1);
        h.record(u64::MAX);
        assert_eq!(h.quantile(0.0), Some(100.0));
        assert!(h.quantile(1.0).unwrap() <= MAX_MICROS as f64);
    }

    #[test]
    fn count_above_uses_bucket_edges() {
        let mut h = Histogram::new();
        h.record_n(1_000, 10);
        h.record_n(5_000, 3);
        assert_eq!(h.count_above(1_000), 3);
        assert_eq!(h.count_above(5_000), 0);
        assert_eq!(h.count_above(50), 13);
    }

    #[test]
    fn sparse_round_trip_and_rejects_bad_index() {
        let mut h = Histogram::new();
        h.record_n(250, 4);
        h.record(3_000_000);
        let json = serde_json::to_string(&h).unwrap();
        let back: Histogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);

        let bad = SparseHistogram {
            buckets: vec![(3, 1), (u16::MAX, 1)],
        };
        let before = h.clone();
        assert_eq!(
            h.merge_sparse(&bad),
            Err(HistogramError::IndexOutOfRange { index: u16::MAX })
        );
        assert_eq!(h, before, "a refused merge changes nothing");
        assert!(serde_json::from_str::<Histogram>(r#"{"buckets":[[60000,1]]}"#).is_err());
    }

    #[test]
    fn values_and_clear() {
        let mut h = Histogram::new();
        h.record_n(100, 2);
        h.record(120);
        let values: Vec<_> = h.values().collect();
        assert_eq!(values, vec![(100.0, 2), (120.0, 1)]);
        h.clear();
        assert!(h.is_empty());
        assert_eq!(h.values().count(), 0);
    }
}
