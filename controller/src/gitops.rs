//! `fledge serve --rollouts-dir DIR`: a directory of rollout documents (see [`crate::manifest`]) is the
//! declared state, typically a ConfigMap mounted by the kubelet and synced by Argo CD or Flux.
//!
//! The directory is polled every [`POLL`] and compared by content, which is robust where inotify is not:
//! the kubelet updates a ConfigMap volume by swapping the `..data` symlink to a new timestamped
//! directory, so the visible files never change in place. When anything changed, every file is parsed;
//! a bad file is refused whole with an error naming it, and nothing of it is applied. A document whose
//! spec differs from the stored one is applied with a `PUT` through the API's own router, in process —
//! the same validation, conflict checks and commit as a client's PUT. An unchanged spec is never re-PUT
//! (a PUT restarts a rollout). A rollout whose file went away is left alone unless `--prune`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::manifest::{self, RolloutDoc};
use crate::state::AppState;

/// How often the directory is read: a change is applied within about this long.
pub const POLL: Duration = Duration::from_millis(500);

/// Starts the watcher; it runs until the task is aborted.
pub fn spawn(state: AppState, dir: PathBuf, prune: bool) -> tokio::task::JoinHandle<()> {
    let mut watcher = Watcher::new(state, dir, prune);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Several replicas follow the same mounted directory: the leader alone applies it, so two
            // replicas never race to apply (or, with --prune, to delete) the same rollout. A replica
            // that becomes the leader reads the whole directory afresh.
            if watcher.state.cluster().role() != crate::cluster::Role::Leader {
                watcher.contents = None;
                continue;
            }
            watcher.scan().await;
        }
    })
}

pub struct Watcher {
    state: AppState,
    router: Router,
    dir: PathBuf,
    prune: bool,
    /// Content of every file at the last scan: nothing changed, nothing to do.
    contents: Option<BTreeMap<PathBuf, Vec<u8>>>,
    /// Whether the directory was unreadable at the last scan (logged once per outage).
    unreadable: bool,
}

impl Watcher {
    pub fn new(state: AppState, dir: PathBuf, prune: bool) -> Self {
        let router = crate::app(state.clone());
        Self { state, router, dir, prune, contents: None, unreadable: false }
    }

    /// One pass: read the directory; if anything changed, apply what the changed files declare.
    pub async fn scan(&mut self) {
        let contents = match read_all(&self.dir) {
            Ok(c) => {
                if self.unreadable {
                    tracing::info!(dir = %self.dir.display(), "rollouts directory readable again");
                }
                self.unreadable = false;
                c
            }
            Err(e) => {
                if !self.unreadable {
                    tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the rollouts directory; keeping every rollout as it is");
                }
                self.unreadable = true;
                return;
            }
        };
        if self.contents.as_ref() == Some(&contents) {
            return;
        }
        let previous = self.contents.replace(contents.clone()).unwrap_or_default();
        let changed = |path: &Path| previous.get(path) != contents.get(path);

        // Every file is parsed, so that a name declared twice and --prune see the whole directory;
        // only changed files are logged about and applied.
        let mut declared: BTreeMap<String, (PathBuf, RolloutDoc)> = BTreeMap::new();
        let mut refused = false;
        for (path, bytes) in &contents {
            let file = path.display().to_string();
            let parsed = std::str::from_utf8(bytes)
                .map_err(|_| manifest::DocError::File { file: file.clone(), reason: "not UTF-8 text".into() })
                .and_then(|text| manifest::parse(&file, text));
            let docs = match parsed {
                Ok(docs) => docs,
                Err(e) => {
                    refused = true;
                    if changed(path) {
                        tracing::error!(file = %file, "refused rollout file {file}: {e}; nothing from it was applied");
                    }
                    continue;
                }
            };
            if let Some((other, d)) = docs.iter().find_map(|d| declared.get(&d.name).map(|(p, _)| (p.clone(), d))) {
                refused = true;
                if changed(path) {
                    tracing::error!(file = %file, "refused rollout file {file}: rollout {:?} is already declared in {}; nothing from it was applied", d.name, other.display());
                }
                continue;
            }
            for d in docs {
                declared.insert(d.name.clone(), (path.clone(), d));
            }
        }

        let mut applied = 0;
        for (name, (path, doc)) in &declared {
            if changed(path) && self.apply(path, name, doc).await {
                applied += 1;
            }
        }
        let mut pruned = 0;

        // Prune only from a directory read completely: a refused file's rollouts are unknown, and must
        // not be deleted because of a typo.
        if self.prune && !refused {
            let stored: Vec<String> = self.state.view().rollouts().map(|r| r.name.clone()).collect();
            let wanted: BTreeSet<&String> = declared.keys().collect();
            for name in stored.iter().filter(|n| !wanted.contains(n)) {
                match self.call(Method::DELETE, name, None).await {
                    Ok(_) => {
                        pruned += 1;
                        tracing::info!(rollout = %name, dir = %self.dir.display(), "pruned rollout {name}: no file declares it");
                    }
                    Err(e) => tracing::error!(rollout = %name, "cannot prune rollout {name}: {e}"),
                }
            }
        }
        // One line per change seen, at the end of its pass: operators (and tests) know it was handled.
        tracing::info!(dir = %self.dir.display(), files = contents.len(), rollouts = declared.len(), applied, pruned, refused, "rollouts directory scanned");
    }

    /// Applies one document unless the stored rollout already matches it; true when it was PUT.
    async fn apply(&self, path: &Path, name: &str, doc: &RolloutDoc) -> bool {
        let file = path.display();
        if self.state.view().rollout(name).is_some_and(|r| manifest::unchanged(&doc.spec, r)) {
            tracing::debug!(rollout = %name, file = %file, "rollout unchanged");
            return false;
        }
        match self.call(Method::PUT, name, Some(&doc.spec_json)).await {
            Ok(code) => {
                let what = if code == 201 { "created" } else { "replaced" };
                tracing::info!(rollout = %name, file = %file, "applied rollout {name} from {file} (document {}): {what}", doc.index);
                true
            }
            Err(e) => {
                tracing::error!(rollout = %name, file = %file, "refused rollout {name} from {file} (document {}): {e}", doc.index);
                false
            }
        }
    }

    /// One request through the API router, authorized like a client with the configured token.
    async fn call(&self, method: Method, name: &str, body: Option<&serde_json::Value>) -> Result<u16, String> {
        let mut req = Request::builder().method(method).uri(format!("/v1/rollouts/{name}"));
        if let Some(token) = &self.state.settings().token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => Body::from(serde_json::to_vec(v).map_err(|e| e.to_string())?),
            None => Body::empty(),
        };
        let req = req.header(header::CONTENT_TYPE, "application/json").body(body).map_err(|e| e.to_string())?;
        let resp = self.router.clone().oneshot(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(format!("{status}: {message}"))
    }
}

fn read_all(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for path in manifest::files_in(dir)? {
        // A file may vanish between the listing and the read (a symlink swap): skip it this round,
        // the next scan sees the new state.
        if let Ok(bytes) = std::fs::read(&path) {
            out.insert(path, bytes);
        }
    }
    Ok(out)
}
