//! Canary judgement: compares canary with stable on gates and decides advance, hold, promote or
//! rollback, with reasons.
//!
//! # What the controller feeds [`judge`]
//! Cumulative [`VersionStats`] of each version since the rollout (re)started, summed over all
//! proxies, plus the [`StepState`] returned by the previous call and the current time in ms.
//! Do not reset the stats at each step: the sequential tests treat the rollout as one growing
//! stream per version, which is what keeps them valid however often `judge` is called, and lets
//! evidence from early steps carry into later ones. Stable keeps accumulating during every step
//! (including 100%, where it simply stops growing). After a pause or a controller restart the
//! controller may continue with the stored totals, or reset both versions together and start
//! again from step 0; never reset only one of them.
//!
//! # How a regression is declared
//! Each gate is a one-sided mixture SPRT (see [`crate::stats::msprt`]) on the "bad" direction
//! only: Λ ≥ 1/α_gate with α_gate = [`OVERALL_ALPHA`] / number of gates (Bonferroni), so the chance
//! that any gate ever fails an A/A rollout is at most [`OVERALL_ALPHA`] (up to the usual
//! plug-in-variance approximation). Latency and cost also require the point estimate to be past
//! the limit. Gates without enough data are `insufficient_data` and hold the rollout; they never
//! pass. See `METHOD.md` for the parameters and the simulations that check them.

mod evaluate;
mod gate;
mod metric;
mod spec;
mod verdict;
mod version_stats;

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

pub use evaluate::{
    evaluate_gate, Evidence, GateResult, GateStatus, MEAN_SD_FLOOR, MIN_MEAN_SAMPLES,
    OVERALL_ALPHA, PSEUDO_COUNT, TAU_IN_SDS,
};
pub use gate::{Gate, GateConfig, GateError, Threshold};
pub use metric::{Metric, MetricKind};
pub use spec::{default_gates, AnalysisSpec, AnalysisSpecConfig, SpecError};
pub use verdict::{judge, Action, StepState, Verdict};
pub use version_stats::VersionStats;
