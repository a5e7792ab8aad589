//! Inputs: the models a run starts from.
//!
//! * a path in the project (`models/base.safetensors`), hashed;
//! * a checkpoint of another lock (`pretrain.cairn.lock#runs/ckpt-2`): that lock's run id and the
//!   checkpoint's recorded digest; when the checkpoint file is here, it must still match;
//! * a Hugging Face Hub snapshot (`hf://ORG/NAME@REVISION`, `hf://datasets/ORG/NAME@REVISION`),
//!   resolved in the standard cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//!   `~/.cache/huggingface/hub`): `models--ORG--NAME/snapshots/COMMIT/`, hashed locally (links to
//!   blobs followed). A revision that is not a 40-hex commit (a branch or tag) is resolved through
//!   `refs/REVISION` and recorded as mutable. Nothing is downloaded.

use std::path::{Path, PathBuf};

use crate::content::digest::{self, HashOptions, Kind};
use crate::error::{Error, Result};
use crate::model::lockfile::{Input, InputSource, Lock};
use crate::model::paths::RelPath;
use crate::project::Project;

/// The Hugging Face hub cache directory.
pub fn hf_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
}

fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Resolve `hf://REPO@REVISION` to (repo, revision, commit, snapshot directory).
pub fn resolve_hf(spec: &str) -> Result<(String, String, String, PathBuf)> {
    let bad = |message: String| Error::Usage(format!("{spec}: {message}"));
    let rest = spec
        .strip_prefix("hf://")
        .ok_or_else(|| bad("not an hf:// reference".into()))?;
    let (repo, revision) = rest
        .rsplit_once('@')
        .ok_or_else(|| bad("give a revision: hf://ORG/NAME@COMMIT".into()))?;
    let (kind, name) = match repo.strip_prefix("datasets/") {
        Some(n) => ("datasets", n),
        None => ("models", repo.strip_prefix("models/").unwrap_or(repo)),
    };
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty() || p.contains("..")) {
        return Err(bad("expected ORG/NAME".into()));
    }
    // A branch may hold `/` (`refs/pr/1`), but the revision names a file below `refs/`: it
    // must not climb out of it.
    if revision
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == ".." || crate::text::has_control(c))
    {
        return Err(bad(
            "the revision must be a commit, branch or tag name".into()
        ));
    }
    let cache = hf_cache_dir()
        .ok_or_else(|| bad("no Hugging Face cache directory (set HF_HOME)".into()))?;
    let dir = cache.join(format!("{kind}--{}--{}", parts[0], parts[1]));
    let commit = if is_commit(revision) {
        revision.to_string()
    } else {
        let refs = dir.join("refs").join(revision);
        crate::fs::read_bounded(&refs, 4096)
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .ok()
            .filter(|c| is_commit(c))
            .ok_or_else(|| {
                bad(format!(
                    "revision {revision:?} is not in the cache ({} missing); download it first",
                    refs.display()
                ))
            })?
    };
    let snapshot = dir.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(bad(format!(
            "snapshot {} is not in the cache; download it first (e.g. `hf download {}/{} --revision {commit}`)",
            snapshot.display(),
            parts[0],
            parts[1]
        )));
    }
    let repo = if kind == "datasets" {
        format!("datasets/{name}")
    } else {
        name.to_string()
    };
    Ok((repo, revision.to_string(), commit, snapshot))
}

/// Resolve one input given on the command line (relative to `base`) or in cairn.toml.
pub fn resolve(
    project: &Project,
    base: &Path,
    spec: &str,
    hopts: &HashOptions<'_>,
) -> Result<Input> {
    if spec.starts_with("hf://") {
        let (repo, revision, commit, snapshot) = resolve_hf(spec)?;
        let h = digest::hash_path_with(&snapshot, hopts)?;
        return Ok(Input {
            mutable: revision != commit,
            source: InputSource::Hf {
                repo,
                revision,
                commit,
            },
            digest: h.digest,
            files: (h.kind == Kind::Dir).then_some(h.files),
            bytes: h.bytes,
        });
    }
    if let Some((lock_part, ckpt_part)) = spec.split_once('#') {
        let (lock_abs, lock_rel) = project.resolve(base, lock_part);
        let lock_rel = lock_rel.ok_or_else(|| Error::BadPath {
            path: lock_part.to_string(),
            message: "an input lock must be inside the project".into(),
        })?;
        let other = Lock::load(&lock_abs)?;
        let ckpt = RelPath::parse(ckpt_part)?;
        let found = other
            .checkpoints
            .iter()
            .find(|a| a.path == ckpt)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{lock_part} records no checkpoint {ckpt}; its checkpoints are: {}",
                    other
                        .checkpoints
                        .iter()
                        .map(|a| a.path.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let file = ckpt.under(&project.root);
        if file.exists() {
            let h = digest::hash_path_with(&file, hopts)?;
            if h.digest != found.digest {
                return Err(Error::Usage(format!(
                    "{file} does not match what {lock_part} recorded for it ({} there, {} here)",
                    found.digest,
                    h.digest,
                    file = file.display()
                )));
            }
        }
        return Ok(Input {
            source: InputSource::Lock {
                lock: lock_rel,
                checkpoint: ckpt,
                run: other.run.id.clone(),
            },
            mutable: false,
            digest: found.digest,
            files: found.files,
            bytes: found.bytes,
        });
    }
    let (abs, rel) = project.resolve(base, spec);
    let rel = rel.ok_or_else(|| Error::BadPath {
        path: spec.to_string(),
        message: "an input model must be inside the project, a LOCK#CHECKPOINT, or hf://ORG/NAME@REVISION".into(),
    })?;
    let h = digest::hash_path_with(&abs, hopts)?;
    Ok(Input {
        source: InputSource::Local(rel),
        mutable: false,
        digest: h.digest,
        files: (h.kind == Kind::Dir).then_some(h.files),
        bytes: h.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_never_climbs_out_of_refs() {
        for spec in [
            "hf://org/name@../../../../etc/passwd",
            "hf://org/name@refs/../../x",
            "hf://org/name@/etc/passwd",
            "hf://org/name@main/",
            "hf://org/name@ma\x1bin",
        ] {
            let err = resolve_hf(spec).unwrap_err().to_string();
            assert!(err.contains("the revision must be"), "{spec}: {err}");
        }
    }
}
