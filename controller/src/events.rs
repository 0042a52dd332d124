//! Rollout events: one per transition, written in the same transaction as the state it describes.
//!
//! Each carries the state machine's input that caused it (`input`), so the log can be replayed, and the
//! state it left (phase, step, weight, versions, failures, verdict).

use serde_json::{json, Value};

use crate::machine::Input;
use crate::model::Rollout;

/// The stored body of an event of `kind` that left `rollout` as it is now.
pub fn body(kind: &str, rollout: &Rollout, input: &Input) -> Value {
    let s = &rollout.status;
    // The verdict is stored once, as the event's `verdict`, not again inside its input.
    let input = match input {
        Input::Judged { scheduled, .. } => json!({ "kind": "judged", "scheduled": scheduled }),
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    };
    json!({
        "kind": kind,
        "at_ms": s.updated_at_ms,
        "phase": s.phase,
        "step": s.step,
        "weight": s.weight,
        "generation": s.generation,
        "revision": s.revision,
        "stable": rollout.spec.stable,
        "canary": rollout.spec.canary,
        "consecutive_failures": s.consecutive_failures,
        "message": s.message,
        "input": input,
        "verdict": s.last_verdict,
    })
}
