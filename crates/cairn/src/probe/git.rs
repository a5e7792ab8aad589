//! Code capture with libgit2.
//!
//! The code of a run is the working tree *as git would commit it*: the checked-out commit plus
//! every uncommitted change (staged, unstaged, untracked and not ignored), minus the files cairn
//! itself owns (see [`Excluder`]). It is recorded three ways:
//!
//! * `commit`: HEAD, so the code can be found;
//! * `tree`: the git tree id of the working tree, computed in memory without writing objects;
//!   this is what verify compares, so committing after locking does not break verification;
//! * `change`: when the tree differs from the commit, a binary-safe `git diff` patch of the
//!   change, stored as a sidecar `.cairn/changes/<blake3 hex>.patch` (meant to be committed), so
//!   the exact working tree can be rebuilt with `git apply`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{Delta, DiffOptions, ObjectType, Oid, Repository, StatusOptions};

use crate::error::{Error, GitResultExt, IoResultExt, Result};

/// The prefix of cairn's temporary files (written, then renamed over a lock). One left behind
/// by a killed process is not code.
pub const TEMP_PREFIX: &str = ".cairn-tmp-";

/// A file's git mode.
pub type Mode = u32;
/// Mode of a regular file.
pub const MODE_FILE: Mode = 0o100644;
/// Mode of an executable file.
pub const MODE_EXEC: Mode = 0o100755;
/// Mode of a symlink.
pub const MODE_LINK: Mode = 0o120000;
/// Mode of a submodule (gitlink).
pub const MODE_GITLINK: Mode = 0o160000;
const MODE_TREE: Mode = 0o040000;

/// A flat snapshot of a tree: repo-relative path bytes -> (mode, object id).
pub type Entries = BTreeMap<Vec<u8>, (Mode, Oid)>;

/// Decides which repo-relative paths are not code: cairn's own files (`cairn.lock`,
/// `*.cairn.lock`, `cairn.toml`, which holds this machine's data locations, and anything under a
/// `.cairn/` directory) and the paths a lock tracks by digest
/// (datasets, checkpoints, outputs inside the repository).
///
/// When locking, checkpoint and output *globs* are excluded too ([`Excluder::with_patterns`]), since
/// the files they will match are not known before the command runs.
#[derive(Debug, Clone, Default)]
pub struct Excluder {
    tracked: Vec<Vec<u8>>,
    patterns: Vec<glob::Pattern>,
}

impl Excluder {
    /// Exclude cairn's own files and these repo-relative paths (and everything below them).
    pub fn new(tracked: impl IntoIterator<Item = String>) -> Excluder {
        Excluder {
            tracked: tracked.into_iter().map(String::into_bytes).collect(),
            patterns: Vec::new(),
        }
    }

    /// Also exclude whatever matches these repo-relative glob patterns (and everything below a
    /// match). `*` does not cross `/`.
    pub fn with_patterns(mut self, patterns: Vec<glob::Pattern>) -> Excluder {
        self.patterns = patterns;
        self
    }

    fn matches_pattern(&self, path: &[u8]) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let Ok(text) = std::str::from_utf8(path) else {
            return false;
        };
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let prefixes = text
            .match_indices('/')
            .map(|(i, _)| &text[..i])
            .chain(std::iter::once(text));
        prefixes
            .into_iter()
            .any(|prefix| self.patterns.iter().any(|p| p.matches_with(prefix, opts)))
    }

    /// Is this repo-relative path outside the code?
    pub fn excludes(&self, path: &[u8]) -> bool {
        let mut parts = path.split(|&b| b == b'/').peekable();
        while let Some(part) = parts.next() {
            if part == b".cairn" && parts.peek().is_some() {
                return true;
            }
            if parts.peek().is_none()
                && (part == b"cairn.lock"
                    || part == b"cairn.toml"
                    || part.ends_with(b".cairn.lock")
                    || part.starts_with(TEMP_PREFIX.as_bytes()))
            {
                return true;
            }
        }
        self.tracked.iter().any(|t| {
            path.starts_with(t) && (path.len() == t.len() || path.get(t.len()) == Some(&b'/'))
        }) || self.matches_pattern(path)
    }
}

/// What [`capture`] found.
#[derive(Debug, Clone)]
pub struct CodeState {
    /// HEAD commit.
    pub commit: Oid,
    /// Branch name, `None` when detached.
    pub branch: Option<String>,
    /// Remote URL, credentials stripped.
    pub remote: Option<String>,
    /// Tree id of the working tree (exclusions applied).
    pub tree: Oid,
    /// Tree id of the commit (exclusions applied).
    pub commit_tree: Oid,
    /// The change from the commit to the working tree, as a binary git patch; empty when clean.
    pub patch: Vec<u8>,
    /// Paths the change touches.
    pub changed: Vec<String>,
    /// Submodules.
    pub submodules: Vec<SubmoduleState>,
}

/// A submodule as found in the working tree.
#[derive(Debug, Clone)]
pub struct SubmoduleState {
    /// Path in the superproject.
    pub path: String,
    /// The commit checked out in it (or the recorded one when it is not checked out).
    pub commit: Oid,
    /// URL, credentials stripped.
    pub url: Option<String>,
    /// Whether its own working tree has changes.
    pub dirty: bool,
}

/// Open the repository containing `dir`.
pub fn discover(dir: &Path) -> Result<Repository> {
    Repository::discover(dir).map_err(|e| {
        if e.code() == git2::ErrorCode::NotFound {
            Error::NotARepo {
                path: dir.to_path_buf(),
            }
        } else {
            Error::Git {
                message: format!("cannot open the repository at {}", dir.display()),
                source: e,
            }
        }
    })
}

/// The working directory of a (non-bare) repository.
pub fn workdir(repo: &Repository) -> Result<PathBuf> {
    repo.workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::BareRepository {
            path: repo.path().to_path_buf(),
        })
}

/// Remove credentials from a remote URL: the user-info of `http(s)://`/`ftp(s)://` URLs, and
/// the password part of any other `scheme://user:pass@host` URL. scp-like `git@host:path`
/// keeps its user name (it is not a secret).
pub fn strip_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let scheme_lc = scheme.to_ascii_lowercase();
    if matches!(scheme_lc.as_str(), "http" | "https" | "ftp" | "ftps") {
        format!("{scheme}://{host}{path}")
    } else {
        let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
        format!("{scheme}://{user}@{host}{path}")
    }
}

fn head_commit(repo: &Repository) -> Result<git2::Commit<'_>> {
    let head = repo.head().map_err(|e| {
        if e.code() == git2::ErrorCode::UnbornBranch {
            Error::Usage(
                "the repository has no commit yet; commit your code first (cairn records the commit)"
                    .into(),
            )
        } else {
            Error::Git {
                message: "cannot read HEAD".into(),
                source: e,
            }
        }
    })?;
    head.peel_to_commit().git(|| "HEAD is not a commit".into())
}

fn remote_url(repo: &Repository, branch: Option<&str>) -> Option<String> {
    let name = branch
        .and_then(|b| {
            repo.branch_upstream_remote(&format!("refs/heads/{b}"))
                .ok()
                .and_then(|buf| buf.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| "origin".to_string());
    let remote = repo.find_remote(&name).ok()?;
    remote.url().map(strip_credentials)
}

/// Capture the code state of the repository: commit, branch, remote, tree, change, submodules.
pub fn capture(repo: &Repository, excluder: &Excluder) -> Result<CodeState> {
    let commit = head_commit(repo)?;
    let head = repo.head().git(|| "cannot read HEAD".into())?;
    let branch = if head.is_branch() {
        head.shorthand().map(str::to_string)
    } else {
        None
    };
    let remote = remote_url(repo, branch.as_deref());
    let commit_entries = commit_entries(repo, commit.id(), excluder)?;
    let current = working_entries(repo, excluder)?;
    let tree = tree_id(&current)?;
    let commit_tree = tree_id(&commit_entries)?;
    let (patch, changed) = if tree == commit_tree {
        (Vec::new(), Vec::new())
    } else {
        change_patch(repo, &commit, excluder)?
    };
    Ok(CodeState {
        commit: commit.id(),
        branch,
        remote,
        tree,
        commit_tree,
        patch,
        changed,
        submodules: submodules(repo)?,
    })
}

fn submodules(repo: &Repository) -> Result<Vec<SubmoduleState>> {
    let mut out = Vec::new();
    for sm in repo.submodules().git(|| "cannot list submodules".into())? {
        let Some(commit) = sm
            .workdir_id()
            .or_else(|| sm.index_id())
            .or_else(|| sm.head_id())
        else {
            continue;
        };
        let dirty = sm
            .name()
            .and_then(|name| {
                repo.submodule_status(name, git2::SubmoduleIgnore::None)
                    .ok()
            })
            .map(|s| {
                s.intersects(
                    git2::SubmoduleStatus::WD_INDEX_MODIFIED
                        | git2::SubmoduleStatus::WD_WD_MODIFIED
                        | git2::SubmoduleStatus::WD_UNTRACKED,
                )
            })
            .unwrap_or(false);
        out.push(SubmoduleState {
            path: sm.path().to_string_lossy().into_owned(),
            commit,
            url: sm.url().map(strip_credentials),
            dirty,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The entries of a commit's tree, exclusions applied.
pub fn commit_entries(repo: &Repository, commit: Oid, excluder: &Excluder) -> Result<Entries> {
    let commit = repo
        .find_commit(commit)
        .git(|| format!("commit {commit} is not in this repository"))?;
    let tree = commit
        .tree()
        .git(|| "cannot read the commit's tree".into())?;
    let mut out = Entries::new();
    let mut walk_err = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(ObjectType::Tree) {
            return git2::TreeWalkResult::Ok;
        }
        let mut path = dir.as_bytes().to_vec();
        path.extend_from_slice(entry.name_bytes());
        if !excluder.excludes(&path) {
            out.insert(path, (entry.filemode() as Mode, entry.id()));
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(|e| walk_err = Some(e))
    .ok();
    if let Some(e) = walk_err {
        return Err(Error::Git {
            message: "cannot walk the commit's tree".into(),
            source: e,
        });
    }
    Ok(out)
}

/// Hash one working-tree file as a git blob. `index_mode` is the mode the index has for it, kept
/// for regular files when `core.fileMode` is false (as git does).
fn hash_worktree_file(
    root: &Path,
    rel: &[u8],
    index_mode: Option<Mode>,
    filemode: bool,
) -> Result<Option<(Mode, Oid)>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(std::ffi::OsStr::from_bytes(rel));
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Io {
                op: "cannot read",
                path,
                source: e,
            })
        }
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&path).ctx("cannot read link", &path)?;
        let oid = Oid::hash_object(ObjectType::Blob, target.as_os_str().as_bytes())
            .git(|| "cannot hash a link".into())?;
        Ok(Some((MODE_LINK, oid)))
    } else if meta.is_file() {
        let oid = Oid::hash_file(ObjectType::Blob, &path).map_err(|e| Error::Git {
            message: format!("cannot hash {}", path.display()),
            source: e,
        })?;
        // git looks at the owner's execute bit only.
        let mode = match index_mode {
            Some(m @ (MODE_FILE | MODE_EXEC)) if !filemode => m,
            _ if meta.permissions().mode() & 0o100 != 0 => MODE_EXEC,
            _ => MODE_FILE,
        };
        Ok(Some((mode, oid)))
    } else {
        Ok(None)
    }
}

/// The working tree as `git add -A` would stage it, exclusions applied, computed without
/// writing anything to the repository. Submodules appear as gitlinks at their checked-out
/// commit. Content filters (LFS, eol conversion) are not applied to modified files.
pub fn working_entries(repo: &Repository, excluder: &Excluder) -> Result<Entries> {
    let root = workdir(repo)?;
    let filemode = repo
        .config()
        .and_then(|c| c.get_bool("core.filemode"))
        .unwrap_or(true);
    let index = repo.index().git(|| "cannot read the index".into())?;
    let mut out = Entries::new();
    for e in index.iter() {
        let stage = (e.flags >> 12) & 0x3;
        if stage != 0 || excluder.excludes(&e.path) {
            continue;
        }
        out.insert(e.path.clone(), (e.mode, e.id));
    }
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true)
        .renames_head_to_index(false)
        .renames_index_to_workdir(false);
    let statuses = repo
        .statuses(Some(&mut opts))
        .git(|| "cannot compute the status of the working tree".into())?;
    for s in statuses.iter() {
        let path = s.path_bytes().to_vec();
        if excluder.excludes(&path) {
            continue;
        }
        let st = s.status();
        if st.intersects(
            git2::Status::WT_NEW
                | git2::Status::WT_MODIFIED
                | git2::Status::WT_TYPECHANGE
                | git2::Status::WT_DELETED
                | git2::Status::CONFLICTED,
        ) {
            let index_mode = out.get(&path).map(|(m, _)| *m);
            match hash_worktree_file(&root, &path, index_mode, filemode)? {
                Some(entry) => {
                    out.insert(path, entry);
                }
                None => {
                    out.remove(&path);
                }
            }
        }
    }
    for sm in submodules(repo)? {
        let key = sm.path.into_bytes();
        if !excluder.excludes(&key) {
            out.insert(key, (MODE_GITLINK, sm.commit));
        }
    }
    Ok(out)
}

/// The git tree id (SHA-1) of a flat list of entries, computed without writing objects.
pub fn tree_id(entries: &Entries) -> Result<Oid> {
    #[derive(Default)]
    struct Dir {
        files: BTreeMap<Vec<u8>, (Mode, Oid)>,
        dirs: BTreeMap<Vec<u8>, Dir>,
    }
    fn insert(dir: &mut Dir, path: &[u8], entry: (Mode, Oid)) {
        match path.iter().position(|&b| b == b'/') {
            Some(i) => insert(
                dir.dirs.entry(path[..i].to_vec()).or_default(),
                &path[i + 1..],
                entry,
            ),
            None => {
                dir.files.insert(path.to_vec(), entry);
            }
        }
    }
    fn write(dir: &Dir) -> Result<Option<Oid>> {
        // git sorts tree entries by name, comparing a directory's name as if it ended in '/'.
        let mut items: Vec<(Vec<u8>, Mode, Oid)> = Vec::new();
        for (name, (mode, oid)) in &dir.files {
            items.push((name.clone(), *mode, *oid));
        }
        for (name, sub) in &dir.dirs {
            if let Some(oid) = write(sub)? {
                let mut key = name.clone();
                key.push(b'/');
                items.push((key, MODE_TREE, oid));
            }
        }
        if items.is_empty() {
            return Ok(None);
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let mut buf = Vec::new();
        for (name, mode, oid) in items {
            let name = name.strip_suffix(b"/").unwrap_or(&name);
            buf.extend_from_slice(format!("{mode:o} ").as_bytes());
            buf.extend_from_slice(name);
            buf.push(0);
            buf.extend_from_slice(oid.as_bytes());
        }
        Oid::hash_object(ObjectType::Tree, &buf)
            .map(Some)
            .git(|| "cannot hash a tree".into())
    }
    let mut root = Dir::default();
    for (path, entry) in entries {
        insert(&mut root, path, *entry);
    }
    match write(&root)? {
        Some(oid) => Ok(oid),
        None => Oid::hash_object(ObjectType::Tree, b"").git(|| "cannot hash a tree".into()),
    }
}

fn diff_options() -> DiffOptions {
    let mut opts = DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .show_untracked_content(true)
        .show_binary(true)
        .include_typechange(true)
        .id_abbrev(40);
    opts
}

/// The change from `commit` to the working tree as a binary-safe git patch (`git apply`
/// reproduces it), exclusions applied, and the paths it touches.
fn change_patch(
    repo: &Repository,
    commit: &git2::Commit<'_>,
    excluder: &Excluder,
) -> Result<(Vec<u8>, Vec<String>)> {
    let tree = commit
        .tree()
        .git(|| "cannot read the commit's tree".into())?;
    let mut opts = diff_options();
    let diff = repo
        .diff_tree_to_workdir_with_index(Some(&tree), Some(&mut opts))
        .git(|| "cannot diff the working tree".into())?;
    let mut out = Vec::new();
    let mut changed = Vec::new();
    for (i, delta) in diff.deltas().enumerate() {
        let path = delta
            .new_file()
            .path_bytes()
            .or_else(|| delta.old_file().path_bytes())
            .unwrap_or_default()
            .to_vec();
        if excluder.excludes(&path) || delta.status() == Delta::Unmodified {
            continue;
        }
        if let Some(mut patch) =
            git2::Patch::from_diff(&diff, i).git(|| "cannot render the change".into())?
        {
            let buf = patch.to_buf().git(|| "cannot render the change".into())?;
            out.extend_from_slice(&buf);
            changed.push(String::from_utf8_lossy(&path).into_owned());
        }
    }
    Ok((out, changed))
}

/// Apply a recorded change (a patch from [`capture`]) to a commit's entries, from the blob ids
/// the patch names. Returns the entries of the locked working tree.
pub fn apply_patch_entries(mut entries: Entries, patch: &[u8]) -> Result<Entries> {
    if patch.is_empty() {
        return Ok(entries);
    }
    let diff = git2::Diff::from_buffer(patch).git(|| "cannot parse the recorded change".into())?;
    for delta in diff.deltas() {
        let old = delta.old_file().path_bytes().map(<[u8]>::to_vec);
        let new = delta.new_file().path_bytes().map(<[u8]>::to_vec);
        match delta.status() {
            Delta::Deleted => {
                if let Some(p) = old {
                    entries.remove(&p);
                }
            }
            _ => {
                if let (Some(old), Some(new)) = (&old, &new) {
                    if old != new {
                        entries.remove(old);
                    }
                }
                if let Some(p) = new {
                    let mode = u32::from(delta.new_file().mode());
                    entries.insert(p, (mode, delta.new_file().id()));
                }
            }
        }
    }
    Ok(entries)
}

/// How one path differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathChange {
    /// Present now, not in the lock.
    Added,
    /// In the lock, gone now.
    Removed,
    /// Content differs.
    Modified,
    /// Only the mode (executable bit, file/symlink) differs.
    ModeChanged,
}

/// Compare the locked entries with the current ones.
pub fn diff_entries(locked: &Entries, current: &Entries) -> Vec<(String, PathChange)> {
    let mut out = Vec::new();
    for (path, (mode, oid)) in locked {
        let name = String::from_utf8_lossy(path).into_owned();
        match current.get(path) {
            None => out.push((name, PathChange::Removed)),
            Some((m, o)) if o != oid => {
                let _ = m;
                out.push((name, PathChange::Modified));
            }
            Some((m, _)) if m != mode => out.push((name, PathChange::ModeChanged)),
            Some(_) => {}
        }
    }
    for path in current.keys() {
        if !locked.contains_key(path) {
            out.push((
                String::from_utf8_lossy(path).into_owned(),
                PathChange::Added,
            ));
        }
    }
    out.sort();
    out
}

/// Does the repository contain this commit?
pub fn has_commit(repo: &Repository, commit: &crate::model::oid::ObjectId) -> bool {
    commit
        .to_git()
        .is_some_and(|oid| repo.find_commit(oid).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stripped() {
        assert_eq!(
            strip_credentials("https://user:tok@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            strip_credentials("https://ghp_secret@github.com/o/r"),
            "https://github.com/o/r"
        );
        assert_eq!(
            strip_credentials("ssh://git:pw@host:22/o/r"),
            "ssh://git@host:22/o/r"
        );
        assert_eq!(
            strip_credentials("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(strip_credentials("/local/path"), "/local/path");
    }

    #[test]
    fn excluder_patterns_do_not_cross_directories() {
        let ex = Excluder::new([]).with_patterns(vec![
            glob::Pattern::new("runs/*.pt").unwrap(),
            glob::Pattern::new("ckpt-*").unwrap(),
        ]);
        for yes in ["runs/a.pt", "ckpt-100", "ckpt-100/model.bin"] {
            assert!(ex.excludes(yes.as_bytes()), "{yes}");
        }
        for no in ["runs/sub/a.pt", "runs/a.pth", "x/ckpt-1"] {
            assert!(!ex.excludes(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn excluder_knows_cairn_files() {
        let ex = Excluder::new(["data/train".to_string()]);
        for yes in [
            "cairn.lock",
            "sub/cairn.lock",
            "a.cairn.lock",
            "cairn.toml",
            "sub/cairn.toml",
            ".cairn-tmp-Ab12Cd",
            ".cairn/changes/x.patch",
            "sub/.cairn/cache/y",
            "data/train",
            "data/train/a.txt",
        ] {
            assert!(ex.excludes(yes.as_bytes()), "{yes}");
        }
        for no in [
            "cairn.lock.bak",
            "data/training/a",
            "src/.cairn",
            "train.py",
        ] {
            assert!(!ex.excludes(no.as_bytes()), "{no}");
        }
    }
}
