//! Rollout events: one per transition, written in the same transaction as the state it describes.

use serde_json::{json, Value};

use crate::model::Rollout;

/// The stored body of an event of `kind` that left `rollout` as it is now.
pub fn body(kind: &str, rollout: &Rollout) -> Value {
    let s = &rollout.status;
    json!({
        "kind": kind,
        "at_ms": s.updated_at_ms,
        "phase": s.phase,
        "step": s.step,
        "weight": s.weight,
        "generation": s.generation,
        "stable": rollout.spec.stable,
        "canary": rollout.spec.canary,
        "message": s.message,
        "verdict": s.last_verdict,
    })
}
