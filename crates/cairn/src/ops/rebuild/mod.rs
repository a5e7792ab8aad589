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

use crate::process::{
    command_line, git_cmd, git_cmd_untrusted_remote, on_path, run_capture, status_text, tail,
};

use serde::Serialize;

use crate::compare;
pub use crate::compare::Change;
use crate::content::digest::{self, Digest, HashOptions, Kind, Progress};
use crate::error::{Error, IoResultExt};
use crate::model::lockfile::{self, Location, Lock};
use crate::model::paths::{self, RelPath};
use crate::probe::env;
use crate::probe::git::{self, Excluder};
use crate::probe::python::{self, Source};
use crate::project::Project;

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
    /// The locked commit must be fetched from a remote the lock names, and there was no consent.
    #[error("the locked commit {commit} is not in this repository; fetching it from {remote} (the lock's remote) needs consent")]
    NeedsConsent {
        /// The commit.
        commit: String,
        /// The lock's remote (validated, shown escaped).
        remote: String,
    },
    /// The locked commit holds a virtual environment: its interpreter is the repository's.
    #[error("the locked commit holds a virtual environment at {path}; cairn never uses an interpreter from a checkout")]
    CommittedVenv {
        /// Its path in the commit.
        path: String,
    },
    /// An interpreter found for the rebuild is inside the repository.
    #[error("the interpreter {} is inside the repository {}; cairn never runs an interpreter from a checkout", path.display(), repo.display())]
    InterpreterInRepo {
        /// The interpreter.
        path: PathBuf,
        /// The repository.
        repo: PathBuf,
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
            RebuildError::NeedsConsent { remote, .. } => Some(format!(
                "check the plan above, then pass --yes to fetch from {remote} (or fetch the commit yourself); nothing was created"
            )),
            RebuildError::CommittedVenv { .. } => Some(
                "remove the venv from the repository (git rm -r --cached) and lock again; nothing was created".into(),
            ),
            RebuildError::InterpreterInRepo { .. } => Some(
                "pass --python with an interpreter outside the repository, or put one on PATH; nothing was created".into(),
            ),
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

/// How far the user agreed to go. Asked once, after preflight, before anything the lock chose
/// is fetched, built, installed or run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consent {
    /// Only what runs nothing of the lock's: the checkout of a commit already here, the
    /// recorded change, the data check.
    #[default]
    None,
    /// Also fetch the commit, check out submodules and build the environment (`--yes`).
    Prepare,
    /// Everything, the command too (`--run`, or a yes at the prompt).
    Run,
}

/// The interpreter a rebuild would make its venv from.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedPython {
    /// The interpreter (found on this machine, never in the checkout).
    pub executable: PathBuf,
    /// `cpython`.
    pub implementation: String,
    /// `3.11.7`.
    pub version: String,
}

/// A package that is not a pinned download from the package index: installing it fetches from
/// where the lock says, or runs a build backend from a directory.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedPackage {
    /// Its name.
    pub name: String,
    /// Its locked version.
    pub version: String,
    /// `vcs`, `archive` or `directory`.
    pub source: &'static str,
    /// Where it comes from: a URL, or a directory.
    pub location: String,
    /// The location is on this machine, outside the repository.
    pub outside: bool,
}

/// Everything a rebuild would do that the lock chose, shown before consent.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildPlan {
    /// The lockfile.
    pub lock: PathBuf,
    /// Its run id.
    pub run: String,
    /// Where the rebuild goes.
    pub into: PathBuf,
    /// The locked commit.
    pub commit: String,
    /// The remote the commit would be fetched from (it is not in the repository).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_from: Option<String>,
    /// Submodules that would be checked out (from their URLs).
    pub submodules: Vec<String>,
    /// The interpreter of the venv, when the lock records Python.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<PlannedPython>,
    /// The installer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installer: Option<Installer>,
    /// How many packages come pinned from the package index.
    pub registry_packages: usize,
    /// Every other package.
    pub packages: Vec<PlannedPackage>,
    /// The command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Plan>,
}

/// Receives progress, and decides how far the rebuild may go.
pub trait Observer {
    /// A step is starting; `what` says what it is about to do.
    fn started(&self, _step: StepName, _what: &str) {}
    /// A step is over.
    fn finished(&self, _step: &Step) {}
    /// How far may the rebuild go? Called exactly once, after preflight and before anything
    /// the lock chose happens, with the whole plan.
    fn consent(&self, _plan: &RebuildPlan) -> Consent {
        Consent::None
    }
    /// Hashing progress.
    fn progress(&self) -> Option<&dyn Progress> {
        None
    }
    /// Where the command's stdout goes (its stderr is inherited): inherited unless the caller
    /// says otherwise. The CLI sends it to stderr, keeping stdout for its report.
    fn command_stdout(&self) -> Stdio {
        Stdio::inherit()
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

/// One difference from the lock, worded as verify and diff word it.
pub type Difference = compare::Reported;

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

mod code;
mod data;
mod environment;
mod preflight;
mod run;

use code::*;
use data::*;
use environment::*;
use preflight::*;
use run::*;

pub use crate::process::shell_quote;
pub(crate) use preflight::find_python_outside;
pub use preflight::{default_into, find_python};
pub use run::make_plan;

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

/// Everything preflight found: what the rebuild needs, and the plan shown for consent.
struct Prepared {
    lock: Lock,
    code: lockfile::Code,
    repo_root: PathBuf,
    into: PathBuf,
    existed: bool,
    change_sidecar: Option<PathBuf>,
    interpreter: Option<python::Interpreter>,
    installer: Installer,
    /// `None` until the commit is in the repository (then the data are planned after the fetch).
    data_plans: Option<Vec<DataPlan>>,
    plan: RebuildPlan,
}

/// Preflight: everything that can make the rebuild impossible, and the plan. Creates nothing,
/// fetches nothing, and runs nothing the lock or the checkout chose (only the interpreter
/// finder, on interpreters of this machine).
fn prepare(project: &Project, lock_path: &Path, opts: &RebuildOptions) -> Result<Prepared> {
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
    let into = opts
        .into
        .clone()
        .unwrap_or_else(|| default_into(repo_root, &lock.run.id));
    let existed = check_into(&into, repo_root)?;
    // The directory as it will be once made (links among its parents resolved), so the plan
    // shows the paths the command will really have.
    let into = into
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| into.file_name().map(|n| p.join(n)))
        .unwrap_or(into);
    let change_sidecar = match &code.change {
        Some(change) => {
            let path = project.change_path(change);
            match project.read_change(change) {
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
        Some(py) => Some(find_python_outside(
            py,
            opts.python.as_deref(),
            opts.allow_other_python,
            repo_root,
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
    let present = git::has_commit(repo, &code.commit);
    if !present && code.remote.is_none() {
        return Err(RebuildError::UnknownCommit {
            commit: code.commit.clone(),
            remote: None,
            fetch_error: None,
        });
    }
    let project_rel = project
        .root
        .strip_prefix(repo_root)
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let data_plans = if present {
        refuse_committed_venv(repo, &code.commit, &project_rel)?;
        Some(plan_data(project, repo, &lock, opts)?)
    } else {
        None
    };
    let rebuilt_root = into.join(&project_rel);
    let venv = into.join(".venv");
    let venv_used = lock.python.is_some().then_some(venv.as_path());
    let command = lock.run.command.as_ref().map(|argv| {
        make_plan(
            argv,
            &lock,
            &project.config.env,
            (&project.root, repo_root, &into),
            &rebuilt_root,
            venv_used,
        )
    });
    let plan = RebuildPlan {
        lock: lock_path.to_path_buf(),
        run: lock.run.id.clone(),
        into: into.clone(),
        commit: code.commit.clone(),
        fetch_from: (!present).then(|| code.remote.clone()).flatten(),
        submodules: code
            .submodules
            .iter()
            .map(|s| match &s.url {
                Some(u) => format!("{} from {u}", s.path),
                None => s.path.to_string(),
            })
            .collect(),
        python: interpreter.as_ref().map(|i| PlannedPython {
            executable: i.executable.clone(),
            implementation: i.implementation.clone(),
            version: i.version.clone(),
        }),
        installer: lock.python.as_ref().map(|_| installer),
        registry_packages: lock.python.as_ref().map_or(0, |p| {
            p.packages
                .iter()
                .filter(|x| x.source == Source::Registry)
                .count()
        }),
        packages: lock
            .python
            .as_ref()
            .map(|p| planned_packages(p, repo_root, &into))
            .unwrap_or_default(),
        command,
    };
    Ok(Prepared {
        lock,
        code,
        repo_root: repo_root.clone(),
        into,
        existed,
        change_sidecar,
        interpreter,
        installer,
        data_plans,
        plan,
    })
}

/// The plan of a rebuild, after the same preflight as [`rebuild`], without doing anything
/// (`cairn rebuild --dry-run`).
pub fn plan(project: &Project, lock_path: &Path, opts: &RebuildOptions) -> Result<RebuildPlan> {
    Ok(prepare(project, lock_path, opts)?.plan)
}

/// Rebuild the run recorded in `lock_path` (a lock of `project`).
///
/// After preflight, the observer is asked once ([`Observer::consent`]) with the whole plan.
/// Without consent only what runs nothing of the lock's is done: the checkout of a commit the
/// repository already has, the recorded change applied, and the data check; the rest is
/// reported as skipped.
pub fn rebuild(
    project: &Project,
    lock_path: &Path,
    opts: &RebuildOptions,
    obs: &dyn Observer,
) -> Result<Report> {
    let Prepared {
        lock,
        code,
        repo_root,
        into,
        existed,
        change_sidecar,
        interpreter,
        installer,
        data_plans,
        plan: rebuild_plan,
    } = prepare(project, lock_path, opts)?;
    let repo = project.repo.as_ref().expect("prepare checked it");
    let repo_root = &repo_root;
    let consent = obs.consent(&rebuild_plan);

    let fetched = match &rebuild_plan.fetch_from {
        Some(remote) if consent == Consent::None => {
            return Err(RebuildError::NeedsConsent {
                commit: code.commit.clone(),
                remote: remote.clone(),
            })
        }
        Some(_) => ensure_commit(repo, repo_root, &code)?,
        None => None,
    };
    // A fetch adds objects: look at the repository afresh.
    let repo_now;
    let repo = if fetched.is_some() {
        repo_now = git::discover(repo_root)?;
        &repo_now
    } else {
        repo
    };
    let project_rel = project
        .root
        .strip_prefix(repo_root)
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let data_plans = match data_plans {
        Some(d) => d,
        None => {
            refuse_committed_venv(repo, &code.commit, &project_rel)?;
            plan_data(project, repo, &lock, opts)?
        }
    };

    // Materialise.
    let mut cleanup = Cleanup {
        repo_root: repo_root.clone(),
        into: into.clone(),
        existed,
        armed: true,
    };

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
            .args(["worktree", "add", "--quiet", "--detach", "--end-of-options"])
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
        (&into, consent >= Consent::Prepare),
        &mut code_step,
    )?;
    copy_sidecars(project, lock_path, &lock, repo_root, &into, &rebuilt_root)?;
    code_step.settle();
    obs.finished(&code_step);

    let mut steps = vec![code_step];
    let venv = into.join(".venv");
    let env_step = match (&lock.python, &interpreter) {
        (Some(locked), Some(_)) if consent == Consent::None => {
            let mut s = Step::new(StepName::Environment);
            s.status = Status::Skipped;
            s.notes.push(format!(
                "not built: installing the lock's {} package(s) runs code the lock chose, so it needs consent (--yes, or --run)",
                locked.packages.len()
            ));
            s
        }
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
    let env_built = lock.python.is_some() && consent >= Consent::Prepare;
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
        // Only a venv this rebuild made, with consent: its packages' .pth files run at start-up.
        let torch = (locked.torch.is_some() && env_built && venv.is_dir())
            .then(|| python::capture(&venv.join("bin/python")).ok())
            .flatten()
            .and_then(|e| e.torch);
        let now = env::host_with(torch, interpreter.as_ref().and_then(|i| i.libc.clone()));
        host.extend(compare::host(locked, &now).iter().map(Difference::from));
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
        Some(plan) if consent == Consent::Run => {
            // The command that runs is the one that was shown, or none.
            let shown = rebuild_plan.command.as_ref().map(|p| (&p.argv, &p.set_env));
            if shown != Some((&plan.argv, &plan.set_env)) {
                run_step.status = Status::NotRun;
                run_step.notes.push(format!(
                    "not run: the command changed after it was shown; it would be: {}",
                    plan.shell_line()
                ));
            } else {
                obs.started(StepName::Run, "the locked command");
                ran = true;
                run_and_compare(
                    project,
                    &lock,
                    plan,
                    (&into, &rebuilt_root),
                    opts,
                    obs,
                    &mut run_step,
                )?;
            }
        }
        Some(plan) => {
            run_step.status = Status::NotRun;
            run_step.notes.push(format!(
                "not run without consent (--run); the command would be: {}",
                plan.shell_line()
            ));
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
        venv: venv_used.filter(|_| env_built),
        ok,
        ran,
        steps,
        command: plan,
        host,
    })
}

/// The repository-relative paths a lock tracks by digest (not code), as verify excludes them.
fn excluder_for(project: &Project, lock: &Lock) -> Excluder {
    compare::excluder(project, &[lock])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::python::file_url_path;

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
