//! The controller's record of a rollout: what the user asked for and where it stands.

use fledge_core::rollout::RoutingSpec;
use fledge_core::snapshot::RouteSpec;
use fledge_core::Weight;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub name: String,
    pub spec: RoutingSpec,
    pub status: RolloutStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// The canary weight the proxies are told to apply.
    pub weight: Weight,
    /// The config generation that carried this rollout's last change.
    pub generation: u64,
    pub updated_at_ms: u64,
}

impl Rollout {
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
