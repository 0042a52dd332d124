//! The dashboard in a real headless Chromium, against a real controller (with a token), a real Envoy
//! with the filter and real traffic: the list shows the rollout; the rollout's page counts requests
//! live; Pause asks for the token and pauses it; Resume uses the kept token; a failure injected in the
//! canary rolls it back and the rollback appears on the page's timeline — all without a reload; a
//! manual rollout's weight is set from its page.
//! Screenshots are kept under `target/ui-screenshots/` and their paths printed.

use std::time::{Duration, Instant};

use fledge_integration::browser::screenshot_dir;
use fledge_integration::traffic::{Load, Traffic};
use fledge_integration::{assert_eventually, Agent, Behaviour, Browser, Controller, Envoy};
use serde_json::json;

const HOST: &str = "support-agent";
const TOKEN: &str = "dashboard-token";

/// The number shown in `css` (thousands separators allowed).
async fn number(browser: &Browser, css: &str) -> anyhow::Result<u64> {
    let text = browser.text(css).await?;
    text.replace(',', "").trim().parse::<u64>().map_err(|e| anyhow::anyhow!("{css}: {text:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_rollout_live_and_steers_it_with_the_token() {
    let started = Instant::now();
    let v1 = Agent::start(Behaviour::version("v1")).await.unwrap();
    let v2 = Agent::start(Behaviour::version("v2")).await.unwrap();
    let ctl = Controller::builder().token(TOKEN).start().await.unwrap();
    let plugin = json!({"report_interval_ms": 200, "controller": {"token": TOKEN}});
    let envoy = Envoy::for_versions(HOST, v1.addr, v2.addr, ctl.addr, plugin).start().await.unwrap();
    // Held at its first step (a long dwell), judged on error rates only: a critical absolute limit
    // and a relative gate.
    ctl.put_rollout("support", json!({
        "hosts": [HOST], "stable": "v1", "canary": "v2", "steps": [20, 100], "step_seconds": 3600, "min_requests": 30,
        "analysis": {"interval_seconds": 0.5},
        "gates": [{"metric": "error_rate", "max_ratio": 2.0}, {"metric": "error_rate", "max": 0.1, "critical": true}]
    })).await.unwrap();
    ctl.wait_phase("support", "progressing", Duration::from_secs(10)).await.unwrap();
    let load = Load::start(Traffic::new(envoy.listener, HOST), 100, 1_000);

    let browser = Browser::start(1440, 1000).await.unwrap();
    let shots = screenshot_dir();
    let mut kept = Vec::new();

    // The list: the rollout, its phase, confirmed by the proxy.
    browser.goto(&ctl.url("/ui")).await.unwrap();
    assert_eventually!(Duration::from_secs(10), "the list shows the rollout progressing, confirmed", async {
        let phase = browser.text(r#"tr[data-rollout="support"] .phase"#).await?;
        anyhow::ensure!(phase == "progressing", "phase {phase:?}");
        let proxies = browser.text(r#"tr[data-rollout="support"] .proxies"#).await?;
        anyhow::ensure!(proxies == "confirmed by 1/1 proxies", "{proxies:?}");
        Ok(())
    });
    let path = shots.join("dashboard-list.png");
    browser.screenshot(&path).await.unwrap();
    kept.push(path);

    // The rollout's page: request counts rise while we watch, without a reload (a mark set on the
    // window now is still there at the end).
    browser.goto(&ctl.url("/ui/rollouts/support")).await.unwrap();
    browser.execute("window.__notReloaded = true; return true;", json!([])).await.unwrap();
    let (first, _) = assert_eventually!(Duration::from_secs(10), "the page counts canary requests", async {
        let n = number(&browser, "#req-canary").await?;
        anyhow::ensure!(n > 0, "{n} canary requests shown");
        Ok(n)
    });
    let (second, took) = assert_eventually!(Duration::from_secs(10), "the count rises on the page", async {
        let n = number(&browser, "#req-canary").await?;
        anyhow::ensure!(n > first, "still {n}");
        Ok(n)
    });
    println!("canary requests on the page: {first} → {second} ({took:?} later, no reload)");
    // (Read again on failure: the page re-renders the numbers as events arrive.)
    assert_eventually!(Duration::from_secs(5), "stable gets 80 %", async {
        let stable = number(&browser, "#req-stable").await?;
        anyhow::ensure!(stable > second, "{stable} stable requests");
        Ok(())
    });
    // History and live points: the charts are drawn, the gates have their charts.
    assert_eventually!(Duration::from_secs(10), "the charts are drawn", async {
        for css in ["#chart-weight canvas", "#chart-requests canvas", r#"#gates .gate[data-metric="error_rate"] canvas"#] {
            anyhow::ensure!(browser.exists(css).await?, "no {css}");
        }
        Ok(())
    });
    // A few seconds of history before the screenshot, so the charts show lines.
    assert_eventually!(Duration::from_secs(15), "the charts have points", async {
        let points: u64 = browser.execute("return Number(document.getElementById('chart-weight').dataset.points || 0);", json!([])).await?.as_u64().unwrap_or(0);
        anyhow::ensure!(points >= 6, "{points} points");
        Ok(())
    });
    assert_eventually!(Duration::from_secs(5), "the verdict is shown", async {
        let action = browser.text("#verdict-action").await?;
        anyhow::ensure!(action == "hold", "{action:?}");
        Ok(())
    });
    let shown = browser.execute("return getComputedStyle(document.getElementById('set-weight')).display;", json!([])).await.unwrap();
    assert_eq!(shown, json!("none"), "set weight is for manual rollouts only");
    let path = shots.join("dashboard-rollout.png");
    browser.screenshot(&path).await.unwrap();
    kept.push(path);

    // Pause: the controller answers 401, the page asks for the token, and the retry pauses it.
    browser.click("#btn-pause").await.unwrap();
    assert_eventually!(Duration::from_secs(5), "the page asks for the token", async {
        anyhow::ensure!(browser.exists("#token-dialog[open]").await?, "no dialog");
        Ok(())
    });
    let path = shots.join("dashboard-token.png");
    browser.screenshot(&path).await.unwrap();
    kept.push(path);
    browser.type_into("#token-input", TOKEN).await.unwrap();
    browser.click("#token-ok").await.unwrap();
    assert_eventually!(Duration::from_secs(5), "the page shows it paused", async {
        let phase = browser.text("#phase").await?;
        anyhow::ensure!(phase == "paused", "{phase:?}");
        Ok(())
    });
    assert_eq!(ctl.phase("support").await.unwrap(), "paused", "the API agrees");
    let kept_token = browser.execute("return [sessionStorage.getItem('fledge.token'), location.href];", json!([])).await.unwrap();
    assert_eq!(kept_token[0], TOKEN, "the token is kept in sessionStorage");
    assert!(!kept_token[1].as_str().unwrap().contains(TOKEN), "the token is never in the URL: {}", kept_token[1]);
    assert!(ctl.log().lines().all(|l| !l.contains(TOKEN)), "the token is never logged");

    // Resume: the kept token is used, nothing is asked.
    browser.click("#btn-resume").await.unwrap();
    assert_eventually!(Duration::from_secs(5), "resumed", async {
        let phase = ctl.phase("support").await?;
        anyhow::ensure!(phase == "progressing", "{phase}");
        Ok(())
    });
    assert!(!browser.exists("#token-dialog[open]").await.unwrap(), "the kept token was used");

    // A failing canary: the critical gate rolls it back, and the page's timeline shows it live.
    v2.update(|b| b.error_rate = 0.5);
    let (_, seen_after) = assert_eventually!(Duration::from_secs(15), "the rollback appears on the page's timeline", async {
        anyhow::ensure!(browser.exists(r#"#timeline li[data-kind="rolled_back"]"#).await?, "not yet");
        Ok(())
    });
    assert_eq!(ctl.phase("support").await.unwrap(), "rolled_back");
    assert_eventually!(Duration::from_secs(5), "the header says rolled back", async {
        let phase = browser.text("#phase").await?;
        anyhow::ensure!(phase == "rolled back", "{phase:?}");
        Ok(())
    });
    let kinds = browser.execute("return [...document.querySelectorAll('#timeline li')].map(li => li.dataset.kind);", json!([])).await.unwrap();
    let mut stored: Vec<String> = ctl.events("support").await.unwrap().iter().map(|e| e["kind"].as_str().unwrap_or("").to_string()).collect();
    stored.reverse();
    assert_eq!(kinds, json!(stored), "the page's timeline is the stored one, newest first");
    assert_eq!(kinds[0], "rolled_back");
    for kind in ["paused", "resumed"] {
        assert!(stored.iter().any(|k| k == kind), "{kind} in {stored:?}");
    }
    let not_reloaded = browser.execute("return window.__notReloaded === true;", json!([])).await.unwrap();
    assert_eq!(not_reloaded, json!(true), "everything above arrived without a reload");
    println!("rollback on the page's timeline {seen_after:?} after the canary started failing");
    assert_eventually!(Duration::from_secs(5), "the weight chart reaches the rollback", async {
        let w = browser.execute("return document.getElementById('chart-weight').dataset.lastWeight;", json!([])).await?;
        anyhow::ensure!(w == json!("0"), "last weight {w}");
        Ok(())
    });
    let path = shots.join("dashboard-rolled-back.png");
    browser.screenshot(&path).await.unwrap();
    kept.push(path);

    // A manual rollout's weight, set from its page (a PUT of its spec with the new weight; the kept
    // token again).
    ctl.put_manual("manual", "other-agent", 10.0).await.unwrap();
    browser.goto(&ctl.url("/ui/rollouts/manual")).await.unwrap();
    assert_eventually!(Duration::from_secs(5), "the manual rollout's page", async {
        let line = browser.text("#weight-line").await?;
        anyhow::ensure!(line == "manual weight 10%", "{line:?}");
        Ok(())
    });
    browser.clear("#weight-input").await.unwrap();
    browser.type_into("#weight-input", "35").await.unwrap();
    browser.click("#btn-set-weight").await.unwrap();
    assert_eventually!(Duration::from_secs(5), "the weight is set", async {
        let v = ctl.get("/v1/rollouts/manual").await?;
        anyhow::ensure!(v["status"]["weight"] == json!(35.0), "{}", v["status"]["weight"]);
        Ok(())
    });
    assert_eventually!(Duration::from_secs(5), "the page shows it", async {
        let line = browser.text("#weight-line").await?;
        anyhow::ensure!(line == "manual weight 35%", "{line:?}");
        Ok(())
    });

    drop(load);
    browser.close().await.unwrap();
    for p in &kept {
        println!("screenshot: {}", p.display());
    }
    println!("dashboard test: {:?}", started.elapsed());
}
