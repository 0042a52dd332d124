//! The rollout as users declare it (`PUT /v1/rollouts/{name}`), and the checks every layer shares.

use serde::{Deserialize, Serialize};

use crate::bucket::Weight;
use crate::murmur3::murmur3_x86_32;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RolloutError {
    #[error("name {0:?} is invalid: use 1-63 characters of a-z, 0-9, '-', '_' or '.'")]
    Name(String),
    #[error("hosts must not be empty")]
    NoHosts,
    #[error("host {0:?} is invalid: give a bare host name without scheme, port, path or spaces")]
    Host(String),
    #[error("host {0:?} is listed twice")]
    DuplicateHost(String),
    #[error("{field} version {value:?} is invalid: use 1-64 characters of letters, digits, '-', '_' or '.'")]
    Version { field: &'static str, value: String },
    #[error("stable and canary must be different versions")]
    SameVersion,
}

/// A rollout's routing part. Later fields (steps, gates) extend it without breaking this shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSpec {
    pub hosts: Vec<String>,
    pub stable: String,
    pub canary: String,
    /// Percent of traffic to the canary, 0-100 with two decimals.
    #[serde(default)]
    pub weight: Weight,
    /// Seed for the sticky hash; defaults to a hash of the rollout's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<u32>,
}

impl RoutingSpec {
    pub fn validate(&self) -> Result<(), RolloutError> {
        validate_hosts(&self.hosts)?;
        validate_version("stable", &self.stable)?;
        validate_version("canary", &self.canary)?;
        if self.stable == self.canary {
            return Err(RolloutError::SameVersion);
        }
        Ok(())
    }

    pub fn salt_for(&self, name: &str) -> u32 {
        self.salt.unwrap_or_else(|| default_salt(name))
    }
}

/// The salt a rollout gets when none is given: stable across restarts and controllers.
pub fn default_salt(name: &str) -> u32 {
    murmur3_x86_32(name.as_bytes(), 0x666c_6467) // "fldg"
}

pub fn validate_name(name: &str) -> Result<(), RolloutError> {
    let ok = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RolloutError::Name(name.to_string()))
    }
}

pub fn validate_hosts(hosts: &[String]) -> Result<(), RolloutError> {
    if hosts.is_empty() {
        return Err(RolloutError::NoHosts);
    }
    let mut seen = std::collections::HashSet::new();
    for h in hosts {
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._*".contains(&b));
        if !ok {
            return Err(RolloutError::Host(h.clone()));
        }
        if !seen.insert(normalize_host(h)) {
            return Err(RolloutError::DuplicateHost(h.clone()));
        }
    }
    Ok(())
}

pub fn validate_version(field: &'static str, v: &str) -> Result<(), RolloutError> {
    let ok = (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RolloutError::Version { field, value: v.to_string() })
    }
}

pub fn normalize_host(h: &str) -> String {
    h.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hosts: &[&str], stable: &str, canary: &str) -> RoutingSpec {
        RoutingSpec {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            stable: stable.into(),
            canary: canary.into(),
            weight: Weight::ZERO,
            salt: None,
        }
    }

    #[test]
    fn validation() {
        assert_eq!(spec(&["a"], "v1", "v2").validate(), Ok(()));
        assert_eq!(spec(&[], "v1", "v2").validate(), Err(RolloutError::NoHosts));
        assert_eq!(spec(&["a"], "v1", "v1").validate(), Err(RolloutError::SameVersion));
        assert!(matches!(spec(&["a:80"], "v1", "v2").validate(), Err(RolloutError::Host(_))));
        assert!(matches!(spec(&["a", "A"], "v1", "v2").validate(), Err(RolloutError::DuplicateHost(_))));
        assert!(matches!(spec(&["a"], "v 1", "v2").validate(), Err(RolloutError::Version { field: "stable", .. })));
        assert!(validate_name("support-agent").is_ok());
        assert!(validate_name("Bad Name").is_err());
    }

    #[test]
    fn unknown_fields_rejected() {
        let e = serde_json::from_str::<RoutingSpec>(r#"{"hosts":["a"],"stable":"v1","canary":"v2","wieght":5}"#);
        assert!(e.err().map(|e| e.to_string()).unwrap_or_default().contains("wieght"));
    }
}
