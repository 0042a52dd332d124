//! What `fledge rollouts get` and `watch` print for people: the phase, a step bar, the weight, a
//! table of gates (canary, stable, status, the detector's and the proof's evidence against their
//! thresholds) and the proxies' confirmation. Pure functions of the API's JSON, so they are tested
//! without a terminal.
// Reading `serde_json::Value` by key yields `Null` for anything missing and cannot panic.
#![allow(clippy::indexing_slicing)]

use std::fmt::Write;

use fledge_core::analysis::Metric;
use serde_json::Value;

/// Phases after which `watch` stops, with its exit code.
pub fn final_exit(phase: &str) -> Option<u8> {
    match phase {
        "succeeded" => Some(0),
        "rolled_back" | "aborted" => Some(1),
        _ => None,
    }
}

/// The whole summary of one rollout (`GET /v1/rollouts/{name}`).
pub fn summary(v: &Value) -> String {
    let s = &v["status"];
    let spec = &v["spec"];
    let mut out = String::new();
    let phase = s["phase"].as_str().unwrap_or("?");
    let _ = writeln!(out, "{}  {}  weight {}%", v["name"].as_str().unwrap_or("?"), phase.replace('_', " "), number(s["weight"].as_f64().unwrap_or(0.0)));
    let _ = writeln!(
        out,
        "{} (stable) → {} (canary)   {}",
        spec["stable"].as_str().unwrap_or("?"),
        spec["canary"].as_str().unwrap_or("?"),
        confirmation(&v["live"]["confirmation"])
    );
    if let Some(bar) = step_bar(spec, s) {
        let _ = writeln!(out, "steps  {bar}");
    }
    if let Some(m) = s["message"].as_str().filter(|m| !m.is_empty()) {
        let _ = writeln!(out, "why    {m}");
    }
    let gates = s["last_verdict"]["gates"].as_array().cloned().unwrap_or_default();
    if !gates.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<26} {:>11} {:>11} {:<17} {:<22} {:<22}", "GATE", "CANARY", "STABLE", "STATUS", "DETECTOR (≥ fails)", "PROOF (≥ passes)");
        for g in &gates {
            let metric: Option<Metric> = serde_json::from_value(g["metric"].clone()).ok();
            let value = |x: &Value| match (x.as_f64(), metric) {
                (Some(x), Some(m)) => m.format_value(x),
                (Some(x), None) => number(x),
                (None, _) => "–".into(),
            };
            let evidence = |e: &Value| match (e["value"].as_f64(), e["threshold"].as_f64()) {
                (Some(a), Some(b)) => format!("{} / {}", short(a), short(b)),
                _ => "–".into(),
            };
            let critical = if g["critical"] == Value::Bool(true) { " (critical)" } else { "" };
            let _ = writeln!(
                out,
                "{:<26} {:>11} {:>11} {:<17} {:<22} {:<22}",
                format!("{}{critical}", g["metric"].as_str().unwrap_or("?")),
                value(&g["canary"]),
                value(&g["stable"]),
                g["status"].as_str().unwrap_or("?").replace('_', " "),
                evidence(&g["evidence"]),
                evidence(&g["proof"]),
            );
            if let Some(note) = g["note"].as_str().filter(|n| !n.is_empty()) {
                let _ = writeln!(out, "    {} — {note}", g["threshold"].as_str().unwrap_or(""));
            }
        }
    }
    let window = &v["live"]["window"];
    let requests = |side: &str| window[side]["requests"].as_u64().unwrap_or(0);
    let _ = writeln!(out);
    let _ = writeln!(out, "window {} stable · {} canary requests", requests("stable"), requests("canary"));
    out
}

/// `[1 ■] [5 ●] [25 □]`: done, current, to come.
fn step_bar(spec: &Value, s: &Value) -> Option<String> {
    let steps: Vec<f64> = match spec["steps"].as_array() {
        Some(a) => a.iter().filter_map(|x| x.as_f64().or_else(|| x["weight"].as_f64())).collect(),
        None if spec["strategy"] == "blue_green" => return Some(blue_green_bar(s)),
        None if spec["weight"].is_number() => return None,
        None => fledge_core::rollout::DEFAULT_STEPS.to_vec(),
    };
    let current = s["step"].as_u64().map(|i| i as usize);
    let shadow = spec["shadow_seconds"].is_number();
    let ended = matches!(s["phase"].as_str(), Some("succeeded"));
    let mut cells = Vec::new();
    if shadow {
        cells.push(cell("shadow", current.map(|c| c.cmp(&0)), ended));
    }
    for (i, w) in steps.iter().enumerate() {
        let index = i + usize::from(shadow);
        cells.push(cell(&format!("{}%", number(*w)), current.map(|c| c.cmp(&index)), ended));
    }
    let at = current.map_or_else(|| "not started".to_string(), |c| format!("step {} of {}", c + 1, steps.len() + usize::from(shadow)));
    Some(format!("{}   {at}", cells.join(" ")))
}

fn cell(label: &str, position: Option<std::cmp::Ordering>, ended: bool) -> String {
    use std::cmp::Ordering::*;
    let mark = match (ended, position) {
        (true, _) | (_, Some(Greater)) => "■",
        (_, Some(Equal)) => "●",
        _ => "□",
    };
    format!("[{label} {mark}]")
}

fn blue_green_bar(s: &Value) -> String {
    let phase = s["phase"].as_str().unwrap_or("");
    let (preview, bake) = match phase {
        "previewing" => ("●", "□"),
        "baking" => ("■", "●"),
        "succeeded" => ("■", "■"),
        _ => ("□", "□"),
    };
    format!("[preview {preview}] [switch → bake {bake}]")
}

fn confirmation(c: &Value) -> String {
    match (c["confirmed"].as_u64(), c["proxies"].as_u64()) {
        (Some(n), Some(m)) => format!("confirmed by {n}/{m} proxies (generation {})", c["generation"]),
        _ => "no proxy has reported".into(),
    }
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn short(x: f64) -> String {
    if x.abs() >= 1e5 {
        format!("{x:.1e}")
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout() -> Value {
        json!({
            "name": "support",
            "spec": {"hosts": ["a"], "stable": "v1", "canary": "v2", "steps": [1, {"weight": 25, "pause": "manual"}, 100]},
            "status": {"phase": "progressing", "step": 1, "weight": 25.0, "message": "holding at 25%",
                       "last_verdict": {"gates": [
                           {"metric": "error_rate", "canary": 0.011, "stable": 0.01, "status": "insufficient_data", "critical": false,
                            "threshold": "canary ≤ 1.25× stable", "note": "needs about 120 more canary requests",
                            "evidence": {"value": 0.5, "threshold": 400.0}, "proof": {"value": 3.2, "threshold": 10.0}},
                           {"metric": "latency_p99_ms", "canary": 312.26, "stable": 300.0, "status": "pass", "critical": true}]}},
            "live": {"confirmation": {"generation": 7, "confirmed": 2, "proxies": 2}, "window": {"stable": {"requests": 900}, "canary": {"requests": 300}}}
        })
    }

    #[test]
    fn the_summary_reads_like_a_status_page() {
        let text = summary(&rollout());
        assert!(text.starts_with("support  progressing  weight 25%\n"), "{text}");
        assert!(text.contains("v1 (stable) → v2 (canary)   confirmed by 2/2 proxies (generation 7)"), "{text}");
        assert!(text.contains("steps  [1% ■] [25% ●] [100% □]   step 2 of 3"), "{text}");
        assert!(text.contains("error_rate"), "{text}");
        assert!(text.contains("1.10%") && text.contains("1.00%") && text.contains("insufficient data"), "{text}");
        assert!(text.contains("0.50 / 400") && text.contains("3.20 / 10.00"), "{text}");
        assert!(text.contains("latency_p99_ms (critical)") && text.contains("312.3 ms"), "{text}");
        assert!(text.contains("needs about 120 more canary requests"), "{text}");
        assert!(text.contains("window 900 stable · 300 canary requests"), "{text}");
    }

    #[test]
    fn bars_for_shadow_and_blue_green_and_exit_codes() {
        let mut r = rollout();
        r["spec"]["shadow_seconds"] = json!(300);
        r["status"]["step"] = json!(0);
        assert!(summary(&r).contains("[shadow ●] [1% □]"), "{}", summary(&r));
        let bg = json!({"name": "b", "spec": {"stable": "v1", "canary": "v2", "strategy": "blue_green"}, "status": {"phase": "baking", "weight": 100.0}});
        assert!(summary(&bg).contains("[preview ■] [switch → bake ●]"));
        assert_eq!((final_exit("succeeded"), final_exit("rolled_back"), final_exit("aborted"), final_exit("paused")), (Some(0), Some(1), Some(1), None));
    }
}
