//! `GET /v1/rollouts/{name}/export`: a rollout's judged evidence and its events as JSON Lines, for
//! loading into a dataset or a warehouse (`fledge rollouts export NAME > file.jsonl`).
//!
//! One JSON object per line, each with a `type`:
//! - `rollout` (first): the rollout as committed when the export began — `rollout` (name, spec,
//!   status with `totals`) — and `intervals_dropped`, the oldest intervals no longer kept.
//! - `interval`: one per judged interval and version (`n`, `window`, `phase`, `step`, the `action`
//!   judged on it, `started_at_ms`/`ended_at_ms`, `version`, `role`, additive `counts`, the
//!   interval's `latency_ms` quantiles), oldest first.
//! - `event`: every transition with its `seq`, input and `verdict`, oldest first.
//! - `end` (last): how many interval and event lines were written. A stream without it was cut
//!   short; an `error` line says why when the controller knows.
//!
//! The export is a snapshot: intervals and events committed after it began are not in it, so the
//! `counts` of its interval lines add up to the header's `status.totals`. It is read from the store a
//! page at a time, so a long rollout's export does not hold the store (or memory) for its length.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::model::Rollout;
use crate::state::{now_ms, AppState};

/// Rows read from the store per page.
const PAGE: usize = 512;

pub async fn export(State(state): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let (rollout, last_seq, first_interval) = state.export_start(&name)?;
    let upto_n = rollout.status.totals.intervals;
    let kept_from = first_interval.unwrap_or(upto_n.saturating_add(1));
    let header = json!({
        "type": "rollout",
        "exported_at_ms": now_ms(),
        "rollout": rollout.as_ref(),
        "intervals_dropped": kept_from.saturating_sub(1).min(upto_n),
    });
    let cursor = Cursor { state, rollout, part: Part::Header(header), last_seq, upto_n, intervals: 0, events: 0 };
    let body = Body::from_stream(futures_util::stream::unfold(cursor, |mut c| async move {
        let chunk = c.next_chunk()?;
        Some((Ok::<_, std::convert::Infallible>(chunk), c))
    }));
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jsonl"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.jsonl\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

enum Part {
    Header(Value),
    /// Intervals numbered after this one are still to come.
    Intervals(u64),
    /// Events after this seq are still to come.
    Events(i64),
    End,
    Done,
}

struct Cursor {
    state: AppState,
    rollout: std::sync::Arc<Rollout>,
    part: Part,
    last_seq: i64,
    upto_n: u64,
    intervals: u64,
    events: u64,
}

impl Cursor {
    /// The next lines to send; `None` once the `end` line (or an `error` line) went out.
    fn next_chunk(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        let name = self.rollout.name.clone();
        let failed = |e: &dyn std::fmt::Display| {
            tracing::warn!(rollout = %name, error = %e, "export cut short");
            line(&json!({"type": "error", "message": format!("the export was cut short: {e}")}))
        };
        match std::mem::replace(&mut self.part, Part::Done) {
            Part::Header(h) => {
                out.extend(line(&h));
                self.part = Part::Intervals(0);
            }
            Part::Intervals(after) => match self.state.intervals_page(&name, after, self.upto_n, PAGE) {
                Ok(rows) if rows.is_empty() => self.part = Part::Events(0),
                Ok(rows) => {
                    let mut last = after;
                    for (n, body) in rows {
                        last = n;
                        for l in interval_lines(&name, &body) {
                            out.extend(line(&l));
                            self.intervals += 1;
                        }
                    }
                    self.part = Part::Intervals(last);
                }
                Err(e) => out.extend(failed(&e)),
            },
            Part::Events(after) => match self.state.events_page(&name, after, self.last_seq, PAGE) {
                Ok(rows) if rows.is_empty() => self.part = Part::End,
                Ok(rows) => {
                    let mut last = after;
                    for (seq, body) in rows {
                        last = seq;
                        let mut event = json!({"type": "event", "rollout": name, "seq": seq});
                        if let (Some(fields), Value::Object(body)) = (event.as_object_mut(), body) {
                            fields.extend(body);
                        }
                        out.extend(line(&event));
                        self.events += 1;
                    }
                    self.part = Part::Events(last);
                }
                Err(e) => out.extend(failed(&e)),
            },
            Part::End => out.extend(line(&json!({"type": "end", "intervals": self.intervals, "events": self.events}))),
            Part::Done => return None,
        }
        Some(Bytes::from(out))
    }
}

/// A stored interval's lines: one per version, each carrying the interval's fields.
fn interval_lines(rollout: &str, body: &Value) -> Vec<Value> {
    let versions = body.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
    versions
        .into_iter()
        .map(|v| {
            let mut l = json!({"type": "interval", "rollout": rollout});
            if let (Some(fields), Some(interval)) = (l.as_object_mut(), body.as_object()) {
                for (k, val) in interval.iter().filter(|(k, _)| *k != "versions") {
                    fields.insert(k.clone(), val.clone());
                }
                if let Value::Object(version) = v {
                    fields.extend(version);
                }
            }
            l
        })
        .collect()
}

fn line(v: &Value) -> Vec<u8> {
    let mut l = v.to_string().into_bytes();
    l.push(b'\n');
    l
}
