//! Issue 9, GitOps: `fledge rollouts apply -f` with Rollout documents, and `fledge serve --rollouts-dir`
//! following a directory laid out as the kubelet mounts a ConfigMap (`..data` symlink swapped
//! atomically to a new timestamped directory), against the real controller binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fledge_integration::{eventually, fledge_bin, Controller};
use serde_json::{json, Value};

fn doc(name: &str, spec: Value) -> String {
    format!("apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: {name}\nspec: {spec}\n")
}

fn manual(host: &str, weight: f64) -> Value {
    json!({"hosts": [host], "stable": "v1", "canary": "v2", "weight": weight})
}

fn cli(ctl: &Controller, args: &[&str]) -> (bool, String) {
    let out = Command::new(fledge_bin()).arg("rollouts").args(["--server", &ctl.url("")]).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

async fn events(ctl: &Controller, name: &str) -> Vec<String> {
    ctl.events(name).await.unwrap().iter().map(|e| e["kind"].as_str().unwrap_or("").to_string()).collect()
}

/// Passes of the watcher that saw a change: each logs one line at its end.
fn scans(ctl: &Controller) -> usize {
    ctl.log().lines().filter(|l| l.contains("rollouts directory scanned")).count()
}

/// Waits until the watcher has finished a pass after `before` (so what it did not do, it will not do).
async fn next_scan(ctl: &Controller, before: usize) {
    eventually(Duration::from_secs(2), "the watcher handled the change", || async {
        anyhow::ensure!(scans(ctl) > before, "not yet");
        Ok(())
    })
    .await
    .unwrap();
}

async fn weight(ctl: &Controller, name: &str) -> Option<f64> {
    let (status, v) = ctl.call(reqwest::Method::GET, &format!("/v1/rollouts/{name}"), None).await.unwrap();
    (status == 200).then(|| v["status"]["weight"].as_f64().unwrap())
}

#[tokio::test]
async fn apply_f_creates_replaces_and_leaves_unchanged_documents_alone() {
    let ctl = Controller::builder().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rollouts.yaml");
    let automated = json!({"hosts": ["b"], "stable": "v1", "canary": "v2", "steps": [5, 100]});
    std::fs::write(&file, format!("{}---\n{}", doc("a", manual("a", 10.0)), doc("b", automated.clone()))).unwrap();
    let (ok, out) = cli(&ctl, &["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("rollout/a created") && out.contains("rollout/b created"), "{out}");
    assert_eq!(weight(&ctl, "a").await, Some(10.0));

    // a changed, b the same (must not be re-PUT: that would restart it), c new — and JSON is YAML too.
    let c = json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "c"}, "spec": manual("c", 1.0)});
    std::fs::write(&file, format!("{}---\n{}---\n{c}\n", doc("a", manual("a", 20.0)), doc("b", automated))).unwrap();
    let (ok, out) = cli(&ctl, &["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("rollout/a replaced") && out.contains("rollout/b unchanged") && out.contains("rollout/c created"), "{out}");
    assert_eq!(weight(&ctl, "a").await, Some(20.0));
    // (the analysis loop may have started b meanwhile; what must not be there is a replacement)
    assert!(!events(&ctl, "b").await.contains(&"replaced".to_string()), "b was not touched");
    // A directory: every rollout file in it; all three are now unchanged.
    let (ok, out) = cli(&ctl, &["apply", "-f", dir.path().to_str().unwrap()]);
    assert!(ok && out.matches("unchanged").count() == 3, "{out}");

    // A bad second document: refused with the file and document named, and nothing applied — not
    // even the good first document.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, format!("{}---\n{}", doc("a", manual("a", 30.0)), doc("d", json!({"hosts": ["d"], "stable": "v1", "canary": "v2", "wieght": 5})))).unwrap();
    let (ok, out) = cli(&ctl, &["apply", "-f", bad.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("{}: document 2: spec: unknown field `wieght`", bad.display())), "{out}");
    assert_eq!(weight(&ctl, "a").await, Some(20.0));
    assert_eq!(weight(&ctl, "d").await, None);

    // The server's own checks still apply (a host owned by another rollout), with its message.
    std::fs::write(&bad, doc("e", manual("a", 5.0))).unwrap();
    let (ok, out) = cli(&ctl, &["apply", "-f", bad.to_str().unwrap()]);
    assert!(!ok && out.contains("409") && out.contains("already owned"), "{out}");
}

/// A directory as the kubelet mounts a ConfigMap: `..<timestamp>/` with the files, `..data` a symlink to
/// it, and each visible name a symlink through `..data`.
struct ConfigMapDir {
    root: PathBuf,
    n: u32,
}

impl ConfigMapDir {
    fn new(root: &Path, files: &[(&str, String)]) -> Self {
        let mut d = Self { root: root.to_path_buf(), n: 0 };
        d.update(files);
        d
    }

    /// The kubelet's atomic update: write a new timestamped directory, point `..data_tmp` at it,
    /// rename it over `..data`, then fix the visible symlinks and remove the old directory.
    fn update(&mut self, files: &[(&str, String)]) {
        self.n += 1;
        let ts = format!("..2026_12_01_00_00_{:02}.{}", self.n, 1000 + self.n);
        let new = self.root.join(&ts);
        std::fs::create_dir(&new).unwrap();
        for (name, text) in files {
            std::fs::write(new.join(name), text).unwrap();
        }
        let old = std::fs::read_link(self.root.join("..data")).ok();
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
        for entry in std::fs::read_dir(&self.root).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with("..") && !files.iter().any(|(f, _)| *f == name) {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        for (name, _) in files {
            let link = self.root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(self.root.join(old)).unwrap();
        }
    }
}

#[tokio::test]
async fn rollouts_dir_follows_a_configmap_swap_within_two_seconds() {
    let mount = tempfile::tempdir().unwrap();
    let mut cm = ConfigMapDir::new(mount.path(), &[("support.yaml", doc("support", manual("support-agent", 10.0)))]);
    let ctl = Controller::builder().arg("--rollouts-dir").arg(mount.path().to_str().unwrap()).start().await.unwrap();
    let within = Duration::from_secs(2);
    eventually(within, "the mounted rollout is applied at start", || async {
        anyhow::ensure!(weight(&ctl, "support").await == Some(10.0), "not yet");
        Ok(())
    })
    .await
    .unwrap();

    // A changed spec and a new key, in one atomic swap.
    let start = Instant::now();
    cm.update(&[("support.yaml", doc("support", manual("support-agent", 30.0))), ("other.yaml", doc("other", manual("other-agent", 1.0)))]);
    let (_, took) = eventually(within, "the swap is applied", || async {
        anyhow::ensure!(weight(&ctl, "support").await == Some(30.0) && weight(&ctl, "other").await == Some(1.0), "not yet");
        Ok(())
    })
    .await
    .unwrap();
    println!("applied {:?} after the ..data swap", start.elapsed().max(took));
    assert_eq!(events(&ctl, "support").await, ["created", "replaced"]);

    // Only other.yaml changes: support's unchanged spec is not re-PUT.
    let before = scans(&ctl);
    cm.update(&[("support.yaml", doc("support", manual("support-agent", 30.0))), ("other.yaml", doc("other", manual("other-agent", 2.0)))]);
    eventually(within, "other.yaml applied", || async {
        anyhow::ensure!(weight(&ctl, "other").await == Some(2.0), "not yet");
        Ok(())
    })
    .await
    .unwrap();
    next_scan(&ctl, before).await;
    assert_eq!(events(&ctl, "support").await, ["created", "replaced"], "an unchanged spec is not re-applied");

    // A bad file is refused with a clear log line naming it, and changes nothing — not even its
    // good first document.
    let bad = format!("{}---\n{}", doc("support", manual("support-agent", 50.0)), doc("third", json!({"hosts": ["x"], "stable": "v1", "canary": "v1"})));
    let before = scans(&ctl);
    cm.update(&[("support.yaml", bad), ("other.yaml", doc("other", manual("other-agent", 2.0)))]);
    let path = mount.path().join("support.yaml");
    eventually(within, "a log line refusing support.yaml", || async {
        let log = ctl.log();
        let line = log.lines().find(|l| l.contains("refused rollout file") && l.contains(path.to_str().unwrap()));
        anyhow::ensure!(line.is_some_and(|l| l.contains("document 2")), "no such line yet");
        Ok(())
    })
    .await
    .unwrap();
    next_scan(&ctl, before).await;
    assert_eq!(weight(&ctl, "support").await, Some(30.0));
    assert_eq!(weight(&ctl, "third").await, None);
    assert_eq!(events(&ctl, "support").await, ["created", "replaced"]);

    // A removed file leaves its rollout alone (no --prune).
    let before = scans(&ctl);
    cm.update(&[("support.yaml", doc("support", manual("support-agent", 30.0)))]);
    next_scan(&ctl, before).await;
    assert_eq!(weight(&ctl, "other").await, Some(2.0), "without --prune a removed file's rollout stays");
    assert!(!ctl.log().contains("panicked"), "{}", ctl.log());
}

#[tokio::test]
async fn rollouts_dir_with_prune_deletes_what_no_file_declares() {
    let mount = tempfile::tempdir().unwrap();
    let mut cm = ConfigMapDir::new(mount.path(), &[("a.yaml", doc("a", manual("a", 5.0))), ("b.yml", doc("b", manual("b", 5.0)))]);
    let ctl = Controller::builder().arg("--rollouts-dir").arg(mount.path().to_str().unwrap()).arg("--prune").start().await.unwrap();
    let within = Duration::from_secs(2);
    eventually(within, "both applied", || async {
        anyhow::ensure!(weight(&ctl, "a").await.is_some() && weight(&ctl, "b").await.is_some(), "not yet");
        Ok(())
    })
    .await
    .unwrap();
    // A bad file blocks pruning: its rollouts are unknown, and a typo must not delete anything.
    let before = scans(&ctl);
    cm.update(&[("a.yaml", "apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nspec: {hosts: [a], stable: v1}\n".into())]);
    eventually(within, "a.yaml refused", || async {
        anyhow::ensure!(ctl.log().contains("refused rollout file"), "not yet");
        Ok(())
    })
    .await
    .unwrap();
    next_scan(&ctl, before).await;
    assert!(weight(&ctl, "b").await.is_some(), "nothing is pruned while a file is refused");
    cm.update(&[("a.yaml", doc("a", manual("a", 5.0)))]);
    eventually(within, "b pruned", || async {
        anyhow::ensure!(weight(&ctl, "b").await.is_none(), "not yet");
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(weight(&ctl, "a").await, Some(5.0));
    assert_eq!(events(&ctl, "a").await, ["created"], "a was never re-applied");
}
