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
//! `cairn verify`, `cairn diff`, `cairn rebuild` and `cairn audit` are policies over these
//! differences: which fail, which warn, how they are worded ([`Reported`] is the wording they
//! share). The same state therefore gives the same set of differences through every command.
//!
//! * `code`: two code trees compared file by file (a locked side's files are its commit's
//!   plus its change sidecar).
//! * `content`: datasets, checkpoints and outputs, by digest, then file by file through their
//!   manifests.
//! * `environment`: the Python interpreter and packages, command, determinism variables,
//!   dependency lock files and their pins, host.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::content::digest::{Digest, Kind, Manifest};
use crate::error::Result;
use crate::model::lockfile::{Location, Lock};
use crate::model::paths::RelPath;
use crate::project::Project;

pub use crate::model::oid::ObjectId;

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
    /// A checkpoint the run deleted itself before it ended (keep-last-N), as its lock records:
    /// not here, and not expected to be. Not a failure.
    Deleted,
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
            Change::Deleted => "deleted by the run",
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
            Value::Object(o) => o.short().to_string(),
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
    /// A Python dependency file asks for a version (or a package) the environment does not
    /// have.
    Pin {
        /// The package.
        package: String,
        /// What the file asks for, as written with the package (`six>=1.17`; several for a
        /// lock file's alternatives, any of which would do).
        pinned: Vec<String>,
        /// The installed version; `None` when the package is not installed.
        installed: Option<String>,
    },
    /// No Python environment could be observed.
    NoPython(String),
    /// A host fact that differs between any two machines (CPU model, core count); verify does
    /// not report it.
    MachineOnly,
    /// The run deleted this checkpoint itself before it ended; the lock keeps its digest.
    DeletedByRun,
    /// Instruction-set features only one side has: numeric kernels dispatch on them.
    CpuFeatures,
    /// Another BLAS/LAPACK library (or build of it) for a numeric package.
    Blas,
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
            (Some(a), Some(b)) if a == b => a,
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
            Reason::LeadsOutside { place, target } => {
                let mut words = format!(
                    "{} leads outside the repository (to {}) through a link; not read",
                    place.display(),
                    target.display()
                );
                if self.area == Area::Data {
                    words.push_str(&format!(
                        " unless you say so: --data {}=PATH or in cairn.toml",
                        self.subject
                    ));
                }
                words
            }
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
            } => match installed {
                Some(v) => format!(
                    "{} wants {}, the environment has {v}",
                    self.subject,
                    pinned.join(" or ")
                ),
                None => format!(
                    "{} wants {}, the environment does not have {package}",
                    self.subject,
                    pinned.join(" or ")
                ),
            },
            Reason::NoPython(why) => why.clone(),
            Reason::MachineOnly => "differs between any two machines".into(),
            Reason::DeletedByRun => format!(
                "the run removed it itself before it ended; recorded digest {}, not expected on disk",
                self.locked
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "unknown".into())
            ),
            Reason::CpuFeatures => {
                "instruction sets only one side has: numeric libraries pick other kernels".into()
            }
            Reason::Blas => "another BLAS library: matrix products round differently".into(),
        })
    }
}

/// One difference as every command reports it: the same subject, path, change and words in
/// verify's findings, diff's causes and effects and rebuild's steps (each adds its own fields:
/// verify an area and a severity, diff the section and both values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reported {
    /// `code`, a dataset name, a package name, a checkpoint or output path, a host item...
    pub subject: String,
    /// The file inside it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What differs.
    pub change: Change,
    /// Words for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl From<&Difference> for Reported {
    fn from(d: &Difference) -> Reported {
        Reported {
            subject: d.subject.clone(),
            path: d.path.clone(),
            change: d.change,
            detail: d.detail_text(),
        }
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
    /// An external dataset was read where this user's own `cairn lock` found it on this machine
    /// ([`crate::places`]), no `--data` or cairn.toml saying otherwise.
    Remembered {
        /// The dataset.
        name: String,
        /// Where it was read.
        place: PathBuf,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::SameTreeOtherCommit { locked, now } => write!(
                f,
                "the code matches: the same tree at commit {} and at {} (only what is not code, such as locks, differs between them)",
                locked.short(),
                now.map(|n| n.short().to_string()).unwrap_or_else(|| "an unborn HEAD".into())
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
            Note::Remembered { name, place } => write!(
                f,
                "external dataset {name} was read at {}, where your `cairn lock` found it on this machine (--data {name}=PATH reads it elsewhere)",
                place.display()
            ),
        }
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
    // Stable: by area, each area keeping its own order.
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

/// How likely a package difference is to explain a different result, for the order of a
/// summary: most likely first (the derived order). People only: no JSON report carries it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Salience {
    /// The run imports it: the modules, and the first script that imports one of them.
    Imported {
        /// The imported modules it provides.
        modules: Vec<String>,
        /// A script that imports one, relative to the project root.
        by: String,
    },
    /// Locked, and not installed now.
    Removed,
    /// Another version: the index of the first part of the version that differs (0: the
    /// major version), so larger changes come first.
    Version(usize),
    /// The same version from another source, or with other installed files; the interpreter.
    Other,
    /// Installed now, and not locked.
    Added,
}

/// The [`Salience`] of a package difference (`None` for any other difference): imported by the
/// run (`imports`, with the installed distributions' metadata directories in `metadata` to
/// say which modules each provides), else by the size of the change.
pub fn salience(
    d: &Difference,
    imports: &crate::probe::imports::Imports,
    metadata: &BTreeMap<String, PathBuf>,
) -> Option<Salience> {
    if d.area != Area::Python {
        return None;
    }
    if d.subject == "python" {
        return Some(Salience::Other);
    }
    if !imports.modules.is_empty() && d.reason != Some(Reason::Conda) {
        let provides = metadata
            .get(&d.subject)
            .map(|m| crate::probe::imports::provided_modules(m));
        let modules = imports.of_distribution(&d.subject, provides.as_deref());
        if let Some(by) = modules.iter().find_map(|m| imports.first_importer(m)) {
            return Some(Salience::Imported {
                by: by.to_string(),
                modules,
            });
        }
    }
    Some(match (d.change, &d.locked, &d.now) {
        (Change::Removed, _, _) => Salience::Removed,
        (Change::Added, _, _) => Salience::Added,
        (_, Some(Value::Text(a)), Some(Value::Text(b))) if d.reason.is_none() => {
            Salience::Version(first_difference(a, b))
        }
        _ => Salience::Other,
    })
}

/// The index of the first part (split at `.`, `+`, `-`) in which two versions differ.
fn first_difference(a: &str, b: &str) -> usize {
    let parts = |v: &str| -> Vec<String> {
        v.split(['.', '+', '-'])
            .map(|p| p.trim_start_matches('0').to_string())
            .collect()
    };
    let (pa, pb) = (parts(a), parts(b));
    (0..pa.len().max(pb.len()))
        .find(|&i| pa.get(i) != pb.get(i))
        .unwrap_or(pa.len())
}

/// How many files each directory dataset, checkpoint and output of a lock holds (a file: 1),
/// by area and subject as the differences name them: the "of N files" of a summary.
pub fn file_counts(lock: &Lock) -> BTreeMap<(Area, String), u64> {
    let mut out = BTreeMap::new();
    for d in &lock.data {
        out.insert((Area::Data, d.name.clone()), d.files);
    }
    for (area, list) in [
        (Area::Checkpoint, &lock.checkpoints),
        (Area::Output, &lock.outputs),
    ] {
        for a in list {
            out.insert((area, a.path.to_string()), a.files.unwrap_or(1));
        }
    }
    out
}

/// Changed, added and removed counts of a group of differences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Changed (content or mode).
    pub changed: u64,
    /// Added.
    pub added: u64,
    /// Removed.
    pub removed: u64,
    /// Missing or not checked (the item as a whole).
    pub other: u64,
}

impl Tally {
    /// Count these changes.
    pub fn of(changes: impl IntoIterator<Item = Change>) -> Tally {
        let mut t = Tally::default();
        for c in changes {
            match c {
                Change::Changed | Change::ModeChanged => t.changed += 1,
                Change::Added => t.added += 1,
                Change::Removed => t.removed += 1,
                // Deleted by the run itself: the item as a whole, like missing.
                Change::Missing | Change::Unchecked | Change::Deleted => t.other += 1,
            }
        }
        t
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.changed + self.added + self.removed + self.other
    }
}

mod causes;
mod code;
mod content;
mod environment;
mod state;

pub use causes::{likely_causes, Cause, LikelyCause};
use code::code;
pub use code::{code_against_entries, code_files, excluder};
use content::items;
pub use content::{content_differences, manifest_diff, manifest_of};
use environment::{env_vars, lockfiles, python_section, run_facts};
pub use environment::{host, pins, python};
pub use state::{Absence, CodeState, Content, Item, PythonState, RunFacts, State};
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::lockfile::Host;

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
    fn salience_orders_imported_then_removed_then_larger_changes() {
        let pkg = |name: &str, a: Option<&str>, b: Option<&str>| {
            value_difference(
                Area::Python,
                name,
                a.map(|v| Value::Text(v.into())),
                b.map(|v| Value::Text(v.into())),
            )
        };
        let mut imports = crate::probe::imports::Imports::default();
        imports
            .modules
            .insert("sklearn".into(), vec!["train.py".into()]);
        let meta = BTreeMap::new();
        let s = |d: &Difference| salience(d, &imports, &meta).unwrap();
        let sk = s(&pkg("scikit-learn", Some("1.4.0"), Some("1.4.1")));
        assert!(matches!(&sk, Salience::Imported { by, .. } if by == "train.py"));
        let removed = s(&pkg("six", Some("1.16.0"), None));
        let major = s(&pkg("numpy", Some("1.26.4"), Some("2.0.0")));
        let patch = s(&pkg("idna", Some("3.6"), Some("3.7")));
        let added = s(&pkg("rich", None, Some("13.0")));
        let mut all = vec![
            added.clone(),
            patch.clone(),
            major.clone(),
            removed.clone(),
            sk.clone(),
        ];
        all.sort();
        assert_eq!(all, [sk, removed, major, patch, added]);
        assert_eq!(first_difference("2.0.0", "2.0.1"), 2);
        assert_eq!(first_difference("1.26", "1.26.0"), 2);
        let data = Difference::new(Area::Data, "train", Change::Changed);
        assert_eq!(salience(&data, &imports, &meta), None);
    }

    #[test]
    fn tally_counts_each_change() {
        let t = Tally::of([
            Change::Changed,
            Change::Added,
            Change::ModeChanged,
            Change::Missing,
        ]);
        assert_eq!(
            (t.changed, t.added, t.removed, t.other, t.total()),
            (2, 1, 0, 1, 4)
        );
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
