//! `cairn diff`: why two runs differ.
//!
//! Compares two locks, or a lock with the current state of the project (probed as `cairn lock`
//! would, without writing a lock, a manifest or a sidecar), section by section: the code (the
//! commits, the commits between them, the files that differ), the datasets (and the files in
//! them that differ, when both manifests are in `.cairn/manifests/`), the Python interpreter and
//! packages, the command, the determinism variables, the seed, the dependency lock files and the
//! host. Those are the possible **causes**; the checkpoints and outputs that differ are the
//! **effects**. Causes are ordered by how likely each is to explain a different result: code,
//! data, packages, command, environment variables, seed, lock files, host.
//!
//! The JSON form of the [`Report`] is specified in `spec/diff-report.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::content::digest::{self, Digest, HashOptions, Kind, Manifest, Progress};
use crate::error::{Error, Result};
use crate::model::lockfile::{Artifact, Code, Data, Location, Lock, Run};
use crate::model::paths::RelPath;
use crate::ops::verify::{self, Change};
use crate::probe::env;
use crate::probe::git::{self, Entries, Excluder, PathChange};
use crate::project::Project;

/// What part of a run a difference is about, in the order of how likely it explains a
/// different result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
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

impl Section {
    /// Checkpoints and outputs are what a run produced: effects, not causes.
    pub fn is_effect(self) -> bool {
        matches!(self, Section::Checkpoint | Section::Output)
    }

    /// The section's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Code => "code",
            Section::Data => "data",
            Section::Python => "python",
            Section::Command => "command",
            Section::Env => "env",
            Section::Seed => "seed",
            Section::Lockfile => "lockfile",
            Section::Host => "host",
            Section::Checkpoint => "checkpoint",
            Section::Output => "output",
        }
    }
}

/// One difference between A and B.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// What part of the run.
    pub section: Section,
    /// `code`; a dataset name; `python` or a package name; `command` or `exit-code`; a variable
    /// name; `seed`; a lock file, checkpoint or output path; a host item.
    pub subject: String,
    /// The file inside it, when known (a repository path for code, a path inside a dataset or
    /// checkpoint directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `added` (only in B), `removed` (only in A), `changed`, `mode-changed`, or `unchecked`.
    pub change: Change,
    /// The value in A, when there is a short one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<String>,
    /// The value in B.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<String>,
    /// Words for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// The lockfile, or `None` for the current state.
    pub lock: Option<PathBuf>,
    /// Its run id (`None` for the current state).
    pub run: Option<String>,
    /// When it was locked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_at: Option<String>,
    /// The commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A commit between the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitLine {
    /// Full id.
    pub commit: String,
    /// First line of its message.
    pub subject: String,
}

/// The code of the two sides at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct CodeSummary {
    /// A's commit.
    pub a: String,
    /// B's commit.
    pub b: String,
    /// Whether the code (commit + change, exclusions applied) is the same.
    pub same_tree: bool,
    /// Commits reachable from B but not from A (`git log A..B`), newest first; `None` when not
    /// both commits are in the repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ahead: Option<Vec<CommitLine>>,
    /// Commits reachable from A but not from B (`git log B..A`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind: Option<Vec<CommitLine>>,
    /// `true` when a list was cut at [`MAX_COMMITS`].
    pub truncated: bool,
}

/// At most this many commits are listed each way.
pub const MAX_COMMITS: usize = 50;

/// The result of a diff.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// A.
    pub a: Side,
    /// B.
    pub b: Side,
    /// `true` when no cause and no effect differs.
    pub same: bool,
    /// What differs and may explain a different result, most likely first.
    pub causes: Vec<Difference>,
    /// Checkpoints and outputs that differ.
    pub effects: Vec<Difference>,
    /// The code at a glance, when both sides record code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeSummary>,
    /// Facts that are not differences.
    pub notes: Vec<String>,
}

/// How to probe the current state (`cairn diff A` with no B).
#[derive(Debug, Clone, Default)]
pub struct CurrentOptions {
    /// Dataset locations (`--data NAME=PATH`), absolute.
    pub data: BTreeMap<String, PathBuf>,
    /// The interpreter whose environment to compare (`--python`).
    pub python: Option<PathBuf>,
    /// Do not compare the Python environment.
    pub no_python: bool,
    /// Read every file, even those the stat cache knows.
    pub no_cache: bool,
}

/// What B is.
#[derive(Debug, Clone)]
pub enum Target {
    /// Another lock.
    Lock(PathBuf),
    /// The project as it is now.
    Current(CurrentOptions),
}

/// A side, loaded.
struct Loaded {
    lock: Lock,
    current: bool,
    /// Manifests of directories hashed now (current state only), by digest.
    manifests: BTreeMap<Digest, Manifest>,
    /// The working tree's entries (current state only).
    entries: Option<Entries>,
    /// Datasets, checkpoints and outputs that were looked for now and not found.
    missing: BTreeMap<String, String>,
}

/// Compare the lock at `a` with `b`.
pub fn diff(
    project: &Project,
    a: &Path,
    b: &Target,
    progress: Option<&dyn Progress>,
) -> Result<Report> {
    let lock_a = Lock::load(a)?;
    let side_a = Loaded {
        lock: lock_a,
        current: false,
        manifests: BTreeMap::new(),
        entries: None,
        missing: BTreeMap::new(),
    };
    let side_b = match b {
        Target::Lock(p) => Loaded {
            lock: Lock::load(p)?,
            current: false,
            manifests: BTreeMap::new(),
            entries: None,
            missing: BTreeMap::new(),
        },
        Target::Current(opts) => probe_current(project, &side_a.lock, opts, progress)?,
    };
    let mut notes = Vec::new();
    let mut out = Vec::new();
    let code = diff_code(project, &side_a, &side_b, &mut out, &mut notes)?;
    diff_data(project, &side_a, &side_b, &mut out);
    diff_python(
        &side_a.lock,
        &side_b.lock,
        project.repo_root.as_deref(),
        &mut out,
    );
    if side_b.current {
        notes.push(
            "the current state has no command: the command, exit code and seed are not compared"
                .into(),
        );
    } else {
        diff_command(&side_a.lock.run, &side_b.lock.run, &mut out);
    }
    diff_env(&side_a.lock.run, &side_b.lock.run, &mut out);
    if !side_b.current && side_a.lock.run.seed != side_b.lock.run.seed {
        out.push(diff_value(
            Section::Seed,
            "seed",
            side_a.lock.run.seed.map(|s| s.to_string()),
            side_b.lock.run.seed.map(|s| s.to_string()),
        ));
    }
    diff_lockfiles(&side_a.lock, &side_b.lock, &mut out);
    diff_host(&side_a.lock, &side_b.lock, &mut out);
    for section in [Section::Checkpoint, Section::Output] {
        diff_artifacts(project, section, &side_a, &side_b, &mut out);
    }
    // Stable: by section, keeping each section's own order.
    out.sort_by_key(|d| d.section);
    let (effects, causes): (Vec<Difference>, Vec<Difference>) =
        out.into_iter().partition(|d| d.section.is_effect());
    let side = |l: &Loaded, path: Option<&Path>| Side {
        lock: path.map(Path::to_path_buf),
        run: (!l.current).then(|| l.lock.run.id.clone()),
        locked_at: if l.current {
            None
        } else {
            l.lock.run.locked_at.clone()
        },
        commit: l.lock.code.as_ref().map(|c| c.commit.clone()),
    };
    Ok(Report {
        a: side(&side_a, Some(a)),
        b: side(
            &side_b,
            match b {
                Target::Lock(p) => Some(p.as_path()),
                Target::Current(_) => None,
            },
        ),
        same: causes.is_empty() && effects.is_empty(),
        causes,
        effects,
        code,
        notes,
    })
}

// ---------------------------------------------------------------------------------------------
// The current state.

/// Probe the project now, at the places lock `a` names: code (with `a`'s exclusions), the
/// environment, `a`'s datasets, checkpoints and outputs. Nothing is written but the stat cache.
fn probe_current(
    project: &Project,
    a: &Lock,
    opts: &CurrentOptions,
    progress: Option<&dyn Progress>,
) -> Result<Loaded> {
    for name in opts.data.keys() {
        if !a.data.iter().any(|d| &d.name == name) {
            return Err(Error::Usage(format!(
                "--data {name}=...: the lock has no dataset named {name:?}"
            )));
        }
    }
    let cache_dir = project.stat_cache_dir();
    let hopts = HashOptions {
        cache_dir: Some(&cache_dir),
        use_cache: !opts.no_cache,
        progress,
    };
    let mut manifests = BTreeMap::new();
    let mut missing = BTreeMap::new();
    let hash = |place: &Path,
                key: &str,
                manifests: &mut BTreeMap<Digest, Manifest>,
                missing: &mut BTreeMap<String, String>|
     -> Result<Option<digest::Hashed>> {
        match digest::hash_path_with(place, &hopts) {
            Ok(mut h) => {
                if let Some(m) = h.manifest.take() {
                    manifests.insert(h.digest, m);
                }
                Ok(Some(h))
            }
            Err(Error::Missing { .. }) => {
                missing.insert(
                    key.to_string(),
                    format!("{} does not exist", place.display()),
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    };
    let mut data = Vec::new();
    for d in &a.data {
        let configured = || {
            project
                .config
                .data
                .get(&d.name)
                .filter(|_| d.location == Location::External)
                .map(|p| project.resolve(&project.root, p).0)
        };
        let place = match (
            opts.data.get(&d.name).cloned().or_else(configured),
            &d.location,
        ) {
            (Some(p), _) => p,
            (None, Location::Path(rel)) => rel.under(&project.root),
            (None, Location::External) => {
                missing.insert(
                    format!("data:{}", d.name),
                    format!(
                        "external dataset: say where it is with --data {}=PATH or in cairn.toml",
                        d.name
                    ),
                );
                continue;
            }
        };
        if let Some(h) = hash(
            &place,
            &format!("data:{}", d.name),
            &mut manifests,
            &mut missing,
        )? {
            data.push(Data {
                name: d.name.clone(),
                location: d.location.clone(),
                kind: h.kind,
                digest: h.digest,
                files: h.files,
                bytes: h.bytes,
            });
        }
    }
    let mut artifacts = |list: &[Artifact], what: &str| -> Result<Vec<Artifact>> {
        let mut out = Vec::new();
        for x in list {
            let key = format!("{what}:{}", x.path);
            if let Some(h) = hash(
                &x.path.under(&project.root),
                &key,
                &mut manifests,
                &mut missing,
            )? {
                out.push(Artifact {
                    path: x.path.clone(),
                    kind: h.kind,
                    digest: h.digest,
                    files: (h.kind == Kind::Dir).then_some(h.files),
                    bytes: h.bytes,
                    ..x.clone()
                });
            }
        }
        Ok(out)
    };
    let checkpoints = artifacts(&a.checkpoints, "checkpoint")?;
    let outputs = artifacts(&a.outputs, "output")?;

    let (code, entries) = match &project.repo {
        Some(repo) if a.code.is_some() => {
            let excluder = excluder(project, &[a]);
            let state = git::capture(repo, &excluder)?;
            let entries = git::working_entries(repo, &excluder)?;
            let change = (!state.patch.is_empty()).then(|| Digest::of_bytes(&state.patch));
            (
                Some(Code {
                    commit: state.commit.to_string(),
                    branch: state.branch,
                    remote: state.remote,
                    tree: state.tree.to_string(),
                    dirty: change.is_some(),
                    change,
                    submodules: Vec::new(),
                }),
                Some(entries),
            )
        }
        _ => (None, None),
    };
    let captured = env::capture(project, opts.python.as_deref(), opts.no_python)?;
    let lock = Lock {
        code,
        host: Some(captured.host.clone()),
        python: captured.python.as_ref().map(env::python_table),
        lockfiles: captured.lockfiles.clone(),
        inputs: a.inputs.clone(),
        data,
        checkpoints,
        outputs,
        ..Lock::of_run(Run::blank(captured.env.clone()))
    };
    Ok(Loaded {
        lock,
        current: true,
        manifests,
        entries,
        missing,
    })
}

/// The paths the locks track by digest (not code), as repository paths.
fn excluder(project: &Project, locks: &[&Lock]) -> Excluder {
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

// ---------------------------------------------------------------------------------------------
// Sections.

fn diff_value(section: Section, subject: &str, a: Option<String>, b: Option<String>) -> Difference {
    let change = match (&a, &b) {
        (None, Some(_)) => Change::Added,
        (Some(_), None) => Change::Removed,
        _ => Change::Changed,
    };
    Difference {
        section,
        subject: subject.to_string(),
        path: None,
        change,
        a,
        b,
        detail: None,
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// The entries of one side's code: the commit's tree plus its change sidecar, or the working
/// tree for the current state. `None` with a reason when they cannot be known here.
fn code_entries(
    project: &Project,
    repo: &git2::Repository,
    side: &Loaded,
    code: &Code,
    excluder: &Excluder,
    notes: &mut Vec<String>,
) -> Result<Option<Entries>> {
    if let Some(e) = &side.entries {
        return Ok(Some(e.clone()));
    }
    if !git::has_commit(repo, &code.commit) {
        return Ok(None);
    }
    let oid = git2::Oid::from_str(&code.commit).map_err(|e| Error::Git {
        message: "bad commit id".into(),
        source: e,
    })?;
    let mut entries = git::commit_entries(repo, oid, excluder)?;
    if let Some(change) = &code.change {
        let sidecar = project.change_path(change);
        match std::fs::read(&sidecar) {
            Ok(p) if &Digest::of_bytes(&p) == change => {
                entries = git::apply_patch_entries(entries, &p)?;
            }
            _ => notes.push(format!(
                "the change sidecar {} is missing or damaged; files are compared with commit {}",
                sidecar.display(),
                short(&code.commit)
            )),
        }
    }
    Ok(Some(entries))
}

fn git_log(repo_root: &Path, range: &str) -> Option<(Vec<CommitLine>, bool)> {
    let out = Command::new("git")
        .current_dir(repo_root)
        .args([
            "log",
            "--no-color",
            "--format=%H%x09%s",
            &format!("--max-count={}", MAX_COMMITS + 1),
            range,
            "--",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut lines: Vec<CommitLine> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (c, s) = l.split_once('\t')?;
            Some(CommitLine {
                commit: c.to_string(),
                subject: s.to_string(),
            })
        })
        .collect();
    let truncated = lines.len() > MAX_COMMITS;
    lines.truncate(MAX_COMMITS);
    Some((lines, truncated))
}

fn diff_code(
    project: &Project,
    a: &Loaded,
    b: &Loaded,
    out: &mut Vec<Difference>,
    notes: &mut Vec<String>,
) -> Result<Option<CodeSummary>> {
    let (ca, cb) = match (&a.lock.code, &b.lock.code) {
        (None, None) => return Ok(None),
        (Some(ca), Some(cb)) => (ca, cb),
        (ca, cb) => {
            out.push(diff_value(
                Section::Code,
                "code",
                ca.as_ref().map(|c| short(&c.commit).to_string()),
                cb.as_ref().map(|c| short(&c.commit).to_string()),
            ));
            return Ok(None);
        }
    };
    let same_tree = ca.tree == cb.tree;
    let mut summary = CodeSummary {
        a: ca.commit.clone(),
        b: cb.commit.clone(),
        same_tree,
        ahead: None,
        behind: None,
        truncated: false,
    };
    let Some(repo) = &project.repo else {
        if !same_tree {
            out.push(Difference {
                section: Section::Code,
                subject: "code".into(),
                path: None,
                change: Change::Changed,
                a: Some(short(&ca.tree).to_string()),
                b: Some(short(&cb.tree).to_string()),
                detail: Some("the code trees differ; run cairn diff inside the repository to see which files".into()),
            });
        }
        return Ok(Some(summary));
    };
    let both_in_repo = git::has_commit(repo, &ca.commit) && git::has_commit(repo, &cb.commit);
    if ca.commit != cb.commit && both_in_repo {
        if let Some(root) = &project.repo_root {
            let ahead = git_log(root, &format!("{}..{}", ca.commit, cb.commit));
            let behind = git_log(root, &format!("{}..{}", cb.commit, ca.commit));
            summary.truncated =
                ahead.as_ref().is_some_and(|x| x.1) || behind.as_ref().is_some_and(|x| x.1);
            summary.ahead = ahead.map(|x| x.0);
            summary.behind = behind.map(|x| x.0);
        }
    } else if ca.commit == cb.commit {
        summary.ahead = Some(Vec::new());
        summary.behind = Some(Vec::new());
    }
    for c in [&ca.commit, &cb.commit] {
        let current_head = b.current && c == &cb.commit;
        if !current_head && !git::has_commit(repo, c) {
            notes.push(format!(
                "commit {} is not in this repository (fetch it to see the commits and files that differ)",
                short(c)
            ));
        }
    }
    if same_tree {
        if ca.commit != cb.commit {
            notes.push(format!(
                "the code is the same tree at commits {} and {} (only excluded files, such as locks, differ between them)",
                short(&ca.commit),
                short(&cb.commit)
            ));
        }
        return Ok(Some(summary));
    }
    let excluder = excluder(project, &[&a.lock, &b.lock]);
    let ea = code_entries(project, repo, a, ca, &excluder, notes)?;
    let eb = code_entries(project, repo, b, cb, &excluder, notes)?;
    let (Some(ea), Some(eb)) = (ea, eb) else {
        out.push(Difference {
            section: Section::Code,
            subject: "code".into(),
            path: None,
            change: Change::Changed,
            a: Some(short(&ca.commit).to_string()),
            b: Some(short(&cb.commit).to_string()),
            detail: Some("the code differs; fetch the missing commit to see which files".into()),
        });
        return Ok(Some(summary));
    };
    let files = git::diff_entries(&ea, &eb);
    if files.is_empty() {
        out.push(Difference {
            section: Section::Code,
            subject: "code".into(),
            path: None,
            change: Change::Changed,
            a: Some(short(&ca.tree).to_string()),
            b: Some(short(&cb.tree).to_string()),
            detail: Some(
                "the git trees differ, but no file does (the two locks exclude different paths)"
                    .into(),
            ),
        });
    }
    for (path, change) in files {
        out.push(Difference {
            section: Section::Code,
            subject: "code".into(),
            path: Some(path),
            change: match change {
                PathChange::Added => Change::Added,
                PathChange::Removed => Change::Removed,
                PathChange::Modified => Change::Changed,
                PathChange::ModeChanged => Change::ModeChanged,
            },
            a: None,
            b: None,
            detail: None,
        });
    }
    Ok(Some(summary))
}

/// A side's manifest of a directory digest: in memory (current state) or in `.cairn/manifests/`
/// (checked against the digest).
fn manifest_of(project: &Project, side: &Loaded, d: &Digest) -> Option<Manifest> {
    if let Some(m) = side.manifests.get(d) {
        return Some(m.clone());
    }
    let text = std::fs::read(project.manifest_path(d)).ok()?;
    (&Digest::of_bytes(&text) == d)
        .then(|| Manifest::parse(&text).ok())
        .flatten()
}

/// Files that differ between two digests of one item, by name when both manifests are here.
fn content_differences(
    project: &Project,
    (section, subject): (Section, &str),
    (a, ka, da): (&Loaded, Kind, &Digest),
    (b, kb, db): (&Loaded, Kind, &Digest),
    out: &mut Vec<Difference>,
) {
    let whole = |detail: Option<String>| Difference {
        section,
        subject: subject.to_string(),
        path: None,
        change: Change::Changed,
        a: Some(da.to_string()),
        b: Some(db.to_string()),
        detail,
    };
    if ka == Kind::Dir && kb == Kind::Dir {
        if let (Some(ma), Some(mb)) = (manifest_of(project, a, da), manifest_of(project, b, db)) {
            let files = verify::manifest_diff(&ma, &mb);
            if files.is_empty() {
                out.push(whole(None));
            }
            for (path, change) in files {
                out.push(Difference {
                    section,
                    subject: subject.to_string(),
                    path: Some(path),
                    change,
                    a: None,
                    b: None,
                    detail: None,
                });
            }
            return;
        }
        out.push(whole(Some(
            "no manifests in .cairn/manifests/ to name the files".into(),
        )));
    } else if ka != kb {
        out.push(whole(Some(format!(
            "a {} in A, a {} in B",
            kind_name(ka),
            kind_name(kb)
        ))));
    } else {
        out.push(whole(None));
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "directory",
    }
}

fn location_text(l: &Location) -> String {
    match l {
        Location::Path(p) => p.to_string(),
        Location::External => "external".into(),
    }
}

fn diff_data(project: &Project, a: &Loaded, b: &Loaded, out: &mut Vec<Difference>) {
    let ma: BTreeMap<&str, &Data> = a.lock.data.iter().map(|d| (d.name.as_str(), d)).collect();
    let mb: BTreeMap<&str, &Data> = b.lock.data.iter().map(|d| (d.name.as_str(), d)).collect();
    let names: BTreeSet<&str> = ma.keys().chain(mb.keys()).copied().collect();
    for name in names {
        match (ma.get(name), mb.get(name)) {
            (Some(x), None) => out.push(Difference {
                section: Section::Data,
                subject: name.to_string(),
                path: None,
                change: Change::Removed,
                a: Some(x.digest.to_string()),
                b: None,
                detail: b.missing.get(&format!("data:{name}")).cloned(),
            }),
            (None, Some(y)) => out.push(Difference {
                section: Section::Data,
                subject: name.to_string(),
                path: None,
                change: Change::Added,
                a: None,
                b: Some(y.digest.to_string()),
                detail: None,
            }),
            (Some(x), Some(y)) => {
                if x.location != y.location {
                    out.push(Difference {
                        section: Section::Data,
                        subject: name.to_string(),
                        path: None,
                        change: Change::Changed,
                        a: Some(location_text(&x.location)),
                        b: Some(location_text(&y.location)),
                        detail: Some("recorded at another location".into()),
                    });
                }
                if x.digest != y.digest || x.kind != y.kind {
                    content_differences(
                        project,
                        (Section::Data, name),
                        (a, x.kind, &x.digest),
                        (b, y.kind, &y.digest),
                        out,
                    );
                }
            }
            (None, None) => {}
        }
    }
}

fn diff_artifacts(
    project: &Project,
    section: Section,
    a: &Loaded,
    b: &Loaded,
    out: &mut Vec<Difference>,
) {
    let (la, lb) = match section {
        Section::Checkpoint => (&a.lock.checkpoints, &b.lock.checkpoints),
        _ => (&a.lock.outputs, &b.lock.outputs),
    };
    let ma: BTreeMap<&RelPath, &Artifact> = la.iter().map(|x| (&x.path, x)).collect();
    let mb: BTreeMap<&RelPath, &Artifact> = lb.iter().map(|x| (&x.path, x)).collect();
    let paths: BTreeSet<&RelPath> = ma.keys().chain(mb.keys()).copied().collect();
    for p in paths {
        match (ma.get(p), mb.get(p)) {
            (Some(x), None) => out.push(Difference {
                section,
                subject: p.to_string(),
                path: None,
                change: Change::Removed,
                a: Some(x.digest.to_string()),
                b: None,
                detail: b.missing.get(&format!("{}:{p}", section.as_str())).cloned(),
            }),
            (None, Some(y)) => out.push(Difference {
                section,
                subject: p.to_string(),
                path: None,
                change: Change::Added,
                a: None,
                b: Some(y.digest.to_string()),
                detail: None,
            }),
            (Some(x), Some(y)) => {
                if x.digest != y.digest || x.kind != y.kind {
                    content_differences(
                        project,
                        (section, p.as_str()),
                        (a, x.kind, &x.digest),
                        (b, y.kind, &y.digest),
                        out,
                    );
                }
                // Metrics recorded with `cairn checkpoint add`, name by name.
                let names: BTreeSet<&String> = x.metrics.keys().chain(y.metrics.keys()).collect();
                for name in names {
                    let (va, vb) = (x.metrics.get(name), y.metrics.get(name));
                    if va != vb {
                        out.push(Difference {
                            section,
                            subject: p.to_string(),
                            path: Some(format!("metric {name}")),
                            change: match (va, vb) {
                                (None, _) => Change::Added,
                                (_, None) => Change::Removed,
                                _ => Change::Changed,
                            },
                            a: va.map(|v| v.0.to_string()),
                            b: vb.map(|v| v.0.to_string()),
                            detail: None,
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

fn diff_python(a: &Lock, b: &Lock, repo_root: Option<&Path>, out: &mut Vec<Difference>) {
    let (pa, pb) = match (&a.python, &b.python) {
        (None, None) => return,
        (Some(pa), Some(pb)) => (pa, pb),
        (pa, pb) => {
            out.push(diff_value(
                Section::Python,
                "python",
                pa.as_ref()
                    .map(|p| format!("{} {}", p.implementation, p.version)),
                pb.as_ref()
                    .map(|p| format!("{} {}", p.implementation, p.version)),
            ));
            return;
        }
    };
    let va: BTreeMap<&str, &str> = pa
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    let vb: BTreeMap<&str, &str> = pb
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    let mut pb = pb.clone();
    env::align_repo_packages(pa, &mut pb, repo_root);
    for d in env::python_drift(pa, &pb) {
        let (a_val, b_val) = if d.subject == "python" {
            (
                Some(format!("{} {}", pa.implementation, pa.version)),
                Some(format!("{} {}", pb.implementation, pb.version)),
            )
        } else {
            (
                va.get(d.subject.as_str()).map(|v| v.to_string()),
                vb.get(d.subject.as_str()).map(|v| v.to_string()),
            )
        };
        out.push(Difference {
            section: Section::Python,
            subject: d.subject,
            path: None,
            change: match d.change {
                env::DriftChange::Added => Change::Added,
                env::DriftChange::Removed => Change::Removed,
                env::DriftChange::Changed => Change::Changed,
            },
            a: a_val,
            b: b_val,
            detail: Some(d.detail),
        });
    }
    let ca: BTreeMap<&str, String> = pa
        .conda
        .iter()
        .map(|c| (c.name.as_str(), conda_text(c)))
        .collect();
    let cb: BTreeMap<&str, String> = pb
        .conda
        .iter()
        .map(|c| (c.name.as_str(), conda_text(c)))
        .collect();
    let names: BTreeSet<&str> = ca.keys().chain(cb.keys()).copied().collect();
    for name in names {
        let (x, y) = (ca.get(name).cloned(), cb.get(name).cloned());
        if x != y {
            let mut d = diff_value(Section::Python, name, x, y);
            d.detail = Some("conda package".into());
            out.push(d);
        }
    }
}

fn conda_text(c: &crate::probe::python::CondaPackage) -> String {
    match &c.build {
        Some(b) => format!("{} {b}", c.version),
        None => c.version.clone(),
    }
}

fn diff_command(a: &Run, b: &Run, out: &mut Vec<Difference>) {
    let line = |argv: &Option<Vec<String>>| {
        argv.as_ref().map(|v| {
            v.iter()
                .map(|s| crate::ops::rebuild::shell_quote(s))
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    if a.command != b.command {
        out.push(diff_value(
            Section::Command,
            "command",
            line(&a.command),
            line(&b.command),
        ));
    }
    if a.exit_code != b.exit_code {
        out.push(diff_value(
            Section::Command,
            "exit-code",
            a.exit_code.map(|c| c.to_string()),
            b.exit_code.map(|c| c.to_string()),
        ));
    }
}

fn diff_env(a: &Run, b: &Run, out: &mut Vec<Difference>) {
    let keys: BTreeSet<&String> = a.env.keys().chain(b.env.keys()).collect();
    for k in keys {
        let (x, y) = (a.env.get(k), b.env.get(k));
        if x != y {
            out.push(diff_value(Section::Env, k, x.cloned(), y.cloned()));
        }
    }
}

fn diff_lockfiles(a: &Lock, b: &Lock, out: &mut Vec<Difference>) {
    let ma: BTreeMap<&RelPath, &Digest> =
        a.lockfiles.iter().map(|e| (&e.path, &e.digest)).collect();
    let mb: BTreeMap<&RelPath, &Digest> =
        b.lockfiles.iter().map(|e| (&e.path, &e.digest)).collect();
    let paths: BTreeSet<&RelPath> = ma.keys().chain(mb.keys()).copied().collect();
    for p in paths {
        let (x, y) = (ma.get(p), mb.get(p));
        if x != y {
            out.push(diff_value(
                Section::Lockfile,
                p.as_str(),
                x.map(|d| d.to_string()),
                y.map(|d| d.to_string()),
            ));
        }
    }
}

fn diff_host(a: &Lock, b: &Lock, out: &mut Vec<Difference>) {
    let (Some(ha), Some(hb)) = (&a.host, &b.host) else {
        return;
    };
    for d in env::host_drift(ha, hb) {
        let (x, y) = match d.detail.split_once(" -> ") {
            Some((x, y)) => (Some(x.to_string()), Some(y.to_string())),
            None => (None, None),
        };
        out.push(Difference {
            section: Section::Host,
            subject: d.subject,
            path: None,
            change: Change::Changed,
            a: x.filter(|v| v != "none"),
            b: y.filter(|v| v != "none"),
            detail: None,
        });
    }
    // Not compared by verify (they differ between any two machines), but a CPU model can
    // explain different floating-point results on CPU.
    if ha.cpu != hb.cpu {
        out.push(diff_value(
            Section::Host,
            "cpu",
            ha.cpu.clone(),
            hb.cpu.clone(),
        ));
    }
    if ha.cores != hb.cores {
        out.push(diff_value(
            Section::Host,
            "cores",
            ha.cores.map(|c| c.to_string()),
            hb.cores.map(|c| c.to_string()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_order_causes_before_effects() {
        let order = [
            Section::Code,
            Section::Data,
            Section::Python,
            Section::Command,
            Section::Env,
            Section::Seed,
            Section::Lockfile,
            Section::Host,
            Section::Checkpoint,
            Section::Output,
        ];
        let mut sorted = order;
        sorted.sort();
        assert_eq!(sorted, order);
        assert!(order.iter().filter(|s| s.is_effect()).count() == 2);
    }

    #[test]
    fn env_and_values() {
        let run = |pairs: &[(&str, &str)]| Run {
            id: String::new(),
            locked_at: None,
            command: Some(vec!["python".into(), "train.py".into()]),
            started_at: None,
            finished_at: None,
            exit_code: Some(0),
            seed: None,
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let mut out = Vec::new();
        diff_env(
            &run(&[("PYTHONHASHSEED", "0"), ("OMP_NUM_THREADS", "4")]),
            &run(&[("PYTHONHASHSEED", "1"), ("NCCL_ALGO", "Ring")]),
            &mut out,
        );
        let got: Vec<(&str, Change)> = out.iter().map(|d| (d.subject.as_str(), d.change)).collect();
        assert_eq!(
            got,
            [
                ("NCCL_ALGO", Change::Added),
                ("OMP_NUM_THREADS", Change::Removed),
                ("PYTHONHASHSEED", Change::Changed)
            ]
        );
        let mut b = run(&[]);
        b.command = Some(vec!["python".into(), "train.py".into(), "lr=1e-3".into()]);
        let mut out = Vec::new();
        diff_command(&run(&[]), &b, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].b.as_deref(), Some("python train.py lr=1e-3"));
    }
}
