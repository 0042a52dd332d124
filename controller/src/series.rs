//! A bounded time series per rollout, kept in memory for the dashboard: what the rollout looked like
//! second by second — phase, step, weight, both versions' requests and errors, and every gate's canary
//! and stable values with their confidence bounds and the detector's evidence against its threshold.
//!
//! Sampled once a second by a small task ([`spawn`]), never per request. A point is added when the
//! window's counts or the rollout's state moved since the last one, and once a minute otherwise, so an
//! idle or finished rollout costs next to nothing. Points stay at 1 s resolution for [`FINE_MS`]
//! (at most [`FINE_POINTS`] of them); older ones are folded into one point per minute, of which the
//! newest [`COARSE_POINTS`] are kept. A rollout's series goes with the rollout, and like the stats
//! windows it restarts empty with the controller.
//!
//! `GET /v1/rollouts/{name}/series` serves it; each new point is also sent on the rollout's event
//! streams (`crate::stream`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use fledge_core::analysis::{GateStatus, Metric, Verdict};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::model::{Phase, Rollout};
use crate::state::{now_ms, AppState};
use crate::stream::Notice;

/// How often the sampler looks.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Fine points cover this much time (the last hour)...
pub const FINE_MS: u64 = 60 * 60_000;
/// ...and are at most this many.
pub const FINE_POINTS: usize = 3_600;
/// Older points are folded into one per this span (a minute)...
pub const COARSE_MS: u64 = 60_000;
/// ...of which at most this many are kept (a day).
pub const COARSE_POINTS: usize = 1_440;
/// Without movement, a point at least this often, so the chart reaches the present.
pub const IDLE_POINT_MS: u64 = 60_000;
/// Distinct gates a series records (a replaced spec may bring new ones); more are left out.
pub const MAX_GATES: usize = 32;

/// A count per version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Pair {
    pub stable: u64,
    pub canary: u64,
}

impl Pair {
    fn add(&mut self, o: Pair) {
        self.stable = self.stable.saturating_add(o.stable);
        self.canary = self.canary.saturating_add(o.canary);
    }

    fn since(self, before: Pair) -> Pair {
        Pair { stable: self.stable.saturating_sub(before.stable), canary: self.canary.saturating_sub(before.canary) }
    }

    fn is_zero(self) -> bool {
        self.stable == 0 && self.canary == 0
    }
}

/// Which gate a column of the series is: its metric, threshold text and criticality, as the verdict
/// names them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateKey {
    pub metric: Metric,
    pub threshold: String,
    pub critical: bool,
}

/// One gate at one point, from the last verdict (f32: a chart needs no more, and a day of points for
/// a handful of gates stays small). Absent values are left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatePoint {
    pub status: GateStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable: Option<f32>,
    /// The detector's statistic and the value at which the gate fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_low: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_high: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_low: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_high: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// When the point was taken (ms since the Unix epoch); for a folded point, its last sample.
    pub at_ms: u64,
    /// The time its counts cover: since the previous point.
    pub span_ms: u64,
    pub phase: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// Canary weight, percent.
    pub weight: f64,
    pub revision: u64,
    /// Requests and errors of each version counted in `span_ms`.
    pub requests: Pair,
    pub errors: Pair,
    /// One entry per [`GateKey`] of the series (null: not in this point's verdict).
    pub gates: Vec<Option<GatePoint>>,
}

impl Point {
    /// Folds `later` (the next point in time) into this one: counts add up, the state is the later's.
    fn absorb(&mut self, later: Point) {
        let (mut requests, mut errors) = (self.requests, self.errors);
        requests.add(later.requests);
        errors.add(later.errors);
        let span_ms = self.span_ms.saturating_add(later.span_ms);
        *self = Point { requests, errors, span_ms, ..later };
    }
}

/// What the last sample saw, to count the next one's deltas from.
#[derive(Debug, Clone, Copy)]
struct Seen {
    window: u64,
    requests: Pair,
    errors: Pair,
    revision: u64,
    at_ms: u64,
}

/// One rollout's series.
#[derive(Debug, Default)]
pub struct Series {
    gates: Vec<GateKey>,
    /// One point per minute, oldest first, older than the fine points.
    coarse: VecDeque<Point>,
    /// The minute being folded from fine points into `coarse`.
    folding: Option<Point>,
    fine: VecDeque<Point>,
    seen: Option<Seen>,
}

impl Series {
    /// Adds a point, folding fine points older than [`FINE_MS`] (or past [`FINE_POINTS`]) into
    /// minutes.
    pub fn push(&mut self, p: Point) {
        let newest = p.at_ms;
        self.fine.push_back(p);
        while self.fine.len() > FINE_POINTS || self.fine.front().is_some_and(|f| newest.saturating_sub(f.at_ms) > FINE_MS) {
            let Some(old) = self.fine.pop_front() else { break };
            self.fold(old);
        }
    }

    fn fold(&mut self, p: Point) {
        match &mut self.folding {
            Some(minute) if minute.at_ms / COARSE_MS == p.at_ms / COARSE_MS => minute.absorb(p),
            _ => {
                if let Some(done) = self.folding.replace(p) {
                    self.coarse.push_back(done);
                    while self.coarse.len() > COARSE_POINTS {
                        self.coarse.pop_front();
                    }
                }
            }
        }
    }

    /// Every point, oldest first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.coarse.iter().chain(self.folding.iter()).chain(self.fine.iter())
    }

    pub fn len(&self) -> usize {
        self.coarse.len() + usize::from(self.folding.is_some()) + self.fine.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn gates(&self) -> &[GateKey] {
        &self.gates
    }

    /// The column of gate `key`, added if new and there is room.
    fn gate_column(&mut self, key: GateKey) -> Option<usize> {
        if let Some(i) = self.gates.iter().position(|k| *k == key) {
            return Some(i);
        }
        if self.gates.len() >= MAX_GATES {
            return None;
        }
        self.gates.push(key);
        Some(self.gates.len() - 1)
    }

    fn gate_points(&mut self, verdict: Option<&Verdict>) -> Vec<Option<GatePoint>> {
        let mut row: Vec<Option<GatePoint>> = Vec::new();
        for g in verdict.map(|v| v.gates.as_slice()).unwrap_or_default() {
            let key = GateKey { metric: g.metric, threshold: g.threshold.clone(), critical: g.critical };
            let Some(col) = self.gate_column(key) else { continue };
            if row.len() <= col {
                row.resize(col + 1, None);
            }
            // Beyond f32's range a value is shown at its edge; a non-finite one (a threshold that
            // cannot be reached) is left out.
            let narrow = |v: Option<f64>| v.filter(|x| x.is_finite()).map(|x| x.clamp(-f64::from(f32::MAX), f64::from(f32::MAX)) as f32);
            let bounds = g.bounds.unwrap_or_default();
            let point = GatePoint {
                status: g.status,
                canary: narrow(g.canary),
                stable: narrow(g.stable),
                evidence: narrow(g.evidence.as_ref().map(|e| e.value)),
                threshold: narrow(g.evidence.as_ref().map(|e| e.threshold)),
                canary_low: narrow(bounds.canary_low),
                canary_high: narrow(bounds.canary_high),
                stable_low: narrow(bounds.stable_low),
                stable_high: narrow(bounds.stable_high),
            };
            if let Some(slot) = row.get_mut(col) {
                *slot = Some(point);
            }
        }
        row
    }

    /// Samples `r` whose window (numbered `window`) has counted `requests` and `errors` so far.
    /// Returns the point added, if one was: when the counts or the rollout moved since the last
    /// sample, or [`IDLE_POINT_MS`] passed.
    pub fn sample(&mut self, r: &Rollout, window: u64, requests: Pair, errors: Pair, now_ms: u64) -> Option<&Point> {
        let (new_requests, new_errors, since_ms) = match self.seen {
            // The same window: what it counted since the last sample.
            Some(s) if s.window == window => (requests.since(s.requests), errors.since(s.errors), s.at_ms),
            // A new window (the analysis restarted): everything it has is new.
            Some(s) => (requests, errors, s.at_ms),
            None => (requests, errors, now_ms),
        };
        let moved = !new_requests.is_zero() || !new_errors.is_zero();
        let changed = self.seen.is_none_or(|s| s.revision != r.status.revision);
        let idle = self.seen.is_some_and(|s| now_ms.saturating_sub(s.at_ms) >= IDLE_POINT_MS);
        if !(moved || changed || idle) {
            return None;
        }
        self.seen = Some(Seen { window, requests, errors, revision: r.status.revision, at_ms: now_ms });
        let gates = self.gate_points(r.status.last_verdict.as_ref());
        self.push(Point {
            at_ms: now_ms,
            span_ms: now_ms.saturating_sub(since_ms),
            phase: r.status.phase,
            step: r.status.step,
            weight: r.status.weight.percent(),
            revision: r.status.revision,
            requests: new_requests,
            errors: new_errors,
            gates,
        });
        self.fine.back()
    }
}

/// Every rollout's series.
#[derive(Debug, Default)]
pub struct SeriesBook {
    series: HashMap<String, Series>,
}

impl SeriesBook {
    pub fn get(&self, rollout: &str) -> Option<&Series> {
        self.series.get(rollout)
    }

    pub fn entry(&mut self, rollout: &str) -> &mut Series {
        self.series.entry(rollout.to_string()).or_default()
    }

    /// Keeps the series of the rollouts for which `exists` holds.
    pub fn retain(&mut self, exists: impl Fn(&str) -> bool) {
        self.series.retain(|name, _| exists(name));
    }
}

/// One pass: a point for every rollout that moved; each new point is announced to the streams.
pub fn sample_once(state: &AppState, now_ms: u64) {
    let view = state.view();
    let counts: Vec<(Arc<Rollout>, Pair, Pair)> = {
        let live = state.live();
        view.rollouts()
            .map(|r| {
                let window = live.window(&r.name).filter(|w| w.seq() == r.status.window);
                let of = |v: &str| window.map(|w| w.stats(v)).unwrap_or_default();
                let (stable, canary) = (of(&r.spec.stable), of(&r.spec.canary));
                let requests = Pair { stable: stable.requests, canary: canary.requests };
                let errors = Pair { stable: stable.errors, canary: canary.errors };
                (r.clone(), requests, errors)
            })
            .collect()
    };
    let mut added = Vec::new();
    {
        let mut book = state.series();
        book.retain(|name| view.rollout(name).is_some());
        for (r, requests, errors) in counts {
            let series = book.entry(&r.name);
            let point = series.sample(&r, r.status.window, requests, errors, now_ms).map(|p| json!(p));
            if let Some(point) = point {
                added.push(Notice::sampled(&r.name, json!({ "gates": series.gates(), "point": point })));
            }
        }
    }
    for notice in added {
        state.notify(notice);
    }
}

/// The sampler: [`sample_once`] every [`SAMPLE_EVERY`] until shutdown.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = state.shutdown_signal();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|down| *down) => return,
            }
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sample_once(&state, now_ms()))).is_err() {
                tracing::error!("series sample panicked; continuing with the next");
            }
        }
    })
}

/// `GET /v1/rollouts/{name}/series[?since_ms=T]`: the rollout's points (those after `T`), oldest first.
pub async fn get(State(state): State<AppState>, Path(name): Path<String>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let since = parse_since(q.as_deref())?;
    if state.view().rollout(&name).is_none() {
        return Err(crate::api::not_found(&name));
    }
    let book = state.series();
    let (gates, points): (&[GateKey], Vec<&Point>) = match book.get(&name) {
        Some(s) => (s.gates(), s.points().filter(|p| since.is_none_or(|t| p.at_ms > t)).collect()),
        None => (&[], Vec::new()),
    };
    Ok(Json(json!({
        "rollout": name,
        "resolution_ms": {"fine": SAMPLE_EVERY.as_millis() as u64, "fine_for": FINE_MS, "coarse": COARSE_MS},
        "limits": {"fine_points": FINE_POINTS, "coarse_points": COARSE_POINTS, "gates": MAX_GATES},
        "gates": gates,
        "points": points,
    })))
}

/// The largest `since_ms` accepted: 2^53 - 1, the largest integer a JSON client holds exactly
/// (and the `maximum` the OpenAPI document publishes).
const MAX_SINCE_MS: u64 = (1 << 53) - 1;

fn parse_since(q: Option<&str>) -> Result<Option<u64>, ApiError> {
    let mut since = None;
    for pair in q.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("since_ms", v)) => {
                let t = v
                    .parse::<u64>()
                    .ok()
                    .filter(|t| *t <= MAX_SINCE_MS)
                    .ok_or_else(|| ApiError::BadRequest(format!("since_ms must be an integer from 0 to {MAX_SINCE_MS} (ms since the Unix epoch), got {v:?}")))?;
                since = Some(t);
            }
            _ => return Err(ApiError::BadRequest(format!("unknown query parameter {pair:?}: only since_ms"))),
        }
    }
    Ok(since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_core::rollout::RolloutSpec;

    fn rollout() -> Rollout {
        let spec: RolloutSpec = serde_json::from_value(json!({"hosts": ["h"], "stable": "v1", "canary": "v2", "weight": 10})).unwrap();
        Rollout::new("r", spec, 0).unwrap()
    }

    #[test]
    fn a_day_of_seconds_stays_within_its_bounds() {
        let r = rollout();
        let mut s = Series::default();
        let start = 1_000_000_000_000u64;
        let mut total = Pair::default();
        // 26 hours of one point a second, each second 3 new stable and 1 new canary request.
        let seconds = 26 * 3_600u64;
        for i in 1..=seconds {
            total.add(Pair { stable: 3, canary: 1 });
            assert!(s.sample(&r, 1, total, Pair::default(), start + i * 1_000).is_some(), "counts moved: a point");
            assert!(s.len() <= FINE_POINTS + COARSE_POINTS + 1);
        }
        assert_eq!(s.fine.len(), FINE_POINTS, "an hour of 1 s points");
        assert_eq!(s.coarse.len(), COARSE_POINTS, "a day of minutes");
        let points: Vec<&Point> = s.points().collect();
        assert!(points.windows(2).all(|w| w[0].at_ms < w[1].at_ms), "oldest first, no repeats");
        // A folded minute holds the minute's counts and spans it.
        let minute = &s.coarse[s.coarse.len() - 1];
        assert_eq!((minute.requests.stable, minute.requests.canary, minute.span_ms), (180, 60, 60_000));
        // Nothing lost within what is kept: the requests add up to 3 per second covered.
        let covered: u64 = points.iter().map(|p| p.span_ms).sum();
        let stable: u64 = points.iter().map(|p| p.requests.stable).sum();
        assert_eq!(stable, 3 * covered / 1_000);
        assert!(s.points().next().unwrap().at_ms >= start + (seconds - 25 * 3_600) * 1_000, "older than 25 h is gone");
    }

    #[test]
    fn nothing_moving_adds_a_point_a_minute() {
        let r = rollout();
        let mut s = Series::default();
        assert!(s.sample(&r, 1, Pair::default(), Pair::default(), 1_000).is_some(), "the first sample");
        let added = (2..=600).filter(|i| s.sample(&r, 1, Pair::default(), Pair::default(), i * 1_000).is_some()).count();
        assert_eq!(added, 9, "ten minutes idle: one point a minute");
        let p = s.sample(&r, 1, Pair { stable: 5, canary: 0 }, Pair::default(), 601_000).unwrap();
        assert_eq!(p.requests.stable, 5);
        // A new window (the analysis restarted) counts from zero.
        let p = s.sample(&r, 2, Pair { stable: 2, canary: 1 }, Pair::default(), 602_000).unwrap();
        assert_eq!((p.requests.stable, p.requests.canary, p.span_ms), (2, 1, 1_000));
    }

    #[test]
    fn gate_columns_are_bounded() {
        let mut s = Series::default();
        for i in 0..(MAX_GATES + 10) {
            let key = GateKey { metric: Metric::ErrorRate, threshold: format!("≤ {i}"), critical: false };
            assert_eq!(s.gate_column(key).is_some(), i < MAX_GATES);
        }
        assert_eq!(s.gates().len(), MAX_GATES);
    }

    #[test]
    fn since_is_the_only_query() {
        assert_eq!(parse_since(Some("since_ms=5")).unwrap(), Some(5));
        assert_eq!(parse_since(None).unwrap(), None);
        assert!(parse_since(Some("since_ms=-1")).is_err());
        assert_eq!(parse_since(Some("since_ms=9007199254740991")).unwrap(), Some(9007199254740991));
        assert!(parse_since(Some("since_ms=9007199254740992")).is_err());
        assert!(parse_since(Some("x=1")).is_err());
    }
}
