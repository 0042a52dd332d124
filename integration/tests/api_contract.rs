//! The controller against its published contract: schemathesis generates valid and invalid requests
//! for every operation in `controller/openapi.yaml` and sends them to a real controller (with a bearer
//! token, so auth is exercised too). Any 5xx, undocumented status or content type, response not
//! matching its schema, invalid request accepted, or endpoint that ignores its auth fails the test.

use std::time::Instant;

use fledge_integration::{workspace_root, Controller};

const SEED: &str = "1";
const MAX_EXAMPLES: &str = "40";

#[tokio::test]
async fn controller_honours_its_openapi_contract() {
    let root = workspace_root();
    let st = root.join(".venv/bin/schemathesis");
    assert!(st.exists(), "{} is missing: run `make setup` (make test installs it)", st.display());
    let ctl = Controller::builder().token("contract-token").poll_hold_secs(0.2).start().await.unwrap();
    let served = reqwest::get(ctl.url("/v1/openapi.yaml")).await.unwrap().text().await.unwrap();
    let spec = root.join("controller/openapi.yaml");
    assert_eq!(served, std::fs::read_to_string(&spec).unwrap(), "the controller serves the committed spec");

    let start = Instant::now();
    let out = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(root.join("integration/schemathesis.toml"))
        .arg("run")
        .arg(&spec)
        .args(["--url", &ctl.url("")])
        .args(["-H", "Authorization: Bearer contract-token"])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,ignored_auth"])
        .args(["--mode", "all", "--seed", SEED, "--max-examples", MAX_EXAMPLES])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    println!("schemathesis ({:?}):\n{}", start.elapsed(), report.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("\n"));
    assert!(out.status.success(), "schemathesis found contract violations (see above)");
    assert!(report.contains("Tested: 27"), "every operation tested");
    assert!(!ctl.log().contains("panicked"), "the controller panicked:\n{}", ctl.log());
}
