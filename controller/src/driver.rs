//! The analysis loop: every few tens of milliseconds, judge each automated rollout that is due (per its
//! `analysis.interval_seconds`) and carry out what [`progress::next`] decides. New data wakes it at
//! once, and a failing critical gate rolls back without waiting for the interval. A transition is
//! committed — persisted with its event and published to the proxies — before the next rollout is
//! looked at, so a rollback reaches the long-polling proxies at once.

use std::time::Duration;

use crate::error::ApiError;
use crate::model::Phase;
use crate::progress::{self, Step};
use crate::state::{now_ms, AppState, Persist};

const TICK: Duration = Duration::from_millis(25);

pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = state.shutdown_signal();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = state.data_arrived.notified() => {}
                _ = shutdown.wait_for(|down| *down) => return,
            }
            // A bug in one tick must not end the analysis of every rollout for the life of the process.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tick_once(&state, now_ms()))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "analysis tick failed"),
                Err(_) => tracing::error!("analysis tick panicked; continuing with the next tick"),
            }
        }
    })
}

/// One pass over the rollouts; public so tests can drive time themselves.
pub fn tick_once(state: &AppState, now: u64) -> Result<(), ApiError> {
    let due: Vec<(String, u64)> = {
        let inner = state.lock()?;
        inner
            .rollouts
            .values()
            .filter(|r| matches!(r.status.phase, Phase::Pending | Phase::Progressing))
            .map(|r| (r.name.clone(), interval_ms(r)))
            .collect()
    };
    for (name, interval) in due {
        let (stable, canary, scheduled) = {
            let mut live = state.live()?;
            let window = live.window_mut(&name, now);
            let scheduled = window.last_evaluated_ms == 0 || now >= window.last_evaluated_ms.saturating_add(interval);
            if !scheduled && !window.fresh {
                continue;
            }
            window.fresh = false;
            if scheduled {
                window.last_evaluated_ms = now;
            }
            let inner = state.lock()?;
            let Some(r) = inner.rollouts.get(&name) else { continue };
            (window.stats(&r.spec.stable), window.stats(&r.spec.canary), scheduled)
        };
        evaluate(state, &name, &stable, &canary, now, scheduled)?;
    }
    Ok(())
}

fn interval_ms(r: &crate::model::Rollout) -> u64 {
    match r.spec.mode() {
        Ok(fledge_core::rollout::Mode::Automated(a)) => (a.interval_seconds() * 1_000.0) as u64,
        _ => 1_000,
    }
}

fn evaluate(
    state: &AppState,
    name: &str,
    stable: &fledge_core::analysis::VersionStats,
    canary: &fledge_core::analysis::VersionStats,
    now: u64,
    scheduled: bool,
) -> Result<(), ApiError> {
    let Some(rollout) = state.lock()?.rollouts.get(name).cloned() else { return Ok(()) };
    let step = if scheduled {
        progress::next(&rollout, stable, canary, now)
    } else {
        progress::next_on_data(&rollout, stable, canary, now)
    };
    match step {
        Step::Idle => Ok(()),
        Step::Hold(status) => {
            let mut inner = state.lock()?;
            if let Some(r) = inner.rollouts.get_mut(name) {
                // Only if nothing changed the rollout meanwhile (an API call, say).
                if r.status.generation == rollout.status.generation && r.status.phase == rollout.status.phase {
                    r.status = status;
                }
            }
            Ok(())
        }
        Step::Transition { status, event, swap_versions } => {
            let expected = rollout.status.generation;
            let result = state.commit(|inner, generation| {
                let r = inner.rollouts.get_mut(name).ok_or_else(|| ApiError::NotFound(name.to_string()))?;
                if r.status.generation != expected {
                    return Err(ApiError::Conflict("changed meanwhile".into()));
                }
                r.status = status.clone();
                r.status.generation = generation;
                r.status.updated_at_ms = now;
                if swap_versions {
                    std::mem::swap(&mut r.spec.stable, &mut r.spec.canary);
                }
                Ok(((), Persist::Put { name: name.to_string(), event: Some(event) }))
            });
            match result {
                Ok(()) => {
                    tracing::info!(rollout = %name, event, phase = status.phase.as_str(), weight = status.weight.percent(), message = %status.message, "rollout transition");
                    if event == "started" || swap_versions {
                        state.live()?.reset_window(name, now);
                    }
                    Ok(())
                }
                Err(ApiError::Conflict(_)) => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}
