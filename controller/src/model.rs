//! The controller's record of a rollout: what the user asked for and where it stands.

use fledge_core::analysis::Verdict;
use fledge_core::rollout::{Mode, RolloutSpec};
use fledge_core::snapshot::RouteSpec;
use fledge_core::Weight;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Weight set by hand; no analysis.
    Manual,
    /// Created; starts at the first step on the next analysis tick.
    Pending,
    /// At `step`, judged every interval.
    Progressing,
    /// Held at its weight by the user.
    Paused,
    /// The canary became stable.
    Succeeded,
    /// The canary failed a gate; all traffic back on stable.
    RolledBack,
    /// Stopped by the user; all traffic on stable.
    Aborted,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::RolledBack | Phase::Aborted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Manual => "manual",
            Phase::Pending => "pending",
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Succeeded => "succeeded",
            Phase::RolledBack => "rolled_back",
            Phase::Aborted => "aborted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub name: String,
    pub spec: RolloutSpec,
    pub status: RolloutStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub phase: Phase,
    /// Index into the steps while automated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// The canary weight the proxies are told to apply.
    pub weight: Weight,
    /// The config generation that carried this rollout's last change.
    pub generation: u64,
    pub updated_at_ms: u64,
    #[serde(default)]
    pub step_started_at_ms: u64,
    #[serde(default)]
    pub consecutive_failures: u32,
    /// One line on why the rollout is where it is.
    #[serde(default)]
    pub message: String,
    /// The last judgement, with every gate's measured values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<Verdict>,
}

impl Rollout {
    /// A new rollout from a validated spec: manual at its weight, or automated and pending.
    pub fn new(name: &str, spec: RolloutSpec, generation: u64, now_ms: u64) -> Self {
        let (phase, weight, message) = match spec.mode() {
            Ok(Mode::Manual(w)) => (Phase::Manual, w, "manual weighting".to_string()),
            _ => (Phase::Pending, Weight::ZERO, "waiting for the first analysis tick".to_string()),
        };
        let status = RolloutStatus {
            phase,
            step: None,
            weight,
            generation,
            updated_at_ms: now_ms,
            step_started_at_ms: now_ms,
            consecutive_failures: 0,
            message,
            last_verdict: None,
        };
        Self { name: name.to_string(), spec, status }
    }

    /// What the data plane needs of this rollout.
    pub fn route(&self) -> RouteSpec {
        RouteSpec {
            name: self.name.clone(),
            hosts: self.spec.hosts.clone(),
            stable: self.spec.stable.clone(),
            canary: self.spec.canary.clone(),
            weight: self.status.weight,
            salt: self.spec.salt_for(&self.name),
        }
    }
}
