//! `GET /metrics`: the controller in the Prometheus text format (0.0.4), written by the `prometheus`
//! crate.
//!
//! Everything is gathered when scraped, from the committed view (phase, weight, step, the last
//! verdict's gates), the live state (proxy confirmations, held polls, workers) and a few counters the
//! request paths bump (one atomic add each); nothing is kept per series between scrapes. Counters
//! count since the controller started (a restart is a counter reset to Prometheus). Labels are the
//! rollout, its phase, and a gate (`<metric>_<index in the verdict>`), never a user or a proxy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use fledge_core::analysis::GateStatus;
use prometheus::{Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::error::ApiError;
use crate::model::Phase;
use crate::state::{now_ms, AppState};

/// Counts the request paths and the commit path add to (one atomic add, or a short lock per
/// committed rollback or promotion).
#[derive(Debug, Default)]
pub struct Counters {
    reports: AtomicU64,
    duplicate_reports: AtomicU64,
    outcomes: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    per_rollout: Mutex<HashMap<String, RolloutCounts>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct RolloutCounts {
    rollbacks: u64,
    promotions: u64,
}

impl Counters {
    pub fn report(&self, duplicate: bool) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        if duplicate {
            self.duplicate_reports.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn outcomes(&self, n: usize) {
        self.outcomes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A committed event of `kind` of rollout `name`.
    pub fn event(&self, name: &str, kind: &str) {
        let mut map = self.per_rollout.lock().unwrap_or_else(PoisonError::into_inner);
        match kind {
            "rolled_back" => map.entry(name.to_string()).or_default().rollbacks += 1,
            "promoted" => map.entry(name.to_string()).or_default().promotions += 1,
            _ => {}
        }
    }

    /// A deleted rollout's series go with it.
    pub fn forget(&self, name: &str) {
        self.per_rollout.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
    }

    fn rollout(&self, name: &str) -> RolloutCounts {
        self.per_rollout.lock().unwrap_or_else(PoisonError::into_inner).get(name).copied().unwrap_or_default()
    }
}

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = gather(&state).map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}

/// A scrape's registry: families are created, filled from the state and encoded, then dropped.
struct Families {
    registry: Registry,
}

impl Families {
    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(g.clone()))?;
        Ok(g)
    }

    fn int_gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// A gauge without labels, set to `value`.
    fn single_gauge(&self, name: &str, help: &str, value: i64) -> prometheus::Result<()> {
        let g = IntGauge::with_opts(Opts::new(name, help))?;
        g.set(value);
        self.registry.register(Box::new(g))
    }

    /// A counter without labels, at `value`.
    fn single_counter(&self, name: &str, help: &str, value: u64) -> prometheus::Result<()> {
        let c = IntCounter::with_opts(Opts::new(name, help))?;
        c.inc_by(value);
        self.registry.register(Box::new(c))
    }

    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }
}

fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The text exposition of everything above.
pub fn gather(state: &AppState) -> prometheus::Result<String> {
    let f = Families { registry: Registry::new() };
    let info = f.int_gauge("fledge_rollout_info", "A rollout and its versions (always 1).", &["rollout", "stable", "canary"])?;
    let phase = f.int_gauge("fledge_rollout_phase", "1 for the rollout's current phase, 0 for every other.", &["rollout", "phase"])?;
    let weight = f.gauge("fledge_rollout_canary_weight_ratio", "Share of traffic the proxies are told to send to the canary (0-1).", &["rollout"])?;
    let step = f.int_gauge("fledge_rollout_step", "Index of the current step (0 = first), while the rollout has one.", &["rollout"])?;
    let steps = f.int_gauge("fledge_rollout_steps", "Steps of an automated rollout.", &["rollout"])?;
    let failures = f.int_gauge("fledge_rollout_consecutive_failures", "Consecutive failing judgements of non-critical gates.", &["rollout"])?;
    let generation = f.int_gauge("fledge_rollout_generation", "Config generation that carried the rollout's last change of routing.", &["rollout"])?;
    let active = f.int_gauge("fledge_rollout_proxies_active", "Proxies heard from recently.", &["rollout"])?;
    let confirmed = f.int_gauge("fledge_rollout_proxies_confirmed", "Active proxies whose every worker applied the rollout's generation.", &["rollout"])?;
    let statistic = f.gauge(
        "fledge_gate_statistic",
        "A gate's statistic in the last verdict: its detector (kind=detector, fails at the threshold) or advance proof (kind=proof); test says which (e-values, or quantile_cs confidence bounds in ms).",
        &["rollout", "gate", "kind", "test"],
    )?;
    let threshold = f.gauge("fledge_gate_threshold", "The value the gate's statistic is compared with.", &["rollout", "gate", "kind", "test"])?;
    let failing = f.int_gauge("fledge_gate_failing", "1 when the gate failed in the last verdict.", &["rollout", "gate"])?;
    let rollbacks = f.counter("fledge_rollbacks_total", "Rollbacks committed since the controller started.", &["rollout"])?;
    let promotions = f.counter("fledge_promotions_total", "Promotions committed since the controller started.", &["rollout"])?;

    let counters = state.counters();
    let view = state.view();
    // The store's lock first and alone: the commit path takes it before `live`.
    let pending = state.outbox_len().map_err(|e| prometheus::Error::Msg(e.to_string()))?;
    let now = now_ms();
    {
        let live = state.live();
        for r in view.rollouts() {
            let name = r.name.as_str();
            let s = &r.status;
            info.with_label_values(&[name, &r.spec.stable, &r.spec.canary]).set(1);
            for p in Phase::ALL {
                phase.with_label_values(&[name, p.as_str()]).set(i64::from(p == s.phase));
            }
            weight.with_label_values(&[name]).set(s.weight.percent() / 100.0);
            if let Some(i) = s.step {
                step.with_label_values(&[name]).set(int(i));
            }
            if let Some(a) = r.analysis() {
                steps.with_label_values(&[name]).set(int(a.steps().len()));
            }
            failures.with_label_values(&[name]).set(i64::from(s.consecutive_failures));
            generation.with_label_values(&[name]).set(int(s.generation));
            let c = live.confirmation(view.epoch(), s.generation, now);
            active.with_label_values(&[name]).set(int(c.proxies));
            confirmed.with_label_values(&[name]).set(int(c.confirmed));
            for (i, g) in s.last_verdict.iter().flat_map(|v| v.gates.iter()).enumerate() {
                let gate = format!("{}_{i}", g.metric);
                failing.with_label_values(&[name, &gate]).set(i64::from(g.status == GateStatus::Fail));
                for (kind, e) in [("detector", &g.evidence), ("proof", &g.proof)] {
                    // A value the verdict holds at ±f64::MAX (a bound the data does not give yet) is left
                    // out, as are non-finite ones.
                    let shown = |v: f64| v.is_finite() && v.abs() < f64::MAX;
                    if let Some(e) = e.as_ref().filter(|e| shown(e.value) && shown(e.threshold)) {
                        let labels = [name, gate.as_str(), kind, e.test.as_str()];
                        statistic.with_label_values(&labels).set(e.value);
                        threshold.with_label_values(&labels).set(e.threshold);
                    }
                }
            }
            let n = counters.rollout(name);
            rollbacks.with_label_values(&[name]).inc_by(n.rollbacks);
            promotions.with_label_values(&[name]).inc_by(n.promotions);
        }
        f.single_gauge("fledge_proxy_workers", "Proxy workers (Envoy worker threads and main threads) remembered.", int(live.worker_count()))?;
    }
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let plain: [(&str, &str, u64); 8] = [
        ("fledge_config_polls_superseded_total", "Held config polls answered early because a newer poll of the same proxy arrived (a fetcher lease changed hands).", state.pollers().superseded()),
        ("fledge_leadership_changes_total", "Times this replica became or stopped being the leader (several replicas on PostgreSQL).", state.cluster().leadership_changes()),
        ("fledge_reports_received_total", "Telemetry reports received from the filters (duplicates included).", load(&counters.reports)),
        ("fledge_reports_duplicate_total", "Reports recognised as already counted (a resend).", load(&counters.duplicate_reports)),
        ("fledge_outcomes_received_total", "Late outcomes accepted (POST /v1/rollouts/{name}/outcomes items).", load(&counters.outcomes)),
        ("fledge_notifications_delivered_total", "Webhook notifications delivered (2xx).", load(&counters.delivered)),
        ("fledge_notification_failures_total", "Webhook attempts that failed and will be retried.", load(&counters.failed)),
        ("fledge_notifications_dropped_total", "Webhook notifications given up: refused, a day old, or beyond the outbox's bound.", load(&counters.dropped)),
    ];
    for (name, help, value) in plain {
        f.single_counter(name, help, value)?;
    }
    let gauges: [(&str, &str, i64); 4] = [
        ("fledge_leader", "1 while this replica is the leader that runs the analysis (always 1 on SQLite).", i64::from(state.cluster().role() == crate::cluster::Role::Leader)),
        ("fledge_config_polls_held", "Config long-polls held now (one per connected Envoy).", int(state.held_polls())),
        ("fledge_config_generation", "The current config generation.", int(view.generation())),
        ("fledge_notifications_pending", "Webhook notifications in the outbox, not yet delivered.", int(pending)),
    ];
    for (name, help, value) in gauges {
        f.single_gauge(name, help, value)?;
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&f.registry.gather(), &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}
