//! Rollouts as Kubernetes-style documents, for GitOps (`fledge rollouts apply -f`, `--rollouts-dir`):
//!
//! ```yaml
//! apiVersion: fledge.dev/v1alpha1
//! kind: Rollout
//! metadata: {name: support}
//! spec: {hosts: [support-agent], stable: v1, canary: v2, weight: 10}   # the REST spec, as is
//! ```
//!
//! A file holds one or more documents (`---`; JSON is YAML too). A file is parsed and validated whole
//! before anything of it is applied, and every error names the file and the document (1-based).

use std::path::{Path, PathBuf};

use fledge_core::rollout::{validate_name, RolloutSpec};
use serde::Deserialize;

use crate::model::{Phase, Rollout};

pub const API_VERSION: &str = "fledge.dev/v1alpha1";
pub const KIND: &str = "Rollout";

/// One rollout document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutDoc {
    pub name: String,
    pub spec: RolloutSpec,
    /// The spec as JSON, exactly what a `PUT /v1/rollouts/{name}` receives.
    pub spec_json: serde_json::Value,
    /// 1-based position in its file.
    pub index: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: document {index}: {reason}")]
    Document { file: String, index: usize, reason: String },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDoc {
    api_version: String,
    kind: String,
    metadata: RawMeta,
    spec: serde_json::Value,
}

/// Only the name matters; labels, annotations and whatever a GitOps tool adds are ignored.
#[derive(Deserialize)]
struct RawMeta {
    name: String,
}

/// Parses every document of `text` (named `file` in errors). Empty documents are skipped; a file with
/// no document at all is an error, as is the same rollout twice.
pub fn parse(file: &str, text: &str) -> Result<Vec<RolloutDoc>, DocError> {
    let mut docs: Vec<RolloutDoc> = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let bad = |reason: String| DocError::Document { file: file.to_string(), index, reason };
        let value = serde_yaml_ng::Value::deserialize(de).map_err(|e| bad(format!("not YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(&value).map_err(|e| bad(format!("not representable as JSON: {e}")))?;
        let raw: RawDoc = serde_json::from_value(json).map_err(|e| bad(e.to_string()))?;
        if raw.api_version != API_VERSION {
            return Err(bad(format!("apiVersion is {:?}, expected {API_VERSION:?}", raw.api_version)));
        }
        if raw.kind != KIND {
            return Err(bad(format!("kind is {:?}, expected {KIND:?}", raw.kind)));
        }
        let name = raw.metadata.name;
        validate_name(&name).map_err(|e| bad(format!("metadata.name: {e}")))?;
        let spec: RolloutSpec = serde_json::from_value(raw.spec.clone()).map_err(|e| bad(format!("spec: {e}")))?;
        spec.validate().map_err(|e| bad(format!("spec: {e}")))?;
        if let Some(first) = docs.iter().find(|d| d.name == name) {
            return Err(bad(format!("rollout {name:?} is already declared in document {}", first.index)));
        }
        docs.push(RolloutDoc { name, spec, spec_json: raw.spec, index });
    }
    if docs.is_empty() {
        return Err(DocError::File { file: file.to_string(), reason: "no Rollout document".into() });
    }
    Ok(docs)
}

/// Reads and parses one file.
pub fn read(path: &Path) -> Result<Vec<RolloutDoc>, DocError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DocError::Read { file: file.clone(), source })?;
    parse(&file, &text)
}

/// The rollout files of a directory, sorted: `*.yaml`, `*.yml`, `*.json`, following symlinks, skipping
/// names that start with `.` — in a mounted ConfigMap that skips the kubelet's `..data` and
/// `..<timestamp>` entries, while the visible names are symlinks through `..data` to the current files.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let wanted = [".yaml", ".yml", ".json"].iter().any(|ext| name.ends_with(ext));
        // metadata() follows the symlink: a dangling one (mid-swap) is skipped this round.
        if name.starts_with('.') || !wanted || !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

/// Whether applying `spec` to the stored rollout would change nothing the user declared. A PUT restarts
/// a rollout, so an unchanged document must not be re-applied. A promoted rollout has swapped stable and
/// canary (the canary became stable): the document that started it is fulfilled, not changed.
pub fn unchanged(spec: &RolloutSpec, stored: &Rollout) -> bool {
    if *spec == stored.spec {
        return true;
    }
    let mut swapped = spec.clone();
    std::mem::swap(&mut swapped.stable, &mut swapped.canary);
    stored.status.phase == Phase::Succeeded && swapped == stored.spec
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a, labels: {team: x}}\nspec: {hosts: [a], stable: v1, canary: v2, weight: 10}\n---\n---\n{\"apiVersion\": \"fledge.dev/v1alpha1\", \"kind\": \"Rollout\", \"metadata\": {\"name\": \"b\"}, \"spec\": {\"hosts\": [\"b\"], \"stable\": \"v1\", \"canary\": \"v2\", \"steps\": [5, 100]}}\n";

    #[test]
    fn several_documents_yaml_and_json() {
        let docs = parse("f.yaml", TWO).unwrap();
        assert_eq!(docs.iter().map(|d| (d.name.as_str(), d.index)).collect::<Vec<_>>(), [("a", 1), ("b", 3)]);
        assert_eq!(docs[0].spec_json["weight"], serde_json::json!(10));
    }

    #[test]
    fn errors_name_file_and_document() {
        let err = |t: &str| parse("dir/f.yaml", t).unwrap_err().to_string();
        let second = |doc: &str| format!("{}---\n{doc}", TWO.split("---").next().unwrap());
        let e = err(&second("apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata: {name: b}\nspec: {hosts: [b], stable: v1, canary: v2, wieght: 1}\n"));
        assert!(e.starts_with("dir/f.yaml: document 2: spec: unknown field `wieght`"), "{e}");
        let e = err(&second("apiVersion: fledge.dev/v1\nkind: Rollout\nmetadata: {name: b}\nspec: {}\n"));
        assert!(e.contains("document 2: apiVersion"), "{e}");
        let e = err(&second("apiVersion: fledge.dev/v1alpha1\nkind: Deployment\nmetadata: {name: b}\nspec: {}\n"));
        assert!(e.contains("kind is \"Deployment\""), "{e}");
        let e = err(&second("apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata: {name: B!}\nspec: {hosts: [b], stable: v1, canary: v2}\n"));
        assert!(e.contains("document 2: metadata.name"), "{e}");
        let e = err(&second("apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata: {name: b}\nspec: {hosts: [b], stable: v1, canary: v1}\n"));
        assert!(e.contains("document 2: spec:"), "{e}");
        let e = err(&second("apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nspec: {hosts: [b], stable: v1, canary: v2}\n"));
        assert!(e.contains("already declared in document 1"), "{e}");
        assert!(err("key: [unclosed").contains("document 1: not YAML"));
        assert!(err("").contains("no Rollout document"));
        let e = err("apiVersion: fledge.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nspec: {hosts: [a], stable: v1, canary: v2}\nstatus: {}\n");
        assert!(e.contains("unknown field `status`"), "{e}");
    }

    #[test]
    fn unchanged_accepts_a_promoted_rollout() {
        let doc = &parse("f", TWO).unwrap()[1];
        let mut stored = Rollout::new("b", doc.spec.clone(), 0).unwrap();
        assert!(unchanged(&doc.spec, &stored));
        std::mem::swap(&mut stored.spec.stable, &mut stored.spec.canary);
        assert!(!unchanged(&doc.spec, &stored), "swapped but not promoted: a different declaration");
        stored.status.phase = Phase::Succeeded;
        assert!(unchanged(&doc.spec, &stored));
        let mut other = doc.spec.clone();
        other.canary = "v3".into();
        assert!(!unchanged(&other, &stored));
    }
}
