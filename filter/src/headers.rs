//! Reading what the decision needs of a request, independent of how it is read: the wasm adapter
//! implements [`HeaderSource`] with hostcalls, tests with a map that counts the calls.

use std::net::IpAddr;

pub use fledge_core::cookie::cookie_value;
use fledge_core::route::{CompiledRollout, RouteTable};
use fledge_core::segment::{parse_source_address, Attributes};

/// Read access to the request; every call is one hostcall in the filter.
pub trait HeaderSource {
    fn header(&self, name: &str) -> Option<Vec<u8>>;
    /// Envoy's `source.address` property (`ip:port`).
    fn source_address(&self) -> Option<Vec<u8>>;
}

/// One request's attributes, read from the host at most once each and only when asked for: the
/// decision asks for a header only when a segment rule or a sticky source needs it, and the `cookie`
/// header is shared by cookie rules, cookie sticky sources and the session cookie.
pub struct Request<'h, H: HeaderSource> {
    host: &'h H,
    headers: Vec<(String, Option<Vec<u8>>)>,
    source: Option<Option<IpAddr>>,
}

impl<'h, H: HeaderSource> Request<'h, H> {
    pub fn new(host: &'h H) -> Self {
        // Allocates on the first read only (then room for four: a rule's header, two sticky headers,
        // the cookie); a request that reads nothing allocates nothing.
        Self { host, headers: Vec::new(), source: None }
    }
}

impl<H: HeaderSource> Attributes for Request<'_, H> {
    fn header(&mut self, name: &str) -> Option<&[u8]> {
        let i = match self.headers.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                let v = self.host.header(name);
                self.headers.push((name.to_string(), v));
                self.headers.len() - 1
            }
        };
        self.headers.get(i).and_then(|(_, v)| v.as_deref())
    }

    fn source_ip(&mut self) -> Option<IpAddr> {
        if self.source.is_none() {
            self.source = Some(self.host.source_address().as_deref().and_then(parse_source_address));
        }
        self.source.flatten()
    }
}

/// The rollout a request belongs to: the plugin's bound `rollout` (no read at all), else the one
/// owning its `:authority` (one read). `None`: the request passes untouched.
pub fn rollout_of<'t>(table: &'t RouteTable, bound: Option<&str>, host: &impl HeaderSource) -> Option<&'t CompiledRollout> {
    match bound {
        Some(name) => table.rollouts().iter().find(|r| r.name == name),
        None => {
            let authority = host.header(":authority")?;
            std::str::from_utf8(&authority).ok().and_then(|a| table.lookup(a))
        }
    }
}

/// A request held in memory whose every read is logged: how the tests and `make bench` count the
/// hostcalls the decision makes (each read here is one hostcall in the filter).
pub struct CountingHost {
    pub headers: Vec<(String, String)>,
    /// `source.address`, `ip:port`.
    pub source: Option<String>,
    calls: std::cell::RefCell<Vec<String>>,
}

impl CountingHost {
    /// A request to `authority` from 10.1.2.3 with `headers`.
    pub fn new(authority: &str, headers: &[(&str, &str)]) -> Self {
        let mut all = vec![(":authority".to_string(), authority.to_string())];
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self { headers: all, source: Some("10.1.2.3:40000".into()), calls: Default::default() }
    }

    /// Every read so far, in order (`source.address` for the property).
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl HeaderSource for CountingHost {
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.calls.borrow_mut().push(name.to_string());
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_bytes().to_vec())
    }

    fn source_address(&self) -> Option<Vec<u8>> {
        self.calls.borrow_mut().push("source.address".into());
        self.source.as_ref().map(|s| s.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    //! Hostcalls per request, counted through the same [`Request`] layer the filter uses. A request
    //! of a rollout's host costs, besides the decision's reads counted here: the `:authority` read,
    //! the route header written on the request and on the response, one read of the response header
    //! map, and two clock reads (request start, `on_log`) — 6 — plus one `Set-Cookie` write for a new
    //! session and one clock read on the first body chunk of an answer with a body.
    use super::*;
    use fledge_core::plugin::PluginConfig;
    use fledge_core::rng::SplitMix64;
    use fledge_core::route::KeySource;
    use fledge_core::segment::{SegmentSpec, SessionSpec};
    use fledge_core::session::SessionKeys;
    use fledge_core::{ConfigSnapshot, RouteSpec, Side, Weight};

    type Host = CountingHost;

    fn host(pairs: &[(&'static str, &'static str)]) -> Host {
        CountingHost::new("support-agent", pairs)
    }

    fn table(weight: f64, segments: &str, session: bool) -> RouteTable {
        let segments: Vec<SegmentSpec> = serde_json::from_str(segments).unwrap();
        RouteTable::compile(&ConfigSnapshot {
            epoch: "e".into(),
            generation: 1,
            rollouts: vec![RouteSpec {
                segments,
                session: session.then(SessionSpec::default),
                ..RouteSpec::new("support", &["support-agent"], "v1", "v2", Weight::try_from_percent(weight).unwrap(), 7)
            }],
        })
        .unwrap()
    }

    /// What the filter does in `on_http_request_headers`: `:authority`, then the decision. Returns the
    /// reads made and the routing.
    fn request(t: &RouteTable, h: &Host) -> (Vec<String>, fledge_core::route::Routing) {
        let sticky = PluginConfig::default().sticky;
        let r = rollout_of(t, None, h).unwrap();
        let mut req = Request::new(h);
        let routing = r.route(&mut req, &sticky, &mut SplitMix64::new(1), &mut SessionKeys::new(1));
        (h.calls(), routing)
    }

    const HEADER_RULE: &str = r#"[{"name":"employees","match":{"header":{"name":"x-employee","exact":"true"}},"version":"canary"}]"#;

    #[test]
    fn no_segments_and_a_sticky_header_read_what_they_always_read() {
        // Before segments: `:authority`, then `sticky_key` read `x-user-id` and stopped.
        let (reads, d) = request(&table(50.0, "[]", false), &host(&[("x-user-id", "u1")]));
        assert_eq!(reads, [":authority", "x-user-id"]);
        assert_eq!(d.source, KeySource::Sticky(0));
        // At 0 % and 100 % the key is not read at all, as before.
        for w in [0.0, 100.0] {
            let (reads, _) = request(&table(w, "[]", false), &host(&[("x-user-id", "u1")]));
            assert_eq!(reads, [":authority"]);
        }
        // No key: both sticky headers, then a random bucket, as before.
        let (reads, d) = request(&table(50.0, "[]", false), &host(&[]));
        assert_eq!((reads.len(), d.source), (3, KeySource::Random));
    }

    #[test]
    fn a_header_rule_costs_one_read() {
        let t = table(50.0, HEADER_RULE, false);
        // Matched and pinned: the rule's header instead of the key — no key is needed.
        let (reads, d) = request(&t, &host(&[("x-employee", "true"), ("x-user-id", "u1")]));
        assert_eq!(reads, [":authority", "x-employee"]);
        assert_eq!((d.side, d.segment), (Side::Canary, Some(0)));
        // Not matched: the rule's header, then the key: one read more than without segments.
        let (reads, d) = request(&t, &host(&[("x-user-id", "u1")]));
        assert_eq!(reads, [":authority", "x-employee", "x-user-id"]);
        assert_eq!(d.segment, None);
        // A weighted segment needs the key too.
        let split = table(50.0, r#"[{"name":"beta","match":{"header":{"name":"x-beta","present":true}},"weight":20}]"#, false);
        let (reads, _) = request(&split, &host(&[("x-beta", "1"), ("x-user-id", "u1")]));
        assert_eq!(reads, [":authority", "x-beta", "x-user-id"]);
    }

    #[test]
    fn each_attribute_is_read_once() {
        let rules = r#"[
            {"name":"a","match":{"cookie":{"name":"beta","exact":"1"},"source_cidr":"192.168.0.0/16"},"version":"canary"},
            {"name":"b","match":{"cookie":{"name":"beta","exact":"1"},"path":{"prefix":"/x"}},"version":"canary"},
            {"name":"c","match":{"source_cidr":"10.0.0.0/8","path":{"prefix":"/chat"}},"weight":30}]"#;
        let (reads, d) = request(&table(50.0, rules, true), &host(&[("cookie", "beta=1; fledge-session=abc"), (":path", "/chat/1")]));
        assert_eq!(d.segment, Some(2));
        assert_eq!(d.source, KeySource::Session);
        assert_eq!(reads, [":authority", "cookie", "source.address", ":path", "x-user-id", "x-session-id"]);
    }

    #[test]
    fn sessions() {
        let t = table(50.0, "[]", true);
        // Cookie present: the sticky headers, then the cookie header.
        let (reads, d) = request(&t, &host(&[("cookie", "a=1; fledge-session=0123abcd")]));
        assert_eq!((reads.len(), d.source, d.new_session), (4, KeySource::Session, None));
        // New session: the same reads; the response then carries one Set-Cookie (one write more).
        let (reads, d) = request(&t, &host(&[]));
        assert_eq!((reads.len(), d.source), (4, KeySource::NewSession));
        assert!(d.new_session.is_some());
        // A keyed client on a session rollout: no cookie read, no Set-Cookie.
        let (reads, d) = request(&t, &host(&[("x-user-id", "u")]));
        assert_eq!((reads.len(), d.new_session), (2, None));
    }

    #[test]
    fn malformed_input_never_fails_the_decision() {
        let rules = r#"[{"name":"a","match":{"source_cidr":"10.0.0.0/8"},"version":"canary"},
                        {"name":"b","match":{"cookie":{"name":"beta","exact":"1"}},"version":"canary"}]"#;
        let t = table(50.0, rules, true);
        for cookie in ["", ";;;", "=", "beta", "beta=\"1", "\u{7f}\u{1}=\u{0}", "fledge-session=\"\"", "fledge-session=; fledge-session="] {
            let mut h = host(&[("cookie", cookie)]);
            h.source = Some("not an address".into());
            let (_, d) = request(&t, &h);
            assert_eq!((d.segment, d.source), (None, KeySource::NewSession), "{cookie:?}");
        }
        let mut h = host(&[]);
        h.source = None;
        assert_eq!(request(&t, &h).1.segment, None);
        let mut v6 = host(&[]);
        v6.source = Some("[::ffff:10.9.9.9]:1234".into());
        assert_eq!(request(&t, &v6).1.segment, Some(0));
    }

    #[test]
    fn a_bound_rollout_reads_no_authority() {
        let t = table(50.0, "[]", false);
        let h = host(&[("x-user-id", "u1")]);
        assert_eq!(rollout_of(&t, Some("support"), &h).map(|r| r.name.as_str()), Some("support"));
        assert!(h.calls().is_empty(), "bound to its rollout: no :authority read");
        assert!(rollout_of(&t, Some("other"), &h).is_none(), "a rollout the config does not have: untouched");
        let unbound = host(&[]);
        assert!(rollout_of(&t, None, &unbound).is_some());
        assert_eq!(unbound.calls(), [":authority"]);
    }
}
