//! Why a rebuild could not be done: [`RebuildError`], each with a hint (exit status 2).

use super::*;

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
    /// The target is a worktree an earlier `cairn rebuild` of this lock prepared, and this one
    /// has no consent to go further than it did.
    #[error("{} already exists and is not empty: an earlier `cairn rebuild` of this lock prepared it", path.display())]
    IntoPrepared {
        /// The directory.
        path: PathBuf,
        /// The repository it is a worktree of.
        repo: PathBuf,
    },
    /// The target is a worktree of this repository that cairn may not replace.
    #[error("{} already exists and is not empty: {why}", path.display())]
    IntoOtherWorktree {
        /// The directory.
        path: PathBuf,
        /// The repository it is a worktree of.
        repo: PathBuf,
        /// Why it is not replaced.
        why: String,
    },
    /// Ctrl-C arrived before the command ran; what the rebuild had made was removed.
    #[error("interrupted (Ctrl-C) during the {step} step; the rebuild directory {} and its git worktree were removed", into.display())]
    Interrupted {
        /// The step it was in.
        step: &'static str,
        /// The directory that was removed.
        into: PathBuf,
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
            RebuildError::IntoPrepared { path, repo } => Some(format!(
                "`cairn rebuild --run` (or --yes) goes on from it; to start afresh, remove it with `{}`, or pass --into with a new directory; nothing was changed",
                remove_worktree(repo, path)
            )),
            RebuildError::IntoOtherWorktree { path, repo, .. } => Some(format!(
                "remove it with `{}` if you no longer need it, or pass --into with a new directory; nothing was changed",
                remove_worktree(repo, path)
            )),
            RebuildError::Interrupted { .. } => Some(
                "nothing of this rebuild is left (partial downloads are the installer's own cache); run it again to start over".into(),
            ),
        }
    }
}

/// The command that removes the worktree at `path` of the repository at `repo`.
fn remove_worktree(repo: &Path, path: &Path) -> String {
    format!(
        "git -C {} worktree remove --force {}",
        shell_quote(&repo.display().to_string()),
        shell_quote(&path.display().to_string())
    )
}

/// The rebuild's result type.
pub type Result<T, E = RebuildError> = std::result::Result<T, E>;
