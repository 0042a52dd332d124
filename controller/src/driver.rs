//! The analysis loop: every few tens of milliseconds, judge each automated rollout that is due (per its
//! `analysis.interval_seconds`) and commit what the state machine makes of the verdict. New data wakes
//! it at once, and a failing critical gate rolls back without waiting for the interval. A transition
//! is committed — persisted with its event and published to the proxies — before the next rollout is
//! looked at, so a rollback reaches the long-polling proxies at once.
//!
//! The judgement is made on one consistent pair: the rollout at revision R (from the committed view)
//! and the window numbered by that revision's `status.window`. Its commit is refused if the rollout
//! moved past R meanwhile (a user's `resume`, say), so a verdict is never applied to a state it was
//! not made for.

use std::time::Duration;

use fledge_core::analysis::judge;

use crate::error::ApiError;
use crate::store::Fence;
use crate::machine::{self, Input};
use crate::model::{Phase, Rollout};
use crate::state::{now_ms, AppState};
use crate::totals::Interval;

const TICK: Duration = Duration::from_millis(25);
/// How often silent workers are forgotten.
const EVICT_EVERY_MS: u64 = 5_000;

pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = state.shutdown_signal();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_evict = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = state.wait_for_data() => {}
                _ = shutdown.wait_for(|down| *down) => return,
            }
            let now = now_ms();
            // A bug in one tick must not end the analysis of every rollout for the life of the process.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tick_once(&state, now))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "analysis tick failed"),
                Err(_) => tracing::error!("analysis tick panicked; continuing with the next tick"),
            }
            if now.saturating_sub(last_evict) >= EVICT_EVERY_MS {
                last_evict = now;
                let evicted = state.live().evict(now);
                if evicted > 0 {
                    tracing::debug!(evicted, "forgot silent proxy workers");
                }
            }
        }
    })
}

/// One pass over the rollouts; public so tests can drive time themselves.
pub fn tick_once(state: &AppState, now: u64) -> Result<(), ApiError> {
    // Several replicas: only the leader judges, and each of its commits is fenced by its lease.
    let Some(fence) = state.cluster().lead().decider() else { return Ok(()) };
    let view = state.view();
    for r in view.rollouts() {
        let input = match r.status.phase {
            // A canary with a readiness probe gets no traffic before it passes.
            Phase::Pending if state.probes().ready(r) => Some(Input::Start),
            phase if phase.is_judged() => judgement(state, r, now),
            // Paused at a step: only a failing critical gate acts (a pause never shields a rollback).
            Phase::Paused if r.status.step.is_some() => judgement(state, r, now),
            _ => None,
        };
        if let Some(input) = input {
            commit_if_current(state, r, input, now, fence.clone())?;
        }
    }
    Ok(())
}

/// The verdict on a progressing rollout, if it is due or has fresh data.
fn judgement(state: &AppState, r: &Rollout, now: u64) -> Option<Input> {
    let spec = r.analysis()?;
    let step = r.status.step.unwrap_or(0);
    let looked = state.live().take_look(&r.name, r.status.window, step, (&r.spec.stable, &r.spec.canary), r.interval_ms(), now)?;
    let mut step_state = machine::step_state(r);
    // An approval step's grant releases it, like a resume does a manual one.
    step_state.released |= state.approvals().granted(r);
    let verdict = judge(spec, &step_state, &looked.look(), now);
    let interval = Interval { started_at_ms: looked.interval_started_ms, ended_at_ms: now, stable: looked.stable, canary: looked.canary };
    Some(Input::judged_on(verdict, looked.scheduled, interval))
}

/// Commits `input` unless the rollout changed since `seen` was read.
fn commit_if_current(state: &AppState, seen: &Rollout, input: Input, now: u64, fence: Option<Fence>) -> Result<(), ApiError> {
    match state.apply_as(&seen.name, now, fence, input, |current| current.status.revision == seen.status.revision) {
        Ok(_) => Ok(()),
        // Another change won the race between the look and the commit (or this replica lost the
        // lease meanwhile); the next tick judges again, if it still leads.
        Err(ApiError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
