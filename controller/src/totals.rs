//! What the analysis judged, interval by interval: the records behind `GET /v1/rollouts/{name}/export`
//! and the running `status.totals` they add up to.
//!
//! Every scheduled look closes an interval (and a critical rollback between looks closes the open
//! one): the counts the verdict was made on are committed with the verdict, in the same transaction,
//! as one interval row, and added to the rollout's durable totals. So the export of a rollout is its
//! evidence, and the sums of its interval lines equal `status.totals` (unless more than
//! [`crate::store::MAX_INTERVALS`] were kept, when the header says how many of the oldest were dropped).
//! Traffic after a rollout ended, or in an interval a user's promote or abort cut short, was never
//! judged and is in neither.
//!
//! Only additive counters are kept (a warehouse can sum them over any span); latency quantiles, which
//! do not add up, are given per interval only.

use std::collections::BTreeMap;

use fledge_core::analysis::{Action, VersionStats};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::Phase;

/// One version's additive counts over a span.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub requests: u64,
    /// 5xx or upstream failure, each request once.
    pub errors: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub outcome_success: u64,
    pub outcome_failure: u64,
    pub outcome_malformed: u64,
    pub cost_count: u64,
    pub cost_sum: f64,
    pub cost_malformed: u64,
    pub policy_violations: u64,
    pub policy_violating_requests: u64,
    pub policy_malformed: u64,
    /// Requests with a measured latency (the samples behind an interval's quantiles).
    pub latency_samples: u64,
    /// Requests whose answer had a body (the time-to-first-token samples).
    pub ttft_samples: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub evaluations: BTreeMap<String, EvaluationCounts>,
}

/// One evaluation's additive counts: scores and their sum, labels and how many said `pass`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvaluationCounts {
    pub count: u64,
    pub score_sum: f64,
    pub labelled: u64,
    pub pass: u64,
}

impl From<&VersionStats> for Counts {
    fn from(s: &VersionStats) -> Self {
        Self {
            requests: s.requests,
            errors: s.errors,
            status_2xx: s.status_2xx,
            status_3xx: s.status_3xx,
            status_4xx: s.status_4xx,
            status_5xx: s.status_5xx,
            outcome_success: s.outcome_success,
            outcome_failure: s.outcome_failure,
            outcome_malformed: s.outcome_malformed,
            cost_count: s.cost_count,
            cost_sum: s.cost_sum,
            cost_malformed: s.cost_malformed,
            policy_violations: s.policy_violations,
            policy_violating_requests: s.policy_violating_requests,
            policy_malformed: s.policy_malformed,
            latency_samples: s.latency_total.count(),
            ttft_samples: s.latency_ttft.count(),
            evaluations: s
                .evaluations
                .iter()
                .map(|(name, e)| (name.clone(), EvaluationCounts { count: e.count, score_sum: e.sum, labelled: e.labelled, pass: e.pass }))
                .collect(),
        }
    }
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        for (mine, theirs) in [
            (&mut self.requests, o.requests),
            (&mut self.errors, o.errors),
            (&mut self.status_2xx, o.status_2xx),
            (&mut self.status_3xx, o.status_3xx),
            (&mut self.status_4xx, o.status_4xx),
            (&mut self.status_5xx, o.status_5xx),
            (&mut self.outcome_success, o.outcome_success),
            (&mut self.outcome_failure, o.outcome_failure),
            (&mut self.outcome_malformed, o.outcome_malformed),
            (&mut self.cost_count, o.cost_count),
            (&mut self.cost_malformed, o.cost_malformed),
            (&mut self.policy_violations, o.policy_violations),
            (&mut self.policy_violating_requests, o.policy_violating_requests),
            (&mut self.policy_malformed, o.policy_malformed),
            (&mut self.latency_samples, o.latency_samples),
            (&mut self.ttft_samples, o.ttft_samples),
        ] {
            *mine = mine.saturating_add(theirs);
        }
        self.cost_sum += o.cost_sum;
        for (name, e) in &o.evaluations {
            // A version's evaluation names are bounded where they are ingested
            // (`fledge_core::analysis::MAX_EVALUATIONS`), so the union over a rollout stays small.
            let mine = self.evaluations.entry(name.clone()).or_default();
            mine.count = mine.count.saturating_add(e.count);
            mine.score_sum += e.score_sum;
            mine.labelled = mine.labelled.saturating_add(e.labelled);
            mine.pass = mine.pass.saturating_add(e.pass);
        }
    }
}

/// A rollout's judged totals: `status.totals`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Totals {
    /// Intervals judged so far; the last interval row's `n`.
    pub intervals: u64,
    /// Per version (by name: a rollout replaced with new versions keeps the old ones' counts).
    pub versions: BTreeMap<String, Counts>,
}

impl Totals {
    pub fn is_empty(&self) -> bool {
        self.intervals == 0
    }
}

/// A look's interval, as the driver hands it to the state machine with the verdict made on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    pub stable: VersionStats,
    pub canary: VersionStats,
}

/// One judged interval as stored and exported: numbered `n` within its rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRecord {
    pub n: u64,
    pub body: Value,
}

/// Closes `interval` into `totals` (judged with `action`, in `phase` at `step` of `window`, with
/// `stable` and `canary` as they were) and returns its record.
#[allow(clippy::too_many_arguments)]
pub fn close(
    totals: &mut Totals,
    interval: &Interval,
    (stable, canary): (&str, &str),
    window: u64,
    phase: Phase,
    step: Option<usize>,
    action: Action,
) -> IntervalRecord {
    totals.intervals = totals.intervals.saturating_add(1);
    let n = totals.intervals;
    let mut version = |name: &str, role: &str, s: &VersionStats| {
        let counts = Counts::from(s);
        totals.versions.entry(name.to_string()).or_default().add(&counts);
        let ms = |q: Option<f64>| q.map(|us| us / 1000.0);
        json!({
            "version": name,
            "role": role,
            "counts": counts,
            "latency_ms": {
                "p50": ms(s.latency_total.quantile(0.5)),
                "p99": ms(s.latency_total.quantile(0.99)),
                "ttft_p50": ms(s.latency_ttft.quantile(0.5)),
                "ttft_p99": ms(s.latency_ttft.quantile(0.99)),
            },
        })
    };
    let versions = [version(stable, "stable", &interval.stable), version(canary, "canary", &interval.canary)];
    let body = json!({
        "n": n,
        "window": window,
        "phase": phase,
        "step": step,
        "action": action,
        "started_at_ms": interval.started_at_ms,
        "ended_at_ms": interval.ended_at_ms,
        "versions": versions,
    });
    IntervalRecord { n, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, errors: u64, cost: f64) -> VersionStats {
        let mut s = VersionStats { requests, errors, cost_count: 1, cost_sum: cost, ..VersionStats::default() };
        s.evaluations.insert("helpfulness".into(), fledge_core::analysis::EvaluationStats { count: 2, sum: 7.0, sum_sq: 25.0, labelled: 2, pass: 1 });
        s
    }

    #[test]
    fn closing_intervals_adds_up_per_version_and_numbers_them() {
        let mut totals = Totals::default();
        let a = Interval { started_at_ms: 0, ended_at_ms: 1_000, stable: stats(10, 1, 0.5), canary: stats(3, 0, 0.25) };
        let r1 = close(&mut totals, &a, ("v1", "v2"), 1, Phase::Progressing, Some(0), Action::Hold);
        let r2 = close(&mut totals, &a, ("v1", "v2"), 1, Phase::Progressing, Some(0), Action::Advance);
        assert_eq!((r1.n, r2.n, totals.intervals), (1, 2, 2));
        let v1 = &totals.versions["v1"];
        assert_eq!((v1.requests, v1.errors, v1.cost_sum), (20, 2, 1.0));
        assert_eq!(v1.evaluations["helpfulness"], EvaluationCounts { count: 4, score_sum: 14.0, labelled: 4, pass: 2 });
        assert_eq!(totals.versions["v2"].requests, 6);
        assert_eq!(r2.body["action"], "advance");
        assert_eq!(r2.body["versions"][1]["role"], "canary");
        assert_eq!(r2.body["versions"][1]["counts"]["requests"], 3);
        // The stored form reads back as the same counts.
        let back: Counts = serde_json::from_value(r2.body["versions"][0]["counts"].clone()).unwrap();
        assert_eq!(back, Counts::from(&stats(10, 1, 0.5)));
    }
}
