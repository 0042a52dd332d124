//! Issue 9, shown offline with the real validators: every Kubernetes manifest renders with `kubectl
//! kustomize` and passes `kubernetes-validate --strict`; every Istio resource passes its CRD's strict
//! openAPIV3Schema (check-jsonschema) and CEL rules (cel-python); broken copies are refused, each for
//! its own reason. The replicated variant (`manifests/kubernetes/ha`) is held to its own contract on the
//! rendered output (three replicas, no volume, the database URL from a Secret, the replica id from the pod
//! name, a budget of one disruption), and broken overlays of it are refused by that contract. The checks are
//! `integration/scripts/check_manifests.py` (tools from `make setup-k8s`).

use fledge_integration::workspace_root;

#[test]
fn manifests_pass_kubernetes_and_istio_validation() {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    for tool in ["kubectl", "kubernetes-validate", "check-jsonschema"] {
        let p = root.join(".venv/bin").join(tool);
        assert!(p.exists(), "{} is missing: run `make setup-k8s` (make test installs it)", p.display());
    }
    let out = std::process::Command::new(python)
        .arg(root.join("integration/scripts/check_manifests.py"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    println!("{text}");
    assert!(out.status.success(), "manifest checks failed (see above)");
    assert!(text.contains("all manifest checks passed"));
    assert!(!text.contains("FAIL"));
}
