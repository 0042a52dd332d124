//! Data in: `POST /v1/reports` from the filters, `POST /v1/rollouts/{name}/outcomes` from whoever
//! learns a task's outcome later (user feedback, offline grading).
//!
//! Both bodies are bounded (the router's body limit, then a cap on entries) and validated before
//! anything is merged: a report's histograms stay sparse until they are added to a window, and entries
//! for rollouts that do not exist are dropped without allocating.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use fledge_core::analysis::VersionStats;
use fledge_core::report::{self, ReportError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{not_found, IngestBody};
use crate::error::{parse_json, ApiError};
use crate::live::{Current, Ingested};
use crate::machine::Input;
use crate::model::Rollout;
use crate::state::{now_ms, AppState};
use crate::store::LogEntry;

/// One report entry's per-segment counts: rollout, version, (segment, requests).
type SegmentEntry = (String, String, Vec<(String, u64)>);

/// Outcomes one request may carry.
pub const MAX_OUTCOMES: usize = 10_000;

pub async fn reports(
    State(state): State<AppState>,
    IngestBody { bytes: body, slot }: IngestBody,
) -> Result<(StatusCode, Json<Ingested>), ApiError> {
    let report = report::parse(&body).map_err(|e| match e {
        ReportError::Json(_) => ApiError::BadRequest(e.to_string()),
        other => ApiError::Invalid(other.to_string()),
    })?;
    drop(slot);
    if !state.cluster().is_shared() {
        return Ok((StatusCode::ACCEPTED, Json(merge_report(&state, report, now_ms()))));
    }
    // Several replicas: the report is acknowledged once it is in the shared log, from which every
    // replica (this one included) merges it; a retry of it to any replica is not appended again.
    let view = state.view();
    let (mut merged, mut ignored) = (0, 0);
    for v in &report.versions {
        match view.rollout(&v.rollout) {
            Some(r) if v.version == r.spec.stable || v.version == r.spec.canary => merged += 1,
            _ => ignored += 1,
        }
    }
    for s in &report.shadow {
        if view.rollout(&s.rollout).is_some() {
            merged += 1;
        } else {
            ignored += 1;
        }
    }
    let key = Some((report.proxy.clone(), report.worker.clone(), report.seq));
    // Only the body waits for the flush, and the queue bounds its bytes.
    drop(report);
    let fresh = append(
        &state,
        LogEntry {
            key,
            kind: KIND_REPORT.into(),
            body: body.to_vec(),
        },
    )
    .await?;
    state.counters().report(!fresh);
    let ingested = if fresh { Ingested { duplicate: false, merged, ignored } } else { Ingested { duplicate: true, merged: 0, ignored: 0 } };
    Ok((StatusCode::ACCEPTED, Json(ingested)))
}

/// Log entries: a proxy's report (its body as received), or late outcomes for one rollout.
const KIND_REPORT: &str = "report";
const KIND_OUTCOMES: &str = "outcomes";

/// Appends `entry` to the shared log (at the next flush) and waits for it to be committed: whether it
/// was new. A log that cannot be written is a 503, and the filter resends later.
async fn append(state: &AppState, entry: LogEntry) -> Result<bool, ApiError> {
    let answer = state
        .cluster()
        .enqueue(entry)
        .map_err(|why| ApiError::Unavailable(format!("{why}; try again")))?;
    match answer.await {
        Ok(Ok(fresh)) => Ok(fresh),
        Ok(Err(why)) => Err(ApiError::Unavailable(format!("cannot write to the database: {why}"))),
        Err(_) => Err(ApiError::Unavailable("the controller is shutting down".into())),
    }
}

/// Late outcomes for `rollout`'s current window: merged here, or (several replicas) through the log.
pub async fn add_outcomes(state: &AppState, rollout: &str, items: Vec<(String, VersionStats)>) -> Result<(), ApiError> {
    if !state.cluster().is_shared() {
        merge_outcomes(state, rollout, items, now_ms());
        return Ok(());
    }
    let body = serde_json::to_vec(&json!({ "rollout": rollout, "items": items })).map_err(|e| ApiError::Internal(e.to_string()))?;
    append(state, LogEntry { key: None, kind: KIND_OUTCOMES.into(), body }).await?;
    Ok(())
}

fn merge_outcomes(state: &AppState, rollout: &str, items: Vec<(String, VersionStats)>, now: u64) {
    let Some(window) = state.view().rollout(rollout).map(|r| r.status.window) else { return };
    state.live().add_outcomes(rollout, window, now, items);
    state.data_arrived();
}

/// Entries read from the log at once.
const TAIL_BATCH: usize = 5_000;

/// Merges what the shared log holds past what this replica has merged, in commit order. Called by
/// one reader at a time ([`crate::cluster::Cluster::tailing`]). Returns how many entries it merged.
pub fn tail(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let _one_reader = state.cluster().tailing();
    let mut total = 0;
    loop {
        let entries = state.log_after(state.cluster().tailed(), TAIL_BATCH)?;
        let Some(last) = entries.last().map(|(id, _, _)| *id) else { return Ok(total) };
        let now = now_ms();
        let n = entries.len();
        for (id, kind, body) in entries {
            match kind.as_str() {
                KIND_REPORT => match report::parse(&body) {
                    Ok(r) => {
                        merge_report(state, r, now);
                    }
                    Err(e) => tracing::warn!(id, error = %e, "unreadable report in the data log; skipped"),
                },
                KIND_OUTCOMES => match serde_json::from_slice::<LoggedOutcomes>(&body) {
                    Ok(o) => merge_outcomes(state, &o.rollout, o.items, now),
                    Err(e) => tracing::warn!(id, error = %e, "unreadable outcomes in the data log; skipped"),
                },
                other => tracing::warn!(id, kind = other, "unknown entry in the data log (from a newer fledge?); skipped"),
            }
        }
        state.cluster().set_tailed(last);
        total += n;
        if n < TAIL_BATCH {
            return Ok(total);
        }
    }
}

#[derive(Deserialize)]
struct LoggedOutcomes {
    rollout: String,
    items: Vec<(String, VersionStats)>,
}

/// Merges one report into this replica's windows, per-segment counts and worker table, and acts on
/// the fallbacks it reports (the leader alone commits those).
fn merge_report(state: &AppState, mut report: report::IncomingReport, now: u64) -> Ingested {
    // Per-segment counts go to their own table, once the report is known not to be a duplicate.
    let segments: Vec<SegmentEntry> = report
        .versions
        .iter_mut()
        .filter(|v| !v.segments.is_empty())
        .map(|v| (v.rollout.clone(), v.version.clone(), std::mem::take(&mut v.segments)))
        .collect();
    let fallbacks = std::mem::take(&mut report.fallbacks);
    let (proxy, epoch) = (report.proxy.clone(), report.epoch.clone());
    let view = state.view();
    let current = |name: &str| {
        view.rollout(name).map(|r| Current {
            stable: r.spec.stable.as_str(),
            canary: r.spec.canary.as_str(),
            window: r.status.window,
            samples: r.spec.shadow.as_ref().map_or(0, |s| s.capture.samples as usize),
        })
    };
    let ingested = state.live().ingest(report, now, current);
    if !state.cluster().is_shared() {
        state.counters().report(ingested.duplicate);
    }
    if !ingested.duplicate && !segments.is_empty() {
        let mut counts = state.segment_counts();
        for (rollout, version, entries) in &segments {
            if let Some(r) = view.rollout(rollout) {
                counts.add(r, version, entries);
            }
        }
        counts.retain(|name| view.rollout(name).is_some());
    }
    if ingested.merged > 0 {
        state.data_arrived();
    }
    if !ingested.duplicate && epoch.as_deref().is_none_or(|e| e == view.epoch()) {
        // Every replica merges the report; the leader alone commits what it asks for.
        if let Some(fence) = state.cluster().lead().decider() {
            for f in &fallbacks {
                controller_lost(state, &proxy, f, fence.clone());
            }
        }
    }
    ingested
}

/// A proxy reports that it sent a rollout to stable after losing the controller: pause it at 0 %,
/// once — unless its routing changed since the config the proxy fell back on (that newer config
/// lifts the fallback anyway).
fn controller_lost(state: &AppState, proxy: &str, f: &fledge_core::fallback::FellBack, fence: Option<crate::store::Fence>) {
    let input = Input::ControllerLost { proxy: proxy.to_string(), after_seconds: f.after_seconds };
    let still = |r: &Rollout| r.status.generation <= f.generation && !r.status.phase.is_terminal() && r.status.phase != crate::model::Phase::Manual;
    match state.apply_as(&f.rollout, now_ms(), fence, input, still) {
        Ok(Some(r)) => tracing::warn!(rollout = %f.rollout, %proxy, after_seconds = f.after_seconds, generation = r.status.generation, "a proxy lost the controller and sent the rollout to stable: paused at 0 %"),
        Ok(None) => {}
        Err(e) => tracing::warn!(rollout = %f.rollout, %proxy, error = %e, "cannot pause the rollout a proxy sent to stable"),
    }
}

/// One late outcome. At least one of `outcome`, `cost`, `policy_violations` is given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    version: String,
    outcome: Option<String>,
    cost: Option<f64>,
    policy_violations: Option<u32>,
    evaluation: Option<Evaluation>,
}

/// One evaluator's result (`gen_ai.evaluation.result`): a score, a label, or both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    pub name: String,
    pub score: Option<f64>,
    pub label: Option<String>,
}

/// The most an evaluation score may be in magnitude (scores are small numbers: 0-1, 1-5, 0-100).
pub const MAX_SCORE: f64 = 1e9;

impl Evaluation {
    /// As version counts: `evaluations[name]` with one score and/or one label (`pass` counts as
    /// passed; any other label as labelled but not passed).
    pub fn to_stats(&self) -> Result<VersionStats, String> {
        if fledge_core::analysis::Gate::evaluation(fledge_core::analysis::Metric::EvaluationScore, &self.name, fledge_core::analysis::Threshold::MaxDecrease(0.0), false).is_err() {
            return Err(format!("evaluation name {:?} must be 1-64 letters, digits, '.', '_' or '-'", self.name));
        }
        let mut e = fledge_core::analysis::EvaluationStats::default();
        if let Some(score) = self.score {
            if !(score.is_finite() && score.abs() <= MAX_SCORE) {
                return Err(format!("evaluation score must be a finite number of magnitude at most {MAX_SCORE:e}"));
            }
            e.count = 1;
            e.sum = score;
            e.sum_sq = score * score;
        }
        if let Some(label) = &self.label {
            if label.is_empty() || label.len() > 64 {
                return Err("evaluation label must be 1-64 characters".into());
            }
            e.labelled = 1;
            e.pass = u64::from(label == "pass");
        }
        if self.score.is_none() && self.label.is_none() {
            return Err("an evaluation needs a score or a label".into());
        }
        let mut s = VersionStats::default();
        s.evaluations.insert(self.name.clone(), e);
        Ok(s)
    }
}

/// The body: one outcome or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Batch {
    Many(Vec<Outcome>),
    One(Outcome),
}

fn to_stats(o: &Outcome, i: usize) -> Result<VersionStats, ApiError> {
    let bad = |m: String| ApiError::Invalid(format!("outcome [{i}]: {m}"));
    let mut s = VersionStats::default();
    match o.outcome.as_deref() {
        Some("success") => s.outcome_success = 1,
        Some("failure") => s.outcome_failure = 1,
        Some(other) => return Err(bad(format!("outcome must be \"success\" or \"failure\", got {other:?}"))),
        None => {}
    }
    if let Some(c) = o.cost {
        if !fledge_core::outcome::valid_cost(c) {
            return Err(bad(format!("cost must be a number from 0 to {:e}, got {c}", fledge_core::outcome::MAX_COST)));
        }
        s.cost_count = 1;
        s.cost_sum = c;
        s.cost_sum_sq = c * c;
    }
    if let Some(n) = o.policy_violations {
        s.policy_violations = u64::from(n);
        s.policy_violating_requests = u64::from(n > 0);
    }
    if let Some(e) = &o.evaluation {
        s.merge(&e.to_stats().map_err(bad)?);
    }
    if o.outcome.is_none() && o.cost.is_none() && o.policy_violations.is_none() && o.evaluation.is_none() {
        return Err(bad("give at least one of outcome, cost, policy_violations, evaluation".into()));
    }
    Ok(s)
}

/// Parses and validates an outcomes body against the rollout's versions: all or nothing.
pub fn parse_outcomes(body: &[u8], stable: &str, canary: &str) -> Result<Vec<(String, VersionStats)>, ApiError> {
    let items = match parse_json::<Value>(body)? {
        Value::Array(items) if items.len() > MAX_OUTCOMES => {
            return Err(ApiError::Invalid(format!("{} outcomes in one request; at most {MAX_OUTCOMES} are accepted", items.len())))
        }
        v @ (Value::Array(_) | Value::Object(_)) => {
            serde_json::from_value::<Batch>(v).map_err(|_| ApiError::Invalid(describe_bad_batch(body)))?
        }
        _ => return Err(ApiError::Invalid("body must be an outcome object or an array of them".into())),
    };
    let items = match items {
        Batch::Many(v) => v,
        Batch::One(o) => vec![o],
    };
    let mut parsed = Vec::with_capacity(items.len());
    for (i, o) in items.into_iter().enumerate() {
        if o.version != stable && o.version != canary {
            return Err(ApiError::Invalid(format!(
                "outcome [{i}]: version {:?} is neither stable ({stable:?}) nor canary ({canary:?})",
                o.version
            )));
        }
        let stats = to_stats(&o, i)?;
        parsed.push((o.version, stats));
    }
    Ok(parsed)
}

/// serde's message for the first bad item (untagged enums only say "did not match any variant").
fn describe_bad_batch(body: &[u8]) -> String {
    match serde_json::from_slice::<Vec<Value>>(body) {
        Ok(items) => {
            for (i, item) in items.into_iter().enumerate() {
                if let Err(e) = serde_json::from_value::<Outcome>(item) {
                    return format!("outcome [{i}]: {e}");
                }
            }
            "body must be an outcome object or an array of them".into()
        }
        Err(_) => match serde_json::from_slice::<Outcome>(body) {
            Err(e) => format!("outcome [0]: {e}"),
            Ok(_) => "body must be an outcome object or an array of them".into(),
        },
    }
}

pub async fn outcomes(
    State(state): State<AppState>,
    Path(name): Path<String>,
    IngestBody { bytes: body, slot }: IngestBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let view = state.view();
    let r = view.rollout(&name).ok_or_else(|| not_found(&name))?;
    let parsed = parse_outcomes(&body, &r.spec.stable, &r.spec.canary)?;
    drop((slot, body));
    let count = parsed.len();
    add_outcomes(&state, &name, parsed).await?;
    state.counters().outcomes(count);
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": count }))))
}
