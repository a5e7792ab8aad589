//! Preflight: everything that can make the rebuild impossible, checked before anything is created.

use super::*;
use crate::probe::observe;

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

pub(super) fn check_into(into: &Path, repo_root: &Path) -> Result<bool> {
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
    find_python_in(locked, option, allow_other, None)
}

/// [`find_python`] for a rebuild of `repo`: an interpreter that the repository tracks (a
/// committed `.venv/bin/python`, a link to one, a file under a committed link) is never run,
/// not even to ask its version. One the user made in their clone (an ignored venv) is theirs.
pub(crate) fn find_python_outside(
    locked: &lockfile::Python,
    option: Option<&Path>,
    allow_other: bool,
    repo_root: &Path,
) -> Result<python::Interpreter> {
    let repo = git2::Repository::open(repo_root).map_err(|e| Error::Git {
        message: format!("cannot open the repository {}", repo_root.display()),
        source: e,
    })?;
    find_python_in(locked, option, allow_other, Some((&repo, repo_root)))
}

/// Is `path` (lexically, or once its links are followed) a file the repository tracks, or below
/// a tracked link?
fn tracked_by(repo: &git2::Repository, repo_root: &Path, path: &Path) -> bool {
    let Ok(index) = repo.index() else {
        return true;
    };
    let canonical_root = repo_root
        .canonicalize()
        .unwrap_or_else(|_| repo_root.to_path_buf());
    let lexical = paths::absolutize(&std::env::current_dir().unwrap_or_default(), path);
    let mut forms = vec![lexical.clone()];
    if let Ok(c) = lexical.canonicalize() {
        forms.push(c);
    }
    // Each parent resolved, the last part kept: a link in the repository to a tracked file.
    if let (Some(parent), Some(name)) = (lexical.parent(), lexical.file_name()) {
        if let Ok(p) = parent.canonicalize() {
            forms.push(p.join(name));
        }
    }
    for form in forms {
        for root in [repo_root, canonical_root.as_path()] {
            let Ok(rel) = form.strip_prefix(root) else {
                continue;
            };
            let mut prefix = PathBuf::new();
            for part in rel.components() {
                prefix.push(part);
                if index.get_path(&prefix, 0).is_some() {
                    return true;
                }
            }
        }
    }
    false
}

/// Is `dir` inside the repository at `root` (lexically, or once its links are resolved)?
fn inside(dir: &Path, root: &Path) -> bool {
    let canonical_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    dir.starts_with(root)
        || dir.starts_with(&canonical_root)
        || dir
            .canonicalize()
            .is_ok_and(|d| d.starts_with(&canonical_root))
}

/// `PATH` without its relative directories and those inside the repository at `root`, and the
/// variables naming an environment inside it (`VIRTUAL_ENV`, `CONDA_PREFIX`), for a program
/// that runs interpreters it finds there.
fn path_outside(root: &Path) -> (std::ffi::OsString, Vec<&'static str>) {
    let dirs: Vec<PathBuf> = crate::process::path_dirs()
        .into_iter()
        .filter(|d| !inside(d, root))
        .collect();
    let path = std::env::join_paths(dirs).unwrap_or_default();
    let vars = ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .into_iter()
        .filter(|v| std::env::var_os(v).is_some_and(|p| inside(Path::new(&p), root)))
        .collect();
    (path, vars)
}

/// The first `uv` in a directory of `PATH` outside the repository at `repo_root`: a checkout
/// can ship a `uv` (in a committed `.venv/bin`) that an activated environment puts first.
pub(crate) fn uv_outside(repo_root: &Path) -> Option<PathBuf> {
    crate::process::path_dirs()
        .into_iter()
        .filter(|d| !inside(d, repo_root))
        .map(|d| d.join("uv"))
        .find(|p| p.is_file())
}

fn find_python_in(
    locked: &lockfile::Python,
    option: Option<&Path>,
    allow_other: bool,
    repo: Option<(&git2::Repository, &Path)>,
) -> Result<python::Interpreter> {
    let in_repo = |p: &Path| repo.is_some_and(|(r, root)| tracked_by(r, root, p));
    let wanted = format!("{} {}", locked.implementation, locked.version);
    let matches = |i: &python::Interpreter| {
        i.implementation == locked.implementation && i.version == locked.version
    };
    if let Some(p) = option {
        if let Some((_, root)) = repo.filter(|_| in_repo(p)) {
            return Err(RebuildError::InterpreterInRepo {
                path: p.to_path_buf(),
                repo: root.to_path_buf(),
            });
        }
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
    for dir in crate::process::path_dirs() {
        for name in [
            format!("python{major}.{minor}"),
            format!("python{major}"),
            "python".to_string(),
        ] {
            candidates.push(dir.join(name));
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
    let uv = match repo {
        Some((_, root)) => uv_outside(root),
        None => on_path("uv"),
    };
    if let Some(uv) = uv {
        let mut find = Command::new(uv);
        find.args(["python", "find", "--no-config", "--", &locked.version]);
        if let Some((_, root)) = repo {
            // Not the repository: uv reads `.python-version` and `pyproject.toml` from there.
            find.current_dir(root.parent().unwrap_or(Path::new("/")));
            // uv runs every interpreter it considers to ask its version: none from the
            // repository (a committed `.venv/bin` first on PATH, an activated venv in it).
            let (path, venv_inside) = path_outside(root);
            find.env("PATH", path);
            for var in venv_inside {
                find.env_remove(var);
            }
        }
        if let Ok(out) = run_capture(&mut find) {
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
        if in_repo(&c) {
            tried.push(format!("{} (in the repository: not run)", c.display()));
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
pub(super) fn ensure_commit(
    repo: &git2::Repository,
    repo_root: &Path,
    code: &lockfile::Code,
) -> Result<Option<String>> {
    if git::has_commit(repo, &code.commit) {
        return Ok(None);
    }
    let Some(remote) = &code.remote else {
        return Err(RebuildError::UnknownCommit {
            commit: code.commit.to_string(),
            remote: None,
            fetch_error: None,
        });
    };
    let fetch = |refspecs: &[&str]| {
        run_capture(
            git_cmd(repo_root)
                .args([
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--no-recurse-submodules",
                    "--end-of-options",
                    remote,
                ])
                .args(refspecs),
        )
    };
    let by_id = fetch(&[&code.commit]);
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
    let all = fetch(&["refs/heads/*", "refs/tags/*"]);
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
        commit: code.commit.to_string(),
        remote: Some(remote.clone()),
        fetch_error,
    })
}

/// Where each dataset may be found, in order of preference.
pub(super) struct DataPlan {
    pub(super) name: String,
    /// `--data NAME=PATH`.
    pub(super) given: Option<PathBuf>,
    /// The locked path inside the project, for in-project datasets.
    pub(super) rel: Option<RelPath>,
    /// The same path in the project the rebuild started from.
    pub(super) original: Option<PathBuf>,
    /// For external data: the location from cairn.toml.
    pub(super) configured: Option<PathBuf>,
}

pub(super) fn plan_data(
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
        .and_then(|c| c.commit.to_git())
        .and_then(|oid| repo.find_commit(oid).ok())
        .and_then(|c| c.tree().ok());
    let exists = |p: &Path| std::fs::metadata(p).is_ok();
    let mut out = Vec::new();
    for d in &lock.data {
        let given = opts.data.get(&d.name).cloned();
        let mut looked = Vec::new();
        let plan = match &d.location {
            Location::Path(rel) => {
                // The one read policy: a locked path that leads out of the repository through
                // a link is not read unless the user gives it (--data).
                let original = Some(rel.under(&project.root))
                    .filter(|p| observe::leads_outside(project, p).is_none());
                let in_commit = project.repo_relative(rel).is_some_and(|r| {
                    commit_tree
                        .as_ref()
                        .is_some_and(|t| t.get_path(Path::new(&r)).is_ok())
                });
                let found = match &given {
                    Some(g) => exists(g),
                    None => original.as_deref().is_some_and(exists) || in_commit,
                };
                if !found {
                    match &given {
                        Some(g) => looked.push(format!("{} (--data)", g.display())),
                        None => {
                            looked.extend(original.as_ref().map(|o| o.display().to_string()));
                            looked.push(format!("{rel} in commit {}", short(&commit_of(lock))));
                        }
                    }
                }
                DataPlan {
                    name: d.name.clone(),
                    given,
                    rel: Some(rel.clone()),
                    original,
                    configured: None,
                }
            }
            Location::External => {
                let configured =
                    observe::user_location(project, &d.name, &d.location, &BTreeMap::new());
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

/// Refuse a locked commit that holds a virtual environment at the repository root or the project
/// root (`.venv`, or `venv` with a `pyvenv.cfg` or `bin/`): the rebuild makes its own `.venv`
/// there, and a committed interpreter is the repository author's program.
pub(super) fn refuse_committed_venv(
    repo: &git2::Repository,
    commit: &crate::model::oid::ObjectId,
    project_rel: &Path,
) -> Result<()> {
    let tree = commit
        .to_git()
        .ok_or_else(|| git2::Error::from_str("not a SHA-1 object id"))
        .and_then(|oid| repo.find_commit(oid))
        .and_then(|c| c.tree())
        .map_err(|e| Error::Git {
            message: format!("cannot read the locked commit {commit}"),
            source: e,
        })?;
    let mut bases = vec![PathBuf::new()];
    if !project_rel.as_os_str().is_empty() {
        bases.push(project_rel.to_path_buf());
    }
    for base in bases {
        let dot = base.join(".venv");
        if tree.get_path(&dot).is_ok() {
            return Err(RebuildError::CommittedVenv {
                path: dot.display().to_string(),
            });
        }
        let plain = base.join("venv");
        if ["pyvenv.cfg", "bin"]
            .iter()
            .any(|f| tree.get_path(&plain.join(f)).is_ok())
        {
            return Err(RebuildError::CommittedVenv {
                path: plain.display().to_string(),
            });
        }
    }
    Ok(())
}

/// The name of the marker cairn writes in the git directory of a worktree it prepared
/// (`.git/worktrees/<name>/cairn-rebuild`, so the checkout itself stays exactly the locked code).
const MARKER: &str = "cairn-rebuild";

/// What is at the target directory from an earlier rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Earlier {
    /// Nothing of an earlier rebuild (absent, empty, or not a worktree of this repository).
    Nothing,
    /// A worktree cairn prepared for this very lock and in which nothing ran: it may be
    /// replaced by a rebuild that goes further (`--yes`, `--run`).
    Prepared,
    /// A worktree of this repository that may not be replaced, and why.
    Other(String),
}

/// The private git directory of the worktree at `into`, when `into` is a worktree registered in
/// `repo` (its `.git` file names a directory under the repository's `worktrees/`, and that
/// directory's `gitdir` names `into/.git` back).
fn worktree_admin(into: &Path, repo: &git2::Repository) -> Option<PathBuf> {
    let dot_git = into.join(".git");
    let text = crate::fs::read_bounded(&dot_git, 4096).ok()?;
    let text = String::from_utf8(text).ok()?;
    let admin = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
    let admin = admin.canonicalize().ok()?;
    let worktrees = repo.commondir().join("worktrees").canonicalize().ok()?;
    if admin.parent() != Some(worktrees.as_path()) {
        return None;
    }
    let back = crate::fs::read_bounded(&admin.join("gitdir"), 4096).ok()?;
    let back = PathBuf::from(String::from_utf8(back).ok()?.trim());
    let here = dot_git.parent()?.canonicalize().ok()?.join(".git");
    (back == here).then_some(admin)
}

/// The marker's text: the digest of the lock (its canonical text) and whether the command ran.
fn marker_text(lock_digest: &Digest, ran: bool) -> String {
    format!(
        "# Written by `cairn rebuild`: this worktree was made for the lock below.\nlock = \"{lock_digest}\"\nstate = \"{}\"\n",
        if ran { "ran" } else { "prepared" }
    )
}

/// Say in the worktree's git directory that cairn made it for this lock (and whether the
/// command ran in it). Best effort: without the marker a later rebuild refuses the directory
/// and says how to remove it.
pub(super) fn mark_worktree(into: &Path, repo: &git2::Repository, lock_digest: &Digest, ran: bool) {
    if let Some(admin) = worktree_admin(into, repo) {
        let _ = crate::fs::atomic_write(
            &admin.join(MARKER),
            marker_text(lock_digest, ran).as_bytes(),
        );
    }
}

/// What an earlier rebuild left at `into`, recognised by the marker cairn wrote there (never by
/// the directory's name).
pub(super) fn earlier_rebuild(
    into: &Path,
    repo: &git2::Repository,
    lock_digest: &Digest,
) -> Earlier {
    let Some(admin) = worktree_admin(into, repo) else {
        return Earlier::Nothing;
    };
    let marker = crate::fs::read_bounded(&admin.join(MARKER), 4096)
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    match marker {
        None => Earlier::Other(
            "it is a git worktree of this repository that `cairn rebuild` did not prepare".into(),
        ),
        Some(m) if m == marker_text(lock_digest, false) => Earlier::Prepared,
        Some(m) if m == marker_text(lock_digest, true) => Earlier::Other(
            "the locked command already ran in it (its results are kept for you)".into(),
        ),
        Some(_) => Earlier::Other(
            "`cairn rebuild` prepared it for another lock (or another version of this one)".into(),
        ),
    }
}
