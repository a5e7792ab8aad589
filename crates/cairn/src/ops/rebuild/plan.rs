//! What a rebuild is asked to do and what it would do: the options, the plan shown before
//! consent, the consent itself, the [`Observer`] that receives progress, and the command.

use super::*;

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
    /// The package index the lock records, which the registry packages are installed from
    /// (`None`: the installer's own configuration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_url: Option<String>,
    /// Further indexes the lock records.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_index_urls: Vec<String>,
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

/// The command a rebuild runs (or would run).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The argv, program first.
    pub argv: Vec<String>,
    /// The directory it runs in: where it ran (`run.cwd`) inside the rebuilt worktree, else the
    /// project root there.
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

/// Why a rebuild does not run a command that ran outside the repository.
pub(super) const OUTSIDE_CWD: &str = "not run: the command ran outside the repository when it was locked (`cwd-outside` in the lock), and a rebuild runs commands only inside the rebuilt worktree; run it yourself from the directory it needs";

/// Make sure the command's directory `cwd` is inside the rebuilt worktree `into` (no link in
/// the checkout leads it out) and exists: a git-ignored directory the run started in is not in
/// the checkout, and is made. `Err` with the reason the command is not run.
pub(super) fn prepare_cwd(into: &Path, cwd: &Path) -> std::result::Result<(), String> {
    // The deepest part of the path that exists must resolve inside the worktree; what is made
    // below it is made here, so holds no link.
    let mut dir = Some(cwd);
    while let Some(d) = dir {
        if std::fs::symlink_metadata(d).is_ok() {
            let inside = d.canonicalize().is_ok_and(|real| real.starts_with(into));
            if !inside {
                return Err(format!(
                    "not run: its directory {} leads outside the rebuilt worktree (a link in the checkout)",
                    cwd.display()
                ));
            }
            break;
        }
        dir = d.parent();
    }
    if !cwd.is_dir() {
        std::fs::create_dir_all(cwd)
            .map_err(|e| format!("not run: cannot make its directory {}: {e}", cwd.display()))?;
    }
    Ok(())
}
