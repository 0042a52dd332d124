//! The config snapshot: what `GET /v1/config` returns and what the filter keeps in shared data.
//! The controller validates before publishing; the filter validates again on receipt, because a
//! proxy must never trust bytes off the wire to be well formed.

use serde::{Deserialize, Serialize};

use crate::bucket::Weight;
use crate::fallback::ControllerLoss;
use crate::rollout::{validate_version, RolloutError};
use crate::segment::{validate_segments, validate_session, SegmentSpec, SessionSpec};
use crate::shadow::ShadowSpec;

/// One rollout as the data plane needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub name: String,
    pub hosts: Vec<String>,
    pub stable: String,
    pub canary: String,
    pub weight: Weight,
    /// Seed of the sticky hash, so each rollout draws its own cohort.
    pub salt: u32,
    /// Rules evaluated before the weighted split (absent: none). Older filters ignore the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentSpec>,
    /// The session cookie for clients without a sticky key (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSpec>,
    /// Copy a share of stable's requests to the canary's cluster and compare the answers (absent:
    /// no shadow). Sent only while the rollout shadows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSpec>,
    /// The data plane's safety net (absent: `hold`): published only with `mode: stable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_controller_loss: Option<ControllerLoss>,
}

impl RouteSpec {
    /// A rollout's route without segments or session (they are public fields, set them after).
    pub fn new(name: &str, hosts: &[&str], stable: &str, canary: &str, weight: Weight, salt: u32) -> Self {
        Self {
            name: name.to_string(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            stable: stable.to_string(),
            canary: canary.to_string(),
            weight,
            salt,
            segments: Vec::new(),
            session: None,
            shadow: None,
            on_controller_loss: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConfigSnapshot {
    /// Names the controller's data (random, created with it): generation N of one epoch has nothing
    /// to do with generation N of another, e.g. after a data reset or a restored backup.
    #[serde(default)]
    pub epoch: String,
    pub generation: u64,
    pub rollouts: Vec<RouteSpec>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SnapshotError {
    #[error("config snapshot is not valid JSON: {0}")]
    Json(String),
    #[error("rollout {name:?}: {source}")]
    Rollout { name: String, source: RolloutError },
    #[error("host {host:?} belongs to both {first:?} and {second:?}")]
    HostConflict { host: String, first: String, second: String },
}

impl ConfigSnapshot {
    pub fn parse(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let snap: Self = serde_json::from_slice(bytes).map_err(|e| SnapshotError::Json(e.to_string()))?;
        snap.validate()?;
        Ok(snap)
    }

    pub fn validate(&self) -> Result<(), SnapshotError> {
        let mut owners: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
        for r in &self.rollouts {
            let wrap = |source| SnapshotError::Rollout { name: r.name.clone(), source };
            crate::rollout::validate_hosts(&r.hosts).map_err(wrap)?;
            validate_version("stable", &r.stable).map_err(wrap)?;
            validate_version("canary", &r.canary).map_err(wrap)?;
            if r.stable == r.canary {
                return Err(wrap(RolloutError::SameVersion));
            }
            validate_segments(&r.segments).map_err(|e| wrap(RolloutError::Segment(e.to_string())))?;
            if let Some(s) = &r.session {
                validate_session(s).map_err(|e| wrap(RolloutError::Session(e)))?;
            }
            if let Some(s) = &r.shadow {
                s.validate().map_err(|e| wrap(RolloutError::Shadow(e)))?;
            }
            if let Some(l) = &r.on_controller_loss {
                l.validate().map_err(|e| wrap(RolloutError::ControllerLoss(e)))?;
            }
            for h in &r.hosts {
                if let Some(first) = owners.insert(crate::rollout::normalize_host(h), &r.name) {
                    return Err(SnapshotError::HostConflict {
                        host: h.clone(),
                        first: first.to_string(),
                        second: r.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}
