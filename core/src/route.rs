//! The compiled route table and the per-request cohort decision.
//!
//! A [`ConfigSnapshot`] is compiled once per config change into a [`RouteTable`]: a host index and the
//! version names ready to put in a header. Per request the filter does one map lookup and one hash; no
//! parsing, no allocation beyond what the host ABI forces.

use std::collections::HashMap;

use crate::bucket::{Bucket, Weight};
use crate::cookie::cookie_value;
use crate::plugin::StickySource;
use crate::rng::SplitMix64;
use crate::rollout::RolloutError;
use crate::segment::{Attributes, CompiledSegment, CompiledSession, SegmentAction};
use crate::session::{SessionKeys, KEY_LEN};
use crate::snapshot::{ConfigSnapshot, SnapshotError};

/// A session cookie value longer than this is not a key fledge issued: it is ignored (and replaced).
pub const MAX_SESSION_KEY: usize = 128;

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
    /// The rollout's session cookie.
    Session,
    /// No key: a new session key was minted (and goes out in a `Set-Cookie`).
    NewSession,
    /// No key was needed: a segment pinned the version, or the weight is 0 % or 100 %.
    Unneeded,
}

/// The full per-request decision: segments, then the sticky (or session) key, then the split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub side: Side,
    /// The segment that matched (index into the rollout's segments).
    pub segment: Option<usize>,
    pub source: KeySource,
    /// A key minted for this request; the response must carry it in the session cookie.
    pub new_session: Option<[u8; KEY_LEN]>,
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
    pub segments: Vec<CompiledSegment>,
    pub session: Option<CompiledSession>,
    /// Copies of stable's requests to the canary's cluster, when the rollout shadows.
    pub shadow: Option<crate::shadow::ShadowSpec>,
    /// `on_controller_loss: stable`: after this many seconds without an answer from the controller,
    /// every request to stable ([`crate::fallback`]).
    pub on_loss_after_seconds: Option<u64>,
}

impl CompiledRollout {
    /// Decides a request: the first matching segment (a pin decides at once; a split replaces the
    /// weight), then the key — the first sticky source present, else the session cookie, else (with a
    /// session) a newly minted key — hashed against the weight. Reads through `req` only what the
    /// path needs: without segments and session it reads exactly what [`decide`](Self::decide)'s
    /// callers always read (the sticky sources until one is present; nothing at 0 % or 100 %).
    pub fn route(&self, req: &mut impl Attributes, sticky: &[StickySource], rng: &mut SplitMix64, sessions: &mut SessionKeys) -> Routing {
        let mut segment = None;
        let mut weight = self.weight;
        for (i, s) in self.segments.iter().enumerate() {
            if s.matches(req) {
                segment = Some(i);
                match s.action {
                    SegmentAction::Pin(side) => return Routing { side, segment, source: KeySource::Unneeded, new_session: None },
                    SegmentAction::Split(w) => weight = w,
                }
                break;
            }
        }
        // At 0 % or 100 % every key gets the same answer: skip reading it — unless a client without
        // one must be handed a session cookie now, for when the weight moves.
        if !weight.is_split() && self.session.is_none() {
            let side = if weight.admits(Bucket::of_random(0)) { Side::Canary } else { Side::Stable };
            return Routing { side, segment, source: KeySource::Unneeded, new_session: None };
        }
        let (bucket, source, new_session) = match find_key(sticky, self.session.as_ref(), req, self.salt) {
            Some((source, bucket)) => (bucket, source, None),
            None => match &self.session {
                Some(_) => {
                    let minted = sessions.mint(&self.name, self.salt);
                    (minted.bucket, KeySource::NewSession, Some(minted.key))
                }
                None => (Bucket::of_random(rng.next_u32()), KeySource::Random, None),
            },
        };
        let side = if weight.admits(bucket) { Side::Canary } else { Side::Stable };
        Routing { side, segment, source, new_session }
    }

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
            let wrap = |source| SnapshotError::Rollout { name: r.name.clone(), source };
            let segments = r
                .segments
                .iter()
                .enumerate()
                .map(|(i, s)| CompiledSegment::compile(i, s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| wrap(RolloutError::Segment(e.to_string())))?;
            let session = r.session.as_ref().map(CompiledSession::compile).transpose().map_err(|e| wrap(RolloutError::Session(e)))?;
            rollouts.push(CompiledRollout {
                index,
                name: r.name.clone(),
                stable: r.stable.clone(),
                canary: r.canary.clone(),
                weight: r.weight,
                salt: r.salt,
                segments,
                session,
                shadow: r.shadow.clone(),
                on_loss_after_seconds: r
                    .on_controller_loss
                    .filter(|l| l.mode == crate::fallback::LossMode::Stable)
                    .map(|l| l.after_seconds),
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

    /// This table with the rollouts `pick` names sending every request to stable: weight 0, no
    /// segment rules, no shadow (the session cookie stays, so clients keep their keys).
    pub fn to_stable(mut self, pick: impl Fn(&str) -> bool) -> Self {
        for r in self.rollouts.iter_mut().filter(|r| pick(&r.name)) {
            r.weight = crate::Weight::ZERO;
            r.segments.clear();
            r.shadow = None;
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rollouts.is_empty()
    }
}

/// The bucket of the first sticky key present (plugin sources in order, then the session cookie),
/// hashed where it lies (no copy). Reads each source until one is found; the `cookie` header is read
/// once however many cookie sources there are (the caller's `Attributes` memoises).
fn find_key(sticky: &[StickySource], session: Option<&CompiledSession>, req: &mut impl Attributes, salt: u32) -> Option<(KeySource, Bucket)> {
    for (i, source) in sticky.iter().enumerate() {
        let found = match source {
            StickySource::Header(name) => req.header(name).filter(|v| !v.is_empty()).map(|k| Bucket::of_key(k, salt)),
            StickySource::Cookie(name) => req.header("cookie").and_then(|j| cookie_value(j, name)).map(|k| Bucket::of_key(k, salt)),
        };
        if let Some(b) = found {
            return Some((KeySource::Sticky(i), b));
        }
    }
    let s = session?;
    let v = req.header("cookie").and_then(|j| cookie_value(j, &s.cookie)).filter(|v| v.len() <= MAX_SESSION_KEY)?;
    Some((KeySource::Session, Bucket::of_key(v, salt)))
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
            rollouts: vec![RouteSpec::new(
                "support",
                &["support-agent", "support.example.com"],
                "v1",
                "v2",
                Weight::try_from_percent(weight).unwrap_or_default(),
                42,
            )],
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
        let spec = |name: &str| RouteSpec::new(name, &["a"], "v1", "v2", Weight::ZERO, 0);
        let snap = ConfigSnapshot { epoch: String::new(), generation: 1, rollouts: vec![spec("x"), spec("y")] };
        assert!(matches!(RouteTable::compile(&snap), Err(SnapshotError::HostConflict { .. })));
    }

    #[test]
    fn wildcards_most_specific_wins() {
        let spec = |name: &str, hosts: &[&str]| RouteSpec::new(name, hosts, "v1", "v2", Weight::ZERO, 0);
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

    struct Req(std::collections::HashMap<&'static str, Vec<u8>>);
    impl Attributes for Req {
        fn header(&mut self, name: &str) -> Option<&[u8]> {
            self.0.get(name).map(Vec::as_slice)
        }
        fn source_ip(&mut self) -> Option<std::net::IpAddr> {
            "10.0.0.7".parse().ok()
        }
    }
    fn req(h: &[(&'static str, &str)]) -> Req {
        Req(h.iter().map(|(k, v)| (*k, v.as_bytes().to_vec())).collect())
    }

    fn segmented(weight: f64, session: bool) -> RouteTable {
        let segments: Vec<crate::segment::SegmentSpec> = serde_json::from_str(
            r#"[{"name":"employees","match":{"header":{"name":"x-employee","exact":"true"}},"version":"canary"},
                {"name":"enterprise","match":{"header":{"name":"x-plan","exact":"enterprise"}},"version":"stable"},
                {"name":"beta","match":{"cookie":{"name":"beta","exact":"1"}},"weight":30}]"#,
        )
        .unwrap();
        let snap = ConfigSnapshot {
            epoch: "e".into(),
            generation: 1,
            rollouts: vec![RouteSpec {
                segments,
                session: session.then(crate::segment::SessionSpec::default),
                ..RouteSpec::new("support", &["support-agent"], "v1", "v2", Weight::try_from_percent(weight).unwrap(), 42)
            }],
        };
        RouteTable::compile(&snap).unwrap()
    }

    #[test]
    fn segments_decide_first_then_the_split() {
        let sticky = crate::plugin::PluginConfig::default().sticky;
        let (mut rng, mut keys) = (SplitMix64::new(1), SessionKeys::new(1));
        for weight in [0.0, 50.0, 100.0] {
            let t = segmented(weight, false);
            let r = &t.rollouts()[0];
            let mut route = |h: &[(&'static str, &str)]| r.route(&mut req(h), &sticky, &mut rng, &mut keys);
            let emp = route(&[("x-employee", "true"), ("x-plan", "enterprise"), ("x-user-id", "u")]);
            assert_eq!((emp.side, emp.segment, emp.source), (Side::Canary, Some(0), KeySource::Unneeded), "first match wins");
            let ent = route(&[("x-plan", "enterprise"), ("x-user-id", "u")]);
            assert_eq!((ent.side, ent.segment), (Side::Stable, Some(1)));
            let none = route(&[("x-employee", "false")]);
            assert_eq!(none.segment, None);
        }
        // The beta segment splits at its own 30 %, whatever the rollout's weight; the same key hashes the same.
        let t = segmented(0.0, false);
        let r = &t.rollouts()[0];
        let n = 10_000;
        let canary = (0..n)
            .filter(|i| {
                let user = format!("user-{i}");
                let d = r.route(&mut req(&[("cookie", "beta=1"), ("x-user-id", &user)]), &sticky, &mut rng, &mut keys);
                assert_eq!(d.segment, Some(2));
                let expect = Weight::try_from_percent(30.0).unwrap().admits(Bucket::of_key(user.as_bytes(), 42));
                assert_eq!(d.side == Side::Canary, expect);
                d.side == Side::Canary
            })
            .count();
        assert!((canary as f64 / n as f64 - 0.30).abs() < 0.02);
    }

    #[test]
    fn sessions_are_minted_then_sticky() {
        let sticky = crate::plugin::PluginConfig::default().sticky;
        let (mut rng, mut keys) = (SplitMix64::new(1), SessionKeys::new(9));
        let t = segmented(40.0, true);
        let r = &t.rollouts()[0];
        let first = r.route(&mut req(&[]), &sticky, &mut rng, &mut keys);
        assert_eq!(first.source, KeySource::NewSession);
        let key = first.new_session.unwrap();
        let cookie = format!("a=1; fledge-session={}; b=2", std::str::from_utf8(&key).unwrap());
        for weight in [0.0, 10.0, 40.0, 100.0] {
            let t = segmented(weight, true);
            let again = t.rollouts()[0].route(&mut req(&[("cookie", &cookie)]), &sticky, &mut rng, &mut keys);
            assert_eq!((again.source, again.new_session), (KeySource::Session, None), "the cookie is the key");
            let w = Weight::try_from_percent(weight).unwrap();
            assert_eq!(again.side == Side::Canary, w.admits(Bucket::of_key(&key, 42)));
        }
        assert_eq!(first.side, if Weight::try_from_percent(40.0).unwrap().admits(Bucket::of_key(&key, 42)) { Side::Canary } else { Side::Stable });
        // A sticky header beats the session cookie; no cookie is issued to keyed clients.
        let keyed = r.route(&mut req(&[("x-user-id", "u1"), ("cookie", &cookie)]), &sticky, &mut rng, &mut keys);
        assert_eq!((keyed.source, keyed.new_session), (KeySource::Sticky(0), None));
        // At 0 % a client without a key still gets its cookie, for when the weight moves.
        let zero = segmented(0.0, true);
        let z = zero.rollouts()[0].route(&mut req(&[("cookie", "junk;;=")]), &sticky, &mut rng, &mut keys);
        assert_eq!((z.side, z.source), (Side::Stable, KeySource::NewSession));
        // An overlong cookie value is not a key fledge issued: replaced.
        let long = format!("fledge-session={}", "k".repeat(MAX_SESSION_KEY + 1));
        assert_eq!(r.route(&mut req(&[("cookie", &long)]), &sticky, &mut rng, &mut keys).source, KeySource::NewSession);
        // Pinned requests need no key and get no cookie.
        let pinned = r.route(&mut req(&[("x-employee", "true")]), &sticky, &mut rng, &mut keys);
        assert_eq!((pinned.side, pinned.new_session), (Side::Canary, None));
    }
}
