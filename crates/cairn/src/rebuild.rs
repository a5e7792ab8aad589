//! `cairn rebuild`: materialise a locked run somewhere else, check every part against the lock,
//! and (with consent) run it again and compare what it produced.
//!
//! The steps, each reported as a [`Step`]:
//!
//! 1. **code**: `git worktree add --detach DIR <commit>` (fetching the commit from the recorded
//!    remote with the `git` command first when it is not in the repository, so the user's
//!    credential helpers apply), `git apply --binary` of the change sidecar, submodules checked
//!    out at their locked commits; then the worktree's git tree id (computed as `cairn verify`
//!    does, with the same exclusions) must be `code.tree`.
//! 2. **environment**: a venv in `DIR/.venv` made from an interpreter of the locked version, with
//!    every locked package installed exactly (`--no-deps`; registry packages pinned, VCS packages
//!    at their commit, archives by URL and hash, directories inside the repository from the
//!    rebuilt worktree), with `uv` when it is on `PATH`, else pip; then captured again and
//!    compared with the lock.
//! 3. **data**: every dataset hashed where `--data NAME=PATH` says, else at its locked path (in
//!    the rebuilt checkout or in the project the rebuild started from); a dataset found outside
//!    the rebuilt project is linked into it at its locked path.
//! 4. **run**: only with consent ([`Observer::confirm_run`]): the locked argv with the locked
//!    determinism variables and seed, in the rebuilt project; then the checkpoints must be
//!    bit-identical and the outputs bit-identical, or JSON files whose numbers agree within
//!    `rtol`/`atol`.
//!
//! Everything that can make a rebuild impossible (no interpreter of the locked version, a commit
//! that cannot be fetched, a missing change sidecar, missing data, a target directory that is
//! not empty) is checked **before** anything is created, and is an error ([`RebuildError`]).
//! An error after that removes what was made. A step that does not reproduce is not an error:
//! the report says what differs and the directory is kept for inspection.
//!
//! The library never prints: progress goes to an [`Observer`], the result is a [`Report`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::digest::{self, Digest, HashOptions, Kind, Manifest, Progress};
use crate::env;
use crate::error::{Error, IoResultExt};
use crate::git::{self, Excluder, PathChange};
use crate::lockfile::{self, Location, Lock};
use crate::paths::{self, RelPath};
use crate::project::Project;
use crate::python::{self, Source};
use crate::verify::{self, Change};

/// Why a rebuild could not be done (exit status 2). Each carries a hint for the user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RebuildError {
    /// An error from the rest of the library (I/O, a bad lock, git).
    #[error(transparent)]
    Cairn(#[from] Error),
    /// The lock has no `[code]`.
    #[error("{} records no code (it was locked with --no-git); a rebuild starts from the locked commit", lock.display())]
    NoCode {
        /// The lockfile.
        lock: PathBuf,
    },
    /// The target directory exists and is not empty.
    #[error("{} already exists and is not empty", path.display())]
    IntoNotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// The target directory is inside the repository.
    #[error("{} is inside the repository {}", path.display(), repo.display())]
    IntoInsideRepo {
        /// The directory.
        path: PathBuf,
        /// The repository.
        repo: PathBuf,
    },
    /// No interpreter of the locked version was found.
    #[error("the lock needs Python {version} ({implementation}), and none was found on this machine (looked at: {})", if tried.is_empty() { "nothing".to_string() } else { tried.join(", ") })]
    PythonMissing {
        /// `cpython`.
        implementation: String,
        /// `3.11.7`.
        version: String,
        /// The interpreters looked at, with their versions.
        tried: Vec<String>,
    },
    /// `--python` names an interpreter of another version.
    #[error("{} is {found}, but the lock needs Python {wanted}", path.display())]
    PythonMismatch {
        /// The interpreter given.
        path: PathBuf,
        /// What it is.
        found: String,
        /// What the lock needs.
        wanted: String,
    },
    /// The locked commit is not in the repository and could not be fetched.
    #[error("the locked commit {commit} is not in this repository{}", match (remote, fetch_error) {
        (Some(r), Some(e)) => format!(", and fetching it from {r} failed: {e}"),
        (Some(r), None) => format!(", and the recorded remote {r} does not have it"),
        (None, _) => ", and the lock records no remote to fetch it from".to_string(),
    })]
    UnknownCommit {
        /// The commit.
        commit: String,
        /// The recorded remote, when there is one.
        remote: Option<String>,
        /// What `git fetch` said, when it failed.
        fetch_error: Option<String>,
    },
    /// The change sidecar of a dirty lock is missing or damaged.
    #[error("the lock's uncommitted change {} is {}", path.display(), if *damaged { "damaged (its BLAKE3 is not the locked digest)" } else { "missing" })]
    MissingChange {
        /// Where it should be.
        path: PathBuf,
        /// Present but with the wrong digest.
        damaged: bool,
    },
    /// A dataset cannot be found.
    #[error("dataset {name} is missing: {}", if looked.is_empty() { "it is external and no location was given".to_string() } else { format!("looked at {}", looked.join(", ")) })]
    MissingData {
        /// The dataset.
        name: String,
        /// Where it was looked for.
        looked: Vec<String>,
    },
    /// `--data` names a dataset the lock does not have.
    #[error("--data {name}=...: the lock has no dataset named {name:?}")]
    UnknownData {
        /// The name given.
        name: String,
    },
    /// A tool that the rebuild needs failed (git worktree, venv creation).
    #[error("{what} failed: `{command}` {status}{}", if output.is_empty() { String::new() } else { format!(": {output}") })]
    Tool {
        /// What was being done.
        what: String,
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// The end of its output.
        output: String,
    },
}

impl RebuildError {
    /// A line of advice for the user, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            RebuildError::Cairn(e) => e.hint(),
            RebuildError::NoCode { .. } => Some("lock the run inside a git repository".into()),
            RebuildError::IntoNotEmpty { .. } => Some(
                "pass --into with a new or empty directory (nothing was created or changed)".into(),
            ),
            RebuildError::IntoInsideRepo { .. } => Some(
                "pass --into with a directory outside the repository, e.g. next to it".into(),
            ),
            RebuildError::PythonMissing { version, .. } => Some(format!(
                "install Python {version} (e.g. `uv python install {version}` or `pyenv install {version}`) or pass --python PATH to an interpreter of that version; nothing was created"
            )),
            RebuildError::PythonMismatch { wanted, .. } => Some(format!(
                "pass an interpreter of Python {wanted}, or --allow-other-python to rebuild with this one anyway"
            )),
            RebuildError::UnknownCommit { remote, commit, .. } => Some(match remote {
                Some(r) => format!(
                    "fetch it (`git fetch {r}`), or push it from the machine that locked the run; nothing was created"
                ),
                None => format!(
                    "fetch the commit into this repository (`git fetch <url> {commit}`); nothing was created"
                ),
            }),
            RebuildError::MissingChange { .. } => Some(
                "the sidecar is committed with the lock in .cairn/changes/; restore it (git checkout, git pull) and try again".into(),
            ),
            RebuildError::MissingData { name, .. } => Some(format!(
                "say where it is on this machine with --data {name}=PATH; nothing was created"
            )),
            RebuildError::UnknownData { .. } => None,
            RebuildError::Tool { .. } => Some("whatever had been created was removed".into()),
        }
    }
}

/// The rebuild's result type.
pub type Result<T, E = RebuildError> = std::result::Result<T, E>;

/// Which installer to use for the packages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Installer {
    /// `uv` when it is on `PATH`, else pip.
    #[default]
    Auto,
    /// `python -m pip` inside the new venv.
    Pip,
    /// `uv venv` and `uv pip install`.
    Uv,
}

/// What to rebuild and how.
#[derive(Debug, Clone, Default)]
pub struct RebuildOptions {
    /// Where to materialise the run (absolute). `None`: `<repo name>-rebuild-<run id>` next to
    /// the repository.
    pub into: Option<PathBuf>,
    /// Dataset locations given on the command line (`--data NAME=PATH`), absolute.
    pub data: BTreeMap<String, PathBuf>,
    /// The interpreter to build the venv from (`--python`).
    pub python: Option<PathBuf>,
    /// Accept an interpreter of another version than the locked one.
    pub allow_other_python: bool,
    /// The installer.
    pub installer: Installer,
    /// Relative tolerance for numbers in JSON outputs.
    pub rtol: f64,
    /// Absolute tolerance for numbers in JSON outputs.
    pub atol: f64,
    /// Read every data file, even those the stat cache knows.
    pub no_cache: bool,
}

/// Receives progress, and decides whether the command may run.
pub trait Observer {
    /// A step is starting; `what` says what it is about to do.
    fn started(&self, _step: StepName, _what: &str) {}
    /// A step is over.
    fn finished(&self, _step: &Step) {}
    /// May the command run? Called once, with the exact command, only when everything it needs
    /// was rebuilt.
    fn confirm_run(&self, _plan: &Plan) -> bool {
        false
    }
    /// Hashing progress.
    fn progress(&self) -> Option<&dyn Progress> {
        None
    }
}

/// The steps of a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepName {
    /// The worktree.
    Code,
    /// The venv.
    Environment,
    /// The datasets.
    Data,
    /// The command and what it produced.
    Run,
}

impl StepName {
    /// The step's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Code => "code",
            StepName::Environment => "environment",
            StepName::Data => "data",
            StepName::Run => "run",
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Everything matches the lock.
    Reproduced,
    /// It was done, and something differs from the lock (see `differences`).
    Differs,
    /// It could not be completed (a package that cannot be installed, a patch that does not
    /// apply, a command that could not start).
    Failed,
    /// There was nothing to do (no `[python]`, no command).
    Skipped,
    /// The command was not run: no consent, or an earlier step did not reproduce.
    NotRun,
}

/// One difference from the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `code`, a package name, `python`, a dataset name, a checkpoint or output path,
    /// `exit-code`, a metric path.
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

/// What one step did and found.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Which step.
    pub step: StepName,
    /// How it ended.
    pub status: Status,
    /// What it did, in order, for people.
    pub actions: Vec<String>,
    /// What differs from the lock.
    pub differences: Vec<Difference>,
    /// Facts that are not differences.
    pub notes: Vec<String>,
}

impl Step {
    fn new(step: StepName) -> Step {
        Step {
            step,
            status: Status::Reproduced,
            actions: Vec::new(),
            differences: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn differ(&mut self, subject: impl Into<String>, change: Change, detail: Option<String>) {
        self.differences.push(Difference {
            subject: subject.into(),
            path: None,
            change,
            detail,
        });
    }

    fn settle(&mut self) {
        if self.status == Status::Reproduced && !self.differences.is_empty() {
            self.status = Status::Differs;
        }
    }
}

/// The command a rebuild runs (or would run).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The argv, program first.
    pub argv: Vec<String>,
    /// The directory it runs in: the project root inside the rebuilt worktree.
    pub cwd: PathBuf,
    /// Variables set on top of the current environment: the lock's `[run.env]`,
    /// `CAIRN_SEED`, and the venv's `VIRTUAL_ENV`.
    pub set_env: BTreeMap<String, String>,
    /// A directory put in front of `PATH` (the venv's `bin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<PathBuf>,
    /// Determinism variables that are set here but were not when the run was locked.
    pub unset_env: Vec<String>,
    /// The locked program when it was replaced by the rebuilt venv's (`[locked, used]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_program: Option<[String; 2]>,
}

impl Plan {
    /// The command as one shell line, exactly as it runs (`cd DIR && env ... ARGV`).
    pub fn shell_line(&self) -> String {
        let mut parts = vec![
            "cd".to_string(),
            shell_quote(&self.cwd.to_string_lossy()),
            "&&".into(),
            "env".into(),
        ];
        for u in &self.unset_env {
            parts.push("-u".into());
            parts.push(shell_quote(u));
        }
        for (k, v) in &self.set_env {
            parts.push(shell_quote(&format!("{k}={v}")));
        }
        if let Some(p) = &self.path_prefix {
            parts.push(format!(
                "PATH={}:\"$PATH\"",
                shell_quote(&p.to_string_lossy())
            ));
        }
        parts.extend(self.argv.iter().map(|a| shell_quote(a)));
        parts.join(" ")
    }
}

/// Quote a word for a POSIX shell when it needs quoting.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The result of a rebuild.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The lockfile rebuilt.
    pub lock: PathBuf,
    /// Its run id.
    pub run: String,
    /// The rebuilt worktree.
    pub into: PathBuf,
    /// The project root inside it (where the command runs).
    pub project: PathBuf,
    /// The venv, when the lock has `[python]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venv: Option<PathBuf>,
    /// `true` when no step differs or failed.
    pub ok: bool,
    /// Whether the command ran.
    pub ran: bool,
    /// The steps, in order: code, environment, data, run.
    pub steps: Vec<Step>,
    /// The command, as it ran or would run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Plan>,
    /// Host differences from the locking machine (information: they can explain a result that
    /// does not reproduce, but do not fail).
    pub host: Vec<Difference>,
}

// ---------------------------------------------------------------------------------------------
// Running programs.

/// Run a program to completion, capturing its output. `Err` is a program that could not start.
fn run_capture(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    cmd.stdin(Stdio::null()).output()
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines of a program's output, for a message.
fn tail(out: &std::process::Output, lines: usize) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn status_text(status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(c) => format!("exited with status {c}"),
        None => "was killed by a signal".into(),
    }
}

/// Run a tool whose failure stops the rebuild.
fn tool(what: &str, cmd: &mut Command) -> Result<std::process::Output> {
    let line = command_line(cmd);
    let out = run_capture(cmd).map_err(|e| RebuildError::Tool {
        what: what.into(),
        command: line.clone(),
        status: "could not start".into(),
        output: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(RebuildError::Tool {
            what: what.into(),
            command: line,
            status: status_text(out.status),
            output: tail(&out, 10),
        });
    }
    Ok(out)
}

fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir);
    c
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// Preflight: everything that can make the rebuild impossible, before anything is created.

/// The default target: `<repo name>-rebuild-<first 8 digits of the run id>` next to the
/// repository.
pub fn default_into(repo_root: &Path, run_id: &str) -> PathBuf {
    let name = repo_root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let parent = repo_root.parent().unwrap_or(repo_root);
    parent.join(format!("{name}-rebuild-{}", &run_id[..run_id.len().min(8)]))
}

fn check_into(into: &Path, repo_root: &Path) -> Result<bool> {
    let canonical_parent = into
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .map(|p| p.join(into.file_name().unwrap_or_default()));
    let target = canonical_parent.as_deref().unwrap_or(into);
    if target.starts_with(repo_root) {
        return Err(RebuildError::IntoInsideRepo {
            path: into.to_path_buf(),
            repo: repo_root.to_path_buf(),
        });
    }
    match std::fs::read_dir(into) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RebuildError::IntoNotEmpty {
                    path: into.to_path_buf(),
                });
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(RebuildError::IntoNotEmpty {
                path: into.to_path_buf(),
            })
        }
        Err(e) => Err(Error::Io {
            op: "cannot read directory",
            path: into.to_path_buf(),
            source: e,
        }
        .into()),
    }
}

/// Find an interpreter of the locked implementation and version: `--python` (which must match
/// unless `allow_other`), else `pythonX.Y`, `pythonX`, `python3`, `python` on `PATH`, pyenv's
/// `versions/X.Y.Z`, and `uv python find X.Y.Z` when uv is on `PATH`.
pub fn find_python(
    locked: &lockfile::Python,
    option: Option<&Path>,
    allow_other: bool,
) -> Result<python::Interpreter> {
    let wanted = format!("{} {}", locked.implementation, locked.version);
    let matches = |i: &python::Interpreter| {
        i.implementation == locked.implementation && i.version == locked.version
    };
    if let Some(p) = option {
        let i = python::probe_interpreter(p)?;
        if !matches(&i) && !allow_other {
            return Err(RebuildError::PythonMismatch {
                path: p.to_path_buf(),
                found: format!("{} {}", i.implementation, i.version),
                wanted,
            });
        }
        return Ok(i);
    }
    let mut parts = locked.version.split('.');
    let major = parts.next().unwrap_or("3");
    let minor = parts.next().unwrap_or("");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            for name in [
                format!("python{major}.{minor}"),
                format!("python{major}"),
                "python".to_string(),
            ] {
                candidates.push(dir.join(name));
            }
        }
    }
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = pyenv_root {
        candidates.push(
            root.join("versions")
                .join(&locked.version)
                .join("bin/python"),
        );
    }
    if let Some(uv) = on_path("uv") {
        if let Ok(out) = run_capture(Command::new(uv).args(["python", "find", &locked.version])) {
            if out.status.success() {
                let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !p.is_empty() {
                    candidates.push(PathBuf::from(p));
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut tried = Vec::new();
    for c in candidates {
        if !c.is_file() || !seen.insert(c.clone()) {
            continue;
        }
        match python::probe_interpreter(&c) {
            Ok(i) if matches(&i) => return Ok(i),
            Ok(i) => tried.push(format!("{} ({})", c.display(), i.version)),
            Err(_) => {}
        }
    }
    Err(RebuildError::PythonMissing {
        implementation: locked.implementation.clone(),
        version: locked.version.clone(),
        tried,
    })
}

/// Make sure the locked commit is in the repository: fetch it from the recorded remote with the
/// `git` command (by id, then every branch and tag) when it is not. Returns what it did.
fn ensure_commit(
    repo: &git2::Repository,
    repo_root: &Path,
    code: &lockfile::Code,
) -> Result<Option<String>> {
    if git::has_commit(repo, &code.commit) {
        return Ok(None);
    }
    let Some(remote) = &code.remote else {
        return Err(RebuildError::UnknownCommit {
            commit: code.commit.clone(),
            remote: None,
            fetch_error: None,
        });
    };
    let by_id = run_capture(git_cmd(repo_root).args([
        "fetch",
        "--quiet",
        "--no-tags",
        remote,
        &code.commit,
    ]));
    let fresh = || {
        git2::Repository::open(repo_root)
            .map(|r| git::has_commit(&r, &code.commit))
            .unwrap_or(false)
    };
    if matches!(&by_id, Ok(o) if o.status.success()) && fresh() {
        return Ok(Some(format!(
            "fetched {} from {remote}",
            short(&code.commit)
        )));
    }
    // Servers that refuse to serve a commit by id still serve their branches.
    let all = run_capture(git_cmd(repo_root).args([
        "fetch",
        "--quiet",
        "--no-tags",
        remote,
        "refs/heads/*",
        "refs/tags/*",
    ]));
    if fresh() {
        return Ok(Some(format!(
            "fetched {} from {remote} (with its branches)",
            short(&code.commit)
        )));
    }
    let fetch_error = match (&by_id, &all) {
        (_, Err(e)) => Some(format!("cannot run git: {e}")),
        (_, Ok(o)) if !o.status.success() => Some(tail(o, 3)),
        (Ok(o), _) if !o.status.success() => Some(tail(o, 3)),
        _ => None,
    };
    Err(RebuildError::UnknownCommit {
        commit: code.commit.clone(),
        remote: Some(remote.clone()),
        fetch_error,
    })
}

/// Where each dataset may be found, in order of preference.
struct DataPlan {
    name: String,
    /// `--data NAME=PATH`.
    given: Option<PathBuf>,
    /// The locked path inside the project, for in-project datasets.
    rel: Option<RelPath>,
    /// The same path in the project the rebuild started from.
    original: Option<PathBuf>,
    /// For external data: the location from cairn.toml.
    configured: Option<PathBuf>,
}

fn plan_data(
    project: &Project,
    repo: &git2::Repository,
    lock: &Lock,
    opts: &RebuildOptions,
) -> Result<Vec<DataPlan>> {
    for name in opts.data.keys() {
        if !lock.data.iter().any(|d| &d.name == name) {
            return Err(RebuildError::UnknownData { name: name.clone() });
        }
    }
    let commit_tree = lock
        .code
        .as_ref()
        .and_then(|c| git2::Oid::from_str(&c.commit).ok())
        .and_then(|oid| repo.find_commit(oid).ok())
        .and_then(|c| c.tree().ok());
    let exists = |p: &Path| std::fs::metadata(p).is_ok();
    let mut out = Vec::new();
    for d in &lock.data {
        let given = opts.data.get(&d.name).cloned();
        let mut looked = Vec::new();
        let plan = match &d.location {
            Location::Path(rel) => {
                let original = rel.under(&project.root);
                let in_commit = project.repo_relative(rel).is_some_and(|r| {
                    commit_tree
                        .as_ref()
                        .is_some_and(|t| t.get_path(Path::new(&r)).is_ok())
                });
                let found = match &given {
                    Some(g) => exists(g),
                    None => exists(&original) || in_commit,
                };
                if !found {
                    match &given {
                        Some(g) => looked.push(format!("{} (--data)", g.display())),
                        None => {
                            looked.push(original.display().to_string());
                            looked.push(format!("{rel} in commit {}", short(&commit_of(lock))));
                        }
                    }
                }
                DataPlan {
                    name: d.name.clone(),
                    given,
                    rel: Some(rel.clone()),
                    original: Some(original),
                    configured: None,
                }
            }
            Location::External => {
                let configured = project
                    .config
                    .data
                    .get(&d.name)
                    .map(|p| project.resolve(&project.root, p).0);
                match given.as_ref().or(configured.as_ref()) {
                    Some(p) if exists(p) => {}
                    Some(p) => looked.push(p.display().to_string()),
                    None => {}
                }
                if given.is_none() && configured.is_none() {
                    return Err(RebuildError::MissingData {
                        name: d.name.clone(),
                        looked: Vec::new(),
                    });
                }
                DataPlan {
                    name: d.name.clone(),
                    given,
                    rel: None,
                    original: None,
                    configured,
                }
            }
        };
        if !looked.is_empty() {
            return Err(RebuildError::MissingData {
                name: d.name.clone(),
                looked,
            });
        }
        out.push(plan);
    }
    Ok(out)
}

fn commit_of(lock: &Lock) -> String {
    lock.code
        .as_ref()
        .map(|c| c.commit.clone())
        .unwrap_or_default()
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

// ---------------------------------------------------------------------------------------------
// Cleanup of a half-made rebuild.

/// Removes the worktree and the directory when dropped while armed (an error part-way).
struct Cleanup {
    repo_root: PathBuf,
    into: PathBuf,
    existed: bool,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = run_capture(
            git_cmd(&self.repo_root)
                .args(["worktree", "remove", "--force"])
                .arg(&self.into),
        );
        let _ = std::fs::remove_dir_all(&self.into);
        let _ = run_capture(git_cmd(&self.repo_root).args(["worktree", "prune"]));
        if self.existed {
            let _ = std::fs::create_dir(&self.into);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The rebuild.

/// Rebuild the run recorded in `lock_path` (a lock of `project`).
pub fn rebuild(
    project: &Project,
    lock_path: &Path,
    opts: &RebuildOptions,
    obs: &dyn Observer,
) -> Result<Report> {
    let lock = Lock::load(lock_path)?;
    let Some(code) = lock.code.clone() else {
        return Err(RebuildError::NoCode {
            lock: lock_path.to_path_buf(),
        });
    };
    let (Some(repo), Some(repo_root)) = (&project.repo, &project.repo_root) else {
        return Err(Error::NotARepo {
            path: project.cwd.clone(),
        }
        .into());
    };

    // Preflight: nothing is created until all of this holds.
    let into = opts
        .into
        .clone()
        .unwrap_or_else(|| default_into(repo_root, &lock.run.id));
    let existed = check_into(&into, repo_root)?;
    let change_sidecar = match &code.change {
        Some(change) => {
            let path = project.change_path(change);
            match std::fs::read(&path) {
                Ok(bytes) if &Digest::of_bytes(&bytes) == change => Some(path),
                Ok(_) => {
                    return Err(RebuildError::MissingChange {
                        path,
                        damaged: true,
                    })
                }
                Err(_) => {
                    return Err(RebuildError::MissingChange {
                        path,
                        damaged: false,
                    })
                }
            }
        }
        None => None,
    };
    let interpreter = match &lock.python {
        Some(py) => Some(find_python(
            py,
            opts.python.as_deref(),
            opts.allow_other_python,
        )?),
        None => None,
    };
    let installer = match opts.installer {
        Installer::Auto if on_path("uv").is_some() => Installer::Uv,
        Installer::Auto => Installer::Pip,
        other => other,
    };
    if installer == Installer::Uv && lock.python.is_some() && on_path("uv").is_none() {
        return Err(Error::Usage("--installer uv: uv is not on PATH".into()).into());
    }
    let fetched = ensure_commit(repo, repo_root, &code)?;
    // A fetch adds objects: look at the repository afresh.
    let repo_now;
    let repo = if fetched.is_some() {
        repo_now = git::discover(repo_root)?;
        &repo_now
    } else {
        repo
    };
    let data_plans = plan_data(project, repo, &lock, opts)?;

    // Materialise.
    let mut cleanup = Cleanup {
        repo_root: repo_root.clone(),
        into: into.clone(),
        existed,
        armed: true,
    };
    let project_rel = project
        .root
        .strip_prefix(repo_root)
        .unwrap_or(Path::new(""))
        .to_path_buf();

    obs.started(
        StepName::Code,
        &format!("git worktree at {}", short(&code.commit)),
    );
    let mut code_step = Step::new(StepName::Code);
    if let Some(f) = fetched {
        code_step.actions.push(f);
    }
    tool(
        "creating the worktree",
        git_cmd(repo_root)
            .args(["worktree", "add", "--quiet", "--detach"])
            .arg(&into)
            .arg(&code.commit),
    )?;
    let into = into.canonicalize().ctx("cannot open directory", &into)?;
    cleanup.into = into.clone();
    let rebuilt_root = if project_rel.as_os_str().is_empty() {
        into.clone()
    } else {
        into.join(&project_rel)
    };
    code_step.actions.push(format!(
        "git worktree add --detach {} {}",
        into.display(),
        short(&code.commit)
    ));
    materialise_code(
        project,
        repo,
        &lock,
        &code,
        change_sidecar.as_deref(),
        &into,
        &mut code_step,
    )?;
    copy_sidecars(project, lock_path, &lock, repo_root, &into, &rebuilt_root)?;
    code_step.settle();
    obs.finished(&code_step);

    let mut steps = vec![code_step];
    let venv = into.join(".venv");
    let env_step = match (&lock.python, &interpreter) {
        (Some(locked), Some(interp)) => {
            obs.started(
                StepName::Environment,
                &format!(
                    "venv with Python {} and {} package(s)",
                    locked.version,
                    locked.packages.len()
                ),
            );
            build_environment(locked, interp, installer, &venv, repo_root, &into)?
        }
        _ => {
            let mut s = Step::new(StepName::Environment);
            s.status = Status::Skipped;
            s.notes.push(
                "the lock records no Python environment; the command runs in this one".into(),
            );
            s
        }
    };
    obs.finished(&env_step);
    steps.push(env_step);

    obs.started(StepName::Data, &format!("{} dataset(s)", data_plans.len()));
    let data_step = check_data(
        project,
        &lock,
        &data_plans,
        (&into, &rebuilt_root),
        opts,
        obs,
    )?;
    obs.finished(&data_step);
    steps.push(data_step);

    // Host drift, for the report: it can explain a run that does not reproduce.
    let mut host = Vec::new();
    if let Some(locked) = &lock.host {
        let mut now = crate::host::probe();
        if let Some(i) = &interpreter {
            if now.glibc.is_none() {
                now.glibc = i.libc.clone();
            }
        }
        if lock.host.as_ref().is_some_and(|h| h.torch.is_some()) && venv.is_dir() {
            if let Ok(e) = python::capture(&venv.join("bin/python")) {
                now.torch = e.torch;
            }
        }
        for d in env::host_drift(locked, &now) {
            host.push(Difference {
                subject: d.subject,
                path: None,
                change: Change::Changed,
                detail: Some(d.detail),
            });
        }
    }

    // Run.
    let venv_used = lock.python.is_some().then(|| venv.clone());
    let plan = lock.run.command.as_ref().map(|argv| {
        make_plan(
            argv,
            &lock,
            &project.config.env,
            (&project.root, repo_root, &into),
            &rebuilt_root,
            venv_used.as_deref(),
        )
    });
    let blocking: Vec<&str> = steps
        .iter()
        .filter(|s| match s.step {
            StepName::Code | StepName::Data => {
                matches!(s.status, Status::Differs | Status::Failed)
            }
            _ => s.status == Status::Failed,
        })
        .map(|s| s.step.as_str())
        .collect();
    let mut run_step = Step::new(StepName::Run);
    let mut ran = false;
    match &plan {
        None => {
            run_step.status = Status::Skipped;
            run_step
                .notes
                .push("the lock records no command; nothing to run".into());
        }
        Some(_) if !blocking.is_empty() => {
            run_step.status = Status::NotRun;
            run_step.notes.push(format!(
                "not run, because the {} did not reproduce",
                blocking.join(" and ")
            ));
        }
        Some(plan) => {
            if obs.confirm_run(plan) {
                obs.started(StepName::Run, "the locked command");
                ran = true;
                run_and_compare(
                    project,
                    &lock,
                    plan,
                    (&into, &rebuilt_root),
                    opts,
                    &mut run_step,
                )?;
            } else {
                run_step.status = Status::NotRun;
                run_step.notes.push(format!(
                    "not run; the command would be: {}",
                    plan.shell_line()
                ));
            }
        }
    }
    run_step.settle();
    obs.finished(&run_step);
    steps.push(run_step);

    cleanup.armed = false;
    let ok = steps
        .iter()
        .all(|s| !matches!(s.status, Status::Differs | Status::Failed));
    Ok(Report {
        lock: lock_path.to_path_buf(),
        run: lock.run.id.clone(),
        into,
        project: rebuilt_root,
        venv: venv_used,
        ok,
        ran,
        steps,
        command: plan,
        host,
    })
}

/// The repository-relative paths a lock tracks by digest (not code), as verify excludes them.
fn excluder_for(project: &Project, lock: &Lock) -> Excluder {
    let mut tracked: Vec<String> = Vec::new();
    for d in &lock.data {
        if let Location::Path(p) = &d.location {
            tracked.extend(project.repo_relative(p));
        }
    }
    for a in lock.checkpoints.iter().chain(&lock.outputs) {
        tracked.extend(project.repo_relative(&a.path));
    }
    Excluder::new(tracked)
}

/// Apply the change, check out submodules, and compare the worktree's tree with the lock.
fn materialise_code(
    project: &Project,
    repo: &git2::Repository,
    lock: &Lock,
    code: &lockfile::Code,
    sidecar: Option<&Path>,
    into: &Path,
    step: &mut Step,
) -> Result<()> {
    if let Some(sidecar) = sidecar {
        let mut cmd = git_cmd(into);
        cmd.args(["apply", "--binary", "--whitespace=nowarn"])
            .arg(sidecar);
        let line = command_line(&cmd);
        match run_capture(&mut cmd) {
            Ok(o) if o.status.success() => step.actions.push(line),
            Ok(o) => {
                step.status = Status::Failed;
                step.differ(
                    "code",
                    Change::Changed,
                    Some(format!(
                        "the recorded change does not apply: {}",
                        tail(&o, 5)
                    )),
                );
                return Ok(());
            }
            Err(e) => {
                return Err(Error::Io {
                    op: "cannot run git apply for",
                    path: sidecar.to_path_buf(),
                    source: e,
                }
                .into())
            }
        }
    }
    for sm in &code.submodules {
        let dir = sm.path.under(into);
        let _ = run_capture(
            git_cmd(into)
                .args(["submodule", "update", "--init", "--quiet", "--"])
                .arg(sm.path.as_str()),
        );
        let checkout =
            run_capture(git_cmd(&dir).args(["checkout", "--quiet", "--detach", &sm.commit]));
        let ok = matches!(&checkout, Ok(o) if o.status.success()) || {
            let _ = run_capture(git_cmd(&dir).args(["fetch", "--quiet", "origin", &sm.commit]));
            matches!(
                run_capture(git_cmd(&dir).args(["checkout", "--quiet", "--detach", &sm.commit])),
                Ok(o) if o.status.success()
            )
        };
        if ok {
            step.actions
                .push(format!("submodule {} at {}", sm.path, short(&sm.commit)));
        } else {
            step.notes.push(format!(
                "submodule {} could not be checked out at {}",
                sm.path,
                short(&sm.commit)
            ));
        }
        if sm.dirty {
            step.notes.push(format!(
                "submodule {} had uncommitted changes when the run was locked; they were not recorded and are not rebuilt",
                sm.path
            ));
        }
    }
    let rebuilt = git::discover(into)?;
    let excluder = excluder_for(project, lock);
    let current = git::working_entries(&rebuilt, &excluder)?;
    let tree = git::tree_id(&current)?;
    if tree.to_string() == code.tree {
        step.actions.push(format!(
            "checked the worktree's git tree: {}",
            short(&code.tree)
        ));
        return Ok(());
    }
    let oid = git2::Oid::from_str(&code.commit).map_err(|e| Error::Git {
        message: "bad commit id".into(),
        source: e,
    })?;
    let mut locked = git::commit_entries(repo, oid, &excluder)?;
    if let Some(sidecar) = sidecar {
        let patch = std::fs::read(sidecar).ctx("cannot read", sidecar)?;
        locked = git::apply_patch_entries(locked, &patch)?;
    }
    let diffs = git::diff_entries(&locked, &current);
    if diffs.is_empty() {
        step.differ(
            "code",
            Change::Changed,
            Some(format!(
                "the worktree's git tree is {tree}, the lock's {}",
                code.tree
            )),
        );
    }
    for (path, change) in diffs {
        step.differences.push(Difference {
            subject: "code".into(),
            path: Some(path),
            change: match change {
                PathChange::Added => Change::Added,
                PathChange::Removed => Change::Removed,
                PathChange::Modified => Change::Changed,
                PathChange::ModeChanged => Change::ModeChanged,
            },
            detail: None,
        });
    }
    Ok(())
}

/// Put the lock, its change sidecar and manifests, and cairn.toml (when the rebuilt project has
/// none) into the rebuilt project, so `cairn verify` works there. None of them is code.
fn copy_sidecars(
    project: &Project,
    lock_path: &Path,
    lock: &Lock,
    repo_root: &Path,
    into: &Path,
    rebuilt_root: &Path,
) -> Result<()> {
    let place = |from: &Path| -> Option<PathBuf> {
        from.strip_prefix(&project.root)
            .map(|r| rebuilt_root.join(r))
            .or_else(|_| from.strip_prefix(repo_root).map(|r| into.join(r)))
            .ok()
    };
    let mut files = vec![lock_path.to_path_buf()];
    if let Some(change) = lock.code.as_ref().and_then(|c| c.change.as_ref()) {
        files.push(project.change_path(change));
    }
    let digests = lock.data.iter().map(|d| (d.kind, d.digest)).chain(
        lock.checkpoints
            .iter()
            .chain(&lock.outputs)
            .map(|a| (a.kind, a.digest)),
    );
    for (kind, d) in digests {
        if kind == Kind::Dir {
            files.push(project.manifest_path(&d));
        }
    }
    let config = project.root.join(crate::config::FILE_NAME);
    if config.is_file() && !rebuilt_root.join(crate::config::FILE_NAME).exists() {
        files.push(config);
    }
    for from in files {
        let Some(to) = place(&from).filter(|to| stays_inside(into, to)) else {
            continue;
        };
        let Ok(bytes) = std::fs::read(&from) else {
            continue;
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).ctx("cannot create directory", parent)?;
        }
        std::fs::write(&to, bytes).ctx("cannot write", &to)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The environment.

use crate::python::file_url_path;

fn canonical_or_lexical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| paths::normalize(p))
}

/// How one locked package is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    /// A requirement string (`six==1.16.0`, `pkg @ git+https://...@abc`).
    Spec(String),
    /// `-e PATH`.
    Editable(PathBuf),
    /// A local directory, not editable.
    Dir(PathBuf),
}

impl Requirement {
    fn args(&self) -> Vec<String> {
        match self {
            Requirement::Spec(s) => vec![s.clone()],
            Requirement::Editable(p) => vec!["-e".into(), p.to_string_lossy().into_owned()],
            Requirement::Dir(p) => vec![p.to_string_lossy().into_owned()],
        }
    }
}

/// The requirement that installs a locked package exactly, and a note when it cannot be
/// exact. Directories inside the locked repository come from the rebuilt worktree.
fn requirement(
    p: &lockfile::PyPackage,
    repo_root: &Path,
    into: &Path,
) -> (Requirement, Option<String>) {
    match &p.source {
        Source::Registry => (
            Requirement::Spec(format!("{}=={}", p.name, p.version)),
            None,
        ),
        Source::Vcs { url, commit } => (
            Requirement::Spec(format!("{} @ {url}@{commit}", p.name)),
            None,
        ),
        Source::Archive { url, hash } => {
            let spec = match hash {
                Some(h) => format!("{} @ {url}#{h}", p.name),
                None => format!("{} @ {url}", p.name),
            };
            (Requirement::Spec(spec), None)
        }
        Source::Directory {
            url,
            editable,
            change,
            ..
        } => {
            let path = file_url_path(url).unwrap_or_else(|| PathBuf::from(url));
            let abs = canonical_or_lexical(&path);
            let (path, note) = match abs.strip_prefix(repo_root) {
                Ok(rel) => (into.join(rel), None),
                Err(_) => (
                    path.clone(),
                    Some(format!(
                        "{} is installed from {}, outside the repository: its content is whatever is there now{}",
                        p.name,
                        path.display(),
                        if change.is_some() {
                            " (it had an uncommitted change when the run was locked, which the lock records only by digest)"
                        } else {
                            ""
                        }
                    )),
                ),
            };
            let req = if *editable {
                Requirement::Editable(path)
            } else {
                Requirement::Dir(path)
            };
            (req, note)
        }
    }
}

fn install_command(installer: Installer, venv_python: &Path) -> Command {
    match installer {
        Installer::Uv => {
            let mut c = Command::new("uv");
            c.args(["pip", "install", "--python"])
                .arg(venv_python)
                .arg("--no-deps");
            c
        }
        _ => {
            let mut c = Command::new(venv_python);
            c.args([
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--no-input",
                "--disable-pip-version-check",
                "--quiet",
            ]);
            c
        }
    }
}

fn uninstall_command(installer: Installer, venv_python: &Path) -> Command {
    match installer {
        Installer::Uv => {
            let mut c = Command::new("uv");
            c.args(["pip", "uninstall", "--python"]).arg(venv_python);
            c
        }
        _ => {
            let mut c = Command::new(venv_python);
            c.args([
                "-m",
                "pip",
                "uninstall",
                "--yes",
                "--quiet",
                "--disable-pip-version-check",
            ]);
            c
        }
    }
}

/// Make the venv, install every locked package exactly, remove what the lock does not have,
/// and compare the result with the lock.
fn build_environment(
    locked: &lockfile::Python,
    interp: &python::Interpreter,
    installer: Installer,
    venv: &Path,
    repo_root: &Path,
    into: &Path,
) -> Result<Step> {
    let mut step = Step::new(StepName::Environment);
    let mut create = match installer {
        Installer::Uv => {
            let mut c = Command::new("uv");
            c.args(["venv", "--quiet", "--python"])
                .arg(&interp.executable)
                .arg(venv);
            c
        }
        _ => {
            let mut c = Command::new(&interp.executable);
            c.args(["-m", "venv"]).arg(venv);
            c
        }
    };
    let line = command_line(&create);
    tool("creating the venv", &mut create)?;
    // The venv lives inside the worktree: keep it out of git, as uv and Python 3.13 do.
    let ignore = venv.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "*\n").ctx("cannot write", &ignore)?;
    }
    step.actions.push(format!(
        "{line} (Python {} {})",
        interp.implementation, interp.version
    ));
    if interp.version != locked.version || interp.implementation != locked.implementation {
        step.differ(
            "python",
            Change::Changed,
            Some(format!(
                "{} {} -> {} {} (--allow-other-python)",
                locked.implementation, locked.version, interp.implementation, interp.version
            )),
        );
    }
    let venv_python = venv.join("bin/python");
    let present = python::capture(&venv_python)?;
    let have: BTreeMap<&str, &python::Package> = present
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();

    // What to install: everything locked, except what the new venv already has exactly.
    let mut reqs: Vec<(String, Requirement)> = Vec::new();
    for p in &locked.packages {
        if let Some(h) = have.get(p.name.as_str()) {
            if h.version == p.version
                && h.source == Source::Registry
                && p.source == Source::Registry
            {
                continue;
            }
        }
        let (req, note) = requirement(p, repo_root, into);
        step.notes.extend(note);
        reqs.push((p.name.clone(), req));
    }
    if !locked.conda.is_empty() {
        step.differ(
            "conda",
            Change::Unchecked,
            Some(format!(
                "the lock records {} conda package(s); rebuild makes a venv and does not install conda packages",
                locked.conda.len()
            )),
        );
    }
    let tool_name = match installer {
        Installer::Uv => "uv pip",
        _ => "pip",
    };
    if !reqs.is_empty() {
        let mut cmd = install_command(installer, &venv_python);
        for (_, r) in &reqs {
            cmd.args(r.args());
        }
        let out = run_capture(&mut cmd);
        match out {
            Ok(o) if o.status.success() => step.actions.push(format!(
                "{tool_name} install --no-deps: {} package(s)",
                reqs.len()
            )),
            _ => {
                // Find out which ones cannot be installed, one by one.
                let mut failed = 0;
                for (name, r) in &reqs {
                    let mut one = install_command(installer, &venv_python);
                    one.args(r.args());
                    match run_capture(&mut one) {
                        Ok(o) if o.status.success() => {}
                        Ok(o) => {
                            failed += 1;
                            step.differ(
                                name.clone(),
                                Change::Missing,
                                Some(format!("`{}` failed: {}", r.args().join(" "), tail(&o, 3))),
                            );
                        }
                        Err(e) => {
                            return Err(RebuildError::Tool {
                                what: "installing packages".into(),
                                command: command_line(&one),
                                status: "could not start".into(),
                                output: e.to_string(),
                            })
                        }
                    }
                }
                step.actions.push(format!(
                    "{tool_name} install --no-deps: {} of {} package(s) installed",
                    reqs.len() - failed,
                    reqs.len()
                ));
                if failed > 0 {
                    step.status = Status::Failed;
                }
            }
        }
    }

    // Remove what the new venv brought along and the lock does not have (pip, setuptools).
    let after = python::capture(&venv_python)?;
    let locked_names: BTreeSet<&str> = locked.packages.iter().map(|p| p.name.as_str()).collect();
    let mut extra: Vec<String> = after
        .packages
        .iter()
        .map(|p| p.name.clone())
        .filter(|n| !locked_names.contains(n.as_str()))
        .collect();
    // pip last: it is the one doing the uninstalling.
    extra.sort_by_key(|n| n == "pip");
    if !extra.is_empty() {
        let mut cmd = uninstall_command(installer, &venv_python);
        cmd.args(&extra);
        match run_capture(&mut cmd) {
            Ok(o) if o.status.success() => step.actions.push(format!(
                "uninstalled {} (not in the lock)",
                extra.join(", ")
            )),
            Ok(o) => step.notes.push(format!(
                "could not uninstall {}: {}",
                extra.join(", "),
                tail(&o, 3)
            )),
            Err(e) => step
                .notes
                .push(format!("could not uninstall {}: {e}", extra.join(", "))),
        }
    }

    // Compare with the lock. A directory package from the rebuilt worktree is the locked one
    // when the code step says the worktree is the locked tree: its URL (and an editable
    // install's files, which name the directory) differ only by the worktree's location.
    let now = python::capture(&venv_python)?;
    let mut table = env::python_table(&now);
    for p in &mut table.packages {
        let Source::Directory { url, .. } = &p.source else {
            continue;
        };
        let Some(path) = file_url_path(url) else {
            continue;
        };
        if !canonical_or_lexical(&path).starts_with(into) {
            continue;
        }
        if let Some(l) = locked.packages.iter().find(|l| l.name == p.name) {
            if matches!(l.source, Source::Directory { .. }) {
                p.source = l.source.clone();
                p.fingerprint = l.fingerprint;
            }
        }
    }
    for d in env::python_drift(locked, &table) {
        // The interpreter, or a package that failed to install, is already named.
        if step.differences.iter().any(|x| x.subject == d.subject) {
            continue;
        }
        step.differ(
            d.subject,
            match d.change {
                env::DriftChange::Added => Change::Added,
                env::DriftChange::Removed => Change::Removed,
                env::DriftChange::Changed => Change::Changed,
            },
            Some(d.detail),
        );
    }
    step.actions.push(format!(
        "captured the venv: {} package(s)",
        table.packages.len()
    ));
    step.settle();
    Ok(step)
}

// ---------------------------------------------------------------------------------------------
// Data.

/// Hash every dataset at its location, link those found outside the rebuilt project into it.
fn check_data(
    project: &Project,
    lock: &Lock,
    plans: &[DataPlan],
    (into, rebuilt_root): (&Path, &Path),
    opts: &RebuildOptions,
    obs: &dyn Observer,
) -> Result<Step> {
    let mut step = Step::new(StepName::Data);
    if plans.is_empty() {
        step.status = Status::Skipped;
        step.notes.push("the lock records no dataset".into());
        return Ok(step);
    }
    let cache_dir = project.stat_cache_dir();
    let hopts = HashOptions {
        cache_dir: Some(&cache_dir),
        use_cache: !opts.no_cache,
        progress: obs.progress(),
    };
    for (plan, d) in plans.iter().zip(&lock.data) {
        let inside = plan.rel.as_ref().map(|r| r.under(rebuilt_root));
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(g) = &plan.given {
            candidates.push(g.clone());
        } else {
            candidates.extend(inside.clone().filter(|p| std::fs::metadata(p).is_ok()));
            candidates.extend(
                plan.original
                    .clone()
                    .filter(|p| std::fs::metadata(p).is_ok()),
            );
            candidates.extend(plan.configured.clone());
        }
        let mut chosen: Option<(PathBuf, digest::Hashed)> = None;
        for c in &candidates {
            let h = digest::hash_path_with(c, &hopts)?;
            let matches = h.digest == d.digest && h.kind == d.kind;
            if matches {
                chosen = Some((c.clone(), h));
                break;
            }
            if chosen.is_none() {
                chosen = Some((c.clone(), h));
            }
        }
        let Some((source, hashed)) = chosen else {
            return Err(RebuildError::MissingData {
                name: plan.name.clone(),
                looked: inside.iter().map(|p| p.display().to_string()).collect(),
            });
        };
        if hashed.digest == d.digest && hashed.kind == d.kind {
            step.actions.push(format!(
                "{}: {} file(s) match the lock at {}",
                d.name,
                hashed.files,
                source.display()
            ));
        } else {
            let subject = d.name.clone();
            let files = data_differences(project, &d.digest, d.kind, &hashed);
            if files.is_empty() {
                step.differ(
                    subject.clone(),
                    Change::Changed,
                    Some(format!("{} differs from the lock", source.display())),
                );
            }
            for (path, change, detail) in files {
                step.differences.push(Difference {
                    subject: subject.clone(),
                    path,
                    change,
                    detail,
                });
            }
        }
        // Place it where the command expects it.
        if let Some(target) = &inside {
            if canonical_or_lexical(&source) != canonical_or_lexical(target) {
                if !stays_inside(into, target) {
                    step.differ(
                        d.name.clone(),
                        Change::Unchecked,
                        Some(format!(
                            "{} leads outside the rebuilt directory (a link in the checkout); the dataset was not put there",
                            target.display()
                        )),
                    );
                    continue;
                }
                remove_path(target)?;
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).ctx("cannot create directory", parent)?;
                }
                let abs = canonical_or_lexical(&source);
                std::os::unix::fs::symlink(&abs, target).ctx("cannot create link", target)?;
                step.actions.push(format!(
                    "linked {} -> {}",
                    plan.rel.as_ref().map(RelPath::as_str).unwrap_or(""),
                    abs.display()
                ));
            }
        }
    }
    step.settle();
    Ok(step)
}

/// The files that differ between a locked digest and what was hashed: by name when the locked
/// manifest is in `.cairn/manifests/`, else one difference for the whole.
fn data_differences(
    project: &Project,
    locked: &Digest,
    kind: Kind,
    now: &digest::Hashed,
) -> Vec<(Option<String>, Change, Option<String>)> {
    if now.kind != kind {
        return vec![(
            None,
            Change::Changed,
            Some(format!(
                "locked as a {}, now a {}",
                kind_name(kind),
                kind_name(now.kind)
            )),
        )];
    }
    let Some(m) = &now.manifest else {
        return vec![(None, Change::Changed, None)];
    };
    let path = project.manifest_path(locked);
    let old = std::fs::read(&path)
        .ok()
        .filter(|t| &Digest::of_bytes(t) == locked)
        .and_then(|t| Manifest::parse(&t).ok());
    match old {
        Some(old) => verify::manifest_diff(&old, m)
            .into_iter()
            .map(|(p, c)| (Some(p), c, None))
            .collect(),
        None => vec![(
            None,
            Change::Changed,
            Some(format!(
                "digest differs; no manifest at {} to name the files",
                path.display()
            )),
        )],
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "directory",
    }
}

/// Is `target` inside `into` once the links among its existing parents are followed? A link
/// committed in the checkout (`data -> /mnt/shared`) must never make the rebuild remove or
/// create anything outside its own directory.
fn stays_inside(into: &Path, target: &Path) -> bool {
    let mut dir = target.parent();
    while let Some(d) = dir {
        if let Ok(real) = d.canonicalize() {
            return real.starts_with(into);
        }
        dir = d.parent();
    }
    false
}

/// Remove a file, link or directory (never following a link).
fn remove_path(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).ctx("cannot remove", p)?,
        Ok(_) => std::fs::remove_file(p).ctx("cannot remove", p)?,
        Err(_) => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Is this program name a Python interpreter (`python`, `python3`, `python3.11`)?
fn is_python_name(name: &str) -> bool {
    name.strip_prefix("python")
        .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// The command as the rebuild runs it: the locked argv, the locked determinism variables
/// (those set here but not in the lock removed), the seed, and the venv first on `PATH`.
///
/// A program named by a path (relative paths are taken from the project root, where `cairn
/// lock` is normally run) is mapped: one inside the original repository to the same file in
/// the rebuilt worktree; one outside it (the locking machine's venv) to the program of the
/// same name in the rebuilt venv, or to its `python` for an interpreter it lacks.
pub fn make_plan(
    argv: &[String],
    lock: &Lock,
    extra_env: &[String],
    (original_root, repo_root, into): (&Path, &Path, &Path),
    cwd: &Path,
    venv: Option<&Path>,
) -> Plan {
    let mut argv = argv.to_vec();
    let mut replaced_program = None;
    if let Some(program) = argv.first().cloned().filter(|p| p.contains('/')) {
        let abs = paths::absolutize(original_root, Path::new(&program));
        let name = abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mapped = match (abs.strip_prefix(repo_root), venv) {
            // A relative path inside the repository already names the rebuilt copy.
            (Ok(_), _) if Path::new(&program).is_relative() => None,
            (Ok(rel), _) => Some(into.join(rel)),
            (Err(_), Some(venv)) if venv.join("bin").join(&name).is_file() => {
                Some(venv.join("bin").join(&name))
            }
            (Err(_), Some(venv)) if is_python_name(&name) => Some(venv.join("bin/python")),
            _ => None,
        };
        if let Some(m) = mapped {
            argv[0] = m.to_string_lossy().into_owned();
            replaced_program = Some([program, argv[0].clone()]);
        }
    }
    let mut set_env = lock.run.env.clone();
    if let Some(seed) = lock.run.seed {
        set_env.insert("CAIRN_SEED".into(), seed.to_string());
    }
    if let Some(venv) = venv {
        set_env.insert("VIRTUAL_ENV".into(), venv.to_string_lossy().into_owned());
    }
    let mut unset_env: Vec<String> = env::determinism_env(extra_env, std::env::vars())
        .into_keys()
        .filter(|k| !lock.run.env.contains_key(k))
        .collect();
    if lock.run.seed.is_none() && std::env::var_os("CAIRN_SEED").is_some() {
        unset_env.push("CAIRN_SEED".into());
    }
    if venv.is_some() && std::env::var_os("PYTHONHOME").is_some() {
        unset_env.push("PYTHONHOME".into());
    }
    unset_env.sort();
    Plan {
        argv,
        cwd: cwd.to_path_buf(),
        set_env,
        path_prefix: venv.map(|v| v.join("bin")),
        unset_env,
        replaced_program,
    }
}

/// Run the plan, then compare its exit code, checkpoints and outputs with the lock.
fn run_and_compare(
    project: &Project,
    lock: &Lock,
    plan: &Plan,
    (into, rebuilt_root): (&Path, &Path),
    opts: &RebuildOptions,
    step: &mut Step,
) -> Result<()> {
    // Whatever the checkout holds at a checkpoint or output path is not what this run made.
    for a in lock.checkpoints.iter().chain(&lock.outputs) {
        let p = a.path.under(rebuilt_root);
        if std::fs::symlink_metadata(&p).is_ok() {
            if !stays_inside(into, &p) {
                step.status = Status::Failed;
                step.differ(
                    a.path.as_str(),
                    Change::Unchecked,
                    Some(format!(
                        "{} leads outside the rebuilt directory (a link in the checkout); not run",
                        p.display()
                    )),
                );
                return Ok(());
            }
            remove_path(&p)?;
            step.actions.push(format!(
                "removed {} from the checkout before the run",
                a.path
            ));
        }
    }
    let Some((program, args)) = plan.argv.split_first() else {
        step.status = Status::Skipped;
        return Ok(());
    };
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(&plan.cwd);
    for k in &plan.unset_env {
        cmd.env_remove(k);
    }
    cmd.envs(&plan.set_env);
    if let Some(prefix) = &plan.path_prefix {
        let mut parts = vec![prefix.clone()];
        if let Some(p) = std::env::var_os("PATH") {
            parts.extend(std::env::split_paths(&p));
        }
        if let Ok(joined) = std::env::join_paths(parts) {
            cmd.env("PATH", joined);
        }
    }
    // stdout carries cairn's report: the command's output goes to stderr.
    let stderr = {
        use std::os::fd::AsFd;
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::inherit())
    };
    cmd.stdout(stderr);
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler =
        signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone()).ok();
    let status = cmd.status();
    if let Some(id) = handler {
        signal_hook::low_level::unregister(id);
    }
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            step.status = Status::Failed;
            step.differ(
                "command",
                Change::Missing,
                Some(format!("cannot run {program}: {e}")),
            );
            return Ok(());
        }
    };
    step.actions.push(plan.shell_line());
    let code = status.code().map(i64::from).unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        -i64::from(status.signal().unwrap_or(0))
    });
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        step.status = Status::Failed;
        step.notes
            .push(format!("the command was interrupted (exit code {code})"));
    }
    let locked_code = lock.run.exit_code.unwrap_or(0);
    if code != locked_code {
        step.differ(
            "exit-code",
            Change::Changed,
            Some(format!("{locked_code} -> {code}")),
        );
    }
    let hopts = HashOptions::default();
    for (what, list) in [("checkpoint", &lock.checkpoints), ("output", &lock.outputs)] {
        for a in list {
            let place = a.path.under(rebuilt_root);
            let hashed = match digest::hash_path_with(&place, &hopts) {
                Ok(h) => h,
                Err(Error::Missing { .. }) => {
                    step.differ(
                        a.path.as_str(),
                        Change::Missing,
                        Some(format!("the run did not write this {what}")),
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if hashed.digest == a.digest && hashed.kind == a.kind {
                step.actions
                    .push(format!("{what} {} is bit-identical", a.path));
                continue;
            }
            if what == "output" && a.kind == Kind::File {
                match compare_json_output(project, a, &place, opts) {
                    JsonComparison::Within(n) => {
                        step.actions.push(format!(
                            "output {} differs in bytes, and its {n} number(s) agree within rtol={} atol={}",
                            a.path, opts.rtol, opts.atol
                        ));
                        continue;
                    }
                    JsonComparison::Differs(diffs) => {
                        for (key, detail) in diffs {
                            step.differences.push(Difference {
                                subject: a.path.to_string(),
                                path: Some(key),
                                change: Change::Changed,
                                detail: Some(detail),
                            });
                        }
                        continue;
                    }
                    JsonComparison::NoReference(why) => {
                        step.differ(
                            a.path.as_str(),
                            Change::Changed,
                            Some(format!("differs from the lock ({why})")),
                        );
                        continue;
                    }
                    JsonComparison::NotJson => {}
                }
            }
            let files = data_differences(project, &a.digest, a.kind, &hashed);
            for (path, change, detail) in files {
                step.differences.push(Difference {
                    subject: a.path.to_string(),
                    path,
                    change,
                    detail: detail.or_else(|| Some(format!("{what} is not bit-identical"))),
                });
            }
        }
    }
    Ok(())
}

/// How a JSON output compares with the locked one.
#[derive(Debug, PartialEq)]
enum JsonComparison {
    /// Not JSON (or not both JSON): compare bytes only.
    NotJson,
    /// The locked file is not available to compare values with.
    NoReference(String),
    /// Same structure, every number within tolerance (how many numbers).
    Within(usize),
    /// What differs: (JSON path, detail).
    Differs(Vec<(String, String)>),
}

fn compare_json_output(
    project: &Project,
    a: &lockfile::Artifact,
    now_path: &Path,
    opts: &RebuildOptions,
) -> JsonComparison {
    let Ok(now_text) = std::fs::read(now_path) else {
        return JsonComparison::NotJson;
    };
    let Ok(now) = serde_json::from_slice::<serde_json::Value>(&now_text) else {
        return JsonComparison::NotJson;
    };
    // The lock has only the digest: the locked values come from the original file, when it is
    // still the locked one.
    let original = a.path.under(&project.root);
    let old_text = match std::fs::read(&original) {
        Ok(t) if Digest::of_bytes(&t) == a.digest => t,
        Ok(_) => {
            return JsonComparison::NoReference(format!(
                "{} has changed since the lock, so the locked values are unknown",
                original.display()
            ))
        }
        Err(_) => {
            return JsonComparison::NoReference(format!(
                "{} is not here to compare values with; the lock records only its digest",
                original.display()
            ))
        }
    };
    let Ok(old) = serde_json::from_slice::<serde_json::Value>(&old_text) else {
        return JsonComparison::NotJson;
    };
    let mut diffs = Vec::new();
    let mut numbers = 0;
    compare_values(
        "",
        &old,
        &now,
        opts.rtol,
        opts.atol,
        &mut numbers,
        &mut diffs,
    );
    if diffs.is_empty() {
        JsonComparison::Within(numbers)
    } else {
        JsonComparison::Differs(diffs)
    }
}

/// Compare two JSON values leaf by leaf: numbers within `atol + rtol * |locked|`, everything
/// else exactly. Paths are `/`-separated keys and indices.
fn compare_values(
    at: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    rtol: f64,
    atol: f64,
    numbers: &mut usize,
    out: &mut Vec<(String, String)>,
) {
    use serde_json::Value;
    let key = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}/{k}")
        }
    };
    match (old, new) {
        (Value::Number(a), Value::Number(b)) => {
            *numbers += 1;
            let (x, y) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            let close = x == y || (x - y).abs() <= atol + rtol * x.abs();
            if !close {
                out.push((
                    at.to_string(),
                    format!(
                        "{a} -> {b} (difference {:e}, allowed {:e})",
                        (x - y).abs(),
                        atol + rtol * x.abs()
                    ),
                ));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => compare_values(&key(k), va, vb, rtol, atol, numbers, out),
                    None => out.push((key(k), "missing from the rebuilt output".into())),
                }
            }
            for k in b.keys() {
                if !a.contains_key(k) {
                    out.push((key(k), "not in the locked output".into()));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                compare_values(&key(&i.to_string()), va, vb, rtol, atol, numbers, out);
            }
        }
        _ if old == new => {}
        _ => out.push((at.to_string(), format!("{old} -> {new}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_for_the_shell() {
        assert_eq!(shell_quote("train.py"), "train.py");
        assert_eq!(shell_quote("lr=3e-4"), "lr=3e-4");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn python_names() {
        for yes in ["python", "python3", "python3.11"] {
            assert!(is_python_name(yes), "{yes}");
        }
        for no in ["pythonw", "ipython", "torchrun", "python-config"] {
            assert!(!is_python_name(no), "{no}");
        }
    }

    #[test]
    fn json_numbers_within_tolerance() {
        let old: serde_json::Value =
            serde_json::from_str(r#"{"loss": 0.25, "acc": [0.5, 0.75], "name": "x"}"#).unwrap();
        let new: serde_json::Value =
            serde_json::from_str(r#"{"loss": 0.2500001, "acc": [0.5, 0.75], "name": "x"}"#)
                .unwrap();
        let mut out = Vec::new();
        let mut n = 0;
        compare_values("", &old, &new, 0.0, 0.0, &mut n, &mut out);
        assert_eq!(n, 3);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "loss");
        let mut out = Vec::new();
        compare_values("", &old, &new, 1e-5, 0.0, &mut n, &mut out);
        assert!(out.is_empty(), "{out:?}");
        let other: serde_json::Value =
            serde_json::from_str(r#"{"loss": 0.25, "acc": [0.5], "extra": 1}"#).unwrap();
        let mut out = Vec::new();
        compare_values("", &old, &other, 1.0, 1.0, &mut n, &mut out);
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["acc", "name", "extra"]);
    }

    #[test]
    fn file_urls_decode() {
        assert_eq!(
            file_url_path("file:///a/b%20c").unwrap(),
            PathBuf::from("/a/b c")
        );
        assert_eq!(file_url_path("https://x"), None);
    }

    #[test]
    fn default_target_is_next_to_the_repository() {
        assert_eq!(
            default_into(Path::new("/src/tinylm"), "75ead992828d6476c12d165ff42b3dbe"),
            PathBuf::from("/src/tinylm-rebuild-75ead992")
        );
    }
}
