//! Reading and writing files in a directory that a stranger may have filled (spec/security.md).
//!
//! Writing: atomically (temporary file, fsync, rename), so a crash leaves the old or the new file
//! and never half of one; and never through a symbolic link. Reading the files cairn parses (the
//! lock, `cairn.toml`, change sidecars, manifests, stat caches): regular files only, never more
//! than a stated limit, measured on the open file (a link to `/dev/zero` has a size of 0).
//!
//! One rule says which directories are trusted: the *anchor* of a path is the directory that
//! holds its last `.cairn` component (the project root), else its parent directory. The anchor
//! is opened as given (callers pass canonical paths); every component below it is opened with
//! `O_NOFOLLOW`, so a committed `.cairn` or `.cairn/cache` that is a symlink (or a file, or a
//! FIFO) is refused instead of followed out of the repository. A final component that is a
//! symlink is never written through (the rename replaces the link itself) and never read.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::{Error, IoResultExt, Result};

/// The most `cairn.toml` may hold.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The most a change sidecar (`.cairn/changes/*.patch`) may hold.
pub const MAX_SIDECAR_BYTES: u64 = 1 << 30;
/// The most a manifest (`.cairn/manifests/*.b3`) or a stat cache file may hold.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 30;

/// The names of `components`, a path below a directory: `.` is skipped, and `..`, a root or
/// a prefix is refused (the path would leave the directory).
fn names_below<'a>(
    components: impl IntoIterator<Item = Component<'a>>,
) -> std::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for c in components {
        match c {
            Component::Normal(n) => names.push(n.to_os_string()),
            Component::CurDir => {}
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the path leaves its directory (`..` or an absolute part)",
                ))
            }
        }
    }
    Ok(names)
}

/// The anchor of `path` and the components below it (the last one names the file itself).
fn anchored(path: &Path) -> std::io::Result<(PathBuf, Vec<OsString>)> {
    let comps: Vec<Component<'_>> = path.components().collect();
    let cut = comps
        .iter()
        .rposition(|c| c.as_os_str() == ".cairn")
        .unwrap_or(comps.len().saturating_sub(1));
    let anchor: PathBuf = comps[..cut].iter().collect();
    let anchor = if anchor.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        anchor
    };
    let below = names_below(comps[cut..].iter().copied())?;
    if below.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file",
        ));
    }
    Ok((anchor, below))
}

fn not_a_directory(name: &OsStr) -> std::io::Error {
    std::io::Error::other(format!(
        "{} is a symbolic link or not a directory; cairn does not follow links out of the project",
        name.to_string_lossy()
    ))
}

/// Open the directory `anchor/below[0]/below[1]/...`, each component below the anchor with
/// `O_NOFOLLOW`, creating missing ones (and the anchor) when `create`.
fn open_dirs(anchor: &Path, below: &[OsString], create: bool) -> std::io::Result<OwnedFd> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if create {
        // The anchor is trusted (the caller's own directory): made as given.
        std::fs::create_dir_all(anchor)?;
    }
    let mut fd = rustix::fs::open(anchor, dir_flags, Mode::empty())?;
    for name in below {
        let open = |fd: &OwnedFd| {
            rustix::fs::openat(
                fd,
                name.as_os_str(),
                dir_flags | OFlags::NOFOLLOW,
                Mode::empty(),
            )
        };
        let next = match open(&fd) {
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&fd, name.as_os_str(), Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open(&fd)
            }
            other => other,
        };
        fd = match next {
            Ok(f) => f,
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                return Err(not_a_directory(name))
            }
            Err(e) => return Err(e.into()),
        };
    }
    Ok(fd)
}

/// The directory holding `path` (opened no-follow below its anchor) and the file's own name.
fn open_parent(path: &Path, create: bool) -> std::io::Result<(OwnedFd, OsString)> {
    let (anchor, mut below) = anchored(path)?;
    let name = below
        .pop()
        .expect("anchored returns at least one component");
    Ok((open_dirs(&anchor, &below, create)?, name))
}

/// Create the directory `path` and its missing parents, no component below its anchor being
/// followed if it is a symlink.
pub fn create_dir_all(path: &Path) -> Result<()> {
    let (anchor, below) = anchored(path).ctx("cannot create directory", path)?;
    open_dirs(&anchor, &below, true).ctx("cannot create directory", path)?;
    Ok(())
}

/// Create the directory `anchor/below` and its missing parents, `anchor` being trusted (the
/// caller's own directory, which must exist) and no component of `below` followed if it is a
/// symlink. `below` must be relative and must not climb with `..`: a directory that a file
/// from elsewhere names is only ever made inside `anchor`.
pub fn create_dir_all_in(anchor: &Path, below: &Path) -> Result<()> {
    let path = anchor.join(below);
    let names = names_below(below.components()).ctx("cannot create directory", &path)?;
    if !anchor.is_dir() {
        return Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            .ctx("cannot create directory", &path);
    }
    open_dirs(anchor, &names, true).ctx("cannot create directory", &path)?;
    Ok(())
}

/// Is `path` a real directory, reached without following a symlink below its anchor?
/// `Ok(false)` when it does not exist; an error naming the link when something is in the way.
pub fn real_dir(path: &Path) -> std::io::Result<bool> {
    let (anchor, below) = anchored(path)?;
    match open_dirs(&anchor, &below, false) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn file_kind(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "not a regular file",
    }
}

/// A per-user base directory, as the XDG base directory spec says: `$XDG_VAR` when it is set to
/// an absolute path, else `$HOME/under_home`. `None` without either. Never the repository's.
pub fn user_dir(xdg_var: &str, under_home: &str) -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    var(xdg_var).or_else(|| var("HOME").map(|h| h.join(under_home)))
}

/// Read the whole of the regular file `path`, at most `limit` bytes.
///
/// The file is opened without following a final symlink and without blocking (a FIFO must not
/// hang the read), its type and size are checked on the open file, and at most `limit + 1` bytes
/// are read whatever `stat` said. A symlink, device, FIFO or directory, or a file larger than
/// `limit`, is an error that says so.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let (file, size) = open_regular(path)?;
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is larger than {}, the most cairn reads for this file",
                show_size(limit)
            ),
        )
    };
    if size > limit {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(size as usize);
    file.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(out)
}

/// Open the regular file `path` for reading the way [`read_bounded`] does (no final symlink
/// followed, no blocking, the type checked on the open file), for a caller that streams it;
/// with its size.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<(File, u64)> {
    let (dir, name) = open_parent(path, false)?;
    let fd = rustix::fs::openat(
        &dir,
        name.as_os_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is a symbolic link; cairn reads this file only as a regular file",
        ),
        e => e.into(),
    })?;
    let st = rustix::fs::fstat(&fd)?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is {}; cairn reads only regular files here",
                file_kind(kind)
            ),
        ));
    }
    Ok((File::from(fd), st.st_size as u64))
}

fn show_size(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{} GiB", n >> 30)
    } else {
        format!("{} MiB", n >> 20)
    }
}

/// [`read_bounded`] with the library's error: [`Error::Missing`] naming `what` when the file
/// does not exist, a refusal with a hint when it is not a regular file or is too large, else
/// "cannot read PATH" and the reason.
pub fn read_file(path: &Path, what: &'static str, limit: u64) -> Result<Vec<u8>> {
    read_bounded(path, limit).map_err(|e| read_error(what, path, e))
}

/// The library's error for a failed [`read_bounded`] of `what` at `path`.
pub fn read_error(what: &'static str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Error::Refused {
            message: format!("cannot read {what} {}: {e}", path.display()),
            hint: format!(
                "the {what} was left untouched; cairn reads it only as a regular file of the repository (spec/security.md)"
            ),
        }
    } else {
        Error::reading(what, path, e)
    }
}

/// Open (creating it) the file `path` for writing without truncating it, never through a
/// symlink: for lock files held with `flock`.
pub fn open_for_lock(path: &Path) -> Result<File> {
    let (dir, name) = open_parent(path, true).ctx("cannot open", path)?;
    let fd = rustix::fs::openat(
        &dir,
        name.as_os_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )
    .map_err(std::io::Error::from)
    .ctx("cannot open", path)?;
    let st = rustix::fs::fstat(&fd)
        .map_err(std::io::Error::from)
        .ctx("cannot open", path)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(Error::Io {
            op: "cannot open",
            path: path.to_path_buf(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    Ok(File::from(fd))
}

/// Write `text` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. Returns `false` (and writes nothing) when the file already holds
/// exactly these bytes.
pub fn write_if_changed(path: &Path, text: &[u8]) -> Result<bool> {
    if let Ok(old) = read_bounded(path, text.len() as u64) {
        if old == text {
            return Ok(false);
        }
    }
    atomic_write(path, text)?;
    Ok(true)
}

/// Remove cairn's temporary files older than an hour from `dir`: what a killed writer left
/// behind (a live writer's file is seconds old). Nothing is removed unless `dir` is reached
/// without a symlink below its anchor (a committed `.cairn/cache` link leads elsewhere).
pub fn remove_stale_temporaries(dir: &Path) {
    if !matches!(real_dir(dir), Ok(true)) {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let hour = std::time::Duration::from_secs(3600);
    for e in rd.filter_map(|e| e.ok()) {
        let stale = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(crate::probe::git::TEMP_PREFIX))
            && e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > hour);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Atomically replace `path` with `bytes` (see [`write_if_changed`]), durably.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, true, |w| w.write_all(bytes))
}

/// A fresh temporary name in a directory, created with `O_EXCL | O_NOFOLLOW`.
fn create_temporary(dir: &OwnedFd) -> std::io::Result<(File, OsString)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let seed = format!(
            "{}-{}-{n}",
            std::process::id(),
            crate::content::cache::now_ns()
        );
        let tag = blake3::hash(seed.as_bytes()).to_hex();
        let name = OsString::from(format!("{}{}", crate::probe::git::TEMP_PREFIX, &tag[..12]));
        match rustix::fs::openat(
            dir,
            name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        ) {
            Ok(fd) => return Ok((File::from(fd), name)),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Atomically replace `path` with what `write` produces, streamed through a buffer into a
/// temporary file in the same directory, then renamed. `durable` also fsyncs the file before
/// the rename and the directory after it; files that check themselves (content-addressed
/// manifests, caches) can skip that cost.
///
/// No directory below the path's anchor is followed if it is a symlink (missing ones are
/// created), the temporary file is created with `O_EXCL | O_NOFOLLOW`, and the rename replaces
/// a final symlink rather than writing where it points.
pub fn atomic_write_with(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<()> {
    use std::io::Write;
    let (dir, name) = open_parent(path, true).ctx("cannot create the directory of", path)?;
    let (file, tmp) = create_temporary(&dir).ctx("cannot create a temporary file for", path)?;
    let tmp_path = path.with_file_name(&tmp);
    let result = (|| {
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &file);
            write(&mut w).ctx("cannot write", &tmp_path)?;
            w.flush().ctx("cannot write", &tmp_path)?;
        }
        if durable {
            file.sync_all().ctx("cannot sync", &tmp_path)?;
        }
        rustix::fs::renameat(&dir, tmp.as_os_str(), &dir, name.as_os_str())
            .map_err(std::io::Error::from)
            .ctx("cannot replace", path)
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_os_str(), AtFlags::empty());
        return result;
    }
    if durable {
        // Make the rename durable; a directory that cannot be synced is not worth failing for.
        let _ = rustix::fs::fsync(&dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn writes_never_follow_a_link_below_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        symlink(outside.path(), root.join(".cairn")).unwrap();
        let err = atomic_write(&root.join(".cairn/cache/stat/x"), b"x").unwrap_err();
        assert!(format!("{err}: {:?}", std::error::Error::source(&err)).contains("symbolic link"));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(create_dir_all(&root.join(".cairn/cache")).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_final_link_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let victim = root.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        symlink(&victim, root.join("cairn.lock")).unwrap();
        atomic_write(&root.join("cairn.lock"), b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(root.join("cairn.lock")).unwrap(), b"new");
        assert!(!std::fs::symlink_metadata(root.join("cairn.lock"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn reads_are_bounded_and_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("small"), "abc").unwrap();
        assert_eq!(read_bounded(&root.join("small"), 3).unwrap(), b"abc");
        let err = read_bounded(&root.join("small"), 2).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        symlink("/dev/zero", root.join("zero")).unwrap();
        let err = read_bounded(&root.join("zero"), 10).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = read_bounded(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let fifo = root.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = read_bounded(&fifo, 10).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert_eq!(
            read_bounded(&root.join("missing"), 1).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }

    #[test]
    fn the_anchor_is_the_directory_holding_dot_cairn() {
        let (a, b) = anchored(Path::new("/p/.cairn/cache/stat/x")).unwrap();
        assert_eq!(a, Path::new("/p"));
        assert_eq!(
            b,
            ["cairn", "cache", "stat", "x"].map(|s| {
                if s == "cairn" {
                    OsString::from(".cairn")
                } else {
                    OsString::from(s)
                }
            })
        );
        let (a, b) = anchored(Path::new("/p/cairn.lock")).unwrap();
        assert_eq!((a.as_path(), b.len()), (Path::new("/p"), 1));
        assert!(anchored(Path::new("/p/.cairn/../x")).is_err());
    }
}
