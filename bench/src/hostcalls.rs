//! Hostcalls per request, counted: the real decision (`RouteTable::lookup` + `CompiledRollout::route`)
//! reads a request through the filter's own [`Request`] layer over a [`CountingHost`], so every read
//! listed here is one hostcall in the filter. Multiply by the hostcall prices in "What profiling
//! found" for the cost.

use std::fmt::Write;

use fledge_core::plugin::PluginConfig;
use fledge_core::rng::SplitMix64;
use fledge_core::segment::{HeaderMatch, MatchSpec, SegmentSpec, SessionSpec};
use fledge_core::session::SessionKeys;
use fledge_core::{ConfigSnapshot, RouteSpec, RouteTable, Weight};
use fledge_filter::headers::{CountingHost, Request};

/// Besides the decision's reads, every request of a rollout's host: the `:authority` read is counted
/// below; the route header set on the request and on the response, the response header map, and
/// three clock reads (request start, response headers, `on_log`) are the filter's fixed part.
const FIXED_AFTER_DECISION: usize = 6;

fn table(weight: f64, segments: Vec<SegmentSpec>, session: bool) -> Option<RouteTable> {
    let spec = RouteSpec {
        segments,
        session: session.then(SessionSpec::default),
        ..RouteSpec::new("support", &["support-agent"], "v1", "v2", Weight::try_from_percent(weight).ok()?, 7)
    };
    RouteTable::compile(&ConfigSnapshot { epoch: "e".into(), generation: 1, rollouts: vec![spec] }).ok()
}

fn employees() -> Vec<SegmentSpec> {
    vec![SegmentSpec {
        name: "employees".into(),
        matches: MatchSpec {
            header: Some(HeaderMatch { name: "x-employee".into(), exact: Some("true".into()), prefix: None, present: None }),
            ..MatchSpec::default()
        },
        version: Some("canary".into()),
        weight: None,
    }]
}

/// One row: what the request is, the rollout it meets, its headers.
type Case = (&'static str, Option<RouteTable>, Vec<(&'static str, &'static str)>);

/// (reads in order, Set-Cookie writes) for one request.
fn count(t: &RouteTable, headers: &[(&str, &str)]) -> Option<(Vec<String>, usize)> {
    let host = CountingHost::new("support-agent", headers);
    let authority = fledge_filter::headers::HeaderSource::header(&host, ":authority")?;
    let rollout = t.lookup(std::str::from_utf8(&authority).ok()?)?;
    let mut req = Request::new(&host);
    let routing = rollout.route(&mut req, &PluginConfig::default().sticky, &mut SplitMix64::new(1), &mut SessionKeys::new(1));
    Some((host.calls(), usize::from(routing.new_session.is_some())))
}

pub fn render(s: &mut String) {
    let _ = writeln!(s, "## 1b. Hostcalls per request (counted)\n");
    let _ = writeln!(
        s,
        "The decision's reads, counted through the filter's own request layer; every request of a rollout's host adds {FIXED_AFTER_DECISION} fixed hostcalls (the route header on request and response, the response header map, three clock reads), plus one clock read on the first body chunk of an answer that has a body (time to first token).\n"
    );
    let _ = writeln!(s, "| request | reads by the decision | hostcalls in all |\n|---|---|---|");
    let cases: Vec<Case> = vec![
        ("sticky `x-user-id`, no segments, 50 % (the path before segments)", table(50.0, Vec::new(), false), vec![("x-user-id", "u1")]),
        ("sticky `x-user-id`, 0 % or 100 %", table(100.0, Vec::new(), false), vec![("x-user-id", "u1")]),
        ("no key, no segments (random)", table(50.0, Vec::new(), false), vec![]),
        ("matched by one header rule (`x-employee: true` → canary)", table(50.0, employees(), false), vec![("x-employee", "true"), ("x-user-id", "u1")]),
        ("not matched by it, sticky `x-user-id`", table(50.0, employees(), false), vec![("x-user-id", "u1")]),
        ("session cookie present", table(50.0, Vec::new(), true), vec![("cookie", "fledge-session=0123abcd")]),
        ("new session (answer carries `Set-Cookie`)", table(50.0, Vec::new(), true), vec![]),
    ];
    for (name, t, headers) in cases {
        let Some((reads, writes)) = t.as_ref().and_then(|t| count(t, &headers)) else {
            let _ = writeln!(s, "| {name} | (could not be counted) | |");
            continue;
        };
        let list = reads.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ");
        let extra = if writes > 0 { format!(" + {writes} `Set-Cookie` write") } else { String::new() };
        let _ = writeln!(s, "| {name} | {list} ({}) | {}{extra} |", reads.len(), reads.len() + FIXED_AFTER_DECISION);
    }
    let _ = writeln!(s);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_table_counts_every_case() {
        let mut s = String::new();
        super::render(&mut s);
        assert!(!s.contains("could not be counted"), "{s}");
        assert!(s.contains("| sticky `x-user-id`, no segments, 50 % (the path before segments) | `:authority`, `x-user-id` (2) | 8 |"), "{s}");
        assert!(s.contains("`:authority`, `x-employee` (2) | 8 |"), "{s}");
        assert!(s.contains("`:authority`, `x-employee`, `x-user-id` (3) | 9 |"), "{s}");
    }
}
