//! `cairn checkpoint add`: record a checkpoint in a lock while training keeps running.
//!
//! Several processes (one per GPU rank) may add checkpoints to the same lock at once. Each add
//! hashes the checkpoint first (outside any lock), then takes an exclusive OS file lock for that
//! lockfile, reads it, adds or replaces the entry, and writes it back atomically (temporary file,
//! fsync, rename). So nothing is lost, and a crash at any moment leaves the old or the new lock,
//! both valid.
//!
//! During `cairn lock -- COMMAND`, the command's environment has `CAIRN_RUN_LOCK` pointing at the
//! run's in-progress lock (`.cairn/cache/running/<run id>.lock`); `cairn checkpoint add` writes
//! there, and `cairn lock` takes those checkpoints into the final lock when the command ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::content::digest::{self, HashOptions, Kind};
use crate::error::{Error, IoResultExt, Result};
use crate::model::lockfile::{self, Artifact, Lock, Metric, Parent};
use crate::model::paths::RelPath;
use crate::project::Project;

/// The environment variable naming the in-progress lock of the running `cairn lock`.
pub const RUN_LOCK_ENV: &str = "CAIRN_RUN_LOCK";

/// What the parent of a new checkpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentChoice {
    /// The previous checkpoint of the same run: the one with the highest step below this one's
    /// (or, without steps, the most recently added).
    Previous,
    /// No parent.
    None,
    /// This one.
    Given(Parent),
}

/// How to add a checkpoint.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// The training step.
    pub step: Option<u64>,
    /// Its parent.
    pub parent: ParentChoice,
    /// Metrics at this checkpoint.
    pub metrics: BTreeMap<String, f64>,
    /// Read every file, even when the stat cache knows it.
    pub no_cache: bool,
}

/// Hold an exclusive OS lock for writing `lock_path` while `f` runs. The lock is a file under
/// `.cairn/cache/flock/`, so the lockfile itself is only ever replaced by rename.
pub fn with_lockfile_lock<T>(
    project: &Project,
    lock_path: &Path,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let dir = project.cairn_dir().join("cache").join("flock");
    let id = blake3::hash(lock_path.as_os_str().as_encoded_bytes()).to_hex();
    let path = dir.join(format!("{}.flock", &id[..32]));
    let file = crate::fs::open_for_lock(&path)?;
    file.lock().ctx("cannot lock", &path)?;
    let out = f();
    drop(file);
    out
}

/// The lock a checkpoint goes to: `--lock`, else the running `cairn lock`'s in-progress lock,
/// else the project's `cairn.lock`.
pub fn target_lock(project: &Project, given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os(RUN_LOCK_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    project.lock_path(None)
}

/// Is `lock_path` the in-progress lock of the `cairn lock -- COMMAND` this process runs under?
pub fn in_run(lock_path: &Path) -> bool {
    std::env::var_os(RUN_LOCK_ENV)
        .filter(|v| !v.is_empty())
        .is_some_and(|v| Path::new(&v) == lock_path)
}

/// Outside a run (no `cairn lock -- COMMAND` running this process), adding a checkpoint rewrites
/// a finished lock, usually a committed one: refused unless the user asks for it (`amend`).
pub fn refuse_outside_run(lock_path: &Path, amend: bool) -> Result<()> {
    if amend || in_run(lock_path) {
        return Ok(());
    }
    Err(Error::Refused {
        message: format!(
            "no run is in progress here (this is not a command run by `cairn lock -- COMMAND`), so adding a checkpoint would rewrite the finished lock {}",
            lock_path.display()
        ),
        hint: "run the training under `cairn lock -- COMMAND` and its checkpoint adds go to that run; to add to this lock anyway, pass --amend (the parent is then the lock's latest checkpoint unless --parent or --no-parent says otherwise); nothing was written".into(),
    })
}

fn previous(lock: &Lock, step: Option<u64>, path: &RelPath) -> Option<Parent> {
    let key = |a: &Artifact| (a.step, a.created_at.clone(), a.path.clone());
    lock.checkpoints
        .iter()
        .filter(|a| &a.path != path)
        .filter(|a| match (step, a.step) {
            (Some(s), Some(t)) => t < s,
            _ => true,
        })
        .max_by_key(|a| key(a))
        .map(|a| Parent::Path(a.path.clone()))
}

/// Add (or replace) the checkpoint at `abs` in the lock at `lock_path`. Returns the entry.
pub fn add(project: &Project, lock_path: &Path, abs: &Path, opts: &AddOptions) -> Result<Artifact> {
    let rel = RelPath::from_fs(&project.root, abs).map_err(|_| Error::BadPath {
        path: abs.display().to_string(),
        message: format!(
            "a checkpoint must be inside the project {}",
            project.root.display()
        ),
    })?;
    if !abs.exists() {
        return Err(Error::Missing {
            what: "checkpoint",
            path: abs.to_path_buf(),
        });
    }
    for (k, v) in &opts.metrics {
        if !lockfile::valid_name(k) || !v.is_finite() {
            return Err(Error::Usage(format!(
                "metric {k}={v}: names are letters, digits, `.`, `_` or `-`, values finite numbers"
            )));
        }
    }
    // Hash first, outside the lock: other ranks are not held up by a large checkpoint.
    let cache_dir = project.stat_cache_dir();
    let h = digest::hash_path_with(
        abs,
        &HashOptions {
            cache_dir: Some(&cache_dir),
            use_cache: !opts.no_cache,
            progress: None,
            confine: None,
        },
    )?;
    if let Some(m) = &h.manifest {
        let path = project.manifest_path(&h.digest);
        if !path.is_file() {
            crate::fs::atomic_write_with(&path, false, |w| m.write_text(w))?;
        }
    }
    with_lockfile_lock(project, lock_path, || {
        let mut lock = Lock::load(lock_path)?;
        let parent = match &opts.parent {
            ParentChoice::Previous => previous(&lock, opts.step, &rel),
            ParentChoice::None => None,
            ParentChoice::Given(p) => Some(p.clone()),
        };
        let entry = Artifact {
            path: rel.clone(),
            kind: h.kind,
            digest: h.digest,
            files: (h.kind == Kind::Dir).then_some(h.files),
            bytes: h.bytes,
            step: opts.step,
            parent,
            created_at: Some(lockfile::rfc3339(SystemTime::now())),
            metrics: opts
                .metrics
                .iter()
                .map(|(k, v)| (k.clone(), Metric(*v)))
                .collect(),
        };
        lock.checkpoints.retain(|a| a.path != rel);
        lock.checkpoints.push(entry.clone());
        crate::fs::write_if_changed(lock_path, lock.to_toml().as_bytes())?;
        Ok(entry)
    })
}
