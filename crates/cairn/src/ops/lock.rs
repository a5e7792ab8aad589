//! `cairn lock`: probe the project, optionally run the training command, and write the lock.
//!
//! Order of work: refuse early if the existing lock cannot be safely replaced; hash datasets and
//! capture the code *before* the command runs (the inputs as the run saw them); run the command
//! with inherited stdio; hash the checkpoints and outputs it produced; write the change sidecar,
//! the manifests and finally the lock, atomically. A command that fails does not touch the lock:
//! its record goes to `.cairn/failed/<run id>.lock`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::content::digest::{self, Digest, HashOptions, Kind, Progress, Skipped};
use crate::error::{Error, Result};
use crate::model::lockfile::{self, Artifact, Code, Data, Input, Location, Lock, Run, Submodule};
use crate::model::paths::RelPath;
use crate::ops::checkpoint;
use crate::probe::env;
use crate::probe::git::{self, Excluder};
use crate::probe::inputs;
use crate::process;
use crate::project::Project;

/// A dataset named on the command line: `PATH` or `NAME=PATH`, relative to the current directory.
#[derive(Debug, Clone)]
pub struct DataArg {
    /// The name, when given.
    pub name: Option<String>,
    /// The path as given.
    pub path: String,
}

impl DataArg {
    /// Parse `NAME=PATH` or `PATH`. A `NAME=` prefix counts only when NAME is a valid name.
    pub fn parse(s: &str) -> DataArg {
        if let Some((name, path)) = s.split_once('=') {
            if lockfile::valid_name(name) && !path.is_empty() {
                return DataArg {
                    name: Some(name.to_string()),
                    path: path.to_string(),
                };
            }
        }
        DataArg {
            name: None,
            path: s.to_string(),
        }
    }
}

/// What to lock.
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    /// Datasets from the command line (added to those in cairn.toml; same name replaces).
    pub data: Vec<DataArg>,
    /// Checkpoint paths or globs from the command line (relative to the current directory).
    pub checkpoints: Vec<String>,
    /// Output paths or globs from the command line.
    pub outputs: Vec<String>,
    /// The command to run; empty to record the current state only.
    pub command: Vec<String>,
    /// Lock without code capture (outside git, or on purpose).
    pub no_git: bool,
    /// Replace an existing lock even when it cannot be read.
    pub force: bool,
    /// Read every file even when the stat cache says it is unchanged.
    pub no_cache: bool,
    /// The Python interpreter to record (`--python`).
    pub python: Option<PathBuf>,
    /// Do not record a Python environment.
    pub no_python: bool,
    /// The run's seed (`--seed`); also given to the command as `CAIRN_SEED`.
    pub seed: Option<i64>,
    /// Models the run starts from (`--input`): a path, `LOCK#CHECKPOINT` or
    /// `hf://ORG/NAME@REVISION`.
    pub inputs: Vec<String>,
    /// Without a command, replace a lock that records a run (its command, exit code, times and
    /// change would be dropped); refused otherwise ([`refuse_replacing_a_run`]).
    pub replace_run: bool,
    /// Part files of datasets hashed in shards (`--from-shards`): a dataset whose directory
    /// they are of takes its digest and manifest from them, merged, instead of being read here.
    pub shards: Vec<PathBuf>,
}

/// Things worth telling the user that did not stop the lock.
#[derive(Debug, Clone)]
pub enum Warning {
    /// A glob matched nothing.
    NoMatch {
        /// The pattern.
        pattern: String,
    },
    /// Entries below a dataset were skipped.
    Skipped {
        /// The dataset or artifact.
        what: String,
        /// What was skipped.
        skipped: Skipped,
    },
    /// The uncommitted change is large.
    LargeChange {
        /// Its size in bytes.
        bytes: usize,
        /// The paths it touches (the first few).
        paths: Vec<String>,
    },
    /// Something about the Python environment (no interpreter, broken metadata, shadowing).
    Python(String),
    /// A checkpoint added during the run changed before the run ended; the lock records its
    /// final content.
    CheckpointChanged(RelPath),
    /// The code has uncommitted changes (recorded in the sidecar).
    Dirty {
        /// The sidecar.
        sidecar: PathBuf,
        /// Paths touched.
        paths: Vec<String>,
    },
    /// Where the external datasets are could not be remembered for this user on this machine
    /// ([`crate::places`]); verify here will need `--data NAME=PATH`.
    NotRemembered(String),
    /// Before the command: the directory a declared checkpoint or output is to be written to
    /// does not exist (yet). Said before a long run starts, so a typo costs no run.
    NoDirectoryYet {
        /// `checkpoint` or `output`.
        what: &'static str,
        /// The path or glob as declared.
        pattern: String,
        /// The directory that does not exist.
        dir: PathBuf,
    },
    /// A checkpoint journal line of the run was skipped (an incomplete or damaged record).
    Journal(String),
}

/// How a lock ended.
#[derive(Debug)]
pub enum Outcome {
    /// The lock was written.
    Written {
        /// The lockfile.
        path: PathBuf,
        /// The lock.
        lock: Box<Lock>,
    },
    /// Nothing changed since the existing lock; the file was not rewritten.
    Unchanged {
        /// The lockfile.
        path: PathBuf,
    },
    /// The command failed; the lock was left alone and the record written elsewhere.
    CommandFailed {
        /// The command's exit code (negative: the signal that killed it).
        exit_code: i64,
        /// Where the record went.
        record: PathBuf,
        /// The lockfile that was left untouched.
        lock_path: PathBuf,
        /// Why the run counts as failed.
        reason: String,
        /// Did the user interrupt the run (Ctrl-C)?
        interrupted: bool,
    },
}

/// Above this size an uncommitted change earns a warning.
pub const LARGE_CHANGE: usize = 10 * 1024 * 1024;

struct Resolved {
    name: String,
    abs: PathBuf,
    location: Location,
}

fn resolve_data(project: &Project, opts: &LockOptions) -> Result<Vec<Resolved>> {
    let resolve = |name: Option<&str>, base: &Path, given: &str| -> Result<Resolved> {
        let (abs, rel) = project.resolve(base, given);
        let name = match name {
            Some(n) => n.to_string(),
            None => abs
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| lockfile::valid_name(n))
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "cannot derive a dataset name from {given:?}; name it: --data NAME={given}"
                    ))
                })?
                .to_string(),
        };
        // A path in the project that leads out of the repository through a symlink (a dataset
        // on another disk) is recorded as external: verify reads such a place only where the
        // user's own cairn.toml or --data says.
        let leaves = abs
            .canonicalize()
            .map(|real| !real.starts_with(project.boundary()))
            .unwrap_or(false);
        let location = match rel {
            Some(rel) if !leaves => Location::Path(rel),
            _ => Location::External,
        };
        Ok(Resolved {
            name,
            abs,
            location,
        })
    };
    let mut by_name: BTreeMap<String, Resolved> = BTreeMap::new();
    for (name, path) in &project.config.data {
        let r = resolve(Some(name), &project.root, path)?;
        by_name.insert(r.name.clone(), r);
    }
    // A command-line dataset replaces cairn.toml's entry of the same name; two command-line
    // datasets with one name are a mistake.
    let mut cli_names = std::collections::BTreeSet::new();
    for d in &opts.data {
        let r = resolve(d.name.as_deref(), &project.cwd, &d.path)?;
        if !cli_names.insert(r.name.clone()) {
            return Err(Error::Usage(format!(
                "dataset name {:?} is given twice; name them apart with --data NAME=PATH",
                r.name
            )));
        }
        by_name.insert(r.name.clone(), r);
    }
    Ok(by_name.into_values().collect())
}

/// Merge the `--from-shards` parts and match each merged directory to the dataset it is of
/// (by canonical path); parts of a directory no dataset names are a mistake.
fn from_shards(
    datasets: &[Resolved],
    parts: &[PathBuf],
) -> Result<BTreeMap<String, crate::content::shard::Merged>> {
    let mut out = BTreeMap::new();
    if parts.is_empty() {
        return Ok(out);
    }
    for m in crate::content::shard::merge_files(parts)? {
        let Some(d) = datasets
            .iter()
            .find(|d| std::fs::canonicalize(&d.abs).is_ok_and(|p| p == m.root))
        else {
            return Err(Error::Refused {
                message: format!(
                    "--from-shards: the parts are of {}, which is no dataset of this lock",
                    m.root.display()
                ),
                hint: format!("name it: --data NAME={}", m.root.display()),
            });
        };
        out.insert(d.name.clone(), m);
    }
    Ok(out)
}

/// Patterns that matched nothing.
type Unmatched = Vec<String>;

/// Expand paths and globs (relative to `base`) into existing project paths. Returns the
/// matches and the patterns that matched nothing.
fn expand(
    project: &Project,
    base: &Path,
    specs: &[String],
    what: &'static str,
    require_existing: bool,
) -> Result<(Vec<(RelPath, PathBuf)>, Unmatched)> {
    let mut out = BTreeMap::new();
    let mut unmatched = Vec::new();
    for spec in specs {
        let is_glob = spec.contains(['*', '?', '[']);
        let (abs, rel) = project.resolve(base, spec);
        if !is_glob {
            let rel = rel.ok_or_else(|| Error::BadPath {
                path: spec.clone(),
                message: format!(
                    "{what} must be inside the project {}",
                    project.root.display()
                ),
            })?;
            if !abs.exists() {
                if require_existing {
                    return Err(Error::Missing { what, path: abs });
                }
                unmatched.push(spec.clone());
                continue;
            }
            out.insert(rel, abs);
            continue;
        }
        let pattern = abs.to_string_lossy().into_owned();
        let paths = glob::glob(&pattern)
            .map_err(|e| Error::Usage(format!("bad {what} pattern {spec:?}: {e}")))?;
        let mut any = false;
        for p in paths {
            let p = p.map_err(|e| Error::Io {
                op: "cannot read",
                path: e.path().to_path_buf(),
                source: e.into(),
            })?;
            let rel = RelPath::from_fs(&project.root, &p).map_err(|_| Error::BadPath {
                path: spec.clone(),
                message: format!("{what} pattern reaches outside the project"),
            })?;
            if project_owned(rel.as_str()) {
                continue;
            }
            any = true;
            out.insert(rel, p);
        }
        if !any {
            unmatched.push(spec.clone());
        }
    }
    Ok((out.into_iter().collect(), unmatched))
}

fn project_owned(rel: &str) -> bool {
    Excluder::default().excludes(rel.as_bytes())
}

fn hash_artifact(
    project: &Project,
    rel: RelPath,
    abs: &Path,
    hopts: &HashOptions<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Artifact> {
    let h = digest::hash_path_with(abs, hopts)?;
    store_manifest(project, &h)?;
    for s in h.skipped {
        warnings.push(Warning::Skipped {
            what: rel.to_string(),
            skipped: s,
        });
    }
    Ok(Artifact {
        path: rel,
        kind: h.kind,
        digest: h.digest,
        files: (h.kind == Kind::Dir).then_some(h.files),
        bytes: h.bytes,
        step: None,
        parent: None,
        created_at: None,
        parent_run: None,
        deleted_by_run: false,
        metrics: BTreeMap::new(),
    })
}

/// The in-progress lock of a run and its checkpoint journals, removed when dropped.
struct RunFiles(PathBuf);

impl Drop for RunFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(checkpoint::journal::dir_of(&self.0));
    }
}

/// Checkpoints added during the run (with their step, parent and metrics) and those matched by
/// the declarations after it. A checkpoint in both keeps what was added and the digest it has
/// now; one that changed after it was added is reported; one that is gone keeps the digest it
/// was added with (its lineage still matters).
fn merge_checkpoints(
    project: &Project,
    added: Vec<Artifact>,
    declared: Vec<Artifact>,
    hopts: &HashOptions<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Artifact>> {
    // A checkpoint both added and declared was just hashed with the declarations: use that
    // digest rather than reading a (possibly large, freshly written) file a second time.
    let mut by_path: BTreeMap<RelPath, Artifact> =
        declared.into_iter().map(|d| (d.path.clone(), d)).collect();
    for a in added {
        let now = match by_path.remove(&a.path) {
            Some(d) => Some(d),
            None => {
                let abs = a.path.under(&project.root);
                if abs.exists() {
                    Some(hash_artifact(
                        project,
                        a.path.clone(),
                        &abs,
                        hopts,
                        warnings,
                    )?)
                } else {
                    None
                }
            }
        };
        let entry = match now {
            Some(now) => {
                if now.digest != a.digest {
                    warnings.push(Warning::CheckpointChanged(a.path.clone()));
                }
                Artifact {
                    digest: now.digest,
                    kind: now.kind,
                    files: now.files,
                    bytes: now.bytes,
                    ..a
                }
            }
            // Added during the run and gone when it ended: the run deleted it itself
            // (keep-last-N). Recorded so, with the digest it was added with.
            None => Artifact {
                deleted_by_run: true,
                ..a
            },
        };
        by_path.insert(entry.path.clone(), entry);
    }
    Ok(by_path.into_values().collect())
}

/// Record the code state: write the change sidecar when the tree is dirty.
fn record_code(
    project: &Project,
    state: git::CodeState,
    warnings: &mut Vec<Warning>,
) -> Result<Code> {
    let change = if state.patch.is_empty() {
        None
    } else {
        let digest = Digest::of_bytes(&state.patch);
        let sidecar = project.change_path(&digest);
        crate::fs::write_if_changed(&sidecar, &state.patch)?;
        if state.patch.len() > LARGE_CHANGE {
            warnings.push(Warning::LargeChange {
                bytes: state.patch.len(),
                paths: state.changed.iter().take(10).cloned().collect(),
            });
        }
        warnings.push(Warning::Dirty {
            sidecar,
            paths: state.changed.clone(),
        });
        Some(digest)
    };
    Ok(Code {
        commit: state.commit.into(),
        branch: state.branch,
        remote: state.remote,
        tree: state.tree.into(),
        dirty: change.is_some(),
        change,
        submodules: state
            .submodules
            .into_iter()
            .filter_map(|s| {
                Some(Submodule {
                    path: RelPath::parse(&s.path).ok()?,
                    commit: s.commit.into(),
                    url: s.url,
                    dirty: s.dirty,
                })
            })
            .collect(),
    })
}

/// The inputs from the command line and cairn.toml, resolved and hashed.
fn resolve_inputs(
    project: &Project,
    opts: &LockOptions,
    hopts: &HashOptions<'_>,
) -> Result<Vec<Input>> {
    let mut out: BTreeMap<String, Input> = BTreeMap::new();
    let given = project
        .config
        .inputs
        .iter()
        .map(|s| (project.root.as_path(), s))
        .chain(opts.inputs.iter().map(|s| (project.cwd.as_path(), s)));
    for (base, spec) in given {
        let input = inputs::resolve(project, base, spec, hopts)?;
        out.insert(input.reference(), input);
    }
    Ok(out.into_values().collect())
}

/// Run the command with inherited stdio. Fills the run's argv, times and exit code; returns how
/// it ended.
fn run_command(
    project: &Project,
    opts: &LockOptions,
    running: &Path,
    run: &mut Run,
) -> Result<Option<process::Finished>> {
    let Some((program, args)) = opts.command.split_first() else {
        return Ok(None);
    };
    let started = SystemTime::now();
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&project.cwd)
        .env(checkpoint::RUN_LOCK_ENV, running)
        .env("CAIRN_RUN_ID", &run.id);
    if let Some(seed) = opts.seed {
        command.env("CAIRN_SEED", seed.to_string());
    }
    let finished = process::run_foreground(&mut command).map_err(|source| Error::Io {
        op: "cannot run",
        path: PathBuf::from(program),
        source,
    })?;
    run.command = Some(opts.command.clone());
    run.cwd = run_dir(project);
    run.started_at = Some(lockfile::rfc3339(started));
    run.finished_at = Some(lockfile::rfc3339(SystemTime::now()));
    run.exit_code = Some(finished.code);
    Ok(Some(finished))
}

/// Where the command runs (the current directory), relative to the repository root; `None`
/// without a repository.
fn run_dir(project: &Project) -> Option<lockfile::RunDir> {
    let root = project.repo_root.as_ref()?;
    Some(match project.cwd.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => lockfile::RunDir::Root,
        Ok(rel) => match rel.to_str().map(crate::model::paths::RelPath::parse) {
            Some(Ok(p)) => lockfile::RunDir::Inside(p),
            // A directory name a lock cannot hold (not UTF-8, a control character).
            _ => lockfile::RunDir::Outside,
        },
        Err(_) => lockfile::RunDir::Outside,
    })
}

/// Store a directory's manifest under its digest. The name is the content's digest, so a file
/// already there is left alone (a damaged one is caught by its digest when read).
fn store_manifest(project: &Project, h: &digest::Hashed) -> Result<()> {
    if let Some(m) = &h.manifest {
        let path = project.manifest_path(&h.digest);
        if !path.is_file() {
            // Streamed (a million-file manifest is ~90 MB) and not fsynced: a damaged manifest
            // fails its own digest check and is simply not used.
            crate::fs::atomic_write_with(&path, false, |w| m.write_text(w))?;
        }
    }
    Ok(())
}

fn run_id(now: SystemTime, command: &[String], tree: Option<&str>) -> String {
    let mut h = blake3::Hasher::new();
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    for a in command {
        h.update(a.as_bytes());
        h.update(&[0]);
    }
    h.update(tree.unwrap_or("").as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

/// Check that an existing lock at `path` may be replaced: absent, or readable by this cairn.
fn check_replaceable(path: &Path, force: bool) -> Result<Option<Lock>> {
    match Lock::load(path) {
        Ok(lock) => Ok(Some(lock)),
        Err(Error::Missing { .. }) => Ok(None),
        Err(e @ Error::LockTooNew { .. }) => Err(e),
        Err(e @ (Error::LockSyntax { .. } | Error::LockInvalid { .. })) if !force => Err(e),
        Err(Error::LockSyntax { .. } | Error::LockInvalid { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A lock without a command over a lock that records a run would drop that run's record (its
/// command, exit code, times and uncommitted change): refused unless `replace_run`, with what
/// would be lost said in full.
pub fn refuse_replacing_a_run(
    previous: Option<&Lock>,
    lock_path: &Path,
    opts: &LockOptions,
) -> Result<()> {
    let Some(prev) = previous else {
        return Ok(());
    };
    let Some(argv) = prev.run.command.as_ref().filter(|c| !c.is_empty()) else {
        return Ok(());
    };
    if !opts.command.is_empty() || opts.replace_run {
        return Ok(());
    }
    let line: Vec<String> = argv.iter().map(|a| process::shell_quote(a)).collect();
    let mut what = vec![format!("the command `{}`", line.join(" "))];
    if let Some(code) = prev.run.exit_code {
        what.push(format!("its exit code {code}"));
    }
    match (&prev.run.started_at, &prev.run.finished_at) {
        (Some(s), Some(f)) => what.push(format!("its times ({s} to {f})")),
        (Some(s), None) => what.push(format!("its start ({s})")),
        _ => {}
    }
    if let Some(c) = prev.code.as_ref().filter(|c| c.dirty) {
        what.push(format!(
            "the uncommitted change it ran with{}",
            c.change
                .as_ref()
                .map(|d| format!(" (change {}...)", &d.hex()[..12]))
                .unwrap_or_default()
        ));
    }
    if !prev.checkpoints.is_empty() {
        let n = prev.checkpoints.len();
        what.push(format!(
            "{n} {}",
            if n == 1 { "checkpoint" } else { "checkpoints" }
        ));
    }
    Err(Error::Refused {
        message: format!(
            "{} records a run; locking without a command would replace its record: {}",
            lock_path.display(),
            what.join(", ")
        ),
        hint: format!(
            "to record a new run, give its command: cairn lock -- {}; to replace the record anyway, pass --replace-run; to keep both, write elsewhere with --lock NAME.cairn.lock (nothing was written)",
            line.join(" ")
        ),
    })
}

/// Lock the project.
pub fn lock(
    project: &Project,
    lock_path: &Path,
    opts: &LockOptions,
    progress: Option<&dyn Progress>,
) -> Result<(Outcome, Vec<Warning>)> {
    lock_with(project, lock_path, opts, progress, &mut |_| {})
}

/// The directory below which a declared path or glob will be found: the parent of a plain path,
/// the part before the first wildcard of a glob.
fn fixed_dir(abs: &Path) -> PathBuf {
    let mut dir = PathBuf::new();
    let comps: Vec<_> = abs.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        if last || c.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
            break;
        }
        dir.push(c);
    }
    dir
}

/// [`lock`], telling `before_command` what is worth knowing before a command starts (the
/// uncommitted change recorded, a declared checkpoint directory that does not exist, skipped
/// files, Python warnings), so that it is said before a long run rather than after it. The
/// warnings given to it are not returned again. Without a command it is not called.
pub fn lock_with(
    project: &Project,
    lock_path: &Path,
    opts: &LockOptions,
    progress: Option<&dyn Progress>,
    before_command: &mut dyn FnMut(&[Warning]),
) -> Result<(Outcome, Vec<Warning>)> {
    let _guard = project.exclusive()?;
    let cache_dir = project.stat_cache_dir();
    let hopts = HashOptions {
        cache_dir: Some(&cache_dir),
        use_cache: !opts.no_cache,
        progress,
        confine: None,
    };
    let previous = check_replaceable(lock_path, opts.force)?;
    refuse_replacing_a_run(previous.as_ref(), lock_path, opts)?;
    if let Some(dir) = lock_path.parent() {
        crate::fs::remove_stale_temporaries(dir);
    }
    let mut warnings = Vec::new();

    // The environment (the Python and host probes, which mostly wait for other programs) is
    // captured on a thread of its own while the datasets are hashed and the code is captured
    // below: they are independent. Its errors still come after theirs.
    let environment = {
        let (root, config_python) = (project.root.clone(), project.config.python.clone());
        let (patterns, python) = (project.config.env.clone(), opts.python.clone());
        let no_python = opts.no_python;
        std::thread::spawn(move || {
            env::capture_at(
                &root,
                config_python.as_deref(),
                &patterns,
                python.as_deref(),
                no_python,
            )
        })
    };

    // Datasets, before the command runs.
    let datasets = resolve_data(project, opts)?;
    let mut sharded = from_shards(&datasets, &opts.shards)?;
    let mut data = Vec::new();
    for d in &datasets {
        if !d.abs.exists() && std::fs::symlink_metadata(&d.abs).is_err() {
            return Err(Error::Missing {
                what: "data path",
                path: d.abs.clone(),
            });
        }
        let h = match sharded.remove(&d.name) {
            // Hashed in shards elsewhere: only walked here, to check it is the tree they saw.
            Some(m) => {
                let skipped = m.check_against(&d.abs, None)?;
                m.hashed(skipped)
            }
            None => digest::hash_path_with(&d.abs, &hopts)?,
        };
        store_manifest(project, &h)?;
        for s in &h.skipped {
            warnings.push(Warning::Skipped {
                what: d.name.clone(),
                skipped: s.clone(),
            });
        }
        data.push(Data {
            name: d.name.clone(),
            location: d.location.clone(),
            kind: h.kind,
            digest: h.digest,
            files: h.files,
            bytes: h.bytes,
        });
    }

    // Where the external datasets are, remembered for this user on this machine (never in the
    // lock): verify in this project then needs no --data.
    let external: BTreeMap<String, PathBuf> = datasets
        .iter()
        .filter(|d| d.location == Location::External)
        .map(|d| (d.name.clone(), d.abs.clone()))
        .collect();
    if let Err(e) = crate::places::remember(&project.root, project.boundary(), &external) {
        let mut msg = e.to_string();
        if let Some(s) = std::error::Error::source(&e) {
            msg.push_str(&format!(": {s}"));
        }
        warnings.push(Warning::NotRemembered(msg));
    }

    // Artifact declarations: command line (relative to cwd) and cairn.toml (relative to root).
    let specs = |cli: &[String], cfg: &[String]| -> Vec<(PathBuf, String)> {
        cfg.iter()
            .map(|s| (project.root.clone(), s.clone()))
            .chain(cli.iter().map(|s| (project.cwd.clone(), s.clone())))
            .collect()
    };
    let ckpt_specs = specs(&opts.checkpoints, &project.config.checkpoints);
    let out_specs = specs(&opts.outputs, &project.config.outputs);

    // Code, before the command runs. Paths locked by digest are not code.
    let code_state = match (&project.repo, opts.no_git) {
        (Some(repo), false) => {
            let mut tracked: Vec<String> = data
                .iter()
                .filter_map(|d| match &d.location {
                    Location::Path(p) => project.repo_relative(p),
                    Location::External => None,
                })
                .collect();
            let mut patterns = Vec::new();
            for (base, spec) in ckpt_specs.iter().chain(&out_specs) {
                let Some(rel) = project
                    .resolve(base, spec)
                    .1
                    .and_then(|r| project.repo_relative(&r))
                else {
                    continue;
                };
                if spec.contains(['*', '?', '[']) {
                    patterns.push(
                        glob::Pattern::new(&rel)
                            .map_err(|e| Error::Usage(format!("bad pattern {spec:?}: {e}")))?,
                    );
                } else {
                    tracked.push(rel);
                }
            }
            let excluder = Excluder::new(tracked).with_patterns(patterns);
            Some(git::capture(repo, &excluder)?)
        }
        _ => None,
    };

    // The environment, before the command runs.
    let captured = environment
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
    warnings.extend(captured.warnings.iter().cloned().map(Warning::Python));
    let inputs = resolve_inputs(project, opts, &hopts)?;

    // The change sidecar, before the command runs: the lock of a run that is killed still
    // names an existing change.
    let code = match code_state {
        Some(state) => Some(record_code(project, state, &mut warnings)?),
        None => None,
    };

    let locked_at = SystemTime::now();
    let run = Run {
        id: run_id(
            locked_at,
            &opts.command,
            code.as_ref().map(|c| c.tree.as_str()),
        ),
        locked_at: Some(lockfile::rfc3339(locked_at)),
        seed: opts.seed,
        ..Run::blank(captured.env.clone())
    };
    let mut lock = Lock {
        created_by: Some(format!("cairn {}", env!("CARGO_PKG_VERSION"))),
        code,
        python: captured.python.as_ref().map(env::python_table),
        host: Some(captured.host),
        lockfiles: captured.lockfiles,
        inputs,
        data,
        ..Lock::of_run(run)
    };

    // Before the command: what the user should know now, not after a three-day run.
    if !opts.command.is_empty() {
        for (what, list) in [("checkpoint", &ckpt_specs), ("output", &out_specs)] {
            for (base, spec) in list.iter() {
                let dir = fixed_dir(&project.resolve(base, spec).0);
                if !dir.as_os_str().is_empty() && !dir.is_dir() {
                    warnings.push(Warning::NoDirectoryYet {
                        what,
                        pattern: spec.clone(),
                        dir,
                    });
                }
            }
        }
        before_command(&warnings);
        warnings.clear();
    }

    // The command, with an in-progress lock that `cairn checkpoint add` writes to.
    let mut failure: Option<String> = None;
    let mut interrupted = false;
    let mut added: Vec<Artifact> = Vec::new();
    let mut _run_files: Option<RunFiles> = None;
    if !opts.command.is_empty() {
        let running = project
            .cairn_dir()
            .join("cache")
            .join("running")
            .join(format!("{}.lock", lock.run.id));
        crate::fs::atomic_write(&running, lock.to_toml().as_bytes())?;
        let outcome = run_command(project, opts, &running, &mut lock.run);
        // Whatever happened, collect what was added during the run: the in-progress lock merged
        // with its writers' journals. They are removed when this function returns, after the
        // final lock (or the failed run's record) is written and synced.
        _run_files = Some(RunFiles(running.clone()));
        let during = checkpoint::in_progress(&running);
        let finished = outcome?;
        interrupted = finished.is_some_and(|f| f.interrupted);
        failure = finished.and_then(|f| f.failure());
        let (during, notes) = during?;
        added = during;
        warnings.extend(notes.into_iter().map(Warning::Journal));
    }

    // Checkpoints and outputs, after the command. A declared path that is missing after a
    // command makes the run a failure; without a command it is an error.
    let ran = !opts.command.is_empty();
    let mut artifacts = |specs: &[(PathBuf, String)],
                         what: &'static str|
     -> Result<Vec<Artifact>> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (base, spec) in specs {
            let (found, unmatched) = expand(project, base, std::slice::from_ref(spec), what, !ran)?;
            for p in unmatched {
                if p.contains(['*', '?', '[']) {
                    warnings.push(Warning::NoMatch { pattern: p });
                } else if failure.is_none() {
                    failure = Some(format!("{what} {p} was not produced"));
                }
            }
            for (rel, abs) in found {
                if seen.insert(rel.clone()) {
                    out.push(hash_artifact(project, rel, &abs, &hopts, &mut warnings)?);
                }
            }
        }
        Ok(out)
    };
    let declared = artifacts(&ckpt_specs, "checkpoint")?;
    lock.outputs = artifacts(&out_specs, "output")?;
    lock.checkpoints = merge_checkpoints(project, added, declared, &hopts, &mut warnings)?;

    // Normalise through the canonical text so the value we return is what a reader sees.
    let text = lock.to_toml();
    let lock = Lock::from_toml(&text, lock_path)?;

    if let Some(reason) = failure {
        let record = project
            .cairn_dir()
            .join("failed")
            .join(format!("{}.lock", lock.run.id));
        crate::fs::atomic_write(&record, text.as_bytes())?;
        return Ok((
            Outcome::CommandFailed {
                exit_code: lock.run.exit_code.unwrap_or(0),
                record,
                lock_path: lock_path.to_path_buf(),
                reason,
                interrupted,
            },
            warnings,
        ));
    }

    if !ran {
        if let Some(prev) = &previous {
            if prev.without_times() == lock.without_times() {
                return Ok((
                    Outcome::Unchanged {
                        path: lock_path.to_path_buf(),
                    },
                    warnings,
                ));
            }
        }
    }
    crate::fs::write_if_changed(lock_path, text.as_bytes())?;
    Ok((
        Outcome::Written {
            path: lock_path.to_path_buf(),
            lock: Box::new(lock),
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_args_parse() {
        let d = DataArg::parse("train=data/train");
        assert_eq!(d.name.as_deref(), Some("train"));
        assert_eq!(d.path, "data/train");
        let d = DataArg::parse("data/a=b");
        assert_eq!(d.name, None);
        assert_eq!(d.path, "data/a=b");
        let d = DataArg::parse("/mnt/x");
        assert_eq!(d.name, None);
    }
}
