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
/// two clock reads (request start, `on_log`) are the filter's fixed part.
const FIXED_AFTER_DECISION: usize = 5;

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

/// How the filter is configured for a row: bound to its rollout (`rollout`), and whether it stamps
/// the response (`response_header`).
#[derive(Clone, Copy)]
struct Plugin {
    bound: bool,
    response_header: bool,
}

const DEFAULT: Plugin = Plugin { bound: false, response_header: true };

/// What the request costs after the decision.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Measured: the fixed part.
    Measured,
    /// A stable request `stable_sampling` did not draw: the route header (and the response stamp,
    /// when on), no response header map, no clock.
    Unmeasured,
    /// A stable request copied to the canary (`shadow`): measured, plus the request's header map,
    /// one queue write to wake the sender and the body chunks read both ways.
    Shadowed,
}

impl After {
    fn hostcalls(self, plugin: Plugin) -> usize {
        let stamp = usize::from(plugin.response_header);
        match self {
            Self::Measured => FIXED_AFTER_DECISION - 1 + stamp,
            Self::Unmeasured => 1 + stamp,
            Self::Shadowed => FIXED_AFTER_DECISION - 1 + stamp + 2,
        }
    }
}

/// One row: what the request is, the plugin, the rollout it meets, its headers, the part after the
/// decision, and the host it is for.
type Case = (&'static str, Plugin, Option<RouteTable>, Vec<(&'static str, &'static str)>, After, &'static str);

/// (reads in order, Set-Cookie writes, whether a rollout took the request) for one request.
fn count(t: &RouteTable, plugin: Plugin, host_name: &str, headers: &[(&str, &str)]) -> (Vec<String>, usize, bool) {
    let host = CountingHost::new(host_name, headers);
    let Some(rollout) = fledge_filter::headers::rollout_of(t, plugin.bound.then_some("support"), &host) else {
        return (host.calls(), 0, false);
    };
    let mut req = Request::new(&host);
    let routing = rollout.route(&mut req, &PluginConfig::default().sticky, &mut SplitMix64::new(1), &mut SessionKeys::new(1));
    (host.calls(), usize::from(routing.new_session.is_some()), true)
}

pub fn render(s: &mut String) {
    let _ = writeln!(s, "## 1b. Hostcalls per request (counted)\n");
    let _ = writeln!(
        s,
        "The decision's reads (`:authority` unless the filter is bound to its rollout), counted through the filter's own request layer; every request of a rollout's host adds {FIXED_AFTER_DECISION} fixed hostcalls (the route header on request and response — the response one only with `response_header` on, the default — the response header map, two clock reads), plus one clock read on the first body chunk of an answer that has a body (time to first token).\n"
    );
    let _ = writeln!(s, "| request | reads by the decision | hostcalls in all |\n|---|---|---|");
    let bound = Plugin { bound: true, response_header: false };
    let user = || vec![("x-user-id", "u1")];
    let m = After::Measured;
    let cases: Vec<Case> = vec![
        ("sticky `x-user-id`, no segments, 50 % (the path before segments)", DEFAULT, table(50.0, Vec::new(), false), user(), m, "support-agent"),
        ("sticky `x-user-id`, 0 % or 100 %", DEFAULT, table(100.0, Vec::new(), false), user(), m, "support-agent"),
        ("no key, no segments (random)", DEFAULT, table(50.0, Vec::new(), false), vec![], m, "support-agent"),
        ("matched by one header rule (`x-employee: true` → canary)", DEFAULT, table(50.0, employees(), false), vec![("x-employee", "true"), ("x-user-id", "u1")], m, "support-agent"),
        ("not matched by it, sticky `x-user-id`", DEFAULT, table(50.0, employees(), false), user(), m, "support-agent"),
        ("session cookie present", DEFAULT, table(50.0, Vec::new(), true), vec![("cookie", "fledge-session=0123abcd")], m, "support-agent"),
        ("new session (answer carries `Set-Cookie`)", DEFAULT, table(50.0, Vec::new(), true), vec![], m, "support-agent"),
        ("bound to its rollout (`rollout`), `response_header: false`, sticky `x-user-id`", bound, table(50.0, Vec::new(), false), user(), m, "support-agent"),
        ("a stable request `stable_sampling` did not draw (unmeasured), sticky `x-user-id`", DEFAULT, table(5.0, Vec::new(), false), user(), After::Unmeasured, "support-agent"),
        ("the same, bound, `response_header: false`", bound, table(5.0, Vec::new(), false), user(), After::Unmeasured, "support-agent"),
        ("a stable request shadowed to the canary (+ one read per body chunk, each way)", DEFAULT, table(50.0, Vec::new(), false), user(), After::Shadowed, "support-agent"),
        ("a host without a rollout (filter on its route)", DEFAULT, table(50.0, Vec::new(), false), user(), m, "billing-agent"),
    ];
    for (name, plugin, t, headers, after, host) in cases {
        let Some(t) = t else {
            let _ = writeln!(s, "| {name} | (could not be counted) | |");
            continue;
        };
        let (reads, writes, routed) = count(&t, plugin, host, &headers);
        let list = reads.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ");
        let extra = if writes > 0 { format!(" + {writes} `Set-Cookie` write") } else { String::new() };
        let total = reads.len() + if routed { after.hostcalls(plugin) } else { 0 };
        let _ = writeln!(s, "| {name} | {list} ({}) | {total}{extra} |", reads.len());
    }
    let _ = writeln!(
        s,
        "| a route with the filter disabled (`typed_per_filter_config`, `disabled: true`) | none (0) | 0 |"
    );
    let _ = writeln!(s);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_table_counts_every_case() {
        let mut s = String::new();
        super::render(&mut s);
        assert!(!s.contains("could not be counted"), "{s}");
        assert!(s.contains("| sticky `x-user-id`, no segments, 50 % (the path before segments) | `:authority`, `x-user-id` (2) | 7 |"), "{s}");
        assert!(s.contains("`:authority`, `x-employee` (2) | 7 |"), "{s}");
        assert!(s.contains("`:authority`, `x-employee`, `x-user-id` (3) | 8 |"), "{s}");
        assert!(s.contains("`response_header: false`, sticky `x-user-id` | `x-user-id` (1) | 5 |"), "two hostcalls fewer: {s}");
        assert!(s.contains("did not draw (unmeasured), sticky `x-user-id` | `:authority`, `x-user-id` (2) | 4 |"), "{s}");
        assert!(s.contains("| the same, bound, `response_header: false` | `x-user-id` (1) | 2 |"), "{s}");
        assert!(s.contains("| a host without a rollout (filter on its route) | `:authority` (1) | 1 |"), "{s}");
    }
}
