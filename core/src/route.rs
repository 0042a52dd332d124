//! The compiled route table and the per-request cohort decision.
//!
//! A [`ConfigSnapshot`] is compiled once per config change into a [`RouteTable`]: a host index and the
//! version names ready to put in a header. Per request the filter does one map lookup and one hash; no
//! parsing, no allocation beyond what the host ABI forces.

use std::collections::HashMap;

use crate::bucket::{Bucket, Weight};
use crate::snapshot::{ConfigSnapshot, SnapshotError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Stable,
    Canary,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Stable => "stable",
            Side::Canary => "canary",
        }
    }
}

/// Why a request got its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The sticky source at this index in the plugin's `sticky` list.
    Sticky(usize),
    /// No sticky key: a fresh random bucket.
    Random,
}

/// A routing decision with its reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub side: Side,
    pub bucket: Bucket,
    pub source: KeySource,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompiledRollout {
    pub index: usize,
    pub name: String,
    pub stable: String,
    pub canary: String,
    pub weight: Weight,
    pub salt: u32,
}

impl CompiledRollout {
    /// Picks the version. `key` is the first sticky key found (with its source index); `random` is only
    /// called when there is none, so keyed requests cost no randomness.
    pub fn decide(&self, key: Option<(usize, &[u8])>, random: impl FnOnce() -> u32) -> Decision {
        let (bucket, source) = match key {
            Some((i, k)) => (Bucket::of_key(k, self.salt), KeySource::Sticky(i)),
            None => (Bucket::of_random(random()), KeySource::Random),
        };
        let side = if self.weight.admits(bucket) { Side::Canary } else { Side::Stable };
        Decision { side, bucket, source }
    }

    pub fn version(&self, side: Side) -> &str {
        match side {
            Side::Stable => &self.stable,
            Side::Canary => &self.canary,
        }
    }
}

/// Hosts map to rollouts with Istio's meaning of a host: an exact name, `*.suffix` (any name under the
/// suffix, at any depth, but not the suffix itself) or `*` (every host); the most specific match wins.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteTable {
    pub epoch: String,
    pub generation: u64,
    rollouts: Vec<CompiledRollout>,
    by_host: HashMap<String, usize>,
    /// `*.suffix` patterns as (".suffix", rollout), longest suffix first.
    wildcards: Vec<(String, usize)>,
    /// The rollout owning `*`, if any.
    catch_all: Option<usize>,
}

impl RouteTable {
    pub fn compile(snapshot: &ConfigSnapshot) -> Result<Self, SnapshotError> {
        snapshot.validate()?;
        let mut rollouts = Vec::with_capacity(snapshot.rollouts.len());
        let mut by_host = HashMap::new();
        let mut wildcards = Vec::new();
        let mut catch_all = None;
        for (index, r) in snapshot.rollouts.iter().enumerate() {
            for h in &r.hosts {
                let h = crate::rollout::normalize_host(h);
                if h == "*" {
                    catch_all = Some(index);
                } else if let Some(suffix) = h.strip_prefix('*') {
                    wildcards.push((suffix.to_string(), index));
                } else {
                    by_host.insert(h, index);
                }
            }
            rollouts.push(CompiledRollout {
                index,
                name: r.name.clone(),
                stable: r.stable.clone(),
                canary: r.canary.clone(),
                weight: r.weight,
                salt: r.salt,
            });
        }
        wildcards.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        Ok(Self { epoch: snapshot.epoch.clone(), generation: snapshot.generation, rollouts, by_host, wildcards, catch_all })
    }

    /// Whether this table came from `epoch` at `generation`.
    pub fn is(&self, epoch: &str, generation: u64) -> bool {
        self.generation == generation && self.epoch == epoch
    }

    /// The rollout owning the request's `:authority` (port stripped), if any. An exact host costs one
    /// map lookup; only a miss looks at the wildcard patterns.
    pub fn lookup(&self, authority: &str) -> Option<&CompiledRollout> {
        let host = strip_port(authority);
        let idx = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            // Hosts are stored lower-case; only mixed-case requests pay for a lowered copy.
            self.find(&host.to_ascii_lowercase())
        } else {
            self.find(host)
        }?;
        self.rollouts.get(idx)
    }

    fn find(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.by_host.get(host) {
            return Some(*i);
        }
        if host.is_empty() {
            return None;
        }
        self.wildcards
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map(|(_, i)| *i)
            .or(self.catch_all)
    }

    pub fn rollouts(&self) -> &[CompiledRollout] {
        &self.rollouts
    }

    pub fn is_empty(&self) -> bool {
        self.rollouts.is_empty()
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`; a bare IPv6 address is left whole.
pub fn strip_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) => {
            let (host, port) = authority.split_at(i);
            let digits = port.len() > 1 && port.bytes().skip(1).all(|b| b.is_ascii_digit());
            let v6_bare = host.contains(':') && !host.ends_with(']');
            if digits && !v6_bare {
                host
            } else {
                authority
            }
        }
        None => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::RouteSpec;

    fn table(weight: f64) -> RouteTable {
        let snap = ConfigSnapshot {
            epoch: "e".into(),
            generation: 3,
            rollouts: vec![RouteSpec {
                name: "support".into(),
                hosts: vec!["support-agent".into(), "support.example.com".into()],
                stable: "v1".into(),
                canary: "v2".into(),
                weight: Weight::try_from_percent(weight).unwrap_or_default(),
                salt: 42,
            }],
        };
        RouteTable::compile(&snap).unwrap_or_default()
    }

    #[test]
    fn lookup_by_host() {
        let t = table(10.0);
        assert_eq!(t.generation, 3);
        assert!(t.lookup("support-agent").is_some());
        assert!(t.lookup("support-agent:8080").is_some());
        assert!(t.lookup("Support.Example.com").is_some());
        assert!(t.lookup("other").is_none());
        assert!(t.lookup("").is_none());
    }

    #[test]
    fn ports() {
        assert_eq!(strip_port("a:80"), "a");
        assert_eq!(strip_port("a"), "a");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a:"), "a:");
    }

    #[test]
    fn decision_uses_key_then_random() {
        let t = table(50.0);
        let Some(r) = t.lookup("support-agent") else { unreachable!() };
        let d1 = r.decide(Some((0, b"user-1")), || unreachable!());
        let d2 = r.decide(Some((1, b"user-1")), || unreachable!());
        assert_eq!(d1.side, d2.side, "same key, same version whatever the source");
        assert_eq!(d1.source, KeySource::Sticky(0));
        let d3 = r.decide(None, || 9_999);
        assert_eq!((d3.side, d3.source), (Side::Stable, KeySource::Random));
        let d4 = r.decide(None, || 0);
        assert_eq!(d4.side, Side::Canary);
        assert_eq!(r.version(Side::Canary), "v2");
    }

    #[test]
    fn conflicting_hosts_rejected() {
        let spec = |name: &str| RouteSpec {
            name: name.into(),
            hosts: vec!["a".into()],
            stable: "v1".into(),
            canary: "v2".into(),
            weight: Weight::ZERO,
            salt: 0,
        };
        let snap = ConfigSnapshot { epoch: String::new(), generation: 1, rollouts: vec![spec("x"), spec("y")] };
        assert!(matches!(RouteTable::compile(&snap), Err(SnapshotError::HostConflict { .. })));
    }

    #[test]
    fn wildcards_most_specific_wins() {
        let spec = |name: &str, hosts: &[&str]| RouteSpec {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            stable: "v1".into(),
            canary: "v2".into(),
            weight: Weight::ZERO,
            salt: 0,
        };
        let snap = ConfigSnapshot {
            epoch: String::new(),
            generation: 1,
            rollouts: vec![
                spec("all", &["*"]),
                spec("example", &["*.example.com"]),
                spec("api", &["*.api.example.com"]),
                spec("exact", &["chat.api.example.com"]),
            ],
        };
        let t = RouteTable::compile(&snap).unwrap();
        let owner = |host: &str| t.lookup(host).map(|r| r.name.as_str());
        assert_eq!(owner("chat.api.example.com"), Some("exact"));
        assert_eq!(owner("voice.api.example.com:443"), Some("api"));
        assert_eq!(owner("x.y.api.example.com"), Some("api"), "any depth");
        assert_eq!(owner("api.example.com"), Some("example"), "*.api.example.com does not match api.example.com");
        assert_eq!(owner("WWW.Example.COM"), Some("example"));
        assert_eq!(owner("example.com"), Some("all"), "*.example.com does not match example.com");
        assert_eq!(owner("other"), Some("all"));
        assert_eq!(owner(""), None);
        let no_catch_all = ConfigSnapshot { rollouts: snap.rollouts[1..].to_vec(), ..snap };
        assert!(RouteTable::compile(&no_catch_all).unwrap().lookup("example.com").is_none());
    }
}
