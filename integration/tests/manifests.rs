//! Every committed Envoy config passes `envoy --mode validate` (with the built filter in place).

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
