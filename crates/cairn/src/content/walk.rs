//! The dataset walk: every regular file below a root, with its `stat`, in one parallel pass,
//! and for a cold hash its digest too.
//!
//! Directories are read on the rayon pool, one task per directory, and each file is stat'ed
//! (and, when the walk hashes, opened and read) relative to its directory's open descriptor
//! (`fstatat`, `openat`), in parallel batches, so the kernel never resolves a long path twice
//! and reading starts while other directories are still being listed. Symlinks are followed, as `find -L` does: a link to a file counts as that
//! file, a link to a directory is walked, a directory that is its own ancestor is a loop (an
//! error), and a dangling link is skipped and reported, as are FIFOs, sockets and devices
//! (never opened, so never a hang). Each directory's entries are sorted as they are read, so the
//! files come out in the order of their paths' bytes with no sort over the whole list, packed
//! into [`Chunk`]s (one buffer of paths per run of files, no allocation per file).
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

use crate::content::cache::{trustworthy, StatKey};
use crate::content::digest::{hash_one, read_small, Digest, Progress, Skipped, MMAP_MIN};
use crate::content::manifest::Segment;
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

/// Hash every file during the walk, in the directory's own task: each file opened relative to
/// its directory's descriptor and read into the thread's buffer, so walking and reading overlap
/// and no path is built for a file under [`MMAP_MIN`].
#[derive(Clone, Copy)]
pub(crate) struct HashIn<'a> {
    /// When hashing started (for the racy-entry rule of the stat cache).
    pub(crate) started: i64,
    /// Progress reporting.
    pub(crate) progress: Option<&'a dyn Progress>,
}

/// The file was read now (its digest did not come from the stat cache).
pub(crate) const READ: u8 = 1;
/// What is recorded for the file may go into the stat cache (it is not racy).
pub(crate) const CACHEABLE: u8 = 2;
/// The file's digest is known.
pub(crate) const DONE: u8 = 4;

/// A run of files from one directory, in manifest order: their paths (relative to the root),
/// digests (zero until known), stats and flags.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// Paths, digests (and, once complete, sizes).
    pub(crate) seg: Segment,
    /// Each file's stat (of the target, for a symlink), from the walk.
    pub(crate) keys: Vec<StatKey>,
    /// [`READ`], [`CACHEABLE`], [`DONE`].
    pub(crate) flags: Vec<u8>,
}

impl Chunk {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// What the walk found: the files in manifest order (chunk after chunk) and what it skipped.
pub(crate) struct Tree {
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) skipped: Vec<Skipped>,
}

struct Walk<'a> {
    root: &'a Path,
    /// Symlinks leading outside this directory are not followed.
    confine: Option<&'a Path>,
    hash: Option<HashIn<'a>>,
}

/// What one directory task produced: its files and its subdirectories', in order.
#[derive(Default)]
struct Part {
    chunks: Vec<Chunk>,
    skipped: Vec<Skipped>,
}

/// One entry of a directory, its name in the directory's name buffer.
struct Item {
    start: u32,
    end: u32,
    dir: bool,
    /// The stat, when it was needed to learn the type (a symlink, an unknown type).
    known: Option<StatKey>,
}

/// Files of one directory are handled in parallel in batches of at least this many.
const BATCH: usize = 64;

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
    /// every directory above it).
    ///
    /// The entries are sorted by name, a directory's name with a `/` after it: then the files
    /// of each directory, and each subdirectory's files, come out in the order of their whole
    /// paths' bytes (git orders its index the same way), and nothing needs sorting afterwards.
    /// The directory's files are stat'ed (and hashed) in parallel batches; its descriptor is
    /// closed before the subdirectories are walked, in parallel, each opened by its own task, so
    /// open descriptors stay bounded by the pool size and the depth.
    fn dir(&self, fd: OwnedFd, rel: Vec<u8>, ancestors: Vec<(u64, u64)>) -> Result<Part> {
        let mut part = Part::default();
        // Names end to end, each followed by a NUL (so a name is a `CStr` without copying).
        let mut names: Vec<u8> = Vec::new();
        let mut items: Vec<Item> = Vec::new();
        let mut dir = Dir::read_from(&fd).map_err(|e| self.io(&rel, e))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| self.io(&rel, e))?;
            let name = entry.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            if let Some(boundary) = self.confine {
                let maybe_link = matches!(entry.file_type(), FileType::Symlink | FileType::Unknown);
                if maybe_link
                    && is_link(&fd, name)
                    && !leads_inside(&self.full(&join(&rel, bytes)), boundary)
                {
                    part.skipped.push(skipped(&join(&rel, bytes), LEADS_OUT));
                    continue;
                }
            }
            let (dir, known) = match entry.file_type() {
                FileType::Directory => (true, None),
                FileType::RegularFile => (false, None),
                FileType::Fifo
                | FileType::Socket
                | FileType::CharacterDevice
                | FileType::BlockDevice => {
                    part.skipped.push(skipped(&join(&rel, bytes), NOT_REGULAR));
                    continue;
                }
                // Symlinks and unknown types: stat (following links) to learn what the name
                // leads to.
                _ => match rustix::fs::statat(fd.as_fd(), name, AtFlags::empty()) {
                    Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                        FileType::Directory => (true, None),
                        FileType::RegularFile => (false, Some(key_of(&st))),
                        _ => {
                            part.skipped.push(skipped(&join(&rel, bytes), NOT_REGULAR));
                            continue;
                        }
                    },
                    Err(Errno::NOENT) if is_link(&fd, name) => {
                        part.skipped
                            .push(skipped(&join(&rel, bytes), "dangling symlink"));
                        continue;
                    }
                    Err(e) => return Err(self.io(&join(&rel, bytes), e)),
                },
            };
            let start = names.len();
            names.extend_from_slice(bytes);
            let end = names.len();
            names.push(0);
            if u32::try_from(names.len()).is_err() {
                return Err(Error::Io {
                    op: "cannot read",
                    path: self.full(&rel),
                    source: std::io::Error::other("the directory's names pass 4 GiB"),
                });
            }
            items.push(Item {
                start: start as u32,
                end: end as u32,
                dir,
                known,
            });
        }
        drop(dir);
        let name = |it: &Item| &names[it.start as usize..it.end as usize];
        items.sort_unstable_by(|a, b| {
            let (x, y) = (name(a), name(b));
            // Compare as if a directory's name ended in `/`.
            let n = x.len().min(y.len());
            x[..n].cmp(&y[..n]).then_with(|| {
                let tail = |it: &Item, s: &[u8]| -> Option<u8> {
                    s.get(n).copied().or(it.dir.then_some(b'/'))
                };
                tail(a, x).cmp(&tail(b, y))
            })
        });

        // Runs of files between subdirectories become chunks; subdirectories are walked after.
        enum Piece {
            Files(Chunk),
            Dir(Vec<u8>),
        }
        let mut pieces: Vec<Piece> = Vec::new();
        let mut i = 0;
        while i < items.len() {
            if items[i].dir {
                pieces.push(Piece::Dir(join(&rel, name(&items[i]))));
                i += 1;
                continue;
            }
            let run_end = items[i..]
                .iter()
                .position(|it| it.dir)
                .map_or(items.len(), |k| i + k);
            let run = &items[i..run_end];
            pieces.push(Piece::Files(self.files(&fd, &rel, &names, run)?));
            i = run_end;
        }
        drop(fd);
        let subdirs: Vec<&Vec<u8>> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Dir(r) => Some(r),
                Piece::Files(_) => None,
            })
            .collect();
        let mut parts = subdirs
            .into_par_iter()
            .map(|child| self.open_and_walk(child.clone(), &ancestors))
            .collect::<Result<Vec<Part>>>()?
            .into_iter();
        for piece in pieces {
            match piece {
                Piece::Files(c) => part.chunks.push(c),
                Piece::Dir(_) => {
                    let p = parts.next().expect("one part per subdirectory");
                    part.chunks.extend(p.chunks);
                    part.skipped.extend(p.skipped);
                }
            }
        }
        Ok(part)
    }

    /// Stat (and, when hashing, read) a run of files of the open directory `fd`, in parallel.
    fn files(&self, fd: &OwnedFd, rel: &[u8], names: &[u8], run: &[Item]) -> Result<Chunk> {
        let mut c = Chunk::default();
        for it in run {
            let name = &names[it.start as usize..it.end as usize];
            if !c.seg.has_room(name) {
                return Err(Error::Io {
                    op: "cannot read",
                    path: self.full(rel),
                    source: std::io::Error::other("the directory's names pass 1 GiB"),
                });
            }
            if !rel.is_empty() {
                c.seg.paths.extend_from_slice(rel);
                c.seg.paths.push(b'/');
            }
            c.seg.push_path(name);
        }
        let n = run.len();
        c.seg.hashes = vec![Digest::default(); n];
        c.keys = vec![StatKey::default(); n];
        c.flags = vec![0; n];
        if let Some(p) = self.hash.and_then(|h| h.progress) {
            p.found(n as u64);
        }
        let Segment {
            paths,
            ends,
            hashes,
            ..
        } = &mut c.seg;
        let (paths, ends) = (&*paths, &*ends);
        let path = |i: usize| {
            let start = if i == 0 { 0 } else { ends[i - 1] as usize };
            &paths[start..ends[i] as usize]
        };
        c.keys
            .par_iter_mut()
            .zip(hashes.par_iter_mut())
            .zip(c.flags.par_iter_mut())
            .zip(run.par_iter())
            .enumerate()
            .with_min_len(BATCH)
            .try_for_each(|(i, (((key, hash), flags), it))| -> Result<()> {
                let cname = CStr::from_bytes_with_nul(&names[it.start as usize..=it.end as usize])
                    .expect("NUL-terminated above");
                *key = match it.known {
                    Some(k) => k,
                    // A regular file when the directory was read: it must still be one, not
                    // a symlink put in its place since (which could lead anywhere).
                    None => {
                        match rustix::fs::statat(fd.as_fd(), cname, AtFlags::SYMLINK_NOFOLLOW) {
                            Ok(st) if FileType::from_raw_mode(st.st_mode).is_file() => key_of(&st),
                            Ok(_) => {
                                return Err(Error::ChangedWhileReading {
                                    path: self.full(path(i)),
                                })
                            }
                            Err(e) => return Err(self.io(path(i), e)),
                        }
                    }
                };
                if let Some(h) = self.hash {
                    let follow = it.known.is_some();
                    let (digest, cacheable) =
                        self.hash_file(fd, cname, follow, path(i), *key, h.started)?;
                    *hash = digest;
                    *flags = READ | DONE | if cacheable { CACHEABLE } else { 0 };
                    if let Some(p) = h.progress {
                        p.file_done(key.size, true);
                    }
                }
                Ok(())
            })?;
        Ok(c)
    }

    /// Read and hash one file of the open directory `fd`, whose stat from the walk is `before`;
    /// the digest, and whether it may be cached. Unless `follow` (the name was a symlink when
    /// the directory was read), a symlink now in its place is refused, not followed.
    fn hash_file(
        &self,
        fd: &OwnedFd,
        name: &CStr,
        follow: bool,
        rel: &[u8],
        before: StatKey,
        started: i64,
    ) -> Result<(Digest, bool)> {
        if before.size >= MMAP_MIN {
            let h = hash_one(&self.full(rel), Some(before), None, started)?;
            return Ok((h.hash, h.cache.is_some()));
        }
        let opened = rustix::fs::openat(
            fd.as_fd(),
            name,
            if follow {
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY
            } else {
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NOFOLLOW
            },
            Mode::empty(),
        );
        let file = match opened {
            Ok(f) => std::fs::File::from(f),
            Err(Errno::LOOP) if !follow => {
                return Err(Error::ChangedWhileReading {
                    path: self.full(rel),
                })
            }
            Err(e) => return Err(Error::reading("file", &self.full(rel), e.into())),
        };
        let hash = read_small(file, before, || self.full(rel))?;
        Ok((hash, trustworthy(&before, started)))
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

/// Walk `root` (symlinks followed; with `confine`, those whose target is outside that canonical
/// directory skipped and reported), hashing every file on the way when `hash` says so.
pub(crate) fn walk_tree(
    root: &Path,
    confine: Option<&Path>,
    hash: Option<HashIn<'_>>,
) -> Result<Tree> {
    let w = Walk {
        root,
        confine,
        hash,
    };
    let mut part = w.open_and_walk(Vec::new(), &[])?;
    part.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Tree {
        chunks: part.chunks,
        skipped: part.skipped,
    })
}

/// Every regular file below the directory `root` (symlinks followed), sorted by relative path
/// bytes, with what was skipped.
pub fn walk(root: &Path) -> Result<(Vec<Found>, Vec<Skipped>)> {
    walk_within(root, None)
}

/// [`walk`], but with `confine`, a symlink whose target is outside that (canonical) directory
/// is skipped and reported instead of followed.
pub fn walk_within(root: &Path, confine: Option<&Path>) -> Result<(Vec<Found>, Vec<Skipped>)> {
    let tree = walk_tree(root, confine, None)?;
    let mut files = Vec::with_capacity(tree.chunks.iter().map(Chunk::len).sum());
    for c in &tree.chunks {
        for (i, key) in c.keys.iter().enumerate() {
            files.push(Found {
                rel: c.seg.path(i).to_vec(),
                key: *key,
            });
        }
    }
    Ok((files, tree.skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name that was a regular file when its directory was read and is a symlink by the
    /// time it is opened is refused, not read through (the link could lead out of the tree);
    /// one that was a link when read is followed as before.
    #[test]
    fn a_symlink_swapped_in_for_a_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target"), b"secret").unwrap();
        std::os::unix::fs::symlink("target", dir.path().join("swapped")).unwrap();
        let fd = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let w = Walk {
            root: dir.path(),
            confine: None,
            hash: None,
        };
        let before = key_of(&rustix::fs::stat(dir.path().join("target")).unwrap());
        let name = c"swapped";
        match w.hash_file(&fd, name, false, b"swapped", before, 0) {
            Err(Error::ChangedWhileReading { path }) => assert!(path.ends_with("swapped")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let (digest, _) = w.hash_file(&fd, name, true, b"swapped", before, 0).unwrap();
        assert_eq!(digest, Digest::of_bytes(b"secret"));
    }

    /// The walk's order is the order of whole paths' bytes, whatever the directory structure
    /// (`a.txt` < `a/b` < `a0`, because `.` < `/` < `0`), with no sort after the walk.
    #[test]
    fn order_is_whole_path_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            "a.txt", "a/b", "a/b.c/d", "a/b-/c", "a/bc", "a/b0", "a0", "a-b/x", "ab/c", "b", "x/1",
            "x.y", "x0",
        ];
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let (found, skipped) = walk(dir.path()).unwrap();
        let got: Vec<&[u8]> = found.iter().map(|f| f.rel.as_slice()).collect();
        let mut want: Vec<&[u8]> = files.iter().map(|f| f.as_bytes()).collect();
        want.sort();
        assert_eq!(got, want);
        assert!(skipped.is_empty());
    }
}
