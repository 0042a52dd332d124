//! The per-request cohort decision, natively: what the filter runs for every request of a rollout's
//! host once the hostcalls have fetched the headers. `make bench` runs this and puts the medians in
//! BENCHMARKS.md against the 100 ns budget.
//!
//! Each iteration is one request's worth of core work: `RouteTable::lookup` of the `:authority`, then
//! `CompiledRollout::decide` with the sticky key (one murmur3 of the key) or, without one, a random
//! bucket. Keys rotate through a pool so the hash sees varied input rather than one cached value.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use fledge_core::plugin::PluginConfig;
use fledge_core::rng::SplitMix64;
use fledge_core::rollout::default_salt;
use fledge_core::segment::{Attributes, SegmentSpec};
use fledge_core::session::SessionKeys;
use fledge_core::{ConfigSnapshot, RouteSpec, RouteTable, Weight};

/// A request as the filter's memoised view presents it: only `x-user-id`, and none of the headers
/// the segment rules ask for.
struct Keyed<'a>(&'a [u8]);

impl Attributes for Keyed<'_> {
    fn header(&mut self, name: &str) -> Option<&[u8]> {
        (name == "x-user-id").then_some(self.0)
    }

    fn source_ip(&mut self) -> Option<std::net::IpAddr> {
        None
    }
}

/// The support rollout with three segment rules (two header pins and a cookie split).
fn segmented() -> RouteTable {
    let segments: Vec<SegmentSpec> = serde_json::from_str(
        r#"[{"name":"employees","match":{"header":{"name":"x-employee","exact":"true"}},"version":"canary"},
            {"name":"enterprise","match":{"header":{"name":"x-plan","exact":"enterprise"}},"version":"stable"},
            {"name":"beta","match":{"cookie":{"name":"beta","exact":"1"}},"weight":30}]"#,
    )
    .unwrap_or_default();
    let rollout = RouteSpec {
        segments,
        ..RouteSpec::new("support", &["support-agent"], "v1", "v2", Weight::from_basis_points(5_000), default_salt("support"))
    };
    match RouteTable::compile(&ConfigSnapshot { epoch: String::new(), generation: 7, rollouts: vec![rollout] }) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bench table does not compile: {e}");
            std::process::exit(1)
        }
    }
}

/// A table the size of a busy mesh's: the benched host among a few dozen others.
fn table() -> RouteTable {
    let rollouts = (0..32)
        .map(|i| {
            let name = if i == 0 { "support".to_string() } else { format!("agent-{i}") };
            let hosts = [format!("{name}-agent"), format!("{name}.agents.example.com")];
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            RouteSpec::new(&name, &hosts, "v1", "v2", Weight::from_basis_points(5_000), default_salt(&name))
        })
        .collect();
    let snapshot = ConfigSnapshot { epoch: String::new(), generation: 7, rollouts };
    match RouteTable::compile(&snapshot) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bench table does not compile: {e}");
            std::process::exit(1)
        }
    }
}

/// Typical user ids (UUID-length), as `x-user-id` carries them.
fn keys() -> Vec<Vec<u8>> {
    (0..1024u32).map(|i| format!("3f2c9a1e-{i:04x}-4b7d-9c1a-5e8f{i:08x}").into_bytes()).collect()
}

fn decision(c: &mut Criterion) {
    let table = table();
    let keys = keys();
    let mut g = c.benchmark_group("decision");

    let mut cycle = keys.iter().cycle();
    g.bench_function("sticky_key", |b| {
        b.iter(|| {
            let key = cycle.next().map_or(&[][..], Vec::as_slice);
            let rollout = table.lookup(black_box("support-agent"));
            rollout.map(|r| r.decide(Some((0, black_box(key))), || 0))
        })
    });

    let mut rng = SplitMix64::new(42);
    g.bench_function("random", |b| {
        b.iter(|| {
            let rollout = table.lookup(black_box("support-agent"));
            rollout.map(|r| r.decide(None, || rng.next_u32()))
        })
    });

    // Three segment rules, none matching, then the sticky key: what `route` adds over `decide`.
    let seg = segmented();
    let sticky = PluginConfig::default().sticky;
    let mut sessions = SessionKeys::new(42);
    let mut cycle = keys.iter().cycle();
    g.bench_function("route_segments", |b| {
        b.iter(|| {
            let key = cycle.next().map_or(&[][..], Vec::as_slice);
            let rollout = seg.lookup(black_box("support-agent"));
            rollout.map(|r| r.route(&mut Keyed(black_box(key)), &sticky, &mut rng, &mut sessions))
        })
    });

    // A new session key (a session's first request only): ~196 murmur3 hashes on average.
    g.bench_function("new_session", |b| b.iter(|| sessions.mint(black_box("support"), 42)));

    // A host without a rollout: the cost every other request pays.
    g.bench_function("no_rollout", |b| b.iter(|| table.lookup(black_box("billing-agent")).is_some()));
    g.finish();
}

criterion_group! {
    name = benches;
    // Short: the numbers settle within a second on this code, and `make bench` has more to measure.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = decision
}
criterion_main!(benches);
