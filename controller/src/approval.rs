//! External approvals of steps (`{"weight": 50, "approval": {"url": …, "timeout_seconds": …}}`).
//!
//! Once such a step could advance, its verdict says it is waiting (`Verdict::waiting`); from then on
//! this task POSTs the rollout's state to the URL once per analysis interval. A 2xx answer within the
//! timeout grants the step (keyed by rollout, step and the step's start, so a grant never carries over
//! to another step or a restarted one); anything else — another status, a timeout, no connection —
//! holds it and is shown in `live.approval`. The driver reads the grant as the step's release.

use std::collections::HashMap;
use std::time::Duration;

use fledge_core::analysis::{StepHold, Waiting};
use serde::Serialize;
use serde_json::json;

use crate::model::{Phase, Rollout};
use crate::state::{now_ms, AppState};

const TICK: Duration = Duration::from_millis(50);

/// One rollout's approval record for its current step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub url: String,
    pub step: usize,
    pub step_started_at_ms: u64,
    pub granted: bool,
    /// The last answer: "HTTP 200", "HTTP 503", "no answer within 10 s", …
    pub last: String,
    pub asked: u64,
    pub last_asked_ms: u64,
}

#[derive(Debug, Default)]
pub struct Approvals {
    by_rollout: HashMap<String, Approval>,
}

impl Approvals {
    pub fn get(&self, rollout: &str) -> Option<&Approval> {
        self.by_rollout.get(rollout)
    }

    /// Whether `r`'s current step has been granted.
    pub fn granted(&self, r: &Rollout) -> bool {
        self.by_rollout.get(&r.name).is_some_and(|a| a.granted && Some(a.step) == r.status.step && a.step_started_at_ms == r.status.step_started_at_ms)
    }

    fn record(&mut self, r: &Rollout, url: &str, outcome: Result<u16, String>, now: u64) {
        let step = r.status.step.unwrap_or(0);
        let a = self.by_rollout.entry(r.name.clone()).or_insert_with(|| Approval {
            url: url.to_string(),
            step,
            step_started_at_ms: r.status.step_started_at_ms,
            granted: false,
            last: String::new(),
            asked: 0,
            last_asked_ms: 0,
        });
        if a.step != step || a.step_started_at_ms != r.status.step_started_at_ms || a.url != url {
            *a = Approval { url: url.to_string(), step, step_started_at_ms: r.status.step_started_at_ms, granted: false, last: String::new(), asked: 0, last_asked_ms: 0 };
        }
        a.asked = a.asked.saturating_add(1);
        a.last_asked_ms = now;
        (a.granted, a.last) = match outcome {
            Ok(code) => ((200..300).contains(&code), format!("HTTP {code}")),
            Err(e) => (false, e),
        };
    }

    fn due(&self, r: &Rollout, now: u64) -> bool {
        match self.by_rollout.get(&r.name) {
            Some(a) if Some(a.step) == r.status.step && a.step_started_at_ms == r.status.step_started_at_ms => {
                !a.granted && now >= a.last_asked_ms.saturating_add(r.interval_ms())
            }
            _ => true,
        }
    }
}

/// The approval a rollout is waiting for now, if any.
fn waiting_for(r: &Rollout) -> Option<(String, f64)> {
    if r.status.phase != Phase::Progressing {
        return None;
    }
    let url = match r.status.last_verdict.as_ref()?.waiting.as_ref()? {
        Waiting::Approval { url } => url.clone(),
        Waiting::Manual => return None,
    };
    let timeout = match r.analysis()?.hold(r.status.step?) {
        StepHold::Approval(a) if a.url == url => a.timeout_seconds,
        _ => return None,
    };
    Some((url, timeout))
}

pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
        let mut in_flight: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            in_flight.retain(|_, h| !h.is_finished());
            let view = state.view();
            let now = now_ms();
            for r in view.rollouts() {
                let Some((url, timeout)) = waiting_for(r) else { continue };
                if in_flight.contains_key(&r.name) || !state.approvals().due(r, now) {
                    continue;
                }
                let (state, http, r) = (state.clone(), http.clone(), r.as_ref().clone());
                in_flight.insert(r.name.clone(), tokio::spawn(async move { ask(&state, &http, &r, &url, timeout).await }));
            }
        }
    })
}

async fn ask(state: &AppState, http: &reqwest::Client, r: &Rollout, url: &str, timeout_s: f64) {
    let body = json!({
        "rollout": r.name, "phase": r.status.phase, "step": r.status.step, "weight": r.status.weight,
        "stable": r.spec.stable, "canary": r.spec.canary, "message": r.status.message,
    });
    let outcome = match http.post(url).json(&body).timeout(Duration::from_secs_f64(timeout_s)).send().await {
        Ok(resp) => Ok(resp.status().as_u16()),
        Err(e) if e.is_timeout() => Err(format!("no answer within {timeout_s} s")),
        Err(e) => Err(format!("cannot reach {url}: {}", std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()))),
    };
    let granted = outcome.as_ref().is_ok_and(|c| (200..300).contains(c));
    state.approvals().record(r, url, outcome, now_ms());
    if granted {
        tracing::info!(rollout = %r.name, step = ?r.status.step, "step approved");
        // The driver judges again at once and advances.
        state.data_arrived();
    }
}
