//! The controller's record of a rollout: what the user asked for and where it stands.
//!
//! A [`Rollout`] can only be built from a spec that validates, and it keeps the compiled [`Mode`]
//! (manual weight, or the analysis spec with its gates) built once at that moment: nothing re-derives
//! it per tick. A stored record is validated the same way when the controller loads it.

use std::sync::Arc;

use fledge_core::analysis::{AnalysisSpec, EvidenceState, Verdict};
use fledge_core::rollout::{Mode, RolloutError, RolloutSpec};
use fledge_core::snapshot::RouteSpec;
use fledge_core::Weight;
use serde::{Deserialize, Serialize};

use crate::totals::Totals;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Weight set by hand; no analysis.
    Manual,
    /// Created; starts at the first step on the next analysis tick.
    Pending,
    /// At `step`, judged every interval.
    Progressing,
    /// Before the first step, with `shadow_seconds`: no user on the canary, a share of stable's
    /// requests copied to it and judged on the shadow gates.
    Shadowing,
    /// Blue-green, before the switch: only `version: canary` segments reach green, judged against
    /// blue.
    Previewing,
    /// Blue-green, after the switch: all traffic on green, judged on absolute and critical gates and
    /// against blue's pre-switch window.
    Baking,
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
    pub const ALL: [Phase; 10] = [
        Phase::Manual,
        Phase::Pending,
        Phase::Progressing,
        Phase::Shadowing,
        Phase::Previewing,
        Phase::Baking,
        Phase::Paused,
        Phase::Succeeded,
        Phase::RolledBack,
        Phase::Aborted,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::RolledBack | Phase::Aborted)
    }

    /// Judged every interval: a step of a canary, or a blue-green preview or bake.
    pub fn is_judged(self) -> bool {
        matches!(self, Phase::Progressing | Phase::Shadowing | Phase::Previewing | Phase::Baking)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Manual => "manual",
            Phase::Pending => "pending",
            Phase::Progressing => "progressing",
            Phase::Shadowing => "shadowing",
            Phase::Previewing => "previewing",
            Phase::Baking => "baking",
            Phase::Paused => "paused",
            Phase::Succeeded => "succeeded",
            Phase::RolledBack => "rolled_back",
            Phase::Aborted => "aborted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Record")]
pub struct Rollout {
    pub name: String,
    pub spec: RolloutSpec,
    pub status: RolloutStatus,
    #[serde(skip_serializing)]
    mode: Arc<Mode>,
}

/// The stored and served form, before validation.
#[derive(Deserialize)]
struct Record {
    name: String,
    spec: RolloutSpec,
    status: RolloutStatus,
}

impl TryFrom<Record> for Rollout {
    type Error = RolloutError;

    fn try_from(r: Record) -> Result<Self, Self::Error> {
        r.spec.validate()?;
        let mode = Arc::new(r.spec.mode()?);
        Ok(Self { name: r.name, spec: r.spec, status: r.status, mode })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub phase: Phase,
    /// Index into the steps while automated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// The canary weight the proxies are told to apply.
    pub weight: Weight,
    /// The config generation that carried this rollout's last change of routing.
    pub generation: u64,
    /// Bumped by every committed change of this rollout, holds included: a decision made on an older
    /// revision is stale and is not committed.
    #[serde(default)]
    pub revision: u64,
    /// Which stats window the analysis reads: bumped whenever the window restarts (start, resume,
    /// promotion, a replaced spec), so data from before a restart is never judged after it.
    #[serde(default)]
    pub window: u64,
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
    /// The sequential evidence (each gate's detector and proof, the looks taken, the α spent): kept
    /// with every commit, so a restart or a resume continues it and never buys a fresh α.
    #[serde(default)]
    pub evidence: EvidenceState,
    /// The current step's hold (a manual pause, an approval) has been released: it advances when
    /// ready. Cleared when the step changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
    /// Everything the analysis judged, per version: the sums of the export's interval lines
    /// ([`crate::totals`]). Kept across a replaced spec, like the events.
    #[serde(default, skip_serializing_if = "Totals::is_empty")]
    pub totals: Totals,
    /// The replica (and its lease epoch) whose analysis made the last decision (several replicas
    /// on PostgreSQL; absent on SQLite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<DecidedBy>,
}

/// Who committed a decision of the analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedBy {
    pub replica: String,
    pub epoch: u64,
}

impl Rollout {
    /// A new rollout: manual at its weight, or automated and pending. Refuses a spec that does not
    /// validate.
    pub fn new(name: &str, spec: RolloutSpec, now_ms: u64) -> Result<Self, RolloutError> {
        spec.validate()?;
        let mode = Arc::new(spec.mode()?);
        let (phase, weight, message) = match mode.as_ref() {
            Mode::Manual(w) => (Phase::Manual, *w, "manual weighting".to_string()),
            Mode::Automated(_) if spec.readiness.is_some() => {
                (Phase::Pending, Weight::ZERO, "waiting for the canary to pass its readiness probe".to_string())
            }
            Mode::Automated(_) => (Phase::Pending, Weight::ZERO, "waiting for the first analysis tick".to_string()),
        };
        let status = RolloutStatus {
            phase,
            step: None,
            weight,
            generation: 0,
            revision: 0,
            window: 0,
            updated_at_ms: now_ms,
            step_started_at_ms: now_ms,
            consecutive_failures: 0,
            message,
            last_verdict: None,
            evidence: EvidenceState::default(),
            released: false,
            totals: Totals::default(),
            decided_by: None,
        };
        Ok(Self { name: name.to_string(), spec, status, mode })
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The analysis spec of an automated rollout.
    pub fn analysis(&self) -> Option<&AnalysisSpec> {
        match self.mode.as_ref() {
            Mode::Automated(a) => Some(a),
            Mode::Manual(_) => None,
        }
    }

    /// The phase of a judged rollout at `step`: `progressing`, or blue-green's `previewing`/`baking`.
    pub fn phase_at(&self, step: usize) -> Phase {
        match self.analysis() {
            Some(a) if a.is_shadow(step) => Phase::Shadowing,
            Some(a) if a.is_preview(step) => Phase::Previewing,
            Some(a) if a.blue_green().is_some() => Phase::Baking,
            _ => Phase::Progressing,
        }
    }

    /// Blue-green after the switch (baking, or paused while baking): all traffic is on green.
    pub fn switched(&self) -> bool {
        let Some(a) = self.analysis() else { return false };
        a.blue_green().is_some() && !self.status.phase.is_terminal() && self.status.step.is_some_and(|i| !a.is_preview(i))
    }

    /// Whether the proxies copy requests to the canary now: while `shadowing`, alongside the steps
    /// when the spec has no `shadow_seconds`, and at the weight of a manual rollout; never once the
    /// rollout has ended or before it starts.
    pub fn shadow_active(&self) -> bool {
        if self.spec.shadow.is_none() {
            return false;
        }
        match (self.status.phase, self.analysis(), self.status.step) {
            (Phase::Manual | Phase::Shadowing, _, _) => true,
            (Phase::Progressing | Phase::Paused, Some(a), Some(step)) => a.is_shadow(step) || a.shadow_seconds().is_none(),
            _ => false,
        }
    }

    /// How often the analysis looks at this rollout, in ms.
    pub fn interval_ms(&self) -> u64 {
        self.analysis().map_or(1_000, |a| (a.interval_seconds() * 1_000.0) as u64)
    }

    /// What the data plane needs of this rollout. Segments apply while the rollout is live; once it
    /// has ended (succeeded: stable and canary swapped; rolled back or aborted: the canary is out) they
    /// are not published, so a `version: canary` rule cannot send anyone to a version that failed or
    /// to the old stable. The session cookie stays, so clients keep their keys for the next rollout.
    ///
    /// Blue-green: before the switch only `version: canary` rules send anyone to green (a weighted
    /// rule pins its users to blue, keeping the rules' order); after it no rule is published, so
    /// every request reaches green.
    pub fn route(&self) -> RouteSpec {
        let blue_green = self.analysis().is_some_and(|a| a.blue_green().is_some());
        let segments = if self.status.phase.is_terminal() || self.switched() {
            Vec::new()
        } else if blue_green {
            self.spec.segments.iter().flatten().map(pin_weighted_to_stable).collect()
        } else {
            self.spec.segments.clone().unwrap_or_default()
        };
        RouteSpec {
            name: self.name.clone(),
            hosts: self.spec.hosts.clone(),
            stable: self.spec.stable.clone(),
            canary: self.spec.canary.clone(),
            weight: self.status.weight,
            salt: self.spec.salt_for(&self.name),
            segments,
            session: self.spec.session.clone(),
            shadow: self.shadow_active().then(|| self.spec.shadow.clone()).flatten(),
            // The safety net travels with the config while the rollout is live (`hold` needs nothing).
            on_controller_loss: self
                .spec
                .on_controller_loss
                .filter(|l| l.mode == fledge_core::fallback::LossMode::Stable && !self.status.phase.is_terminal()),
        }
    }
}

/// A blue-green preview's form of a segment rule: weighted rules send their users to blue.
fn pin_weighted_to_stable(s: &fledge_core::segment::SegmentSpec) -> fledge_core::segment::SegmentSpec {
    let mut s = s.clone();
    if s.version.is_none() {
        s.version = Some("stable".into());
        s.weight = None;
    }
    s
}
