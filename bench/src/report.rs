//! BENCHMARKS.md: the machine, one budget table (goal, measured, pass/miss), then each benchmark's
//! detail, the method, and what profiling found. The same text is printed and written.

use std::fmt::Write;
use std::time::Duration;

use crate::decision::Estimate;
use crate::filter_cost::FilterCost;
use crate::ingest::Ingest;
use crate::machine::Machine;
use crate::push::Push;
use crate::rollback::Rollback;
use crate::stats::{median, quantile};

/// A benchmark's result, or why there is none.
pub enum Part<T> {
    Done(T),
    NotRun(String),
    Failed(String),
}

pub struct Results {
    pub machine: Machine,
    pub smoke: bool,
    pub filter: Part<FilterCost>,
    pub decision: Part<Vec<Estimate>>,
    pub push: Part<Push>,
    pub rollback: Part<Rollback>,
    pub ingest: Part<Ingest>,
    pub judgement: Part<Vec<crate::judgement::Row>>,
    pub ha: Part<crate::ha::Measured>,
    pub profile: Vec<String>,
}

/// Issue 13's budgets for the filter (issue 4's 0.92× is replaced).
pub const LOW_RATIO_BUDGET: f64 = 0.85;
pub const CPU_ABOVE_EMPTY_BUDGET_US: f64 = 5.0;
pub const NO_ROLLOUT_RATIO_BUDGET: f64 = 0.97;
pub const DECISION_NS_BUDGET: f64 = 100.0;
pub const PUSH_P99_MS_BUDGET: f64 = 100.0;
pub const ROLLBACK_MS_BUDGET: f64 = 1000.0;
pub const INGEST_CORE_BUDGET: f64 = 0.25;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "**miss**"
    }
}

pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let s = format!("{:.0}", x);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// One row of the budget table: (what, budget, measured, result).
type Row = (String, String, String, String);

fn not_there<T>(part: &Part<T>) -> Option<(String, String)> {
    match part {
        Part::Done(_) => None,
        Part::NotRun(why) => Some(("not run".into(), format!("not run: {why}"))),
        Part::Failed(e) => Some(("failed".into(), format!("**failed**: {e}"))),
    }
}

fn budget_rows(r: &Results) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    // Issue 13's budgets (they replace issue 4's 0.92×, which reading two headers per request through
    // V8 cannot meet): the lean path at 5 %, and a host without a rollout.
    let low = format!("rollout at {} %, telemetry on, rotating sticky keys: throughput ÷ the empty filter's (bound, no response stamp, `stable_sampling` {} × + {})",
        crate::filter_cost::LOW_WEIGHT, crate::filter_cost::SAMPLE_MULTIPLE, crate::filter_cost::SAMPLE_FLOOR);
    let cpu = "the same: Envoy CPU per request above the empty filter's".to_string();
    let host = "a host without a rollout: throughput ÷ the empty filter's".to_string();
    match &r.filter {
        Part::Done(f) => {
            let ratio_row = |key: &str, budget: f64| {
                let ratio = f.rps_ratio(key, "empty");
                let rounds = f.round_ratios(key, "empty");
                let (lo, hi) = (quantile(&rounds, 0.0), quantile(&rounds, 1.0));
                (format!("≥ {budget:.2}×"), format!("{ratio:.3}× (rounds {lo:.2}–{hi:.2})"), verdict(ratio >= budget).to_string())
            };
            let (b, m, v) = ratio_row("low_sampled", LOW_RATIO_BUDGET);
            rows.push((low, b, m, v));
            let above = f.cpu_us("low_sampled") - f.cpu_us("empty");
            rows.push((cpu, format!("≤ {CPU_ABOVE_EMPTY_BUDGET_US:.0} µs"), format!("{above:.1} µs ({:.1} vs {:.1} µs)", f.cpu_us("low_sampled"), f.cpu_us("empty")), verdict(above <= CPU_ABOVE_EMPTY_BUDGET_US).into()));
            let (b, m, v) = ratio_row("no_rollout", NO_ROLLOUT_RATIO_BUDGET);
            rows.push((format!("{host}, the filter on its route (one `:authority` read)"), b, m, v));
            let (b, m, v) = ratio_row("no_rollout_off", NO_ROLLOUT_RATIO_BUDGET);
            rows.push((format!("{host}, the filter disabled on its route (`typed_per_filter_config`, as manifests/envoy/envoy.yaml)"), b, m, v));
            match &f.memory {
                Ok(mem) => rows.push((
                    format!("the filter's VM memory after {} and {} requests across {} users", thousands(mem.early_requests as f64), thousands(mem.late_requests as f64), thousands(mem.users as f64)),
                    "reported; flat (no growth between the two)".into(),
                    format!("{} → {} KiB", thousands(mem.early_bytes as f64 / 1024.0), thousands(mem.late_bytes as f64 / 1024.0)),
                    verdict(mem.late_bytes <= mem.early_bytes).into(),
                )),
                Err(why) => rows.push(("the filter's VM memory".into(), "reported; flat".into(), "failed".into(), why.clone())),
            }
        }
        other => {
            let (m, v) = not_there(other).unwrap_or_default();
            for what in [low, cpu, host] {
                rows.push((what, String::new(), m.clone(), v.clone()));
            }
        }
    }
    match &r.decision {
        Part::Done(est) => {
            // The budget is per request; a new session's key search runs once per session.
            for e in est.iter().filter(|e| e.name != "no_rollout" && e.name != "new_session") {
                rows.push((
                    format!("core decision, `{}` (native, criterion median)", e.name),
                    format!("≤ {DECISION_NS_BUDGET:.0} ns"),
                    format!("{:.1} ns", e.median_ns),
                    verdict(e.median_ns <= DECISION_NS_BUDGET).into(),
                ));
            }
        }
        other => {
            let (m, v) = not_there(other).unwrap_or_default();
            rows.push(("core decision (native)".into(), format!("≤ {DECISION_NS_BUDGET:.0} ns"), m, v));
        }
    }
    let budget = format!("p99 ≤ {PUSH_P99_MS_BUDGET:.0} ms");
    match &r.push {
        Part::Done(p) => {
            let p99 = quantile(&p.all_ms, 0.99);
            rows.push((
                format!("push: weight change → all {} Envoys routing by it ({} changes)", p.settings.proxies, p.all_ms.len()),
                budget,
                format!("p99 {p99:.1} ms (p50 {:.1})", quantile(&p.all_ms, 0.5)),
                verdict(p99 <= PUSH_P99_MS_BUDGET && p.settings.proxies >= 4).into(),
            ));
        }
        other => {
            let (m, v) = not_there(other).unwrap_or_default();
            rows.push(("push latency, K ≥ 4 Envoys".into(), budget, m, v));
        }
    }
    let what = "rollback: canary (5 % of 500 rps) fails → its last request".to_string();
    let budget = format!("≤ {:.0} s", ROLLBACK_MS_BUDGET / 1e3);
    match &r.rollback {
        Part::Done(Rollback::Measured { trials, .. }) => {
            let v: Vec<f64> = trials.iter().map(|t| t.reaction_ms).collect();
            let worst = v.iter().copied().fold(0.0, f64::max);
            rows.push((
                what,
                budget,
                format!("median {:.0} ms, worst {worst:.0} ms ({} trials)", median(&v), v.len()),
                verdict(worst <= ROLLBACK_MS_BUDGET).into(),
            ));
        }
        Part::Done(Rollback::Pending(why)) => rows.push((what, budget, "pending".into(), format!("pending (issue 3): {why}"))),
        other => {
            let (m, v) = not_there(other).unwrap_or_default();
            rows.push((what, budget, m, v));
        }
    }
    let budget = format!("< {:.0} % of one core", INGEST_CORE_BUDGET * 100.0);
    match &r.ingest {
        Part::Done(Ingest::Measured(m, flood)) => {
            let full = m.settings.proxies >= 1000;
            rows.push((
                format!("ingest: {} proxies × 1 report/s, controller CPU", thousands(m.settings.proxies as f64)),
                budget,
                format!("{:.1} % ({:.0} reports/s, p99 {:.1} ms)", m.controller_cores * 100.0, m.reports_per_second, m.p99_ms),
                verdict(full && m.controller_cores < INGEST_CORE_BUDGET && m.rejected == 0).into(),
            ));
            let budget = format!("≤ {FLOOD_RSS_BUDGET_MB:.0} MB above idle, every request a 4xx");
            match flood {
                Ok(f) => rows.push((
                    format!("hostile flood ({} connections), controller peak RSS", f.settings.connections),
                    budget,
                    format!("+{:.1} MB ({:.1} → {:.1} MB); {} of {} requests 4xx", f.peak_rss_mb - f.idle_rss_mb, f.idle_rss_mb, f.peak_rss_mb, f.four_xx, f.requests),
                    verdict(f.peak_rss_mb - f.idle_rss_mb <= FLOOD_RSS_BUDGET_MB && f.other == 0).into(),
                )),
                Err(why) => rows.push(("hostile flood, controller peak RSS".into(), budget, "failed".into(), why.clone())),
            }
        }
        Part::Done(Ingest::Pending(why)) => rows.push((
            "ingest: 1,000 proxies × 1 report/s, controller CPU".into(),
            budget,
            "pending".into(),
            format!("pending (issue 3): {why}"),
        )),
        other => {
            let (m, v) = not_there(other).unwrap_or_default();
            rows.push(("controller ingest".into(), budget, m, v));
        }
    }
    let budget = format!("≤ {} s", crate::ha::FAILOVER_BUDGET.as_secs());
    match &r.ha {
        Part::Done(m) => {
            let secs: Vec<f64> = m.failover.iter().map(Duration::as_secs_f64).collect();
            let worst = secs.iter().copied().fold(0.0, f64::max);
            rows.push((
                format!("failover: leader killed under a failing canary at 25 %, kill → last canary request ({} trials)", secs.len()),
                budget,
                format!("median {:.1} s, worst {:.1} s", median(&secs), worst),
                verdict(!secs.is_empty() && worst <= crate::ha::FAILOVER_BUDGET.as_secs_f64()).into(),
            ));
        }
        other => {
            let (m, v) = not_there(other).unwrap_or_default();
            rows.push(("failover (several replicas)".into(), budget, m, v));
        }
    }
    rows
}

pub fn render(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "# fledge benchmarks\n");
    if r.smoke {
        let _ = writeln!(s, "> **Smoke run** (`fledge-bench --smoke`): seconds-long settings to check the harness works. These numbers are not measurements.\n");
    }
    let _ = writeln!(
        s,
        "Written by `make bench` (`fledge-bench`, bench/) on {}. Numbers come from one run on the machine below; \
         they compare variants measured in the same run, not across machines.\n",
        m.date
    );
    let _ = writeln!(s, "| machine | |\n|---|---|");
    let _ = writeln!(s, "| CPU | {} ({} cores) |", m.cpu, m.cores);
    let _ = writeln!(s, "| memory | {:.1} GiB |", m.memory_gib);
    let _ = writeln!(s, "| kernel | {} |", m.kernel);
    let _ = writeln!(s, "| Envoy | {} (V8 wasm runtime) |", m.envoy);
    let _ = writeln!(s, "| Rust | {} |", m.rustc);
    let _ = writeln!(s, "| wrk | {} |", m.wrk);
    let _ = writeln!(s, "| fledge | {} |\n", m.commit);

    let _ = writeln!(s, "## Budgets\n");
    let _ = writeln!(s, "Goals from the issues (4: the first budgets; 13: the filter's, which replace issue 4's 0.92×; 14: failover), measured here and never asserted in tests.\n");
    let _ = writeln!(s, "| what | budget | measured | result |\n|---|---|---|---|");
    for (what, budget, measured, mut result) in budget_rows(r) {
        // Smoke settings (K = 2, 20 proxies, 1 s runs) cannot meet or miss a budget.
        if r.smoke && (result == "pass" || result == verdict(false)) {
            result = "– (smoke)".into();
        }
        let _ = writeln!(s, "| {what} | {budget} | {measured} | {result} |");
    }
    let _ = writeln!(s);

    render_filter(&mut s, &r.filter);
    crate::hostcalls::render(&mut s);
    render_decision(&mut s, &r.decision);
    render_push(&mut s, &r.push);
    render_rollback(&mut s, &r.rollback);
    render_ingest(&mut s, &r.ingest);
    render_judgement(&mut s, &r.judgement);
    render_ha(&mut s, &r.ha);

    if !r.profile.is_empty() {
        let _ = writeln!(s, "## What profiling found\n");
        for p in &r.profile {
            let _ = writeln!(s, "- {p}");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## Method\n");
    for line in METHOD {
        let _ = writeln!(s, "- {line}");
    }
    s
}

const METHOD: &[&str] = &[
    "Everything runs on loopback on one machine: the load generator, Envoy and the controller share its cores, as they would share a node. Interleaving the variants in rounds and taking medians (and per-round ratios) is what makes the comparisons hold on a noisy machine.",
    "Filter cost: one Envoy process per variant (`--concurrency 1`) with the same bootstrap except the HTTP filter chain (and the plugin configuration); every route is a `direct_response`, one per version matched on `x-fledge-version`, so the fledge filter's header really re-selects the route. Rounds rotate the order of the variants. Saturation uses wrk (`-t1 -c16`, a Lua script handing out 1,000 pre-formatted requests with distinct `x-user-id`); CPU per request is Envoy's utime+stime from `/proc/<pid>/stat` over the run divided by wrk's request count. Latency uses the in-process generator (tokio + hyper, 16 keep-alive connections) paced to a fixed total rate, latency measured from write to full response like wrk's; wrk2 is not packaged in Debian, and wrk's latency at saturation is queueing, not cost. Sends are paced on tokio's 1 ms timer, so the requests due in one millisecond leave together (5 at 5,000 rps) and the latency includes queueing behind them in Envoy's one worker: compare the variants with each other, not with other setups.",
    "The fledge variant runs with the real controller, a rollout at 50 % for `bench-agent`, and telemetry on; measuring starts only after `x-fledge-version` is on responses and 200 distinct users split between both direct-response routes. A warm-up run per variant lets V8 tier up the wasm first.",
    "Hostcalls per request are counted, not timed (section 1b): the filter's request layer (`filter/src/headers.rs`, `Request` over a `CountingHost` that logs every read) runs the real decision natively; the filter's tests assert the same counts.",
    "Core decision: criterion (`cargo bench -p fledge-core --bench decision`), one iteration = `RouteTable::lookup` + `CompiledRollout::decide` on a 32-rollout table, keys rotating through 1,024 UUID-like ids.",
    "Push: K Envoys (`--concurrency 1`, default `tick_ms`), weight alternating 40 ↔ 60 %; a probe user whose bucket (computed with `fledge_core::Bucket::of_key` and the rollout's default salt) lies between them flips version with each change. One task per Envoy probes every 2 ms from before the PUT is sent; a change counts when the slowest Envoy answers with the new version.",
    "Rollback: sample agents behind the harness's Envoy, filter reports every 100 ms, analysis every 200 ms (critical gates also on every report), a critical `error_rate` gate with `max: 0.05`; the canary agent fails every request from t0 (its first failed answer) and the measure ends at its last request of any kind.",
    "Ingest: each simulated proxy holds its own keep-alive connection and posts a two-version report once a second, phases spread over the second; controller CPU from `/proc/<pid>/stat` over the measured window (after one warm-up second), as a share of one core.",
];

fn render_filter(s: &mut String, part: &Part<FilterCost>) {
    let _ = writeln!(s, "## 1. Filter cost in Envoy\n");
    let f = match part {
        Part::Done(f) => f,
        other => {
            let _ = writeln!(s, "{}\n", not_there(other).map(|x| x.1).unwrap_or_default());
            return;
        }
    };
    let st = &f.settings;
    let _ = writeln!(
        s,
        "One Envoy worker (`--concurrency 1`), direct responses, {} interleaved rounds; per round and variant {} s at saturation \
         ({}) and {} s at a fixed {} requests/s for latency. Telemetry: {}. Canary share seen before measuring: {:.0} % of 200 users.\n",
        st.rounds,
        st.saturate.as_secs_f64(),
        f.saturation_tool,
        st.latency.as_secs_f64(),
        thousands(st.latency_rate),
        f.telemetry,
        f.canary_share * 100.0
    );
    let _ = writeln!(
        s,
        "| variant | requests/s (median) | ÷ no filter | ÷ empty filter | Envoy CPU µs / request | Envoy CPU at saturation | p50 @ {} rps | p99 @ {} rps |",
        thousands(st.latency_rate),
        thousands(st.latency_rate)
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for v in &f.variants {
        let col = |g: fn(&crate::filter_cost::Sample) -> f64| median(&v.samples.iter().map(g).collect::<Vec<_>>());
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {:.3} | {:.1} | {:.0} % | {:.0} µs | {:.0} µs |",
            v.label,
            thousands(col(|x| x.rps)),
            f.rps_ratio(v.key, "plain"),
            f.rps_ratio(v.key, "empty"),
            col(|x| x.cpu_us_per_request),
            col(|x| x.envoy_cores) * 100.0,
            col(|x| x.p50_us),
            col(|x| x.p99_us),
        );
    }
    let _ = writeln!(s, "\nRatios are medians of per-round ratios. Every round (requests/s; CPU µs/request; p99 µs):\n");
    let _ = write!(s, "| round |");
    for v in &f.variants {
        let _ = write!(s, " {} |", v.key);
    }
    let _ = writeln!(s, " fledge ÷ empty |\n|---|{}---|", "---|".repeat(f.variants.len()));
    let ratios = f.round_ratios("fledge", "empty");
    for round in 0..st.rounds {
        let _ = write!(s, "| {} |", round + 1);
        for v in &f.variants {
            match v.samples.get(round) {
                Some(x) => {
                    let _ = write!(s, " {}; {:.1}; {:.0} |", thousands(x.rps), x.cpu_us_per_request, x.p99_us);
                }
                None => {
                    let _ = write!(s, " – |");
                }
            }
        }
        let _ = writeln!(s, " {:.3} |", ratios.get(round).copied().unwrap_or(f64::NAN));
    }
    if f.variant("shadow").is_some() {
        let _ = writeln!(
            s,
            "\nThe shadow variant's sink received {} copies while measuring. With `shadow` off the filter does no shadow work at all (not one extra hostcall: section 1b); the `fledge` row is that case.",
            thousands(f.shadow_copies as f64)
        );
    }
    // What each change of issue 13 saved, variant after variant (medians of this run).
    let steps = [
        ("plain", "empty", "the empty proxy-wasm filter (the floor every wasm filter pays)"),
        ("empty", "low", "fledge at 5 %, defaults"),
        ("low", "low_lean", "bound to its rollout (`rollout`: no `:authority` read), no response stamp (`response_header: false`)"),
        ("low_lean", "low_sampled", "stable's telemetry sampled (`stable_sampling` 4 × + 50): unmeasured requests skip the response header map and both clock reads"),
        ("empty", "no_rollout", "a host without a rollout (one `:authority` read)"),
        ("empty", "no_rollout_off", "a host without a rollout, the filter disabled on its route (no hostcall)"),
        ("fledge", "lean", "at 50 %: bound, no response stamp"),
    ];
    if steps.iter().all(|(a, b, _)| f.variant(a).is_some() && f.variant(b).is_some()) {
        let _ = writeln!(s, "\nWhat each change saved (Envoy CPU per request, medians; throughput ratio of the two, median of rounds):\n");
        let _ = writeln!(s, "| from → to | change | CPU µs / request | throughput ratio |\n|---|---|---|---|");
        for (a, b, what) in steps {
            let _ = writeln!(s, "| {a} → {b} | {what} | {:.1} → {:.1} ({:+.1}) | {:.3} |", f.cpu_us(a), f.cpu_us(b), f.cpu_us(b) - f.cpu_us(a), f.rps_ratio(b, a));
        }
    }
    match &f.memory {
        Ok(m) => {
            let _ = writeln!(
                s,
                "\nThe filter's VM memory (`fledge_vm_memory_bytes`: the linear memory of the worker's and the main thread's VMs) in the `low_sampled` Envoy, across {} distinct users: {} KiB after {} requests, {} KiB after {}.",
                thousands(m.users as f64),
                thousands(m.early_bytes as f64 / 1024.0),
                thousands(m.early_requests as f64),
                thousands(m.late_bytes as f64 / 1024.0),
                thousands(m.late_requests as f64)
            );
        }
        Err(why) => {
            let _ = writeln!(s, "\nThe filter's VM memory could not be measured: {why}.");
        }
    }
    match &f.wasm_opt {
        Ok(w) => {
            let _ = writeln!(s, "\n`wasm-opt` ({}) on the fledge module: size, and Envoy's start-up with it (start → listener accepting, V8 compiling the module included; median of {} interleaved start-ups):\n", w.version, w.variants.first().map_or(0, |v| v.startup.len()));
            let _ = writeln!(s, "| module | bytes | start-up (median) |\n|---|---|---|");
            for v in &w.variants {
                let ms: Vec<f64> = v.startup.iter().map(|d| d.as_secs_f64() * 1e3).collect();
                let _ = writeln!(s, "| {} | {} | {:.0} ms |", v.label, thousands(v.bytes as f64), median(&ms));
            }
        }
        Err(why) => {
            let _ = writeln!(s, "\n`wasm-opt` not measured: {why}.");
        }
    }
    let errors: u64 = f.variants.iter().flat_map(|v| v.samples.iter().map(|x| x.errors)).sum();
    let _ = writeln!(
        s,
        "\nErrors (non-2xx, socket errors) over all runs: {errors}. Wasm modules: fledge {} ({} bytes), empty {} ({} bytes).\n",
        f.fledge_wasm.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        thousands(f.fledge_wasm.bytes as f64),
        f.empty_wasm.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        thousands(f.empty_wasm.bytes as f64),
    );
}

fn render_decision(s: &mut String, part: &Part<Vec<Estimate>>) {
    let _ = writeln!(s, "## 2. Core decision (native)\n");
    let est = match part {
        Part::Done(e) => e,
        other => {
            let _ = writeln!(s, "{}\n", not_there(other).map(|x| x.1).unwrap_or_default());
            return;
        }
    };
    let _ = writeln!(s, "`cargo bench -p fledge-core --bench decision` (criterion, core/benches/decision.rs).\n");
    let _ = writeln!(s, "| benchmark | what one iteration does | median | mean |\n|---|---|---|---|");
    for e in est {
        let _ = writeln!(s, "| `decision/{}` | {} | {:.1} ns | {:.1} ns |", e.name, e.what, e.median_ns, e.mean_ns);
    }
    let _ = writeln!(s);
}

fn render_push(s: &mut String, part: &Part<Push>) {
    let _ = writeln!(s, "## 3. Push latency\n");
    let p = match part {
        Part::Done(p) => p,
        other => {
            let _ = writeln!(s, "{}\n", not_there(other).map(|x| x.1).unwrap_or_default());
            return;
        }
    };
    let _ = writeln!(
        s,
        "{} weight changes, {} Envoy processes (`--concurrency {}`, filter `tick_ms` {} ms), each probed every 2 ms.\n",
        p.all_ms.len(),
        p.settings.proxies,
        p.settings.concurrency,
        p.tick_ms
    );
    let _ = writeln!(s, "| from `PUT` sent until … | p50 | p90 | p99 | max |\n|---|---|---|---|---|");
    let row = |s: &mut String, what: &str, v: &[f64]| {
        let _ = writeln!(
            s,
            "| {what} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            quantile(v, 0.5),
            quantile(v, 0.9),
            quantile(v, 0.99),
            quantile(v, 1.0)
        );
    };
    row(s, &format!("all {} Envoys route by it", p.settings.proxies), &p.all_ms);
    row(s, "one Envoy routes by it", &p.each_ms);
    row(s, "the `PUT` has returned", &p.put_ms);
    let _ = writeln!(s);
}

fn render_rollback(s: &mut String, part: &Part<Rollback>) {
    let _ = writeln!(s, "## 4. Rollback reaction\n");
    match part {
        Part::Done(Rollback::Measured { settings, trials }) => {
            let _ = writeln!(
                s,
                "{} trials at {} requests/s, canary at {} %, filter reports every 100 ms, analysis every 200 ms, critical gate `error_rate max 0.05`; \
                 {} s of healthy canary traffic before each t0.\n",
                trials.len(),
                crate::rollback::RATE,
                crate::rollback::CANARY_PERCENT,
                settings.healthy.as_secs_f64()
            );
            let _ = writeln!(
                s,
                "| trial | healthy canary requests before t0 | first failure → `rolled_back` event | first failure → last canary request | verdict |\n|---|---|---|---|---|"
            );
            for (i, t) in trials.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} ms | {:.0} ms | {} |",
                    i + 1,
                    t.healthy_requests,
                    t.decided_ms,
                    t.reaction_ms,
                    t.message.replace('|', "\\|")
                );
            }
            let decided: Vec<f64> = trials.iter().map(|t| t.decided_ms).collect();
            let reaction: Vec<f64> = trials.iter().map(|t| t.reaction_ms).collect();
            let _ = writeln!(
                s,
                "\nMedians: the controller rolled back {:.0} ms after the first failure and the canary's last request came \
                 {:.0} ms after it. The canary gets a request every {:.0} ms, so the push of weight 0 (§3) is within \
                 that resolution: the time goes to gathering evidence.\n",
                median(&decided),
                median(&reaction),
                1e3 / (crate::rollback::RATE * crate::rollback::CANARY_PERCENT / 100.0)
            );
        }
        Part::Done(Rollback::Pending(why)) => {
            let _ = writeln!(
                s,
                "**Pending** on automated analysis and rollback (issue 3): {why}. The benchmark is written \
                 (bench/src/rollback.rs) and runs as soon as the controller takes the analysis fields; rerun `make bench`.\n"
            );
        }
        other => {
            let _ = writeln!(s, "{}\n", not_there(other).map(|x| x.1).unwrap_or_default());
        }
    }
}

/// Peak resident memory the controller may gain under the hostile flood (issue 7).
const FLOOD_RSS_BUDGET_MB: f64 = 64.0;

fn render_ingest(s: &mut String, part: &Part<Ingest>) {
    let _ = writeln!(s, "## 5. Controller ingest\n");
    match part {
        Part::Done(Ingest::Measured(m, flood)) => {
            let _ = writeln!(
                s,
                "{} simulated proxies, one report per second each ({} bytes of JSON: two versions), measured for {} s after {} s of warm-up.\n",
                thousands(m.settings.proxies as f64),
                m.body_bytes,
                m.settings.duration.as_secs_f64(),
                m.settings.warmup.as_secs_f64()
            );
            let _ = writeln!(s, "| reports/s accepted | rejected | controller CPU (share of one core) | POST p50 | POST p99 |\n|---|---|---|---|---|");
            let _ = writeln!(
                s,
                "| {:.0} | {} | {:.1} % | {:.2} ms | {:.2} ms |\n",
                m.reports_per_second,
                m.rejected,
                m.controller_cores * 100.0,
                m.p50_ms,
                m.p99_ms
            );
            render_flood(s, flood);
        }
        Part::Done(Ingest::Pending(why)) => {
            let _ = writeln!(
                s,
                "**Pending** on `POST /v1/reports` (issue 3): {why}. The benchmark is written (bench/src/ingest.rs) and \
                 runs as soon as the endpoint exists; rerun `make bench`.\n"
            );
        }
        other => {
            let _ = writeln!(s, "{}\n", not_there(other).map(|x| x.1).unwrap_or_default());
        }
    }
}

fn render_ha(s: &mut String, part: &Part<crate::ha::Measured>) {
    let _ = writeln!(s, "## 7. Several replicas on PostgreSQL\n");
    let m = match part {
        Part::Done(m) => m,
        other => {
            let _ = writeln!(s, "{}\n", not_there(other).map(|x| x.1).unwrap_or_default());
            return;
        }
    };
    let _ = writeln!(
        s,
        "{} simulated proxies spread over 3 replicas on one PostgreSQL (Debian's package, a throwaway cluster on loopback, fsync off), one report per second each, \
         measured for {} s after {} s of warm-up. A report is acknowledged once its flush to the shared log committed.\n",
        thousands(m.settings.proxies as f64),
        m.settings.duration.as_secs_f64(),
        m.settings.warmup.as_secs_f64()
    );
    let cores: Vec<String> = m.replica_cores.iter().map(|c| format!("{:.1} %", c * 100.0)).collect();
    let lag = |q: f64| quantile(&m.flush_lag_ms, q);
    let _ = writeln!(s, "| reports/s accepted | rejected | CPU per replica | PostgreSQL CPU | report p50 | report p99 | flush lag p50 / p99 (r1 → r3) |\n|---|---|---|---|---|---|---|");
    let _ = writeln!(
        s,
        "| {:.0} | {} | {} | {:.1} % | {:.1} ms | {:.1} ms | {:.0} / {:.0} ms ({} probes) |\n",
        m.reports_per_second,
        m.rejected,
        cores.join(", "),
        m.database_cores * 100.0,
        m.p50_ms,
        m.p99_ms,
        lag(0.5),
        lag(0.99),
        m.flush_lag_ms.len()
    );
    let secs: Vec<String> = m.failover.iter().map(|d| format!("{:.2} s", d.as_secs_f64())).collect();
    let _ = writeln!(
        s,
        "Failover: the leader killed (`kill -9`) as 200 requests/s start reaching a canary that fails half of them at 25 %; from the kill to the canary's last request \
         (the lease of 3 s running out, a follower taking it at its next renewal, its analysis judging what the shared log gave it, the rollback reaching the Envoy): {}.\n",
        secs.join(", ")
    );
}

fn render_flood(s: &mut String, flood: &crate::ingest::Flood) {
    let _ = writeln!(s, "### Hostile flood\n");
    match flood {
        Ok(f) => {
            let _ = writeln!(
                s,
                "{} connections for {} s posting, in turn, a 2 MiB body, a 10,000-entry report, 100,000-deep nesting, garbage, \
                 wrong types and a bucket index past the histogram, to a controller with one rollout. Memory from `/proc/<pid>/status`: \
                 `VmRSS` before, `VmHWM` (peak) after.\n",
                f.settings.connections,
                f.settings.duration.as_secs_f64()
            );
            let _ = writeln!(s, "| requests | 4xx | other answers | idle RSS | peak RSS | peak above idle |\n|---|---|---|---|---|---|");
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} MB | {:.1} MB | {:.1} MB |\n",
                thousands(f.requests as f64),
                thousands(f.four_xx as f64),
                f.other,
                f.idle_rss_mb,
                f.peak_rss_mb,
                f.peak_rss_mb - f.idle_rss_mb
            );
        }
        Err(why) => {
            let _ = writeln!(s, "The flood could not run: {why}\n");
        }
    }
}

fn render_judgement(s: &mut String, part: &Part<Vec<crate::judgement::Row>>) {
    let _ = writeln!(s, "## 6. Judgement: decision quality\n");
    let rows = match part {
        Part::Done(rows) => rows,
        other => {
            let _ = writeln!(s, "{}\n", not_there(other).map(|x| x.1).unwrap_or_default());
            return;
        }
    };
    let runs = rows.first().map_or(0, |r| r.tally.runs);
    let _ = writeln!(
        s,
        "Seeded simulations of `fledge_core::analysis::simulation` (`judge` on synthetic traffic), {} rollouts per row: \
         200 requests/s, one look per second, steps 1 → 5 → 25 → 50 → 100 % at 60 s each, default gates, failure_limit 1. \
         \"Rolled back\" counts rollbacks on the row's gate (any gate for A/A, incidents and the healthy canary); \
         detection is from the change's onset. The shadow rows simulate only a rollout's shadowing phase (`shadow_seconds: 300`, 10 % of \
         stable's 200 requests/s copied, the default gates with their shadow counterparts, paired answers correlated through causes in the request): \
         \"past first step\" is past the shadow phase, \"longest step\" the longest shadowing phase, and nothing is promoted; \
         the pairing-gain rows judge one gate (α_gate = 0.01) on 300 s of the same kind of copies, paired or as two independent samples. \
         docs/analysis-method.md explains the method and the validity argument.\n",
        thousands(runs as f64)
    );
    let _ = writeln!(
        s,
        "| case | rolled back | on other gates | promoted | past first step | median detection | longest step | steps held > 3× | the check |\n|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let t = &r.tally;
        let pct = |n: usize| format!("{:.2} %", 100.0 * n as f64 / t.runs.max(1) as f64);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} s | {} | {} |",
            t.name,
            pct(t.rolled_back),
            pct(t.rolled_back_other),
            if t.shadow_phase_only { "–".to_string() } else { pct(t.promoted) },
            pct(t.advanced_past_first),
            t.median_delay_s().map_or_else(|| "–".to_string(), |d| format!("{d} s")),
            t.longest_step_s,
            pct(t.held_over_3x),
            r.check
        );
    }
    let _ = writeln!(s);
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(1234567.4), "1,234,567");
        assert_eq!(super::thousands(999.0), "999");
        assert_eq!(super::thousands(-1000.0), "-1,000");
        assert_eq!(super::thousands(f64::NAN), "–");
    }
}
