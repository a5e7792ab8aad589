//! Preflight: everything that can make the rebuild impossible, checked before anything is created.

use super::*;

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
