//! Per-segment request counts by version, from the filters' reports, for the status.
//!
//! Kept beside the live windows (not in them) and reset with them: counts belong to the rollout's
//! current `status.window`. Only the segments a rollout defines and its two versions are kept, so
//! memory is bounded by the specs, whatever the reports carry.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::model::Rollout;

#[derive(Debug, Default)]
struct Counts {
    window: u64,
    /// (segment, version) → requests.
    by_segment: BTreeMap<(String, String), u64>,
}

#[derive(Debug, Default)]
pub struct SegmentCounts {
    by_rollout: HashMap<String, Counts>,
}

impl SegmentCounts {
    /// Adds one report entry's counts for `rollout` (as currently committed): names it does not
    /// define, and versions that are neither its stable nor its canary, are dropped.
    pub fn add(&mut self, rollout: &Rollout, version: &str, segments: &[(String, u64)]) {
        if version != rollout.spec.stable && version != rollout.spec.canary {
            return;
        }
        let defined = rollout.spec.segments.as_deref().unwrap_or_default();
        let window = rollout.status.window;
        let counts = self.by_rollout.entry(rollout.name.clone()).or_default();
        if counts.window != window {
            *counts = Counts { window, by_segment: BTreeMap::new() };
        }
        for (name, n) in segments {
            if defined.iter().any(|s| &s.name == name) {
                let c = counts.by_segment.entry((name.clone(), version.to_string())).or_default();
                *c = c.saturating_add(*n);
            }
        }
    }

    /// Forgets rollouts that no longer exist.
    pub fn retain(&mut self, exists: impl Fn(&str) -> bool) {
        self.by_rollout.retain(|name, _| exists(name));
    }

    /// The status section: every segment the spec defines, in order, with its requests by version in
    /// the current window.
    pub fn status(&self, rollout: &Rollout) -> Value {
        let counts = self.by_rollout.get(&rollout.name).filter(|c| c.window == rollout.status.window);
        let count = |segment: &str, version: &str| {
            counts.and_then(|c| c.by_segment.get(&(segment.to_string(), version.to_string()))).copied().unwrap_or(0)
        };
        // What the proxies were sent: after a blue-green switch, or once the rollout ended, no rule.
        let route = rollout.route();
        let segments: Vec<Value> = rollout
            .spec
            .segments
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let mut requests = serde_json::Map::new();
                for v in [&rollout.spec.stable, &rollout.spec.canary] {
                    requests.insert(v.clone(), json!(count(&s.name, v)));
                }
                let published = route.segments.iter().find(|p| p.name == s.name);
                let mut entry = json!({"name": s.name, "applied": published.is_some(), "requests": requests});
                // A blue-green preview pins a weighted rule's users to blue: say so.
                if let (Some(p), Some(fields)) = (published, entry.as_object_mut()) {
                    if p != s {
                        fields.insert("applied_as".into(), json!({"version": p.version}));
                    }
                }
                entry
            })
            .collect();
        Value::Array(segments)
    }
}
