//! Where things are: the project root, its repository, its configuration, the lockfile and the
//! `.cairn/` directory.
//!
//! The project root is the nearest directory from the current one up to the repository root
//! that holds a `cairn.toml`; without one, the repository root. (Without git: the nearest
//! directory holding `cairn.toml` or `cairn.lock`, else the current directory.) So several
//! projects can live in one repository, each with its own `cairn.toml` and `cairn.lock`.
//!
//! `.cairn/` at the project root holds `changes/` and `manifests/` (meant to be committed) and
//! `cache/` and `failed/` (local only; `.cairn/.gitignore` says so). Every `.cairn/` path comes
//! from here, and every write below it goes through [`crate::fs`], which never follows a symlink
//! below the project root: a committed `.cairn` or `.cairn/cache` that is a link is not used.
//!
//! Opening a project is also where its `cairn.toml` meets the user's trust ([`crate::trust`]):
//! unless the user trusted this exact file here, the settings that would run a program or read
//! outside the repository are dropped and listed in [`Project::ignored`], so that no command can
//! forget the rule (spec/security.md).

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use crate::config::{self, Config, Ignored};
use crate::error::{Error, IoResultExt, Result};
use crate::model::lockfile;
use crate::model::paths::{self, RelPath};
use crate::probe::git;

/// A located project.
pub struct Project {
    /// The directory cairn was started in (canonical).
    pub cwd: PathBuf,
    /// The project root (canonical).
    pub root: PathBuf,
    /// The repository, unless running without git.
    pub repo: Option<git2::Repository>,
    /// The repository's working directory (canonical).
    pub repo_root: Option<PathBuf>,
    /// The configuration (empty when there is no cairn.toml), without what an untrusted
    /// cairn.toml may not decide.
    pub config: Config,
    /// The settings of cairn.toml that were not used because the user has not trusted it
    /// (`cairn trust`); empty when it is trusted or has none.
    pub ignored: Vec<Ignored>,
    /// Why the stat cache in `.cairn/cache` is not used (a committed symlink in its way), when
    /// it is not.
    pub cache_problem: Option<String>,
}

impl Project {
    /// Locate the project from `cwd`. With `require_git`, a directory outside any repository is
    /// an error ([`Error::NotARepo`]).
    pub fn open(cwd: &Path, require_git: bool) -> Result<Project> {
        let cwd = cwd.canonicalize().ctx("cannot open directory", cwd)?;
        let repo = match git::discover(&cwd) {
            Ok(repo) => Some(repo),
            Err(Error::NotARepo { .. }) if !require_git => None,
            Err(e) => return Err(e),
        };
        let repo_root = match &repo {
            Some(r) => {
                let w = git::workdir(r)?;
                Some(w.canonicalize().ctx("cannot open directory", &w)?)
            }
            None => None,
        };
        let root = find_root(&cwd, repo_root.as_deref());
        let (mut config, _, bytes) = Config::load_bytes(&root)?;
        let boundary = repo_root.as_deref().unwrap_or(&root);
        let ignored = if crate::trust::is_trusted(&root, &bytes) {
            Vec::new()
        } else {
            config.drop_untrusted(&root, boundary)
        };
        let mut project = Project {
            cwd,
            root,
            repo,
            repo_root,
            config,
            ignored,
            cache_problem: None,
        };
        if let Err(e) = crate::fs::real_dir(&project.stat_cache_dir()) {
            project.cache_problem = Some(format!(
                "the stat cache in {} is not used: {e}",
                project.stat_cache_dir().display()
            ));
        }
        Ok(project)
    }

    /// What to tell the user about opening the project, as (warning, hint) pairs: the settings
    /// of an untrusted cairn.toml that were ignored, and a stat cache that cannot be used.
    pub fn warnings(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        if !self.ignored.is_empty() {
            let list: Vec<String> = self
                .ignored
                .iter()
                .map(|i| {
                    format!(
                        "{} = {:?} ({})",
                        i.key,
                        crate::text::visible(&i.value),
                        i.why
                    )
                })
                .collect();
            out.push((
                format!(
                    "{} is not trusted on this machine; ignored: {}",
                    self.root.join(config::FILE_NAME).display(),
                    list.join(", ")
                ),
                Some(
                    "if you wrote it or checked it, run `cairn trust`; or give these settings yourself: --python PATH, --data NAME=PATH"
                        .into(),
                ),
            ));
        }
        if let Some(p) = &self.cache_problem {
            out.push((
                p.clone(),
                Some(
                    "remove the link or file in the way (it came with the repository); cairn recreates the cache"
                        .into(),
                ),
            ));
        }
        out
    }

    /// The boundary that no path may leave: the repository root, or the project root.
    pub fn boundary(&self) -> &Path {
        self.repo_root.as_deref().unwrap_or(&self.root)
    }

    /// Resolve the lockfile path: the default `cairn.lock` at the project root, or `arg`
    /// (relative to the current directory, or absolute), as git resolves a path: `..` and
    /// absolute paths are fine wherever they lead.
    ///
    /// A lock that resolves inside the repository must be named `cairn.lock` or
    /// `<name>.cairn.lock`, so that it is never mistaken for code; one outside it
    /// (`~/Downloads/run-42.lock`) may have any name. Inside or outside is decided on the real
    /// path (its existing directories' links followed); a path that is inside the repository as
    /// written but leads out of it through a symlink is refused, so that no link in a checkout
    /// can send a lock's read or write elsewhere unseen (spec/security.md).
    pub fn lock_path(&self, arg: Option<&Path>) -> Result<PathBuf> {
        let Some(arg) = arg else {
            return Ok(self.root.join(lockfile::DEFAULT_NAME));
        };
        let shown = arg.display().to_string();
        let lexical = paths::absolutize(&self.cwd, arg);
        let Some(name) = lexical.file_name().and_then(|n| n.to_str()) else {
            return Err(Error::BadPath {
                path: shown,
                message: "the lock path names no file".into(),
            });
        };
        let real = real_location(&lexical);
        let inside = |p: &Path| p.starts_with(self.boundary());
        if inside(&lexical) && !inside(&real) {
            return Err(Error::BadPath {
                path: shown,
                message: format!(
                    "the lock path leads out of the repository through a symbolic link (to {}); name the real place if you mean it",
                    real.display()
                ),
            });
        }
        if !inside(&real) {
            return Ok(lexical);
        }
        if real == self.boundary() {
            return Err(Error::BadPath {
                path: shown,
                message: "the lock path is the repository itself".into(),
            });
        }
        if name != lockfile::DEFAULT_NAME && !name.ends_with(".cairn.lock") {
            return Err(Error::BadPath {
                path: shown,
                message: "a lockfile inside the repository must be named `cairn.lock` or `<name>.cairn.lock` (so that it is never mistaken for code); outside it any name will do".into(),
            });
        }
        Ok(real)
    }

    /// `path` as the user can paste it where cairn was started: relative to the current
    /// directory when it lies inside the repository (`../cairn.lock`, as git prints paths),
    /// else absolute.
    pub fn shown(&self, path: &Path) -> String {
        if !path.starts_with(self.boundary()) {
            return path.display().to_string();
        }
        let base: Vec<Component<'_>> = self.cwd.components().collect();
        let target: Vec<Component<'_>> = path.components().collect();
        let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
        let mut rel = PathBuf::new();
        for _ in common..base.len() {
            rel.push("..");
        }
        for c in &target[common..] {
            rel.push(c);
        }
        if rel.as_os_str().is_empty() {
            ".".into()
        } else {
            rel.display().to_string()
        }
    }

    /// `.cairn/` at the project root.
    pub fn cairn_dir(&self) -> PathBuf {
        self.root.join(".cairn")
    }

    /// Where the stat caches live (`.cairn/cache/stat`).
    pub fn stat_cache_dir(&self) -> PathBuf {
        self.cairn_dir().join("cache").join("stat")
    }

    /// Where the manifest of a directory with this digest lives.
    pub fn manifest_path(&self, digest: &crate::content::digest::Digest) -> PathBuf {
        self.cairn_dir()
            .join("manifests")
            .join(format!("{}.b3", digest.hex()))
    }

    /// Where the change sidecar with this digest lives.
    pub fn change_path(&self, digest: &crate::content::digest::Digest) -> PathBuf {
        self.cairn_dir()
            .join("changes")
            .join(format!("{}.patch", digest.hex()))
    }

    /// The bytes of the manifest with this digest (see [`Project::manifest_path`]): a regular
    /// file reached without following a symlink below the project root, of at most
    /// [`crate::fs::MAX_MANIFEST_BYTES`]. The caller checks them against the digest.
    pub fn read_manifest(
        &self,
        digest: &crate::content::digest::Digest,
    ) -> std::io::Result<Vec<u8>> {
        crate::fs::read_bounded(&self.manifest_path(digest), crate::fs::MAX_MANIFEST_BYTES)
    }

    /// The bytes of the change sidecar with this digest (see [`Project::change_path`]), read
    /// as [`Project::read_manifest`] reads, up to [`crate::fs::MAX_SIDECAR_BYTES`].
    pub fn read_change(&self, digest: &crate::content::digest::Digest) -> std::io::Result<Vec<u8>> {
        crate::fs::read_bounded(&self.change_path(digest), crate::fs::MAX_SIDECAR_BYTES)
    }

    /// A project-relative path as a repository-relative one (for the code exclusions).
    pub fn repo_relative(&self, rel: &RelPath) -> Option<String> {
        let repo_root = self.repo_root.as_ref()?;
        let prefix = self.root.strip_prefix(repo_root).ok()?;
        let joined = prefix.join(rel.as_str());
        joined.to_str().map(str::to_string)
    }

    /// Resolve a user-given path (relative to `base`, or absolute): the absolute path, and its
    /// project-relative form when it lies inside the project root.
    pub fn resolve(&self, base: &Path, given: &str) -> (PathBuf, Option<RelPath>) {
        let abs = paths::absolutize(base, Path::new(given));
        let rel = RelPath::from_fs(&self.root, &abs).ok();
        (abs, rel)
    }

    /// Make sure `.cairn/` exists with a `.gitignore` that keeps `cache/` out of git.
    pub fn ensure_cairn_dir(&self) -> Result<()> {
        let dir = self.cairn_dir();
        crate::fs::create_dir_all(&dir.join("cache"))?;
        let ignore = dir.join(".gitignore");
        if std::fs::symlink_metadata(&ignore).is_err() {
            crate::fs::atomic_write(
                &ignore,
                b"# Written by cairn: the cache and failed-run records are local to this machine;\n# the rest (changes/, manifests/) is meant to be committed with the lock.\n/cache/\n/failed/\n",
            )?;
        }
        Ok(())
    }

    /// Take the project's exclusive lock (held until the returned guard is dropped), so that
    /// two `cairn lock` runs never interleave. Fails at once when another process holds it.
    pub fn exclusive(&self) -> Result<ProcessLock> {
        self.ensure_cairn_dir()?;
        let path = self.cairn_dir().join("cache").join("busy");
        let file = crate::fs::open_for_lock(&path)?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the message another cairn gives (the lock itself is the
                // OS's: the file's contents only inform).
                let _ = file.set_len(0);
                let _ = std::io::Write::write_all(
                    &mut &file,
                    std::process::id().to_string().as_bytes(),
                );
                Ok(ProcessLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy {
                dir: self.root.clone(),
                holder: crate::fs::read_bounded(&path, 64)
                    .ok()
                    .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok()),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(e).ctx("cannot lock", &path),
        }
    }
}

/// Holds the project's exclusive lock; released on drop (and by the OS if the process dies).
pub struct ProcessLock {
    _file: File,
}

/// Where `path` really is: its nearest existing ancestor with its links followed, and the rest
/// as written. (The last component is not followed: a lock that is a link is refused where it
/// is read, and replaced, never written through, where it is written.)
fn real_location(path: &Path) -> PathBuf {
    let Some(name) = path.file_name() else {
        return path.to_path_buf();
    };
    let mut rest = vec![name.to_os_string()];
    let mut dir = path.parent();
    while let Some(d) = dir {
        if let Ok(real) = d.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        rest.extend(d.file_name().map(|n| n.to_os_string()));
        dir = d.parent();
    }
    path.to_path_buf()
}

fn find_root(cwd: &Path, repo_root: Option<&Path>) -> PathBuf {
    let mut dir = Some(cwd);
    while let Some(d) = dir {
        if d.join(config::FILE_NAME).is_file() {
            return d.to_path_buf();
        }
        if repo_root.is_none() && d.join(lockfile::DEFAULT_NAME).is_file() {
            return d.to_path_buf();
        }
        if Some(d) == repo_root {
            return d.to_path_buf();
        }
        dir = d.parent();
    }
    repo_root.unwrap_or(cwd).to_path_buf()
}
