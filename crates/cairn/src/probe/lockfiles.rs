//! The dependency lock files of a project (`uv.lock`, `poetry.lock`, `requirements.txt`, ...):
//! which ones sit at the project root. What those that list Python packages ask of the
//! environment is read by [`crate::probe::depfiles`].

use std::path::Path;

use crate::error::{IoResultExt, Result};
use crate::model::paths::RelPath;

/// One lock file found in the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its path, relative to the project root.
    pub path: RelPath,
    /// What it is: `uv`, `pylock`, `poetry`, `pipfile` (Pipfile.lock), `pdm`, `requirements`,
    /// `conda`, `conda-lock`, `pixi`, `cargo` or `npm`; for [`find_requirement_sources`],
    /// `pyproject` or `pipenv` (Pipfile).
    pub kind: &'static str,
}

/// The kind of lock file a root-level file name denotes, if any.
fn kind_of(name: &str) -> Option<&'static str> {
    let kind = match name {
        "uv.lock" => "uv",
        "pylock.toml" => "pylock",
        "poetry.lock" => "poetry",
        "Pipfile.lock" => "pipfile",
        "pdm.lock" => "pdm",
        "environment.yml" | "environment.yaml" => "conda",
        "conda-lock.yml" => "conda-lock",
        "pixi.lock" => "pixi",
        "Cargo.lock" => "cargo",
        "package-lock.json" => "npm",
        _ => {
            // PEP 751 names: `pylock.<name>.toml`, where <name> has no dot.
            if let Some(mid) = name
                .strip_prefix("pylock.")
                .and_then(|s| s.strip_suffix(".toml"))
            {
                return (!mid.is_empty() && !mid.contains('.')).then_some("pylock");
            }
            let is_req = name.len() >= "requirements.txt".len()
                && name.starts_with("requirements")
                && name.ends_with(".txt");
            return is_req.then_some("requirements");
        }
    };
    Some(kind)
}

/// Lock files at the project root (not recursive), sorted by path: `uv.lock` is `uv`,
/// `pylock.toml` and `pylock.*.toml` are `pylock`, `poetry.lock` is `poetry`, `Pipfile.lock` is
/// `pipfile`, `pdm.lock` is `pdm`, `requirements*.txt` is `requirements`, `environment.yml` and
/// `environment.yaml` are `conda`, `conda-lock.yml` is `conda-lock`, `pixi.lock` is `pixi`,
/// `Cargo.lock` is `cargo` and `package-lock.json` is `npm`.
///
/// Only regular files count (a symlink counts when its target is one, as in the data walk); a
/// directory with one of these names is skipped, and so is a name that is not UTF-8.
pub fn find(root: &Path) -> Result<Vec<Found>> {
    find_named(root, kind_of)
}

/// The root-level files that state requirements without being lock files: `pyproject.toml`
/// (kind `pyproject`) and `Pipfile` (kind `pipenv`). Their requirements are checked against
/// the environment ([`crate::probe::depfiles`]), but they are not recorded as `[[lockfile]]`
/// entries: they are code, which the lock already records, and an older lock would otherwise
/// show them as new lock files. Found as [`find`] finds lock files.
pub fn find_requirement_sources(root: &Path) -> Result<Vec<Found>> {
    find_named(root, |name| match name {
        "pyproject.toml" => Some("pyproject"),
        "Pipfile" => Some("pipenv"),
        _ => None,
    })
}

fn find_named(root: &Path, kind_of: fn(&str) -> Option<&'static str>) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root).ctx("cannot read", root)? {
        let entry = entry.ctx("cannot read", root)?;
        let name = entry.file_name();
        let Some((name, kind)) = name.to_str().and_then(|n| Some((n, kind_of(n)?))) else {
            continue;
        };
        // `metadata` follows symlinks; a dangling one is not a lock file.
        let meta = match std::fs::metadata(entry.path()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            other => other.ctx("cannot read", &entry.path())?,
        };
        if !meta.is_file() {
            continue;
        }
        // A link that leads out of the project is not the project's lock file, and reading it
        // would read a file of the user's (spec/security.md).
        let inside = std::fs::canonicalize(entry.path())
            .ok()
            .zip(std::fs::canonicalize(root).ok())
            .is_some_and(|(target, root)| target.starts_with(root));
        if !inside {
            continue;
        }
        found.push(Found {
            path: RelPath::parse(name)?,
            kind,
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Whether a kind lists Python packages that [`crate::probe::depfiles`] reads: `uv`, `pylock`,
/// `poetry`, `pipfile`, `pdm`, `requirements`, `conda`, `pyproject` and `pipenv`.
pub fn is_python(kind: &str) -> bool {
    crate::probe::depfiles::is_python(kind)
}

/// A recorded kind as the `&'static str` [`Found::kind`] holds, when [`is_python`] says it is
/// one.
pub fn python_kind(kind: &str) -> Option<&'static str> {
    const KINDS: [&str; 9] = [
        "uv",
        "pylock",
        "poetry",
        "pipfile",
        "pdm",
        "requirements",
        "conda",
        "pyproject",
        "pipenv",
    ];
    KINDS.into_iter().find(|k| *k == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn finds_root_lock_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let names = "uv.lock pylock.toml pylock.gpu.toml pylock.a.b.toml pylock..toml poetry.lock \
            Pipfile.lock Pipfile pyproject.toml pdm.lock requirements.txt requirements-dev.txt requirements_gpu.txt \
            requirements.in my-requirements.txt environment.yml conda-lock.yml pixi.lock Cargo.lock \
            package-lock.json README.md";
        for name in names.split_whitespace() {
            std::fs::write(root.join(name), "").unwrap();
        }
        std::fs::create_dir(root.join("requirements")).unwrap();
        std::fs::write(root.join("requirements/dev.txt"), "").unwrap();
        std::fs::create_dir(root.join("environment.yaml")).unwrap();
        std::os::unix::fs::symlink("requirements.txt", root.join("requirements-link.txt")).unwrap();
        std::os::unix::fs::symlink("gone.txt", root.join("requirements-gone.txt")).unwrap();
        let found: Vec<String> = find(root)
            .unwrap()
            .into_iter()
            .map(|f| format!("{} {}", f.path, f.kind))
            .collect();
        let want = "Cargo.lock cargo|Pipfile.lock pipfile|conda-lock.yml conda-lock|\
            environment.yml conda|package-lock.json npm|pdm.lock pdm|pixi.lock pixi|\
            poetry.lock poetry|pylock.gpu.toml pylock|pylock.toml pylock|\
            requirements-dev.txt requirements|requirements-link.txt requirements|\
            requirements.txt requirements|requirements_gpu.txt requirements|uv.lock uv";
        assert_eq!(found, want.split('|').collect::<Vec<_>>());
        let sources: Vec<String> = find_requirement_sources(root)
            .unwrap()
            .into_iter()
            .map(|f| format!("{} {}", f.path, f.kind))
            .collect();
        assert_eq!(sources, ["Pipfile pipenv", "pyproject.toml pyproject"]);
    }

    #[test]
    fn a_directory_named_like_a_lock_file_is_skipped_and_a_missing_root_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("uv.lock")).unwrap();
        assert!(find(dir.path()).unwrap().is_empty());
        let err = find(&dir.path().join("nope")).unwrap_err();
        let Error::Io { op, path, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!((op, path), ("cannot read", dir.path().join("nope")));
    }

    #[test]
    fn python_kinds() {
        for k in "uv pylock poetry pipfile pdm requirements conda pyproject pipenv".split(' ') {
            assert!(is_python(k), "{k}");
        }
        for k in "cargo npm conda-lock pixi other".split(' ') {
            assert!(!is_python(k), "{k}");
            assert_eq!(python_kind(k), None);
        }
        assert_eq!(python_kind("uv"), Some("uv"));
    }
}
