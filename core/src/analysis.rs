//! Canary judgement: compares canary with stable on gates and decides advance, hold, promote or
//! rollback, with reasons.
//!
//! # What the controller feeds [`judge`]
//! A [`Look`] per analysis interval: both versions' counts of the **interval just ended** (since the
//! previous scheduled look), summed over all proxies, and their counts **since the current step
//! started**; plus the [`StepState`] returned by the previous verdict (it carries the sequential
//! evidence, [`EvidenceState`], which the controller persists with the rollout) and the time in ms.
//! Looks between intervals (`scheduled: false`, the partial interval so far) judge only absolute
//! critical gates; their state is not kept.
//!
//! # How a regression is declared
//! Rate and cost gates turn each interval into a likelihood ratio (or betting factor) that is a
//! test supermartingale factor under "no regression", and feed it to a weighted Shiryaev–Roberts
//! e-detector: a gate fails when its statistic reaches 1/α_gate, α_gate = [`OVERALL_ALPHA`] / number
//! of gates. Because only within-interval comparisons enter, a shared incident cancels and the
//! splits of different steps never pool (no Simpson's paradox); because the detector restarts its
//! evidence at every look with a small weight, a failure after a long healthy run is found as fast
//! as one at the start. Latency gates compare quantile confidence sequences on the step's data.
//!
//! # How a step advances
//! Only on evidence: every non-critical gate's proof must rule out a stated regression (twice the
//! tolerance, with a floor, [`FLOOR_Z`] and [`TAIL_COUNT`], set by the traffic a step gets) at level
//! [`ADVANCE_ALPHA`], and the step's dwell must be over. See `docs/analysis-method.md`.

mod baseline;
mod evaluate;
mod evaluation_gate;
mod gate;
mod metric;
mod shadow_gate;
pub mod simulation;
mod spec;
mod step;
mod verdict;
mod version_stats;

#[cfg(test)]
mod tests;

pub use evaluate::{
    Bounds, Comparison, Evidence, GateEvidence, GateResult, GateStatus, ADVANCE_ALPHA, BELOW_GRID, DIFF_GRID,
    FLOOR_Z, LIMIT_GRID, MEAN_GRID, MIN_FLOOR, MEAN_SD_FLOOR, OVERALL_ALPHA, RATIO_GRID, TAIL_COUNT,
};
pub use gate::{Gate, GateConfig, GateError, Threshold};
pub use metric::{Metric, MetricKind};
pub use spec::{default_gates, AnalysisSpec, AnalysisSpecConfig, BlueGreen, SpecError, MAX_PHASE_SECONDS};
pub use step::{ApprovalSpec, HeldStep, PauseKind, StepConfig, StepHold, MAX_APPROVAL_TIMEOUT_SECONDS};
pub use verdict::{
    judge, most_looks, segment_alpha_share, Action, EvidenceState, Look, StepState, Verdict, Waiting,
};
pub use version_stats::{EvaluationStats, MeanSummary, VersionStats, MAX_EVALUATIONS};
