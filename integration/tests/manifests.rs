//! Every committed Envoy config passes `envoy --mode validate` (with the built filter in place), and the
//! Grafana dashboard queries only metrics that exist, in valid PromQL.

use std::path::{Path, PathBuf};
use std::process::Command;

use fledge_integration::{envoy_bin, workspace_root};

fn envoy_configs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            envoy_configs(&p, out);
        } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("envoy") && n.ends_with(".yaml")) {
            // Kubernetes resources (manifests/istio/envoyfilter.yaml) are not Envoy bootstraps; they are
            // validated by tests/kubernetes.rs and tests/istio.rs.
            let text = std::fs::read_to_string(&p).unwrap();
            if !text.lines().any(|l| l.starts_with("apiVersion:")) {
                out.push(p);
            }
        }
    }
}

#[test]
fn committed_envoy_configs_validate() {
    let root = workspace_root();
    let mut configs = Vec::new();
    envoy_configs(&root.join("manifests"), &mut configs);
    assert!(!configs.is_empty(), "no envoy configs found under manifests/");
    for c in configs {
        let out = Command::new(envoy_bin())
            .current_dir(&root)
            .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
            .arg(&c)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{} does not validate:\n{text}", c.display());
        println!("{}: OK", c.display());
    }
}

/// Every PromQL expression of a Grafana dashboard (targets, annotations) and the metrics its
/// `label_values(metric, label)` variables read.
fn dashboard_queries(v: &serde_json::Value, exprs: &mut Vec<String>, variables: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("expr", Some(e)) => exprs.push(e.to_string()),
                    ("query" | "definition", Some(q)) if q.starts_with("label_values(") => {
                        let inner = q.trim_start_matches("label_values(").trim_end_matches(')');
                        variables.push(inner.split(',').next().unwrap_or_default().trim().to_string());
                    }
                    _ => dashboard_queries(v, exprs, variables),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| dashboard_queries(i, exprs, variables)),
        _ => {}
    }
}

/// The metric names a PromQL expression selects: identifiers outside strings, label matchers and
/// ranges that are not functions, aggregations, keywords or grouping labels.
fn metric_names(expr: &str) -> Vec<String> {
    const AGGREGATIONS: [&str; 12] = ["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];
    const GROUPING: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    const KEYWORDS: [&str; 5] = ["and", "or", "unless", "bool", "offset"];
    // Blank out strings, {…} and […].
    let mut outside = String::new();
    let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
    for c in expr.chars() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
            outside.push(' ');
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        outside.push(if depth == 0 && !matches!(c, '"' | '}' | ']') { c } else { ' ' });
    }
    let chars: Vec<char> = outside.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts = (c.is_ascii_alphabetic() || c == '_' || c == ':') && (i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == '.'));
        if !starts {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        let call = chars.get(next) == Some(&'(');
        if GROUPING.contains(&word.as_str()) && call {
            // Skip the label list.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
        } else if !(call || AGGREGATIONS.contains(&word.as_str()) || KEYWORDS.contains(&word.as_str()) || GROUPING.contains(&word.as_str())) {
            names.push(word);
        }
    }
    names
}

/// The filter's Envoy metrics as the README's Prometheus section lists them: the counters of its
/// first paragraph (`fledge_` + name, `{a,b}` expanded) and every `fledge_…` name in the section.
fn envoy_metrics(readme: &str) -> std::collections::BTreeSet<String> {
    let section = readme.split("\n### Prometheus\n").nth(1).expect("README has a Prometheus section");
    let section = section.split("\n#").next().unwrap_or_default();
    let ticked = |text: &str| text.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>();
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let mut names = std::collections::BTreeSet::new();
    let counters = section.split("\n\n").find(|p| p.contains("The filter adds its counts")).expect("the counters paragraph");
    for token in ticked(counters) {
        let expanded: Vec<String> = match (token.find('{'), token.find('}')) {
            (Some(a), Some(b)) if a < b => token[a + 1..b].split(',').map(|alt| format!("{}{alt}{}", &token[..a], &token[b + 1..])).collect(),
            _ => vec![token],
        };
        names.extend(expanded.into_iter().filter(|n| plain(n) && n.ends_with("_total")).map(|n| format!("fledge_{n}")));
    }
    names.extend(ticked(section).into_iter().filter(|t| t.starts_with("fledge_") && plain(t)));
    names
}

/// Metric families a real controller exports for a judged automated rollout.
async fn controller_metrics() -> (std::collections::BTreeSet<String>, fledge_integration::Controller) {
    let ctl = fledge_integration::Controller::builder().start().await.unwrap();
    ctl.put_rollout("support", serde_json::json!({
        "hosts": ["support-agent"], "stable": "v1", "canary": "v2", "analysis": {"interval_seconds": 0.2}
    })).await.unwrap();
    let (names, _) = fledge_integration::assert_eventually!(std::time::Duration::from_secs(10), "a judged rollout's metrics", async {
        let text = reqwest::get(ctl.url("/metrics")).await?.text().await?;
        let names: std::collections::BTreeSet<String> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).map(str::to_string).collect();
        for needed in ["fledge_rollout_step", "fledge_gate_statistic", "fledge_gate_failing"] {
            anyhow::ensure!(names.contains(needed), "no {needed} yet");
        }
        Ok(names)
    });
    (names, ctl)
}

#[test]
fn promql_metric_names_are_found() {
    let e = r#"sum by (fledge_rollout, fledge_version) (rate(fledge_errors_total{fledge_rollout=~"$rollout", x="a{b}"}[$__rate_interval])) / 1e6 / on (a) group_left (b) fledge_requests_total > bool 0"#;
    assert_eq!(metric_names(e), ["fledge_errors_total", "fledge_requests_total"]);
    assert_eq!(metric_names("changes(fledge_rollbacks_total[1m]) > 0 and up"), ["fledge_rollbacks_total", "up"]);
    let readme = "x\n### Prometheus\n\nThe filter adds its counts: `requests_total`, `responses_{2xx,5xx}_total`, `stats_tags`.\n\nAlso `fledge_reports_dropped_total` and `fledge_requests_total{a=\"b\"} 1`.\n## Next\n`fledge_nope`";
    let names: Vec<String> = envoy_metrics(readme).into_iter().collect();
    assert_eq!(names, ["fledge_reports_dropped_total", "fledge_requests_total", "fledge_responses_2xx_total", "fledge_responses_5xx_total"]);
}

/// The Grafana dashboard (manifests/grafana/fledge.json) parses; every PromQL expression in it is
/// valid (`promtool check rules`) and names only metrics that exist — the controller's from a live
/// scrape of a judged rollout, the filter's Envoy counters from the README's list — and the README
/// documents every metric the controller exports.
#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_that_exist() {
    let root = workspace_root();
    let path = root.join("manifests/grafana/fledge.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(dashboard["uid"], "fledge");
    let (mut exprs, mut variables) = (Vec::new(), Vec::new());
    dashboard_queries(&dashboard, &mut exprs, &mut variables);
    assert!(exprs.len() >= 20, "{} expressions", exprs.len());

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let envoy = envoy_metrics(&readme);
    assert!(envoy.contains("fledge_requests_total") && envoy.contains("fledge_responses_5xx_total") && envoy.contains("fledge_reports_unacknowledged"), "{envoy:?}");
    let (controller, _ctl) = controller_metrics().await;
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        for name in metric_names(e) {
            assert!(controller.contains(&name) || envoy.contains(&name), "{name} (in {e:?}) is neither the controller's nor Envoy's");
            used.insert(name);
        }
    }
    for v in &variables {
        assert!(controller.contains(v), "variable over {v}, which the controller does not export");
    }
    assert!(used.iter().any(|n| envoy.contains(n)) && used.iter().any(|n| controller.contains(n)), "{used:?}");
    for name in &controller {
        assert!(readme.contains(&format!("`{name}")), "README does not document {name}");
    }

    // Valid PromQL, as Prometheus parses it: each expression as a recording rule, Grafana's variables
    // given values.
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$rollout", ".*");
            serde_json::json!({"record": format!("fledge:dashboard_{i}"), "expr": e})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string()).unwrap();
    let out = Command::new("promtool").args(["check", "rules"]).arg(&file).output().expect("promtool is missing: run `make setup-promtool`");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check rules:\n{text}");
    println!("{} expressions over {} metrics ({} of the controller's, Envoy's from the README): {text}", exprs.len(), used.len(), used.iter().filter(|n| controller.contains(*n)).count());
}
