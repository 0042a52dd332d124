//! Readiness probes of canaries (`readiness` in the rollout spec).
//!
//! A rollout with a readiness probe stays `pending` — no canary traffic — until the canary has passed
//! `success_threshold` probes in a row; once its traffic flows, `failure_threshold` failures in a row
//! act like a failing critical gate and roll it back. The probe's bookkeeping ([`Probe`]) is pure; the
//! task in [`spawn`] sends the GETs (each bounded by its timeout, never under a lock) and commits the
//! rollback through the state machine.

use std::collections::HashMap;
use std::time::Duration;

use fledge_core::rollout::ReadinessSpec;
use serde::Serialize;

use crate::machine::Input;
use crate::model::{Phase, Rollout};
use crate::state::{now_ms, AppState};

/// How often the task looks for probes that are due.
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Not enough probes yet.
    Unknown,
    Ready,
    NotReady,
}

/// One rollout's probe record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    pub state: Readiness,
    pub url: String,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub probes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub last_probe_ms: u64,
}

impl Probe {
    pub fn new(url: &str) -> Self {
        Self {
            state: Readiness::Unknown,
            url: url.to_string(),
            consecutive_successes: 0,
            consecutive_failures: 0,
            probes: 0,
            last_error: None,
            last_probe_ms: 0,
        }
    }

    /// Records one probe's outcome; returns the new state when it changed.
    pub fn observe(&mut self, outcome: Result<(), String>, spec: &ReadinessSpec, now_ms: u64) -> Option<Readiness> {
        self.probes = self.probes.saturating_add(1);
        self.last_probe_ms = now_ms;
        let before = self.state;
        match outcome {
            Ok(()) => {
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                self.consecutive_failures = 0;
                self.last_error = None;
                if self.consecutive_successes >= spec.success_threshold {
                    self.state = Readiness::Ready;
                }
            }
            Err(e) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.consecutive_successes = 0;
                self.last_error = Some(e);
                if self.consecutive_failures >= spec.failure_threshold {
                    self.state = Readiness::NotReady;
                }
            }
        }
        (self.state != before).then_some(self.state)
    }

    pub fn due(&self, spec: &ReadinessSpec, now_ms: u64) -> bool {
        self.last_probe_ms == 0 || now_ms >= self.last_probe_ms.saturating_add((spec.interval_seconds * 1_000.0) as u64)
    }

    /// One line for the status while a rollout waits on its canary.
    pub fn describe(&self, spec: &ReadinessSpec) -> String {
        match (&self.state, &self.last_error) {
            (Readiness::Ready, _) => "ready".to_string(),
            (_, Some(e)) => format!("not ready: {} of {} probes failed in a row ({e})", self.consecutive_failures, spec.failure_threshold),
            _ => format!("{} of {} probes passed", self.consecutive_successes, spec.success_threshold),
        }
    }
}

/// The probes of every rollout that has one, keyed by rollout name. A changed URL starts afresh.
#[derive(Debug, Default)]
pub struct Probes {
    by_rollout: HashMap<String, Probe>,
}

impl Probes {
    pub fn get(&self, rollout: &str) -> Option<&Probe> {
        self.by_rollout.get(rollout)
    }

    /// Whether a pending rollout may start: it has no probe, or its canary is ready.
    pub fn ready(&self, r: &Rollout) -> bool {
        match &r.spec.readiness {
            None => true,
            Some(spec) => self.by_rollout.get(&r.name).is_some_and(|p| p.url == spec.url && p.state == Readiness::Ready),
        }
    }

    fn entry(&mut self, rollout: &str, spec: &ReadinessSpec) -> &mut Probe {
        let p = self.by_rollout.entry(rollout.to_string()).or_insert_with(|| Probe::new(&spec.url));
        if p.url != spec.url {
            *p = Probe::new(&spec.url);
        }
        p
    }

    /// Forgets probes of rollouts that no longer probe.
    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_rollout.retain(|name, _| keep(name));
    }
}

/// Whether a rollout in this phase is probed at all.
fn probed(phase: Phase) -> bool {
    matches!(phase, Phase::Pending | Phase::Paused) || phase.is_judged()
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
            state.probes().retain(|name| view.rollout(name).is_some_and(|r| r.spec.readiness.is_some() && probed(r.status.phase)));
            for r in view.rollouts() {
                let Some(spec) = r.spec.readiness.clone() else { continue };
                if !probed(r.status.phase) || in_flight.contains_key(&r.name) {
                    continue;
                }
                if !state.probes().entry(&r.name, &spec).due(&spec, now) {
                    continue;
                }
                let (state, http, name) = (state.clone(), http.clone(), r.name.clone());
                in_flight.insert(r.name.clone(), tokio::spawn(async move { probe_once(&state, &http, &name, &spec).await }));
            }
        }
    })
}

async fn probe_once(state: &AppState, http: &reqwest::Client, name: &str, spec: &ReadinessSpec) {
    let outcome = match http.get(&spec.url).timeout(Duration::from_millis(spec.timeout_ms)).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Err(format!("no answer within {} ms", spec.timeout_ms)),
        Err(e) => Err(format!("cannot reach {}: {}", spec.url, std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()))),
    };
    let now = now_ms();
    let changed = state.probes().entry(name, spec).observe(outcome, spec, now);
    match changed {
        Some(Readiness::NotReady) => {
            let detail = state.probes().get(name).map(|p| p.describe(spec)).unwrap_or_default();
            tracing::warn!(rollout = %name, %detail, "canary failed its readiness probe");
            fail(state, name, detail, now);
        }
        Some(Readiness::Ready) => {
            tracing::info!(rollout = %name, "canary ready");
            state.data_arrived();
        }
        _ => {}
    }
}

/// A canary that stopped being ready while its traffic flows is rolled back, as by a critical gate —
/// by the leader (several replicas probe; one decides, fenced by its lease).
fn fail(state: &AppState, name: &str, detail: String, now: u64) {
    let Some(fence) = state.cluster().lead().decider() else { return };
    let input = Input::ReadinessFailed { detail };
    let result = state.apply_as(name, now, fence, input, |r| r.status.phase.is_judged() || r.status.phase == Phase::Paused);
    if let Err(e) = result {
        tracing::error!(rollout = %name, error = %e, "cannot roll back after a failed readiness probe");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ReadinessSpec {
        serde_json::from_str(r#"{"url":"http://v2/healthz","success_threshold":3,"failure_threshold":2}"#).unwrap()
    }

    #[test]
    fn thresholds_count_in_a_row() {
        let s = spec();
        let mut p = Probe::new(&s.url);
        assert_eq!(p.observe(Ok(()), &s, 1), None);
        assert_eq!(p.observe(Err("HTTP 503".into()), &s, 2), None, "one failure is not enough");
        assert_eq!(p.observe(Ok(()), &s, 3), None);
        assert_eq!(p.observe(Ok(()), &s, 4), None);
        assert_eq!(p.observe(Ok(()), &s, 5), Some(Readiness::Ready), "three in a row");
        assert_eq!(p.observe(Err("HTTP 503".into()), &s, 6), None);
        assert_eq!(p.observe(Err("HTTP 503".into()), &s, 7), Some(Readiness::NotReady));
        assert!(p.describe(&s).contains("2 of 2 probes failed in a row (HTTP 503)"), "{}", p.describe(&s));
        assert_eq!(p.probes, 7);
    }

    #[test]
    fn due_by_interval() {
        let s = spec();
        let mut p = Probe::new(&s.url);
        assert!(p.due(&s, 5));
        p.observe(Ok(()), &s, 1_000);
        assert!(!p.due(&s, 1_999) && p.due(&s, 2_000));
    }
}
