//! Segments: ordered rules that decide a request's version before the weighted split, and the
//! session cookie that gives anonymous clients a sticky key.
//!
//! A rule is `{"name", "match": {...}, "version": "canary"|"stable"}` (a pin) or `{"name", "match",
//! "weight": W}` (a sticky split of its own). The first rule whose every given match key holds wins.
//! Specs are validated once (at `PUT`, and again by the filter on receipt) and compiled once per
//! config into [`CompiledSegment`]s: per request, matching compares bytes the filter has already read
//! and reads nothing a rule does not need.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::bucket::Weight;
use crate::cookie::{cookie_value, is_token_byte};
use crate::route::Side;

/// Segments one rollout may have.
pub const MAX_SEGMENTS: usize = 32;
/// Longest value a match may compare with (header value, cookie value, path prefix).
pub const MAX_MATCH_VALUE: usize = 1024;
/// Longest session `max_age_seconds`: 400 days, what browsers cap a cookie's lifetime at.
pub const MAX_SESSION_AGE: u64 = 400 * 86_400;
pub const DEFAULT_SESSION_COOKIE: &str = "fledge-session";
pub const DEFAULT_SESSION_AGE: u64 = 86_400;

/// One rule as users write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    pub name: String,
    #[serde(rename = "match")]
    pub matches: MatchSpec,
    /// `"canary"` or `"stable"`: every matching request goes there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Percent to the canary within the segment (a sticky split of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// What a request must have to be in the segment; every given key must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// `10.0.0.0/8`, `2001:db8::/32`: the downstream peer address Envoy sees (`source.address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cidr: Option<String>,
}

/// A header and one test of its value: `exact`, `prefix` or `present: true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieMatch {
    pub name: String,
    pub exact: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMatch {
    pub prefix: String,
}

/// The session cookie: a request without a sticky key gets a fresh key in this cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    #[serde(default = "default_cookie")]
    pub cookie: String,
    #[serde(default = "default_age")]
    pub max_age_seconds: u64,
    #[serde(default)]
    pub secure: bool,
    /// `Strict`, `Lax` or `None` (`None` needs `secure: true`, as browsers require).
    #[serde(default = "default_same_site")]
    pub same_site: String,
}

fn default_cookie() -> String {
    DEFAULT_SESSION_COOKIE.into()
}
fn default_age() -> u64 {
    DEFAULT_SESSION_AGE
}
fn default_same_site() -> String {
    "Lax".into()
}

impl Default for SessionSpec {
    fn default() -> Self {
        Self { cookie: default_cookie(), max_age_seconds: default_age(), secure: false, same_site: default_same_site() }
    }
}

/// A bad rule, named: `segments[1] "beta": match.source_cidr "10.0.0.0/33" is not a CIDR`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{rule}: {message}")]
pub struct SegmentError {
    pub rule: String,
    pub message: String,
}

fn rule_label(index: usize, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("segments[{index}] {n:?}"),
        None => format!("segments[{index}]"),
    }
}

/// Segment names: what the status and the reports carry.
pub fn valid_segment_name(name: &str) -> bool {
    (1..=63).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Validates the whole list: count, unique names, and every rule.
pub fn validate_segments(segments: &[SegmentSpec]) -> Result<(), SegmentError> {
    if segments.len() > MAX_SEGMENTS {
        return Err(SegmentError { rule: "segments".into(), message: format!("{} rules; at most {MAX_SEGMENTS} are allowed", segments.len()) });
    }
    for (i, s) in segments.iter().enumerate() {
        CompiledSegment::compile(i, s)?;
        if segments.iter().take(i).any(|earlier| earlier.name == s.name) {
            return Err(SegmentError { rule: rule_label(i, Some(&s.name)), message: "name is used by an earlier rule".into() });
        }
    }
    Ok(())
}

pub fn validate_session(s: &SessionSpec) -> Result<(), String> {
    if s.cookie.is_empty() || s.cookie.len() > 64 || !s.cookie.bytes().all(is_token_byte) {
        return Err(format!("session.cookie {:?} is not a cookie name (1-64 token characters)", s.cookie));
    }
    if !(1..=MAX_SESSION_AGE).contains(&s.max_age_seconds) {
        return Err(format!("session.max_age_seconds {} is outside 1..={MAX_SESSION_AGE}", s.max_age_seconds));
    }
    match s.same_site.as_str() {
        "Strict" | "Lax" => Ok(()),
        "None" if s.secure => Ok(()),
        "None" => Err("session.same_site \"None\" needs session.secure true (browsers drop it otherwise)".into()),
        other => Err(format!("session.same_site {other:?} is not one of \"Strict\", \"Lax\", \"None\"")),
    }
}

/// What a matching request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentAction {
    Pin(Side),
    Split(Weight),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderTest {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Present,
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let not = || format!("{s:?} is not a CIDR (give ADDRESS/PREFIX-LENGTH, e.g. 10.0.0.0/8 or 2001:db8::/32)");
        let (addr, len) = s.split_once('/').ok_or_else(not)?;
        let net: IpAddr = addr.parse().map_err(|_| not())?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not());
        }
        let len: u8 = len.parse().map_err(|_| not())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(not());
        }
        let cidr = Self { net, len };
        if cidr.masked(net) != bits(net) {
            return Err(format!("{s:?} has bits set past its /{len} prefix"));
        }
        Ok(cidr)
    }

    fn masked(&self, ip: IpAddr) -> u128 {
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let keep = u32::from(self.len);
        let mask = if keep == 0 { 0 } else { u128::MAX << (width - keep) };
        let mask = if width == 32 { mask & u128::from(u32::MAX) } else { mask };
        bits(ip) & mask
    }

    /// Same family and the same leading `len` bits. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`)
    /// counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.net.is_ipv4() && self.masked(ip) == self.masked(self.net)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Envoy's `source.address` property (`10.1.2.3:5678`, `[2001:db8::1]:5678`, or a bare address) → IP.
pub fn parse_source_address(raw: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(raw).ok()?.trim();
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    s.parse().ok()
}

/// What matching needs of a request; the filter reads each attribute from the host at most once
/// (memoised) and only when a rule asks for it.
pub trait Attributes {
    /// A request header by lower-case name (`:path` for the path).
    fn header(&mut self, name: &str) -> Option<&[u8]>;
    /// The downstream peer's address.
    fn source_ip(&mut self) -> Option<IpAddr>;
}

/// One compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledSegment {
    pub name: String,
    pub action: SegmentAction,
    header: Option<(String, HeaderTest)>,
    cookie: Option<(String, Vec<u8>)>,
    path_prefix: Option<Vec<u8>>,
    cidr: Option<Cidr>,
}

impl CompiledSegment {
    pub fn compile(index: usize, s: &SegmentSpec) -> Result<Self, SegmentError> {
        let named = valid_segment_name(&s.name);
        let err = |message: String| SegmentError { rule: rule_label(index, named.then_some(s.name.as_str())), message };
        if !named {
            return Err(err(format!("name {:?} is invalid: use 1-63 characters of letters, digits, '-', '_' or '.'", s.name)));
        }
        let action = match (&s.version, s.weight) {
            (Some(_), Some(_)) => return Err(err("give either version or weight, not both".into())),
            (None, None) => return Err(err("give version (\"canary\" or \"stable\") or weight".into())),
            (Some(v), None) => match v.as_str() {
                "canary" => SegmentAction::Pin(Side::Canary),
                "stable" => SegmentAction::Pin(Side::Stable),
                other => return Err(err(format!("version {other:?} is not \"canary\" or \"stable\""))),
            },
            (None, Some(w)) => SegmentAction::Split(Weight::try_from_percent(w).map_err(|e| err(e.to_string()))?),
        };
        let m = &s.matches;
        if m.header.is_none() && m.cookie.is_none() && m.path.is_none() && m.source_cidr.is_none() {
            return Err(err("match must give at least one of header, cookie, path, source_cidr".into()));
        }
        let value = |field: &str, v: &str| -> Result<Vec<u8>, SegmentError> {
            if v.len() > MAX_MATCH_VALUE || v.bytes().any(|b| b.is_ascii_control()) {
                return Err(err(format!("{field} must be at most {MAX_MATCH_VALUE} bytes without control characters")));
            }
            Ok(v.as_bytes().to_vec())
        };
        let header = match &m.header {
            None => None,
            Some(h) => {
                if h.name.is_empty() || h.name.len() > 256 || !h.name.bytes().all(is_token_byte) {
                    return Err(err(format!("match.header.name {:?} is not a header name", h.name)));
                }
                let test = match (&h.exact, &h.prefix, h.present) {
                    (Some(v), None, None) => HeaderTest::Exact(value("match.header.exact", v)?),
                    (None, Some(v), None) if !v.is_empty() => HeaderTest::Prefix(value("match.header.prefix", v)?),
                    (None, Some(_), None) => return Err(err("match.header.prefix must not be empty (use present: true)".into())),
                    (None, None, Some(true)) => HeaderTest::Present,
                    (None, None, Some(false)) => return Err(err("match.header.present must be true".into())),
                    _ => return Err(err("match.header needs exactly one of exact, prefix, present: true".into())),
                };
                Some((h.name.to_ascii_lowercase(), test))
            }
        };
        let cookie = match &m.cookie {
            None => None,
            Some(c) => {
                if c.name.is_empty() || c.name.len() > 256 || !c.name.bytes().all(is_token_byte) {
                    return Err(err(format!("match.cookie.name {:?} is not a cookie name", c.name)));
                }
                if c.exact.is_empty() || c.exact.bytes().any(|b| b == b';' || b == b' ') {
                    return Err(err("match.cookie.exact must be a non-empty cookie value (no ';' or spaces)".into()));
                }
                Some((c.name.clone(), value("match.cookie.exact", &c.exact)?))
            }
        };
        let path_prefix = match &m.path {
            None => None,
            Some(p) => {
                if !p.prefix.starts_with('/') || p.prefix.contains('?') || p.prefix.contains('#') {
                    return Err(err(format!("match.path.prefix {:?} must start with '/' and hold no query", p.prefix)));
                }
                Some(value("match.path.prefix", &p.prefix)?)
            }
        };
        let cidr = match &m.source_cidr {
            None => None,
            Some(c) => Some(Cidr::parse(c).map_err(|e| err(format!("match.source_cidr {e}")))?),
        };
        Ok(Self { name: s.name.clone(), action, header, cookie, path_prefix, cidr })
    }

    /// Whether the request is in this segment. Checks run cheapest-first in a fixed order (header,
    /// cookie, path, source) and stop at the first that fails, so a rule reads only what it must.
    pub fn matches(&self, req: &mut impl Attributes) -> bool {
        if let Some((name, test)) = &self.header {
            let ok = match (req.header(name), test) {
                (None, _) => false,
                (Some(_), HeaderTest::Present) => true,
                (Some(v), HeaderTest::Exact(want)) => v == want.as_slice(),
                (Some(v), HeaderTest::Prefix(want)) => v.starts_with(want),
            };
            if !ok {
                return false;
            }
        }
        if let Some((name, want)) = &self.cookie {
            let ok = req.header("cookie").and_then(|jar| cookie_value(jar, name)).is_some_and(|v| v == want.as_slice());
            if !ok {
                return false;
            }
        }
        if let Some(prefix) = &self.path_prefix {
            if !req.header(":path").is_some_and(|p| p.starts_with(prefix)) {
                return false;
            }
        }
        if let Some(cidr) = &self.cidr {
            if !req.source_ip().is_some_and(|ip| cidr.contains(ip)) {
                return false;
            }
        }
        true
    }
}

/// The session cookie, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledSession {
    pub cookie: String,
    /// `; Path=/; Max-Age=…; HttpOnly; SameSite=…[; Secure]`, built once.
    attributes: String,
}

impl CompiledSession {
    pub fn compile(s: &SessionSpec) -> Result<Self, String> {
        validate_session(s)?;
        let secure = if s.secure { "; Secure" } else { "" };
        let attributes = format!("; Path=/; Max-Age={}; HttpOnly; SameSite={}{secure}", s.max_age_seconds, s.same_site);
        Ok(Self { cookie: s.cookie.clone(), attributes })
    }

    /// The `Set-Cookie` value carrying `key`.
    pub fn set_cookie(&self, key: &[u8]) -> String {
        format!("{}={}{}", self.cookie, String::from_utf8_lossy(key), self.attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Req {
        headers: HashMap<String, Vec<u8>>,
        source: Option<IpAddr>,
        reads: Vec<String>,
    }
    impl Attributes for Req {
        fn header(&mut self, name: &str) -> Option<&[u8]> {
            self.reads.push(name.to_string());
            self.headers.get(name).map(Vec::as_slice)
        }
        fn source_ip(&mut self) -> Option<IpAddr> {
            self.reads.push("source".into());
            self.source
        }
    }
    fn req(h: &[(&str, &str)], source: Option<&str>) -> Req {
        Req {
            headers: h.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect(),
            source: source.map(|s| s.parse().unwrap()),
            reads: Vec::new(),
        }
    }
    fn seg(json: &str) -> Result<CompiledSegment, SegmentError> {
        let s: SegmentSpec = serde_json::from_str(json).unwrap();
        CompiledSegment::compile(1, &s)
    }

    #[test]
    fn every_given_key_must_hold() {
        let s = seg(r#"{"name":"beta","weight":50,"match":{"header":{"name":"X-Plan","prefix":"ent"},
            "cookie":{"name":"beta","exact":"1"},"path":{"prefix":"/chat"},"source_cidr":"10.0.0.0/8"}}"#)
        .unwrap();
        assert_eq!(s.action, SegmentAction::Split(Weight::from_basis_points(5_000)));
        let all = [("x-plan", "enterprise"), ("cookie", "a=b; beta=1"), (":path", "/chat/1?q=2")];
        assert!(s.matches(&mut req(&all, Some("10.1.2.3"))));
        assert!(!s.matches(&mut req(&all, Some("11.1.2.3"))));
        assert!(!s.matches(&mut req(&all, None)));
        let mut miss = req(&[("x-plan", "free")], Some("10.1.2.3"));
        assert!(!s.matches(&mut miss));
        assert_eq!(miss.reads, vec!["x-plan"], "stops at the first failing key");
        assert!(!s.matches(&mut req(&[("x-plan", "enterprise"), ("cookie", "beta=2"), (":path", "/chat")], Some("10.0.0.1"))));
        assert!(!s.matches(&mut req(&[("x-plan", "enterprise"), ("cookie", "beta=1"), (":path", "/api")], Some("10.0.0.1"))));
    }

    #[test]
    fn header_tests() {
        let exact = seg(r#"{"name":"e","version":"canary","match":{"header":{"name":"x-employee","exact":"true"}}}"#).unwrap();
        assert_eq!(exact.action, SegmentAction::Pin(Side::Canary));
        assert!(exact.matches(&mut req(&[("x-employee", "true")], None)));
        assert!(!exact.matches(&mut req(&[("x-employee", "TRUE")], None)), "values are case-sensitive");
        assert!(!exact.matches(&mut req(&[("x-employee", "true ")], None)));
        assert!(!exact.matches(&mut req(&[], None)));
        let present = seg(r#"{"name":"p","version":"stable","match":{"header":{"name":"x-debug","present":true}}}"#).unwrap();
        assert!(present.matches(&mut req(&[("x-debug", "")], None)));
        assert!(!present.matches(&mut req(&[("x-other", "1")], None)));
    }

    #[test]
    fn cidrs() {
        let c = |s: &str| Cidr::parse(s);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(c("10.0.0.0/8").unwrap().contains(ip("10.255.0.1")));
        assert!(!c("10.0.0.0/8").unwrap().contains(ip("11.0.0.1")));
        assert!(c("10.0.0.0/8").unwrap().contains(ip("::ffff:10.1.1.1")), "IPv4-mapped IPv6");
        assert!(c("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(!c("0.0.0.0/0").unwrap().contains(ip("2001:db8::1")), "families differ");
        assert!(c("2001:db8::/32").unwrap().contains(ip("2001:db8:ffff::1")));
        assert!(!c("2001:db8::/32").unwrap().contains(ip("2001:db9::1")));
        assert!(c("::/0").unwrap().contains(ip("::1")));
        assert!(c("192.168.1.7/32").unwrap().contains(ip("192.168.1.7")));
        assert!(c("::1/128").unwrap().contains(ip("::1")));
        for bad in ["10.0.0.0/33", "10.0.0.0", "10.0.0/8", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/08x", "::/129", "x/8", "", "/8", "10.0.0.0/8/8", " 10.0.0.0/8"] {
            assert!(c(bad).is_err(), "{bad}");
        }
        assert!(c("10.0.0.1/8").unwrap_err().contains("bits set"));
        assert_eq!(parse_source_address(b"10.1.2.3:5678"), Some(ip("10.1.2.3")));
        assert_eq!(parse_source_address(b"[2001:db8::1]:443"), Some(ip("2001:db8::1")));
        assert_eq!(parse_source_address(b"::1"), Some(ip("::1")));
        assert_eq!(parse_source_address(b"garbage"), None);
        assert_eq!(parse_source_address(b"\xff"), None);
    }

    #[test]
    fn bad_rules_are_named() {
        let e = |json: &str| seg(json).unwrap_err().to_string();
        assert_eq!(
            e(r#"{"name":"beta","weight":50,"match":{"source_cidr":"10.0.0.0/33"}}"#),
            r#"segments[1] "beta": match.source_cidr "10.0.0.0/33" is not a CIDR (give ADDRESS/PREFIX-LENGTH, e.g. 10.0.0.0/8 or 2001:db8::/32)"#
        );
        assert!(e(r#"{"name":"b","weight":50,"version":"canary","match":{"path":{"prefix":"/"}}}"#).contains("either version or weight"));
        assert!(e(r#"{"name":"b","match":{"path":{"prefix":"/"}}}"#).contains("give version"));
        assert!(e(r#"{"name":"b","version":"canry","match":{"path":{"prefix":"/"}}}"#).contains("\"canry\""));
        assert!(e(r#"{"name":"b","weight":100.5,"match":{"path":{"prefix":"/"}}}"#).contains("between 0 and 100"));
        assert!(e(r#"{"name":"b","weight":1.234,"match":{"path":{"prefix":"/"}}}"#).contains("two decimals"));
        assert!(e(r#"{"name":"b","weight":5,"match":{}}"#).contains("at least one"));
        assert!(e(r#"{"name":"b","weight":5,"match":{"header":{"name":"bad name","present":true}}}"#).contains("match.header.name"));
        assert!(e(r#"{"name":"b","weight":5,"match":{"header":{"name":"x","exact":"a","prefix":"b"}}}"#).contains("exactly one"));
        assert!(e(r#"{"name":"b","weight":5,"match":{"header":{"name":"x"}}}"#).contains("exactly one"));
        assert!(e(r#"{"name":"b","weight":5,"match":{"header":{"name":"x","present":false}}}"#).contains("present must be true"));
        assert!(e(r#"{"name":"b","weight":5,"match":{"path":{"prefix":"chat"}}}"#).contains("match.path.prefix"));
        assert!(e(r#"{"name":"b","weight":5,"match":{"cookie":{"name":"c","exact":""}}}"#).contains("match.cookie.exact"));
        assert!(e(r#"{"name":"has space","weight":5,"match":{"path":{"prefix":"/"}}}"#).starts_with("segments[1]: name"));
        let long = format!(r#"{{"name":"b","weight":5,"match":{{"header":{{"name":"x","exact":"{}"}}}}}}"#, "a".repeat(2000));
        assert!(e(&long).contains("at most 1024"));
        let dup: Vec<SegmentSpec> = serde_json::from_str(
            r#"[{"name":"a","weight":5,"match":{"path":{"prefix":"/"}}},{"name":"a","weight":5,"match":{"path":{"prefix":"/"}}}]"#,
        )
        .unwrap();
        assert_eq!(validate_segments(&dup).unwrap_err().to_string(), r#"segments[1] "a": name is used by an earlier rule"#);
    }

    #[test]
    fn sessions() {
        let s = CompiledSession::compile(&SessionSpec::default()).unwrap();
        assert_eq!(s.set_cookie(b"k1"), "fledge-session=k1; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax");
        let secure = SessionSpec { cookie: "sid".into(), max_age_seconds: 60, secure: true, same_site: "None".into() };
        assert_eq!(CompiledSession::compile(&secure).unwrap().set_cookie(b"k"), "sid=k; Path=/; Max-Age=60; HttpOnly; SameSite=None; Secure");
        let bad = |f: fn(&mut SessionSpec)| {
            let mut s = SessionSpec::default();
            f(&mut s);
            validate_session(&s).unwrap_err()
        };
        assert!(bad(|s| s.cookie = "a b".into()).contains("session.cookie"));
        assert!(bad(|s| s.max_age_seconds = 0).contains("session.max_age_seconds"));
        assert!(bad(|s| s.same_site = "lax".into()).contains("session.same_site"));
        assert!(bad(|s| s.same_site = "None".into()).contains("secure"));
        let parsed: SessionSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, SessionSpec::default());
    }
}
