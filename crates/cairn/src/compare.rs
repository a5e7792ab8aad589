//! The one comparison: a run as its lock records it against another state of the same run.
//!
//! Both sides are a [`State`]: one built from a lock ([`State::from_lock`]), the other either
//! another lock or what [`crate::probe::observe`] found here now. [`compare`] walks the sections
//! in the order a difference is most likely to explain a different result (code, data, Python,
//! command, determinism variables, seed, lock files, host) and then the effects (checkpoints,
//! outputs), and returns typed [`Difference`]s: an [`ObjectId`] for commits and trees, a
//! [`Digest`] for content, a [`Reason`] instead of a sentence. Nothing is parsed back out of
//! text.
//!
//! `cairn verify`, `cairn diff` and `cairn rebuild` are policies over these differences: which
//! fail, which warn, how they are worded. The same state therefore gives the same set of
//! differences through every command.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::content::digest::{Digest, Kind, Manifest};
use crate::error::{Error, Result};
use crate::model::lockfile::{Artifact, Host, Location, Lock, LockfileEntry, Metric, Python};
use crate::model::paths::RelPath;
use crate::probe::env;
use crate::probe::git::{self, Entries, Excluder, PathChange};
use crate::probe::python::{self, Source};
use crate::project::Project;

/// A git object id (a commit or a tree), parsed once from the lock or taken from git.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub git2::Oid);

impl ObjectId {
    /// Parse the hex form a lock records.
    pub fn parse(hex: &str) -> Result<ObjectId> {
        git2::Oid::from_str(hex)
            .map(ObjectId)
            .map_err(|source| Error::Git {
                message: format!("the lock records a malformed object id {hex:?}"),
                source,
            })
    }

    /// The first 12 hex digits, as shown to people.
    pub fn short(&self) -> String {
        let s = self.0.to_string();
        s[..s.len().min(12)].to_string()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Content or value differs.
    Changed,
    /// Present on the second side only.
    Added,
    /// On the first side only.
    Removed,
    /// Only the mode differs (executable bit, file vs symlink).
    ModeChanged,
    /// The whole dataset, checkpoint or output is not where the lock says.
    Missing,
    /// It was not read (an external dataset nobody located, a link out of the repository).
    Unchecked,
}

impl Change {
    /// The change as words.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Changed => "changed",
            Change::Added => "added",
            Change::Removed => "removed",
            Change::ModeChanged => "mode changed",
            Change::Missing => "missing",
            Change::Unchecked => "not checked",
        }
    }
}

/// What part of a run a difference is about, in the order of how likely it explains a
/// different result; checkpoints and outputs (the effects) last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Area {
    /// The code.
    Code,
    /// A dataset.
    Data,
    /// The Python interpreter, a package, a conda package.
    Python,
    /// The command line or its exit code.
    Command,
    /// A determinism variable (`[run.env]`).
    Env,
    /// The seed.
    Seed,
    /// A dependency lock file.
    Lockfile,
    /// The host: OS, C library, CPU, GPU, driver, CUDA, PyTorch build.
    Host,
    /// A checkpoint (an effect).
    Checkpoint,
    /// An output (an effect).
    Output,
}

impl Area {
    /// Checkpoints and outputs are what a run produced: effects, not causes.
    pub fn is_effect(self) -> bool {
        matches!(self, Area::Checkpoint | Area::Output)
    }

    /// Drift: the environment and the host, which verify reports without failing.
    pub fn is_drift(self) -> bool {
        matches!(
            self,
            Area::Python | Area::Env | Area::Lockfile | Area::Host | Area::Command | Area::Seed
        )
    }

    /// The area's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Code => "code",
            Area::Data => "data",
            Area::Python => "python",
            Area::Command => "command",
            Area::Env => "env",
            Area::Seed => "seed",
            Area::Lockfile => "lockfile",
            Area::Host => "host",
            Area::Checkpoint => "checkpoint",
            Area::Output => "output",
        }
    }
}

/// A value on one side of a difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Content.
    Digest(Digest),
    /// A commit or tree.
    Object(ObjectId),
    /// A version, a location, a variable's value, a host fact.
    Text(String),
}

impl Value {
    /// The value shortened for people (12 hex digits of a digest or object id).
    pub fn short(&self) -> String {
        match self {
            Value::Digest(d) => format!("blake3:{}", &d.hex()[..12]),
            Value::Object(o) => o.short(),
            Value::Text(t) => t.clone(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Digest(d) => d.fmt(f),
            Value::Object(o) => o.fmt(f),
            Value::Text(t) => f.write_str(t),
        }
    }
}

/// Why something differs or was not read, when the change alone does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// An external dataset with no location given (`--data NAME=PATH` or the user's settings).
    Unlocated,
    /// The lock's path leads out of the repository through a link; not read unless the user
    /// says so.
    LeadsOutside {
        /// The path the lock names.
        place: PathBuf,
        /// Where it really leads.
        target: PathBuf,
    },
    /// Nothing at this path.
    NotFound(PathBuf),
    /// A file became a directory or the other way round.
    KindChanged {
        /// As locked.
        locked: Kind,
        /// Now.
        now: Kind,
    },
    /// The digests differ and a manifest to name the files is not here.
    NoManifest(PathBuf),
    /// The locked commit is not in this repository.
    CommitNotHere(ObjectId),
    /// The change sidecar does not match its digest; files are compared with the commit.
    SidecarDamaged(PathBuf),
    /// The git trees differ but no file does (different exclusions, or a tree id computed
    /// differently).
    TreesOnly,
    /// The dataset was recorded at another location.
    Relocated,
    /// A package now comes from another source.
    Source,
    /// A package's installed files differ from the locked ones at the same version.
    Fingerprint,
    /// A conda package.
    Conda,
    /// A metric recorded with `cairn checkpoint add`.
    Metric,
    /// A Python lock file pins a package at another version than the one installed.
    Pin {
        /// The package.
        package: String,
        /// The pinned versions (any matches).
        pinned: Vec<String>,
        /// The installed version.
        installed: String,
    },
    /// No Python environment could be observed.
    NoPython(String),
    /// A host fact that differs between any two machines (CPU model, core count); verify does
    /// not report it.
    MachineOnly,
}

/// One difference between the first side (normally the lock) and the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// What part of the run.
    pub area: Area,
    /// `code`; a dataset name; `python` or a package name; `command` or `exit-code`; a variable
    /// name; `seed`; a lock file, checkpoint or output path; a host item.
    pub subject: String,
    /// The file inside it, when known (escaped for display when not UTF-8).
    pub path: Option<String>,
    /// What differs.
    pub change: Change,
    /// The value on the first side.
    pub locked: Option<Value>,
    /// The value on the second side.
    pub now: Option<Value>,
    /// Why, when the change does not say.
    pub reason: Option<Reason>,
}

impl Difference {
    fn new(area: Area, subject: impl Into<String>, change: Change) -> Difference {
        Difference {
            area,
            subject: subject.into(),
            path: None,
            change,
            locked: None,
            now: None,
            reason: None,
        }
    }

    fn values(mut self, locked: Option<Value>, now: Option<Value>) -> Difference {
        self.locked = locked;
        self.now = now;
        self
    }

    fn because(mut self, reason: Reason) -> Difference {
        self.reason = Some(reason);
        self
    }

    /// Both values in words (`1.26.4 -> 2.0.0`, `none -> NVIDIA H100`, `1.16.0 was locked`),
    /// shortened; `None` when neither side has one.
    pub fn values_text(&self) -> Option<String> {
        let (a, b) = (
            self.locked.as_ref().map(Value::short),
            self.now.as_ref().map(Value::short),
        );
        Some(match (a, b) {
            (Some(a), Some(b)) => format!("{a} -> {b}"),
            (a, b) if self.area == Area::Host => format!(
                "{} -> {}",
                a.as_deref().unwrap_or("none"),
                b.as_deref().unwrap_or("none")
            ),
            (Some(a), None) => format!("{a} was locked"),
            (None, Some(b)) if self.area == Area::Python => format!("{b} is installed"),
            (None, Some(b)) => format!("{b} now"),
            (None, None) => return None,
        })
    }

    /// The words every command shows after the subject: for drift (environment, host) the
    /// values and the reason, for content and code the reason alone.
    pub fn detail_text(&self) -> Option<String> {
        let values = if self.area.is_drift() || self.reason.is_none() {
            self.values_text()
        } else {
            None
        };
        match (self.reason_text(), values) {
            (Some(r), Some(v)) => Some(format!("{v}: {r}")),
            (r, v) => r.or(v),
        }
    }

    /// The reason in words, the same for every command (the subject names the dataset in
    /// advice such as `--data NAME=PATH`).
    pub fn reason_text(&self) -> Option<String> {
        let r = self.reason.as_ref()?;
        Some(match r {
            Reason::Unlocated => format!(
                "external dataset: say where it is with --data {}=PATH or in cairn.toml",
                self.subject
            ),
            Reason::LeadsOutside { place, target } => format!(
                "{} leads outside the repository (to {}) through a link; not read unless you say so (--data {}=PATH for a dataset)",
                place.display(),
                target.display(),
                self.subject
            ),
            Reason::NotFound(p) => format!("{} does not exist", p.display()),
            Reason::KindChanged { locked, now } => {
                format!("locked as a {}, now a {}", kind_name(*locked), kind_name(*now))
            }
            Reason::NoManifest(p) => format!(
                "digest differs; no manifest at {} to name the files",
                p.display()
            ),
            Reason::CommitNotHere(c) => format!(
                "the locked commit {c} is not in this repository (fetch it to see which files differ)"
            ),
            Reason::SidecarDamaged(p) => format!(
                "the recorded change {} does not match its digest; files are compared with the commit",
                p.display()
            ),
            Reason::TreesOnly => {
                "the git trees differ, but no file does (the sides exclude different paths)".into()
            }
            Reason::Relocated => "recorded at another location".into(),
            Reason::Source => "installed from another source".into(),
            Reason::Fingerprint => "installed files differ from the locked ones".into(),
            Reason::Conda => "conda package".into(),
            Reason::Metric => "metric".into(),
            Reason::Pin {
                package,
                pinned,
                installed,
            } => format!(
                "{} pins {package} {} but the environment has {installed}",
                self.subject,
                pinned.join(" or ")
            ),
            Reason::NoPython(why) => why.clone(),
            Reason::MachineOnly => "differs between any two machines".into(),
        })
    }
}

/// A fact that is not a difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The code is the same tree at two commits.
    SameTreeOtherCommit {
        /// The first side's commit.
        locked: ObjectId,
        /// The second side's commit (`None`: an unborn HEAD).
        now: Option<ObjectId>,
    },
    /// A side records a change whose sidecar is not here.
    SidecarMissing(PathBuf),
    /// A commit is not in this repository.
    CommitNotHere(ObjectId),
    /// A side records no code (locked with `--no-git`).
    NoCode,
    /// The current state has no command, exit code or seed.
    NoCommand,
    /// A warning from reading the environment (a lock file that cannot be read).
    Environment(String),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::SameTreeOtherCommit { locked, now } => write!(
                f,
                "the code matches the lock; it was locked at commit {} and is now at {}",
                locked.short(),
                now.map(|n| n.short()).unwrap_or_else(|| "an unborn HEAD".into())
            ),
            Note::SidecarMissing(p) => write!(
                f,
                "the recorded change {} is missing (commit it with the lock, or this run cannot be rebuilt from the repository)",
                p.display()
            ),
            Note::CommitNotHere(c) => write!(
                f,
                "commit {} is not in this repository (fetch it to see the commits and files that differ)",
                c.short()
            ),
            Note::NoCode => f.write_str("the lock records no code (locked with --no-git)"),
            Note::NoCommand => f.write_str(
                "the current state has no command: the command, exit code and seed are not compared",
            ),
            Note::Environment(w) => f.write_str(w),
        }
    }
}

/// The code of one side.
#[derive(Debug, Clone)]
pub struct CodeState {
    /// The commit (`None`: an unborn HEAD).
    pub commit: Option<ObjectId>,
    /// The git tree of the code (commit + change, exclusions applied).
    pub tree: ObjectId,
    /// The change sidecar's digest, for a locked side.
    pub change: Option<Digest>,
    /// The entries, when observed (the working tree); a locked side's are read on demand.
    pub entries: Option<Entries>,
}

/// Why a dataset, checkpoint or output has no content on a side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Absence {
    /// Nothing at the path.
    NotFound(PathBuf),
    /// An external dataset nobody located.
    Unlocated,
    /// The path leads out of the repository through a link and was not read.
    LeadsOutside {
        /// The path.
        place: PathBuf,
        /// Where it leads.
        target: PathBuf,
    },
}

/// The content of a dataset, checkpoint or output on one side.
#[derive(Debug, Clone)]
pub struct Content {
    /// File or directory.
    pub kind: Kind,
    /// The digest.
    pub digest: Digest,
    /// The manifest, when it was just hashed (a locked side's comes from `.cairn/manifests/`).
    pub manifest: Option<Manifest>,
}

/// A dataset, checkpoint or output on one side.
#[derive(Debug, Clone)]
pub struct Item {
    /// Where a dataset was recorded (`None` for checkpoints and outputs).
    pub location: Option<Location>,
    /// Its content, or why there is none.
    pub content: std::result::Result<Content, Absence>,
    /// Metrics recorded with `cairn checkpoint add` (`None`: not known on this side).
    pub metrics: Option<BTreeMap<String, Metric>>,
}

/// The Python environment of one side.
#[derive(Debug, Clone)]
pub enum PythonState {
    /// Recorded or observed.
    Present(Python),
    /// Looked for and not found, with why.
    Absent(String),
}

/// The command, exit code and seed: only a lock has them.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// The argv.
    pub command: Option<Vec<String>>,
    /// The exit code.
    pub exit_code: Option<i64>,
    /// The seed.
    pub seed: Option<i64>,
}

/// One side of a comparison: a lock, or what is here now.
#[derive(Debug, Clone)]
pub struct State {
    /// The code (`None`: not recorded).
    pub code: Option<CodeState>,
    /// Datasets by name.
    pub data: BTreeMap<String, Item>,
    /// Checkpoints by path.
    pub checkpoints: BTreeMap<RelPath, Item>,
    /// Outputs by path.
    pub outputs: BTreeMap<RelPath, Item>,
    /// The Python environment (`None`: not recorded or not looked at).
    pub python: Option<PythonState>,
    /// Dependency lock files.
    pub lockfiles: Vec<LockfileEntry>,
    /// Python lock file pins the installed packages do not satisfy (observed only).
    pub pins: Vec<Difference>,
    /// Determinism variables.
    pub env: BTreeMap<String, String>,
    /// Command, exit code, seed (`None` for the current state).
    pub run: Option<RunFacts>,
    /// The host.
    pub host: Option<Host>,
    /// Warnings from observing (not differences).
    pub notes: Vec<Note>,
}

impl State {
    /// The state a lock records.
    pub fn from_lock(lock: &Lock) -> Result<State> {
        let code = match &lock.code {
            Some(c) => Some(CodeState {
                commit: Some(ObjectId::parse(&c.commit)?),
                tree: ObjectId::parse(&c.tree)?,
                change: c.change,
                entries: None,
            }),
            None => None,
        };
        let artifacts = |list: &[Artifact]| {
            list.iter()
                .map(|a| {
                    let item = Item {
                        location: None,
                        content: Ok(Content {
                            kind: a.kind,
                            digest: a.digest,
                            manifest: None,
                        }),
                        metrics: Some(a.metrics.clone()),
                    };
                    (a.path.clone(), item)
                })
                .collect()
        };
        Ok(State {
            code,
            data: lock
                .data
                .iter()
                .map(|d| {
                    let item = Item {
                        location: Some(d.location.clone()),
                        content: Ok(Content {
                            kind: d.kind,
                            digest: d.digest,
                            manifest: None,
                        }),
                        metrics: None,
                    };
                    (d.name.clone(), item)
                })
                .collect(),
            checkpoints: artifacts(&lock.checkpoints),
            outputs: artifacts(&lock.outputs),
            python: lock.python.clone().map(PythonState::Present),
            lockfiles: lock.lockfiles.clone(),
            pins: Vec::new(),
            env: lock.run.env.clone(),
            run: Some(RunFacts {
                command: lock.run.command.clone(),
                exit_code: lock.run.exit_code,
                seed: lock.run.seed,
            }),
            host: lock.host.clone(),
            notes: Vec::new(),
        })
    }
}

/// The result of [`compare`].
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// Every difference, causes in the order of [`Area`], then effects.
    pub differences: Vec<Difference>,
    /// Facts that are not differences.
    pub notes: Vec<Note>,
}

/// Compare side `a` (normally the lock) with side `b` (another lock, or what is here now).
/// `tracked` are the locks whose datasets, checkpoints and outputs are excluded from the code.
pub fn compare(project: &Project, a: &State, b: &State, tracked: &[&Lock]) -> Result<Comparison> {
    let mut out = Comparison::default();
    code(project, a, b, tracked, &mut out)?;
    items(project, Area::Data, &a.data, &b.data, &mut out.differences);
    python_section(a, b, project.repo_root.as_deref(), &mut out.differences);
    match (&a.run, &b.run) {
        (Some(ra), Some(rb)) => run_facts(ra, rb, &mut out.differences),
        _ => out.notes.push(Note::NoCommand),
    }
    env_vars(&a.env, &b.env, &mut out.differences);
    if let (Some(ra), Some(rb)) = (&a.run, &b.run) {
        if ra.seed != rb.seed {
            out.differences.push(value_difference(
                Area::Seed,
                "seed",
                ra.seed.map(|s| Value::Text(s.to_string())),
                rb.seed.map(|s| Value::Text(s.to_string())),
            ));
        }
    }
    lockfiles(&a.lockfiles, &b.lockfiles, &mut out.differences);
    out.differences.extend(b.pins.iter().cloned());
    if let (Some(ha), Some(hb)) = (&a.host, &b.host) {
        out.differences.extend(host(ha, hb));
    }
    items(
        project,
        Area::Checkpoint,
        &a.checkpoints,
        &b.checkpoints,
        &mut out.differences,
    );
    items(
        project,
        Area::Output,
        &a.outputs,
        &b.outputs,
        &mut out.differences,
    );
    out.differences.sort_by_key(|d| d.area);
    out.notes.extend(a.notes.iter().cloned());
    out.notes.extend(b.notes.iter().cloned());
    Ok(out)
}

fn value_difference(area: Area, subject: &str, a: Option<Value>, b: Option<Value>) -> Difference {
    let change = match (&a, &b) {
        (None, Some(_)) => Change::Added,
        (Some(_), None) => Change::Removed,
        _ => Change::Changed,
    };
    Difference::new(area, subject, change).values(a, b)
}

/// "file" or "directory".
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "directory",
    }
}

// ---------------------------------------------------------------------------------------------
// Code.

/// The paths the locks track by digest (datasets, checkpoints, outputs), excluded from the code.
pub fn excluder(project: &Project, locks: &[&Lock]) -> Excluder {
    let mut tracked = BTreeSet::new();
    for lock in locks {
        for d in &lock.data {
            if let Location::Path(p) = &d.location {
                tracked.extend(project.repo_relative(p));
            }
        }
        for x in lock.checkpoints.iter().chain(&lock.outputs) {
            tracked.extend(project.repo_relative(&x.path));
        }
    }
    Excluder::new(tracked)
}

/// A locked side's code entries: the commit's files plus its change sidecar. `Err` with the
/// reason when the commit is not here.
fn locked_entries(
    project: &Project,
    repo: &git2::Repository,
    code: &CodeState,
    excluder: &Excluder,
    out: &mut Comparison,
) -> Result<std::result::Result<Entries, Reason>> {
    if let Some(e) = &code.entries {
        return Ok(Ok(e.clone()));
    }
    let Some(commit) = code.commit.filter(|c| repo.find_commit(c.0).is_ok()) else {
        return Ok(Err(Reason::CommitNotHere(code.commit.unwrap_or(code.tree))));
    };
    let mut entries = git::commit_entries(repo, commit.0, excluder)?;
    if let Some(change) = &code.change {
        let sidecar = project.change_path(change);
        match std::fs::read(&sidecar) {
            Ok(patch) if &Digest::of_bytes(&patch) == change => {
                entries = git::apply_patch_entries(entries, &patch)?;
            }
            Ok(_) => out.differences.push(
                Difference::new(Area::Code, "code", Change::Changed)
                    .because(Reason::SidecarDamaged(sidecar)),
            ),
            Err(_) => out.notes.push(Note::SidecarMissing(sidecar)),
        }
    }
    Ok(Ok(entries))
}

/// The files that differ between two sets of code entries, as code differences.
pub fn code_files(locked: &Entries, now: &Entries) -> Vec<Difference> {
    git::diff_entries(locked, now)
        .into_iter()
        .map(|(path, change)| {
            let mut d = Difference::new(
                Area::Code,
                "code",
                match change {
                    PathChange::Added => Change::Added,
                    PathChange::Removed => Change::Removed,
                    PathChange::Modified => Change::Changed,
                    PathChange::ModeChanged => Change::ModeChanged,
                },
            );
            d.path = Some(path);
            d
        })
        .collect()
}

/// Compare the code of a locked side (`commit`, `tree`, `sidecar`) with worktree entries
/// already computed (`now`): the step rebuild runs after it materialised the code.
pub fn code_against_entries(
    project: &Project,
    repo: &git2::Repository,
    locked: &CodeState,
    now: &Entries,
    excluder: &Excluder,
) -> Result<Comparison> {
    let mut out = Comparison::default();
    let tree = ObjectId(git::tree_id(now)?);
    if tree == locked.tree {
        return Ok(out);
    }
    match locked_entries(project, repo, locked, excluder, &mut out)? {
        Ok(entries) => {
            let files = code_files(&entries, now);
            if files.is_empty() {
                out.differences.push(
                    Difference::new(Area::Code, "code", Change::Changed)
                        .values(Some(Value::Object(locked.tree)), Some(Value::Object(tree)))
                        .because(Reason::TreesOnly),
                );
            }
            out.differences.extend(files);
        }
        Err(reason) => out.differences.push(
            Difference::new(Area::Code, "code", Change::Changed)
                .values(Some(Value::Object(locked.tree)), Some(Value::Object(tree)))
                .because(reason),
        ),
    }
    Ok(out)
}

fn code(
    project: &Project,
    a: &State,
    b: &State,
    tracked: &[&Lock],
    out: &mut Comparison,
) -> Result<()> {
    let (ca, cb) = match (&a.code, &b.code) {
        (None, None) => return Ok(()),
        (Some(ca), Some(cb)) => (ca, cb),
        (None, Some(_)) if b.run.is_none() => {
            out.notes.push(Note::NoCode);
            return Ok(());
        }
        (ca, cb) => {
            out.differences.push(value_difference(
                Area::Code,
                "code",
                ca.as_ref().and_then(|c| c.commit).map(Value::Object),
                cb.as_ref().and_then(|c| c.commit).map(Value::Object),
            ));
            return Ok(());
        }
    };
    let both_trees = (Some(Value::Object(ca.tree)), Some(Value::Object(cb.tree)));
    if ca.tree == cb.tree {
        if ca.commit != cb.commit {
            if let Some(locked) = ca.commit {
                out.notes.push(Note::SameTreeOtherCommit {
                    locked,
                    now: cb.commit,
                });
            }
        }
        for c in [ca, cb] {
            if let Some(change) = c.change {
                let sidecar = project.change_path(&change);
                if !sidecar.is_file() {
                    out.notes.push(Note::SidecarMissing(sidecar));
                }
            }
        }
        return Ok(());
    }
    let Some(repo) = &project.repo else {
        out.differences.push(
            Difference::new(Area::Code, "code", Change::Changed).values(both_trees.0, both_trees.1),
        );
        return Ok(());
    };
    let excluder = excluder(project, tracked);
    let ea = locked_entries(project, repo, ca, &excluder, out)?;
    let eb = locked_entries(project, repo, cb, &excluder, out)?;
    let (ea, eb) = match (ea, eb) {
        (Ok(ea), Ok(eb)) => (ea, eb),
        (Err(reason), _) | (_, Err(reason)) => {
            out.differences.push(
                Difference::new(Area::Code, "code", Change::Changed)
                    .values(ca.commit.map(Value::Object), cb.commit.map(Value::Object))
                    .because(reason),
            );
            return Ok(());
        }
    };
    let files = code_files(&ea, &eb);
    if files.is_empty() {
        out.differences.push(
            Difference::new(Area::Code, "code", Change::Changed)
                .values(both_trees.0, both_trees.1)
                .because(Reason::TreesOnly),
        );
    }
    out.differences.extend(files);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Content: datasets, checkpoints, outputs.

/// A side's manifest of a directory digest: in memory when just hashed, else from
/// `.cairn/manifests/` (its bytes checked against the digest before parsing).
pub fn manifest_of(project: &Project, content: &Content) -> Option<Manifest> {
    if let Some(m) = &content.manifest {
        return Some(m.clone());
    }
    let text = std::fs::read(project.manifest_path(&content.digest)).ok()?;
    (Digest::of_bytes(&text) == content.digest)
        .then(|| Manifest::parse(&text).ok())
        .flatten()
}

/// The differences between two contents of one dataset, checkpoint or output: file by file
/// when both manifests are here, else one for the whole. Empty when they are the same.
pub fn content_differences(
    project: &Project,
    (area, subject): (Area, &str),
    locked: &Content,
    now: &Content,
) -> Vec<Difference> {
    if locked.digest == now.digest && locked.kind == now.kind {
        return Vec::new();
    }
    let whole = Difference::new(area, subject, Change::Changed).values(
        Some(Value::Digest(locked.digest)),
        Some(Value::Digest(now.digest)),
    );
    if locked.kind != now.kind {
        return vec![whole.because(Reason::KindChanged {
            locked: locked.kind,
            now: now.kind,
        })];
    }
    if locked.kind == Kind::File {
        return vec![whole];
    }
    let (Some(ml), Some(mn)) = (manifest_of(project, locked), manifest_of(project, now)) else {
        let missing = if manifest_of(project, locked).is_none() {
            locked.digest
        } else {
            now.digest
        };
        return vec![whole.because(Reason::NoManifest(project.manifest_path(&missing)))];
    };
    let files = manifest_diff(&ml, &mn);
    if files.is_empty() {
        // Same text, different digest cannot happen; be explicit rather than silent.
        return vec![whole];
    }
    files
        .into_iter()
        .map(|(path, change)| {
            let mut d = Difference::new(area, subject, change);
            d.path = Some(path);
            d
        })
        .collect()
}

fn location_text(l: &Location) -> String {
    match l {
        Location::Path(p) => p.to_string(),
        Location::External => "external".into(),
    }
}

fn items<K: Ord + fmt::Display>(
    project: &Project,
    area: Area,
    a: &BTreeMap<K, Item>,
    b: &BTreeMap<K, Item>,
    out: &mut Vec<Difference>,
) {
    let keys: BTreeSet<&K> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let subject = key.to_string();
        let (x, y) = match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) => (x, y),
            (x, y) => {
                let digest = |i: Option<&Item>| {
                    i.and_then(|i| i.content.as_ref().ok())
                        .map(|c| Value::Digest(c.digest))
                };
                out.push(value_difference(area, &subject, digest(x), digest(y)));
                continue;
            }
        };
        if let (Some(lx), Some(ly)) = (&x.location, &y.location) {
            if lx != ly {
                out.push(
                    Difference::new(area, &subject, Change::Changed)
                        .values(
                            Some(Value::Text(location_text(lx))),
                            Some(Value::Text(location_text(ly))),
                        )
                        .because(Reason::Relocated),
                );
            }
        }
        match (&x.content, &y.content) {
            (Ok(cx), Ok(cy)) => out.extend(content_differences(project, (area, &subject), cx, cy)),
            (Ok(cx), Err(absence)) | (Err(absence), Ok(cx)) => {
                let (change, reason) = match absence {
                    Absence::NotFound(p) => (Change::Missing, Reason::NotFound(p.clone())),
                    Absence::Unlocated => (Change::Unchecked, Reason::Unlocated),
                    Absence::LeadsOutside { place, target } => (
                        Change::Unchecked,
                        Reason::LeadsOutside {
                            place: place.clone(),
                            target: target.clone(),
                        },
                    ),
                };
                out.push(
                    Difference::new(area, &subject, change)
                        .values(Some(Value::Digest(cx.digest)), None)
                        .because(reason),
                );
            }
            (Err(_), Err(_)) => {}
        }
        if let (Some(mx), Some(my)) = (&x.metrics, &y.metrics) {
            let names: BTreeSet<&String> = mx.keys().chain(my.keys()).collect();
            for name in names {
                let (va, vb) = (mx.get(name), my.get(name));
                if va != vb {
                    let mut d = value_difference(
                        area,
                        &subject,
                        va.map(|v| Value::Text(v.0.to_string())),
                        vb.map(|v| Value::Text(v.0.to_string())),
                    )
                    .because(Reason::Metric);
                    d.path = Some(format!("metric {name}"));
                    out.push(d);
                }
            }
        }
    }
}

/// Files that differ between two manifests, shown by their escaped names
/// ([`crate::content::digest::Entry::shown`]).
///
/// Both lists are normally sorted by the same bytes, so one merge pass does it; a stored
/// manifest written in another order is compared through maps instead.
pub fn manifest_diff(old: &Manifest, new: &Manifest) -> Vec<(String, Change)> {
    let sorted = |m: &Manifest| {
        m.entries.windows(2).all(|w| w[0].path < w[1].path)
            && m.entries
                .iter()
                .all(|e| std::str::from_utf8(&e.path).is_ok())
    };
    if !(sorted(old) && sorted(new)) {
        return manifest_diff_by_name(old, new);
    }
    let mut out = Vec::new();
    let (mut a, mut b) = (old.entries.iter().peekable(), new.entries.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(o), None) => {
                out.push((o.shown(), Change::Removed));
                a.next();
            }
            (None, Some(n)) => {
                out.push((n.shown(), Change::Added));
                b.next();
            }
            (Some(o), Some(n)) => match o.path.cmp(&n.path) {
                std::cmp::Ordering::Less => {
                    out.push((o.shown(), Change::Removed));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((n.shown(), Change::Added));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if o.hash != n.hash {
                        out.push((o.shown(), Change::Changed));
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    out
}

fn manifest_diff_by_name(old: &Manifest, new: &Manifest) -> Vec<(String, Change)> {
    let old: BTreeMap<String, Digest> = old.entries.iter().map(|e| (e.shown(), e.hash)).collect();
    let new: BTreeMap<String, Digest> = new.entries.iter().map(|e| (e.shown(), e.hash)).collect();
    let mut out = Vec::new();
    for (p, h) in &old {
        match new.get(p) {
            None => out.push((p.clone(), Change::Removed)),
            Some(n) if n != h => out.push((p.clone(), Change::Changed)),
            Some(_) => {}
        }
    }
    for p in new.keys() {
        if !old.contains_key(p) {
            out.push((p.clone(), Change::Added));
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Environment: Python, command, variables, lock files, host.

fn interpreter_text(p: &Python) -> String {
    format!("{} {}", p.implementation, p.version)
}

fn python_section(a: &State, b: &State, repo_root: Option<&Path>, out: &mut Vec<Difference>) {
    let (pa, pb) = match (&a.python, &b.python) {
        (Some(PythonState::Present(pa)), Some(PythonState::Present(pb))) => (pa, pb),
        (None, None) => return,
        (x, y) => {
            let text = |s: &Option<PythonState>| match s {
                Some(PythonState::Present(p)) => Some(Value::Text(interpreter_text(p))),
                _ => None,
            };
            let why = [x, y].into_iter().find_map(|s| match s {
                Some(PythonState::Absent(why)) => Some(why.clone()),
                _ => None,
            });
            let mut d = value_difference(Area::Python, "python", text(x), text(y));
            if let Some(why) = why {
                d = d.because(Reason::NoPython(why));
            }
            if d.locked.is_some() || d.now.is_some() {
                out.push(d);
            }
            return;
        }
    };
    out.extend(python(pa, pb, repo_root));
}

/// Compare two Python environments: the interpreter, each package (version, source, installed
/// files), each conda package.
pub fn python(pa: &Python, pb: &Python, repo_root: Option<&Path>) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut pb = pb.clone();
    env::align_repo_packages(pa, &mut pb, repo_root);
    if (pa.implementation.as_str(), pa.version.as_str())
        != (pb.implementation.as_str(), pb.version.as_str())
    {
        out.push(
            Difference::new(Area::Python, "python", Change::Changed).values(
                Some(Value::Text(interpreter_text(pa))),
                Some(Value::Text(interpreter_text(&pb))),
            ),
        );
    }
    let by = |p: &Python| -> BTreeMap<String, crate::model::lockfile::PyPackage> {
        p.packages
            .iter()
            .map(|x| (x.name.clone(), x.clone()))
            .collect()
    };
    let (la, lb) = (by(pa), by(&pb));
    let names: BTreeSet<&String> = la.keys().chain(lb.keys()).collect();
    for name in names {
        let version = |p: &crate::model::lockfile::PyPackage| Some(Value::Text(p.version.clone()));
        match (la.get(name), lb.get(name)) {
            (Some(x), None) => out.push(value_difference(Area::Python, name, version(x), None)),
            (None, Some(y)) => out.push(value_difference(Area::Python, name, None, version(y))),
            (Some(x), Some(y)) if x.version != y.version => {
                out.push(value_difference(Area::Python, name, version(x), version(y)))
            }
            (Some(x), Some(y)) if x.source != y.source => out.push(
                Difference::new(Area::Python, name.as_str(), Change::Changed)
                    .values(
                        Some(Value::Text(source_text(&x.source))),
                        Some(Value::Text(source_text(&y.source))),
                    )
                    .because(Reason::Source),
            ),
            (Some(x), Some(y)) if x.fingerprint.is_some() && x.fingerprint != y.fingerprint => out
                .push(
                    Difference::new(Area::Python, name.as_str(), Change::Changed)
                        .values(version(x), version(y))
                        .because(Reason::Fingerprint),
                ),
            _ => {}
        }
    }
    let conda = |p: &Python| -> BTreeMap<String, String> {
        p.conda
            .iter()
            .map(|c| {
                let v = match &c.build {
                    Some(b) => format!("{} {b}", c.version),
                    None => c.version.clone(),
                };
                (c.name.clone(), v)
            })
            .collect()
    };
    let (ca, cb) = (conda(pa), conda(&pb));
    let names: BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();
    for name in names {
        let (x, y) = (ca.get(name), cb.get(name));
        if x != y {
            out.push(
                value_difference(
                    Area::Python,
                    name,
                    x.map(|v| Value::Text(v.clone())),
                    y.map(|v| Value::Text(v.clone())),
                )
                .because(Reason::Conda),
            );
        }
    }
    out
}

fn source_text(s: &Source) -> String {
    match s {
        Source::Registry => "registry".into(),
        Source::Vcs { url, commit } => format!("{url}@{commit}"),
        Source::Archive { url, hash } => match hash {
            Some(h) => format!("{url}#{h}"),
            None => url.clone(),
        },
        Source::Directory {
            url,
            editable,
            commit,
            change,
        } => {
            let mut t = format!("{}{url}", if *editable { "editable " } else { "" });
            if let Some(c) = commit {
                t.push_str(&format!(" @ {}", &c[..c.len().min(12)]));
            }
            if change.is_some() {
                t.push_str(" + uncommitted change");
            }
            t
        }
    }
}

fn run_facts(a: &RunFacts, b: &RunFacts, out: &mut Vec<Difference>) {
    let line = |argv: &Option<Vec<String>>| {
        argv.as_ref().map(|v| {
            Value::Text(
                v.iter()
                    .map(|s| crate::process::shell_quote(s))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
    };
    if a.command != b.command {
        out.push(value_difference(
            Area::Command,
            "command",
            line(&a.command),
            line(&b.command),
        ));
    }
    if a.exit_code != b.exit_code {
        out.push(value_difference(
            Area::Command,
            "exit-code",
            a.exit_code.map(|c| Value::Text(c.to_string())),
            b.exit_code.map(|c| Value::Text(c.to_string())),
        ));
    }
}

fn env_vars(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>, out: &mut Vec<Difference>) {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x != y {
            out.push(value_difference(
                Area::Env,
                k,
                x.map(|v| Value::Text(v.clone())),
                y.map(|v| Value::Text(v.clone())),
            ));
        }
    }
}

fn lockfiles(a: &[LockfileEntry], b: &[LockfileEntry], out: &mut Vec<Difference>) {
    let ma: BTreeMap<&RelPath, &Digest> = a.iter().map(|e| (&e.path, &e.digest)).collect();
    let mb: BTreeMap<&RelPath, &Digest> = b.iter().map(|e| (&e.path, &e.digest)).collect();
    let paths: BTreeSet<&RelPath> = ma.keys().chain(mb.keys()).copied().collect();
    for p in paths {
        let (x, y) = (ma.get(p), mb.get(p));
        if x != y {
            out.push(value_difference(
                Area::Lockfile,
                p.as_str(),
                x.map(|d| Value::Digest(**d)),
                y.map(|d| Value::Digest(**d)),
            ));
        }
    }
}

/// Python lock files that pin an installed package at another version: read from the project
/// at `root` (observed only).
pub fn pins(
    root: &Path,
    now: &[LockfileEntry],
    installed: &Python,
) -> (Vec<Difference>, Vec<Note>) {
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    let versions: BTreeMap<&str, &str> = installed
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    for e in now
        .iter()
        .filter(|e| crate::probe::lockfiles::is_python(&e.kind))
    {
        match env::unsatisfied_pins(root, e, &versions) {
            Ok(list) => out.extend(list.into_iter().map(|(package, pinned, installed)| {
                Difference::new(Area::Lockfile, e.path.as_str(), Change::Changed).because(
                    Reason::Pin {
                        package,
                        pinned,
                        installed,
                    },
                )
            })),
            Err(w) => notes.push(Note::Environment(w)),
        }
    }
    (out, notes)
}

/// Compare the host facts that matter for numerics: OS, architecture, C library, GPUs (model,
/// driver, CUDA) and the PyTorch build; and the CPU model and core count, marked
/// [`Reason::MachineOnly`] (they differ between any two machines).
pub fn host(a: &Host, b: &Host) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut cmp = |subject: &str, l: Option<String>, n: Option<String>| {
        if l != n {
            out.push(value_difference(
                Area::Host,
                subject,
                l.map(Value::Text),
                n.map(Value::Text),
            ));
        }
    };
    cmp("os", a.os.clone(), b.os.clone());
    cmp("arch", a.arch.clone(), b.arch.clone());
    cmp("glibc", a.glibc.clone(), b.glibc.clone());
    let gpus = |h: &Host| {
        (!h.gpus.is_empty()).then(|| {
            h.gpus
                .iter()
                .map(|g| g.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    cmp("gpu", gpus(a), gpus(b));
    let first = |h: &Host, f: fn(&crate::model::lockfile::Gpu) -> Option<String>| {
        h.gpus.first().and_then(f)
    };
    cmp(
        "gpu driver",
        first(a, |g| g.driver.clone()),
        first(b, |g| g.driver.clone()),
    );
    cmp(
        "gpu cuda",
        first(a, |g| g.cuda.clone()),
        first(b, |g| g.cuda.clone()),
    );
    let t = |h: &Host, f: fn(&python::TorchStack) -> Option<String>| h.torch.as_ref().and_then(f);
    cmp(
        "torch",
        t(a, |x| x.version.clone()),
        t(b, |x| x.version.clone()),
    );
    cmp(
        "torch cuda",
        t(a, |x| x.cuda.clone()),
        t(b, |x| x.cuda.clone()),
    );
    cmp(
        "cudnn",
        t(a, |x| x.cudnn.clone()),
        t(b, |x| x.cudnn.clone()),
    );
    cmp("nccl", t(a, |x| x.nccl.clone()), t(b, |x| x.nccl.clone()));
    if a.cpu != b.cpu {
        out.push(
            value_difference(
                Area::Host,
                "cpu",
                a.cpu.clone().map(Value::Text),
                b.cpu.clone().map(Value::Text),
            )
            .because(Reason::MachineOnly),
        );
    }
    if a.cores != b.cores {
        out.push(
            value_difference(
                Area::Host,
                "cores",
                a.cores.map(|c| Value::Text(c.to_string())),
                b.cores.map(|c| Value::Text(c.to_string())),
            )
            .because(Reason::MachineOnly),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::digest::Entry;

    fn m(items: &[(&[u8], u8)]) -> Manifest {
        Manifest {
            entries: items
                .iter()
                .map(|(p, h)| Entry {
                    path: p.to_vec(),
                    hash: Digest([*h; 32]),
                    size: None,
                })
                .collect(),
        }
    }

    #[test]
    fn merge_and_map_diffs_agree() {
        let old = m(&[(b"a", 1), (b"b", 2), (b"d/x", 3)]);
        let new = m(&[(b"a", 1), (b"b", 9), (b"c", 4)]);
        let want = vec![
            ("b".to_string(), Change::Changed),
            ("c".to_string(), Change::Added),
            ("d/x".to_string(), Change::Removed),
        ];
        let mut merged = manifest_diff(&old, &new);
        merged.sort();
        assert_eq!(merged, want);
        assert_eq!(manifest_diff_by_name(&old, &new), want);
        // Names that are not UTF-8 are told apart and shown escaped.
        let old = m(&[(b"\xfe", 1), (b"\xff", 1)]);
        let new = m(&[(b"\xfe", 1), (b"\xff", 2)]);
        let want = vec![("\\xff".to_string(), Change::Changed)];
        assert_eq!(manifest_diff(&old, &new), want);
        // A stored manifest out of order goes through maps, with the same answer.
        let unsorted = Manifest {
            entries: old.entries.iter().rev().cloned().collect(),
        };
        assert_eq!(manifest_diff(&unsorted, &new), want);
    }

    #[test]
    fn areas_order_causes_before_effects() {
        let order = [
            Area::Code,
            Area::Data,
            Area::Python,
            Area::Command,
            Area::Env,
            Area::Seed,
            Area::Lockfile,
            Area::Host,
            Area::Checkpoint,
            Area::Output,
        ];
        let mut sorted = order;
        sorted.sort();
        assert_eq!(sorted, order);
        assert_eq!(order.iter().filter(|s| s.is_effect()).count(), 2);
    }

    #[test]
    fn host_values_are_typed_not_text() {
        let a = Host {
            os: Some("linux".into()),
            ..Host::default()
        };
        let b = Host::default();
        let d = host(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].change, Change::Removed);
        assert_eq!(d[0].locked, Some(Value::Text("linux".into())));
        assert_eq!(d[0].now, None);
    }

    #[test]
    fn env_and_command_values() {
        let a: BTreeMap<String, String> = [("PYTHONHASHSEED", "0"), ("OMP_NUM_THREADS", "4")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let b: BTreeMap<String, String> = [("PYTHONHASHSEED", "1"), ("NCCL_ALGO", "Ring")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let mut out = Vec::new();
        env_vars(&a, &b, &mut out);
        let got: Vec<(&str, Change)> = out.iter().map(|d| (d.subject.as_str(), d.change)).collect();
        assert_eq!(
            got,
            [
                ("NCCL_ALGO", Change::Added),
                ("OMP_NUM_THREADS", Change::Removed),
                ("PYTHONHASHSEED", Change::Changed)
            ]
        );
        let facts = |argv: &[&str]| RunFacts {
            command: Some(argv.iter().map(|s| s.to_string()).collect()),
            exit_code: Some(0),
            seed: None,
        };
        let mut out = Vec::new();
        run_facts(
            &facts(&["python", "train.py"]),
            &facts(&["python", "train.py", "lr=1e-3"]),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].now,
            Some(Value::Text("python train.py lr=1e-3".into()))
        );
    }
}
