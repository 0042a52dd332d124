//! Steps as users write them: a plain weight (`25`), or an object that also holds the rollout at the
//! end of the step — `{"weight": 25, "pause": "manual"}` until someone resumes or promotes it,
//! `{"weight": 50, "approval": {"url": "…", "timeout_seconds": 10}}` until that URL answers 2xx.
//!
//! A hold applies once the step would otherwise advance (its dwell is over and every gate's proof is
//! in), so whoever approves sees the step's evidence; the gates keep judging meanwhile, and a failing
//! critical gate rolls back during the hold as at any other time.

use serde::{Deserialize, Serialize};

/// The longest an approval request may take.
pub const MAX_APPROVAL_TIMEOUT_SECONDS: f64 = 60.0;

/// One entry of `steps`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StepConfig {
    Weight(f64),
    Held(HeldStep),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldStep {
    pub weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseKind {
    Manual,
}

/// An external approval: the controller POSTs the rollout's state to `url` each interval while the
/// step waits; a 2xx answer within `timeout_seconds` advances it, anything else (a timeout
/// included) holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    pub url: String,
    #[serde(default = "ApprovalSpec::default_timeout")]
    pub timeout_seconds: f64,
}

impl ApprovalSpec {
    fn default_timeout() -> f64 {
        10.0
    }
}

/// What holds a step once it could advance.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepHold {
    #[default]
    None,
    Manual,
    Approval(ApprovalSpec),
}

impl StepConfig {
    pub fn weight(&self) -> f64 {
        match self {
            StepConfig::Weight(w) => *w,
            StepConfig::Held(h) => h.weight,
        }
    }

    /// The hold, checked: `steps[i]: …` on a bad one.
    pub fn hold(&self, index: usize) -> Result<StepHold, String> {
        let StepConfig::Held(h) = self else { return Ok(StepHold::None) };
        match (&h.pause, &h.approval) {
            (Some(_), Some(_)) => Err(format!("steps[{index}]: give either pause or approval, not both")),
            (Some(PauseKind::Manual), None) => Ok(StepHold::Manual),
            (None, Some(a)) => {
                let rest = a.url.strip_prefix("http://").or_else(|| a.url.strip_prefix("https://")).unwrap_or_default();
                let host = rest.split(['/', '?']).next().unwrap_or_default();
                if host.is_empty() || host.contains('@') || a.url.len() > 2048 || a.url.chars().any(|c| c.is_control() || c == ' ') {
                    return Err(format!("steps[{index}].approval.url: give an http:// or https:// URL with a host and no credentials"));
                }
                if !(a.timeout_seconds.is_finite() && a.timeout_seconds > 0.0 && a.timeout_seconds <= MAX_APPROVAL_TIMEOUT_SECONDS) {
                    return Err(format!("steps[{index}].approval.timeout_seconds: must be above 0 and at most 60"));
                }
                Ok(StepHold::Approval(a.clone()))
            }
            (None, None) => Ok(StepHold::None),
        }
    }
}

impl<'de> Deserialize<'de> for StepConfig {
    /// A number, or an object read field by field, so that a bad entry is named.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::Number(n) => n.as_f64().map(StepConfig::Weight).ok_or_else(|| D::Error::custom("a step weight must be a number")),
            serde_json::Value::Object(_) => serde_json::from_value::<HeldStep>(v).map(StepConfig::Held).map_err(D::Error::custom),
            other => Err(D::Error::custom(format!("a step is a weight or an object with weight and pause or approval, not {other}"))),
        }
    }
}
