//! `cairn checkpoint add`: record a checkpoint in a lock while training keeps running.
//!
//! Several processes (one per GPU rank) may add checkpoints to the same lock at once. Each add
//! hashes the checkpoint first (outside any lock), then takes an exclusive OS file lock for that
//! lockfile, reads it, adds or replaces the entry, and writes it back atomically (temporary file,
//! fsync, rename). So nothing is lost, and a crash at any moment leaves the old or the new lock,
//! both valid.
//!
//! During `cairn lock -- COMMAND`, the command's environment has `CAIRN_RUN_LOCK` pointing at the
//! run's in-progress lock (`.cairn/cache/running/<run id>.lock`). There `cairn checkpoint add`
//! takes no lock and rewrites nothing: it appends one record to a journal of its own writer
//! beside that lock ([`journal`]), which works for ranks on many hosts sharing a filesystem
//! without locks across hosts. `cairn lock` merges the journals into the final lock when the
//! command ends; [`in_progress`] merges them for any reader before that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::content::digest::{self, Digest, HashOptions, Kind};
use crate::error::{Error, IoResultExt, Result};
use crate::model::lockfile::{self, Artifact, Lock, Metric, Parent};
use crate::model::paths::RelPath;
use crate::project::Project;

/// The environment variable naming the in-progress lock of the running `cairn lock`.
pub const RUN_LOCK_ENV: &str = "CAIRN_RUN_LOCK";

pub mod journal;

/// The checkpoints of an in-progress lock as a reader sees them mid-run: the lock's own merged
/// with every writer's journal ([`journal::merge`]), and notes naming the journal lines skipped
/// (an incomplete last record of a writer killed while writing it, or still writing it).
pub fn in_progress(lock_path: &Path) -> Result<(Vec<Artifact>, Vec<String>)> {
    let lock = Lock::load(lock_path)?;
    journal::visit(lock_path, |records, notes| {
        (journal::merge(&lock.checkpoints, records), notes.to_vec())
    })
}

/// The in-progress locks of the `cairn lock -- COMMAND` runs going on in this project
/// (`.cairn/cache/running/*.lock`), sorted; none when there is no such directory. Entries that
/// are not regular files, and a directory reached through a link, are left out
/// (spec/security.md: `.cairn/` may come from a stranger).
pub fn running_locks(project: &Project) -> Vec<PathBuf> {
    let dir = project.cairn_dir().join("cache").join("running");
    // Reached without following a link below the project: a committed `.cairn/cache/running`
    // that leads elsewhere lists nothing.
    if !matches!(crate::fs::real_dir(&dir), Ok(true)) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "lock"))
        .collect();
    out.sort();
    out
}

/// A lock's run and its checkpoints as a reader sees them now: for an in-progress lock, merged
/// with every writer's journal ([`in_progress`]); for a finished one, as recorded.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The lock read.
    pub lock: Lock,
    /// Whether it is the in-progress lock of a running `cairn lock -- COMMAND`.
    pub running: bool,
    /// The checkpoints, in the order a reader sees them.
    pub checkpoints: Vec<Artifact>,
    /// Journal lines skipped (an incomplete last record).
    pub notes: Vec<String>,
}

/// Read the lock at `lock_path` for `cairn checkpoint list`.
pub fn list(project: &Project, lock_path: &Path) -> Result<Listed> {
    let running = lock_path.starts_with(project.cairn_dir().join("cache").join("running"))
        || in_run(lock_path);
    let lock = Lock::load(lock_path)?;
    let (checkpoints, notes) = if running {
        in_progress(lock_path)?
    } else {
        (lock.checkpoints.clone(), Vec::new())
    };
    Ok(Listed {
        lock,
        running,
        checkpoints,
        notes,
    })
}

/// The checkpoints of the lock at `lock_path` now (with its journals when a run writes them),
/// or `None` when it does not exist yet.
fn current_checkpoints(lock_path: &Path) -> Result<Option<Vec<Artifact>>> {
    match in_progress(lock_path) {
        Ok((c, _)) => Ok(Some(c)),
        Err(Error::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

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
    /// The checkpoint at this path (absolute, inside the project): a checkpoint of the target
    /// lock by path, else resolved by its digest to whichever lock recorded it
    /// ([`resolve_parent`]).
    File(PathBuf),
}

impl ParentChoice {
    /// `--parent VALUE`: a digest (`blake3:...`) as given, anything else a path relative to
    /// `cwd`.
    pub fn from_arg(cwd: &Path, value: &str) -> Result<ParentChoice> {
        if value.starts_with(crate::content::digest::PREFIX) {
            return Parent::parse(value).map(ParentChoice::Given);
        }
        Ok(ParentChoice::File(crate::model::paths::absolutize(
            cwd,
            Path::new(value),
        )))
    }
}

/// A parent resolved to what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedParent {
    /// A checkpoint of the target lock by path, or a digest.
    pub parent: Parent,
    /// The `run.id` of the lock that records a digest parent, when one does.
    pub run: Option<String>,
    /// That lock's path relative to the project root, for messages.
    pub lock: Option<String>,
}

/// Resolve a parent given as a file: a checkpoint of the lock at `lock_path` with that path
/// (present or already deleted by the run) is recorded by path; otherwise the file must exist
/// and is hashed, and its digest is looked up first among the target lock's checkpoints, then
/// in every lock of the repository (as `cairn lineage` finds them). A digest no lock records is
/// still recorded: lineage shows it as an untracked file.
pub fn resolve_parent(
    project: &Project,
    lock_path: &Path,
    abs: &Path,
    hopts: &HashOptions<'_>,
) -> Result<ResolvedParent> {
    let rel = RelPath::from_fs(&project.root, abs).map_err(|e| match e {
        Error::BadPath { path, .. } => Error::BadPath {
            path,
            message: format!(
                "--parent: a parent file must be inside the project {} (this one escapes the project); give one outside it by its digest (blake3:...)",
                project.root.display()
            ),
        },
        other => other,
    })?;
    // The target lock as it is now (it is replaced atomically, so one read is one state); a
    // lock that does not exist yet has no checkpoints.
    let current = current_checkpoints(lock_path)?;
    let ours = |f: &dyn Fn(&Artifact) -> bool| {
        current
            .as_ref()
            .and_then(|c| c.iter().find(|a| f(a)))
            .map(|a| a.path.clone())
    };
    if let Some(p) = ours(&|a| a.path == rel) {
        return Ok(ResolvedParent {
            parent: Parent::Path(p),
            run: None,
            lock: None,
        });
    }
    if std::fs::symlink_metadata(abs).is_err() {
        return Err(Error::Refused {
            message: format!(
                "the parent {rel} does not exist, and no checkpoint of {} has that path",
                lock_path.display()
            ),
            hint: "give the path of the checkpoint it was trained from as it is on disk, or its digest (--parent blake3:...); `cairn lineage FILE` shows which lock records a file".into(),
        });
    }
    let digest = digest::hash_path_with(abs, hopts)?.digest;
    if let Some(p) = ours(&|a| a.digest == digest) {
        return Ok(ResolvedParent {
            parent: Parent::Path(p),
            run: None,
            lock: None,
        });
    }
    Ok(find_digest(project, digest))
}

/// A digest parent, with the lock that records a checkpoint of that digest when there is one
/// (the first in path order).
fn find_digest(project: &Project, digest: Digest) -> ResolvedParent {
    let found = crate::ops::lineage::discover(project, &[])
        .ok()
        .into_iter()
        .flatten()
        .find_map(|f| {
            let l = f.lock.ok()?;
            l.checkpoints
                .iter()
                .any(|c| c.digest == digest)
                .then(|| (l.run.id.clone(), f.shown))
        });
    ResolvedParent {
        parent: Parent::Digest(digest),
        run: found.as_ref().map(|(run, _)| run.clone()),
        lock: found.map(|(_, shown)| shown),
    }
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
    // A parent given as a file or a digest is resolved before the lock is taken: it may mean
    // hashing a file and reading every lock of the repository.
    let resolved = match &opts.parent {
        ParentChoice::File(p) => {
            let hopts = HashOptions {
                cache_dir: Some(&cache_dir),
                use_cache: !opts.no_cache,
                progress: None,
                confine: None,
            };
            Some(resolve_parent(project, lock_path, p, &hopts)?)
        }
        ParentChoice::Given(Parent::Digest(d)) => Some(find_digest(project, *d)),
        _ => None,
    };
    let entry = |parent: Option<Parent>, parent_run: Option<String>| Artifact {
        path: rel.clone(),
        kind: h.kind,
        digest: h.digest,
        files: (h.kind == Kind::Dir).then_some(h.files),
        bytes: h.bytes,
        step: opts.step,
        parent,
        created_at: Some(lockfile::rfc3339(SystemTime::now())),
        parent_run,
        deleted_by_run: false,
        metrics: opts
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), Metric(*v)))
            .collect(),
    };
    let choose = |previous: &dyn Fn() -> Option<Parent>| match (&opts.parent, &resolved) {
        (_, Some(r)) => (Some(r.parent.clone()), r.run.clone()),
        (ParentChoice::Previous, _) => (previous(), None),
        (ParentChoice::Given(p), _) => (Some(p.clone()), None),
        _ => (None, None),
    };
    if in_run(lock_path) {
        // Inside a run: one record appended to this writer's journal, no lock taken.
        let lock = Lock::load(lock_path)?;
        return journal::with_writer(|appender| {
            // The journals are read only when the parent is inferred from them.
            let (parent, parent_run) = match (&opts.parent, &resolved) {
                (ParentChoice::Previous, None) => journal::visit(lock_path, |records, _| {
                    choose(&|| journal::previous(&lock.checkpoints, records, opts.step, &rel))
                })?,
                _ => choose(&|| None),
            };
            let entry = entry(parent, parent_run);
            appender.append(lock_path, &entry)?;
            Ok(entry)
        });
    }
    with_lockfile_lock(project, lock_path, || {
        let mut lock = Lock::load(lock_path)?;
        let (parent, parent_run) = choose(&|| previous(&lock, opts.step, &rel));
        let entry = entry(parent, parent_run);
        lock.checkpoints.retain(|a| a.path != rel);
        lock.checkpoints.push(entry.clone());
        crate::fs::write_if_changed(lock_path, lock.to_toml().as_bytes())?;
        Ok(entry)
    })
}
