//! The dataset walk: every regular file below a root, with its `stat`, in one parallel pass.
//!
//! Directories are read on the rayon pool, one task per directory, and each entry is stat'ed
//! relative to its directory's open descriptor (`fstatat`), so the kernel never resolves a
//! long path twice. Symlinks are followed, as `find -L` does: a link to a file counts as that
//! file, a link to a directory is walked, a directory that is its own ancestor is a loop (an
//! error), and a dangling link is skipped and reported, as are FIFOs, sockets and devices
//! (never opened, so never a hang). Results are sorted by path bytes after collecting.
//!
//! [`walk_within`] confines the walk for the commands that read a stranger's repository
//! (spec/security.md): a symlink whose target lies outside the given boundary is skipped and
//! reported, not followed, so a committed `data/train/keys -> ~/.ssh` is never read.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::content::cache::StatKey;
use crate::content::digest::Skipped;
use crate::error::{Error, Result};

/// A regular file found by the walk.
#[derive(Debug, Clone)]
pub struct Found {
    /// Path relative to the root, `/`-separated, raw bytes.
    pub rel: Vec<u8>,
    /// Its stat (of the target, for a symlink).
    pub key: StatKey,
}

/// Convert rustix's stat into the cache key.
// The stat field types differ between architectures; the casts are not useless everywhere.
#[allow(clippy::unnecessary_cast)]
pub fn key_of(st: &Stat) -> StatKey {
    StatKey {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
        ctime_ns: st.st_ctime as i64 * 1_000_000_000 + st.st_ctime_nsec as i64,
    }
}

struct Walk<'a> {
    root: &'a Path,
    /// Symlinks leading outside this directory are not followed.
    confine: Option<&'a Path>,
}

/// What one directory task produced.
#[derive(Default)]
struct Part {
    files: Vec<Found>,
    skipped: Vec<Skipped>,
}

impl Walk<'_> {
    fn full(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }

    fn io(&self, rel: &[u8], e: Errno) -> Error {
        let path = self.full(rel);
        if e == Errno::LOOP {
            return Error::SymlinkLoop { path };
        }
        Error::Io {
            op: "cannot read",
            path,
            source: e.into(),
        }
    }

    /// Open the directory `rel` (following symlinks), refuse it if it is one of its own
    /// `ancestors` (a symlink loop), and walk it.
    fn open_and_walk(&self, rel: Vec<u8>, ancestors: &[(u64, u64)]) -> Result<Part> {
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            self.full(&rel).as_path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io(&rel, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.io(&rel, e))?;
        let id = (st.st_dev, st.st_ino);
        if ancestors.contains(&id) {
            return Err(Error::SymlinkLoop {
                path: self.full(&rel),
            });
        }
        let mut chain = ancestors.to_vec();
        chain.push(id);
        self.dir(fd, rel, chain)
    }

    /// Walk one open directory (`rel` below the root; `ancestors` are the (dev, inode) of it and
    /// every directory above it). Subdirectories are walked in parallel, each opened by its own
    /// task, so open descriptors stay bounded by the pool size and the depth.
    fn dir(&self, fd: OwnedFd, rel: Vec<u8>, ancestors: Vec<(u64, u64)>) -> Result<Part> {
        let mut part = Part::default();
        let mut subdirs: Vec<Vec<u8>> = Vec::new();
        let mut dir = Dir::read_from(&fd).map_err(|e| self.io(&rel, e))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| self.io(&rel, e))?;
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let child = join(&rel, bytes);
            if let Some(boundary) = self.confine {
                let maybe_link = matches!(entry.file_type(), FileType::Symlink | FileType::Unknown);
                if maybe_link && is_link(&fd, name) && !leads_inside(&self.full(&child), boundary) {
                    part.skipped.push(skipped(&child, LEADS_OUT));
                    continue;
                }
            }
            let (ty, st) = match entry.file_type() {
                FileType::Directory => (FileType::Directory, None),
                FileType::Fifo
                | FileType::Socket
                | FileType::CharacterDevice
                | FileType::BlockDevice => {
                    part.skipped.push(skipped(&child, NOT_REGULAR));
                    continue;
                }
                // Regular files, symlinks and unknown types: stat (following links) to learn
                // what the name leads to.
                _ => match rustix::fs::statat(fd.as_fd(), name, AtFlags::empty()) {
                    Ok(st) => (FileType::from_raw_mode(st.st_mode), Some(st)),
                    Err(Errno::NOENT) if is_link(&fd, name) => {
                        part.skipped.push(skipped(&child, "dangling symlink"));
                        continue;
                    }
                    Err(e) => return Err(self.io(&child, e)),
                },
            };
            match (ty, st) {
                (FileType::RegularFile, Some(st)) => part.files.push(Found {
                    rel: child,
                    key: key_of(&st),
                }),
                (FileType::Directory, _) => subdirs.push(child),
                _ => part.skipped.push(skipped(&child, NOT_REGULAR)),
            }
        }
        drop(dir);
        drop(fd);
        let parts = subdirs
            .into_par_iter()
            .map(|child| self.open_and_walk(child, &ancestors))
            .collect::<Result<Vec<Part>>>()?;
        for p in parts {
            part.files.extend(p.files);
            part.skipped.extend(p.skipped);
        }
        Ok(part)
    }
}

const NOT_REGULAR: &str = "not a regular file (FIFO, socket or device)";
const LEADS_OUT: &str = "a symbolic link leading outside the repository; not followed";

/// Does the symlink at `path` resolve (all the way) to a place inside `boundary`? A dangling
/// link does not: it is reported as leading out (nothing is read either way).
fn leads_inside(path: &Path, boundary: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|real| real.starts_with(boundary))
}

fn skipped(rel: &[u8], reason: &'static str) -> Skipped {
    Skipped {
        path: PathBuf::from(OsStr::from_bytes(rel)),
        reason,
    }
}

fn is_link(dirfd: &OwnedFd, name: &CStr) -> bool {
    rustix::fs::statat(dirfd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
        .unwrap_or(false)
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        v.extend_from_slice(rel);
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

/// Every regular file below the directory `root` (symlinks followed), sorted by relative path
/// bytes, with what was skipped.
pub fn walk(root: &Path) -> Result<(Vec<Found>, Vec<Skipped>)> {
    walk_within(root, None)
}

/// [`walk`], but with `confine`, a symlink whose target is outside that (canonical) directory
/// is skipped and reported instead of followed.
pub fn walk_within(root: &Path, confine: Option<&Path>) -> Result<(Vec<Found>, Vec<Skipped>)> {
    let w = Walk { root, confine };
    let mut part = w.open_and_walk(Vec::new(), &[])?;
    part.files.par_sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    part.files.shrink_to_fit();
    part.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((part.files, part.skipped))
}
