//! The user's cache of what probes answered, so that a warm `cairn verify` starts no process.
//!
//! Asking the interpreter for its `sys.path` costs a process start (through a pyenv shim, a dozen
//! of them); `getconf` and `nvidia-smi` cost one each; reading every installed distribution's
//! metadata costs hundreds of reads. Their answers rarely change, so they are
//! kept in the user's cache directory, `$XDG_CACHE_HOME/cairn/` (else `~/.cache/cairn/`), one
//! small JSON file per question. Never in a repository: a repository must not be able to plant
//! an answer (spec/security.md §5), and nothing here reads below a project at all, except the
//! `.python-version` files a pyenv shim would read.
//!
//! An entry is found by a key and then checked against the things that could change its answer:
//!
//! * **Interpreter** ([`interpreter`]): the key holds the executable as given and as resolved,
//!   every `PYTHON*` variable, `HOME`, the probe script itself and, for a pyenv version chosen
//!   in a shim's place ([`crate::probe::pyenv`]), what chose it (the version's name,
//!   `PYENV_VERSION`, the path and bytes of the `.python-version` or global version file). A
//!   shim that is run after all (cairn refused to choose for it) is keyed on every input of
//!   pyenv's version choice (`PYENV_VERSION`, `PYENV_DIR`, `PATH`, the `.python-version` files
//!   up the tree from where the shim runs and from the current directory, the global version
//!   file). The entry holds the answer and the stat identity (device, inode, mode, size, mtime,
//!   ctime) of everything that decides `sys.path`: the resolved executable, each candidate
//!   `pyvenv.cfg`, the prefix, every `sys.path` entry, every `.pth` file in them and every
//!   directory a `.pth` line names, the user site directory (present or not), and pyenv's
//!   `versions/` tree. One difference and the interpreter is run again. Installing, upgrading or
//!   removing a package changes its site-packages directory, so it re-probes too.
//! * **Packages** ([`scan`]): the distributions found on a `sys.path`, keyed on that list and
//!   checked against the stamp of every `sys.path` directory, every metadata entry in them and
//!   every metadata file the scan reads (`METADATA`, `PKG-INFO`, `RECORD`, `WHEEL`, `INSTALLER`,
//!   `direct_url.json`), kept as one digest of their stamps per `sys.path` directory and taken
//!   relative to that directory once it is open. The code state of a package installed from a
//!   local directory (its repository's commit and uncommitted change) is not stored: it is read
//!   again every time.
//! * **Host** ([`host_output`]): the output of `getconf` or `nvidia-smi` with some arguments,
//!   keyed on the program's resolved path and stat identity, the boot id (a reboot may change
//!   the driver or the GPUs) and, for `nvidia-smi`, the loaded driver's version file.
//!
//! An answer is stored only when nothing it depends on changed within a moment of the probe
//! (the racy-git rule): a change made while the probe ran would otherwise be hidden behind a
//! stamp taken after it. For the same reason the key is computed again after the probe, and the
//! answer is stored only when it is unchanged. A wrapper script other than a pyenv shim is never cached: what it
//! runs depends on inputs cairn cannot know. Entries are written atomically and read bounded
//! ([`crate::fs`]); a damaged, foreign or unreadable entry is a miss, and a cache that cannot be
//! written is skipped: it is never an error.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::lockfile::PyPackage;
use crate::probe::python::{Interpreter, Package, Source};

/// Bumped when the shape of an entry or the meaning of a key changes.
const FORMAT: &str = "cairn-probe-cache-2";

/// The most cairn reads of one entry.
const MAX_ENTRY_BYTES: u64 = 16 << 20;

/// The most read of a `.pth`, `.python-version` or version file for the key.
const MAX_SMALL_FILE: u64 = 1 << 20;

/// `$XDG_CACHE_HOME/cairn`, else `$HOME/.cache/cairn`; `None` without either (absolute) variable.
pub fn dir() -> Option<PathBuf> {
    crate::fs::user_dir("XDG_CACHE_HOME", ".cache").map(|d| d.join("cairn"))
}

/// What `stat` says about a path: enough to notice any change of a file or of a directory's
/// list of entries (the mtime and ctime of a directory move when an entry is added or removed).
/// Stored as a plain array of its eight numbers: an entry holds hundreds of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StampArray", into = "StampArray")]
struct Stamp {
    dev: u64,
    ino: u64,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// [`Stamp`] as stored: device, inode, mode, size, mtime (s, ns), ctime (s, ns).
type StampArray = (u64, u64, u32, u64, i64, i64, i64, i64);

impl From<StampArray> for Stamp {
    fn from(a: StampArray) -> Stamp {
        Stamp {
            dev: a.0,
            ino: a.1,
            mode: a.2,
            size: a.3,
            mtime: (a.4, a.5),
            ctime: (a.6, a.7),
        }
    }
}

impl From<Stamp> for StampArray {
    fn from(s: Stamp) -> StampArray {
        (
            s.dev, s.ino, s.mode, s.size, s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1,
        )
    }
}

impl Stamp {
    /// From `statx` (the device as major and minor, in this cache's own encoding: a stamp is
    /// only ever compared with one taken the same way).
    fn of_statx(x: &rustix::fs::Statx) -> Stamp {
        Stamp {
            dev: (u64::from(x.stx_dev_major) << 32) | u64::from(x.stx_dev_minor),
            ino: x.stx_ino,
            mode: u32::from(x.stx_mode),
            size: x.stx_size,
            mtime: (x.stx_mtime.tv_sec, i64::from(x.stx_mtime.tv_nsec)),
            ctime: (x.stx_ctime.tv_sec, i64::from(x.stx_ctime.tv_nsec)),
        }
    }

    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Did this change at or after `since`, as far as the file system's clock can tell? On a
    /// file system that keeps whole seconds (no nanoseconds anywhere), two seconds of margin.
    fn racy(&self, since: SystemTime) -> bool {
        let coarse = self.mtime.1 == 0 && self.ctime.1 == 0;
        let margin = if coarse {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(20)
        };
        let since = since.checked_sub(margin).unwrap_or(SystemTime::UNIX_EPOCH);
        let at = |(s, ns): (i64, i64)| {
            SystemTime::UNIX_EPOCH
                + Duration::from_secs(s.max(0) as u64)
                + Duration::from_nanos(ns.max(0) as u64)
        };
        at(self.mtime) >= since || at(self.ctime) >= since
    }
}

/// The stamp of `path` (following symlinks, as Python does), `None` when it does not exist.
/// Any other error means the answer cannot be checked: `Err`.
fn stamp(path: &Path) -> std::io::Result<Option<Stamp>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(Stamp::of(&m))),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound) => Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A path and its stamp when the answer was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Watched {
    path: PathBuf,
    stamp: Option<Stamp>,
}

/// Builds the key: length-prefixed fields, so that no two lists of fields hash alike.
struct Key(blake3::Hasher);

impl Key {
    fn new(kind: &str) -> Key {
        let mut k = Key(blake3::Hasher::new());
        k.field(FORMAT.as_bytes());
        k.field(kind.as_bytes());
        k
    }

    fn field(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn path(&mut self, p: &Path) {
        use std::os::unix::ffi::OsStrExt;
        self.field(p.as_os_str().as_bytes());
    }

    /// A small file's bytes, or its absence. `None` when it exists but cannot be read as a
    /// regular file: then there is no key, and no caching.
    fn file(&mut self, p: &Path) -> Option<()> {
        self.path(p);
        match crate::fs::read_bounded(p, MAX_SMALL_FILE) {
            Ok(bytes) => {
                self.field(b"present");
                self.field(&bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.field(b"absent"),
            Err(_) => return None,
        }
        Some(())
    }

    fn var(&mut self, name: &str) {
        use std::os::unix::ffi::OsStrExt;
        self.field(name.as_bytes());
        match std::env::var_os(name) {
            Some(v) => {
                self.field(b"set");
                self.field(v.as_bytes());
            }
            None => self.field(b"unset"),
        }
    }

    fn finish(self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

fn entry_path(kind: &str, key: &str) -> Option<PathBuf> {
    Some(dir()?.join(kind).join(format!("{}.json", &key[..32])))
}

fn load<T: for<'de> Deserialize<'de>>(kind: &str, key: &str) -> Option<T> {
    #[derive(Deserialize)]
    struct Envelope<T> {
        key: String,
        value: T,
    }
    let bytes = crate::fs::read_bounded(&entry_path(kind, key)?, MAX_ENTRY_BYTES).ok()?;
    let e: Envelope<T> = serde_json::from_slice(&bytes).ok()?;
    (e.key == key).then_some(e.value)
}

fn store<T: Serialize>(kind: &str, key: &str, value: &T) {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        key: &'a str,
        value: &'a T,
    }
    let Some(path) = entry_path(kind, key) else {
        return;
    };
    let Ok(bytes) = serde_json::to_vec(&Envelope { key, value }) else {
        return;
    };
    // A cache that cannot be written is only slower.
    let _ = crate::fs::atomic_write_with(&path, false, |w| w.write_all(&bytes));
}

/// The interpreter's answer as stored.
#[derive(Serialize, Deserialize)]
struct StoredInterpreter {
    implementation: String,
    version: String,
    abi: Option<String>,
    platform: String,
    prefix: String,
    libc: Option<String>,
    sys_path: Vec<PathBuf>,
    watched: Vec<Watched>,
}

/// [`crate::probe::python::probe_interpreter`], answered from the user's cache when nothing that
/// decides the answer changed since it was stored (see the module documentation).
///
/// `choice` is the pyenv version that `executable` was chosen as, in a pyenv shim's place
/// ([`crate::probe::pyenv`]): what chose it is part of the key.
pub fn interpreter(
    executable: &Path,
    choice: Option<&crate::probe::pyenv::Choice>,
) -> Result<Interpreter> {
    let key = interpreter_key(executable, choice);
    if let Some(key) = &key {
        if let Some(hit) = load::<StoredInterpreter>("python", key) {
            if still_true(&hit.watched) {
                return Ok(Interpreter {
                    executable: executable.to_path_buf(),
                    implementation: hit.implementation,
                    version: hit.version,
                    abi: hit.abi,
                    platform: hit.platform,
                    prefix: hit.prefix,
                    libc: hit.libc,
                    sys_path: hit.sys_path,
                });
            }
        }
    }
    let started = SystemTime::now();
    let answer = crate::probe::python::probe_interpreter(executable)?;
    // The key's files (pyenv's version files) read again: one changed while the probe ran
    // would file this answer under the other key.
    let key = key.filter(|k| interpreter_key(executable, choice).as_ref() == Some(k));
    if let Some(key) = key {
        if let Some(watched) = interpreter_watched(executable, &answer) {
            let settled = watched
                .iter()
                .all(|w| w.stamp.is_none_or(|s| !s.racy(started)));
            if settled {
                store(
                    "python",
                    &key,
                    &StoredInterpreter {
                        implementation: answer.implementation.clone(),
                        version: answer.version.clone(),
                        abi: answer.abi.clone(),
                        platform: answer.platform.clone(),
                        prefix: answer.prefix.clone(),
                        libc: answer.libc.clone(),
                        sys_path: answer.sys_path.clone(),
                        watched,
                    },
                );
            }
        }
    }
    Ok(answer)
}

/// Does every watched path still have its stamp?
fn still_true(watched: &[Watched]) -> bool {
    watched
        .iter()
        .all(|w| matches!(stamp(&w.path), Ok(s) if s == w.stamp))
}

/// The executable as it will be run: absolute, and resolved through its symlinks.
fn resolve(executable: &Path) -> Option<(PathBuf, PathBuf)> {
    let given = if executable.components().count() > 1 {
        std::path::absolute(executable).ok()?
    } else {
        crate::process::on_path(&executable.to_string_lossy())?
    };
    let canonical = given.canonicalize().ok()?;
    Some((given, canonical))
}

/// The key of an interpreter's answer; `None` when it must not be cached (a wrapper script
/// that is not a pyenv shim, something unreadable).
fn interpreter_key(
    executable: &Path,
    choice: Option<&crate::probe::pyenv::Choice>,
) -> Option<String> {
    let (given, canonical) = resolve(executable)?;
    let mut key = Key::new("python");
    match choice {
        Some(c) => {
            key.field(b"pyenv-choice");
            key.field(&c.key_bytes());
        }
        None => key.field(b"as given"),
    }
    key.field(crate::probe::python::PROBE.as_bytes());
    key.path(executable);
    key.path(&given);
    key.path(&canonical);
    // Every PYTHON* variable (the ones the probe removes too: cheap, and never stale), and HOME,
    // which places the user site directory.
    let mut vars: Vec<(Vec<u8>, Vec<u8>)> = std::env::vars_os()
        .filter(|(k, _)| k.to_string_lossy().starts_with("PYTHON"))
        .map(|(k, v)| {
            use std::os::unix::ffi::OsStrExt;
            (k.as_bytes().to_vec(), v.as_bytes().to_vec())
        })
        .collect();
    vars.sort();
    for (k, v) in &vars {
        key.field(k);
        key.field(v);
    }
    key.var("HOME");
    if crate::probe::pyenv::is_script(&canonical)? {
        let root = crate::probe::pyenv::shim_root(&canonical)?;
        key.field(b"pyenv-shim");
        pyenv_key(&mut key, &root)?;
    }
    Some(key.finish())
}

/// Everything pyenv reads to choose a version (pyenv-version-name, pyenv-version-file): the
/// variables, the `.python-version` files up the tree from where the shim runs (the probe's own
/// new directory under the temporary directory, or `PYENV_DIR`) and from the current
/// directory, and the global version files. What the chosen version is made of is watched
/// separately ([`interpreter_watched`]).
fn pyenv_key(key: &mut Key, root: &Path) -> Option<()> {
    key.path(root);
    for v in ["PYENV_VERSION", "PYENV_DIR", "PATH", "PYENV_HOOK_PATH"] {
        key.var(v);
    }
    let mut starts = vec![std::env::temp_dir()];
    if let Some(d) = std::env::var_os("PYENV_DIR").filter(|d| !d.is_empty()) {
        starts.push(PathBuf::from(d));
    }
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    for start in starts {
        for dir in start.ancestors() {
            key.file(&dir.join(".python-version"))?;
        }
    }
    for f in ["version", "global", "default"] {
        key.file(&root.join(f))?;
    }
    Some(())
}

/// What decides the interpreter's answer, stamped now. `None` when something cannot be checked.
fn interpreter_watched(executable: &Path, answer: &Interpreter) -> Option<Vec<Watched>> {
    let (given, canonical) = resolve(executable)?;
    let mut paths: Vec<PathBuf> = vec![canonical.clone(), given.clone()];
    // pyvenv.cfg next to the executable or one directory up (as Python looks), and in the
    // prefix the interpreter reported (a shim's or a symlink's venv).
    let prefix = PathBuf::from(&answer.prefix);
    for d in [given.parent(), given.parent().and_then(Path::parent)]
        .into_iter()
        .flatten()
    {
        paths.push(d.join("pyvenv.cfg"));
    }
    paths.push(prefix.join("pyvenv.cfg"));
    paths.push(prefix.clone());
    paths.push(prefix.join("bin"));
    // The user site directory: absent ones are not on sys.path, and appear when created.
    if let Some((major, minor)) = major_minor(&answer.version) {
        let base = std::env::var_os("PYTHONUSERBASE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local")));
        if let Some(base) = base {
            paths.push(base.join(format!("lib/python{major}.{minor}/site-packages")));
        }
    }
    for entry in &answer.sys_path {
        paths.push(entry.clone());
        paths.extend(pth_files_and_targets(entry)?);
    }
    if crate::probe::pyenv::is_script(&canonical)? {
        let root = crate::probe::pyenv::shim_root(&canonical)?;
        let versions = root.join("versions");
        paths.push(versions.clone());
        if let Ok(rd) = std::fs::read_dir(&versions) {
            for e in rd.filter_map(|e| e.ok()) {
                paths.push(e.path());
                paths.push(e.path().join("bin"));
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .map(|path| {
            let stamp = stamp(&path).ok()?;
            Some(Watched { path, stamp })
        })
        .collect()
}

fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut it = version.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The `.pth` files of a `sys.path` directory and every path their lines name (as `site` reads
/// them: not a comment, not an `import` line, relative to the directory). `None` when one
/// cannot be read.
fn pth_files_and_targets(dir: &Path) -> Option<Vec<PathBuf>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Some(out);
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(".pth") || name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let bytes = match crate::fs::read_bounded(&path, MAX_SMALL_FILE) {
            Ok(b) => b,
            Err(_) if !path.is_file() => continue,
            Err(_) => return None,
        };
        for line in String::from_utf8_lossy(&bytes).lines() {
            let line = line.trim_end();
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with("import ")
                || line.starts_with("import\t")
            {
                continue;
            }
            out.push(dir.join(line));
        }
        out.push(path);
    }
    Some(out)
}

/// A distribution as stored: [`Package`] without the code state of a local directory, which
/// is read again on every use (the directory's repository moves without the metadata changing).
#[derive(Serialize, Deserialize)]
struct StoredPackage {
    name: String,
    version: String,
    source: StoredSource,
    installer: Option<String>,
    wheel_tag: Option<String>,
    fingerprint: Option<String>,
    location: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum StoredSource {
    Registry,
    Vcs { url: String, commit: String },
    Archive { url: String, hash: Option<String> },
    Directory { url: String, editable: bool },
}

#[derive(Serialize, Deserialize)]
struct StoredScan {
    packages: Vec<StoredPackage>,
    warnings: Vec<String>,
    watched: Vec<WatchedDir>,
}

/// A `sys.path` directory and paths below it (`NAME.dist-info`, `NAME.dist-info/METADATA`),
/// with one digest of all their stamps: checking takes one open of the directory and a `statx`
/// relative to it for each path (not the whole path resolved again for each of hundreds of
/// files), and reading the entry parses no stamps.
#[derive(Serialize, Deserialize)]
struct WatchedDir {
    dir: PathBuf,
    below: Vec<PathBuf>,
    stamps: String,
}

/// The digest of a list of stamps (absent ones included).
fn stamps_digest(stamps: &[Option<Stamp>]) -> String {
    // One buffer, hashed at once: hundreds of small updates cost more than the hashing.
    let mut buf = Vec::with_capacity(stamps.len() * 61);
    for s in stamps {
        match s {
            Some(s) => {
                let (dev, ino, mode, size, ms, mns, cs, cns) = StampArray::from(*s);
                buf.push(1);
                for n in [dev, ino, u64::from(mode), size] {
                    buf.extend_from_slice(&n.to_le_bytes());
                }
                for n in [ms, mns, cs, cns] {
                    buf.extend_from_slice(&n.to_le_bytes());
                }
            }
            None => buf.push(0),
        }
    }
    blake3::hash(&buf).to_hex().to_string()
}

/// The stamp of `rel` below the open directory `dir` (`""`: the directory itself), following
/// symlinks; `None` when it does not exist.
fn stamp_at(dir: &rustix::fd::OwnedFd, rel: &Path) -> std::io::Result<Option<Stamp>> {
    use rustix::fs::{AtFlags, StatxFlags};
    let flags = if rel.as_os_str().is_empty() {
        AtFlags::EMPTY_PATH
    } else {
        AtFlags::empty()
    };
    match rustix::fs::statx(dir, rel, flags, StatxFlags::BASIC_STATS) {
        Ok(x) => Ok(Some(Stamp::of_statx(&x))),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Open a directory to stamp below it; `Ok(None)` when it does not exist (or is no directory).
fn open_dir(dir: &Path) -> std::io::Result<Option<rustix::fd::OwnedFd>> {
    use rustix::fs::{Mode, OFlags, CWD};
    match rustix::fs::openat(
        CWD,
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl WatchedDir {
    /// The stamps of the directory and of `below` now, the directory's first; `None` when one
    /// cannot be taken.
    fn stamps(dir: &Path, below: &[PathBuf]) -> Option<Vec<Option<Stamp>>> {
        let Some(fd) = open_dir(dir).ok()? else {
            return Some(vec![None; below.len() + 1]);
        };
        let mut out = Vec::with_capacity(below.len() + 1);
        out.push(stamp_at(&fd, Path::new("")).ok()?);
        for rel in below {
            out.push(stamp_at(&fd, rel).ok()?);
        }
        Some(out)
    }

    /// Stamp `dir` and `below` now, each path with whether to keep it when it is absent (an
    /// absent file is left out: its directory's stamp covers its coming). `None` when one
    /// cannot be stamped, or when one changed at or after `since` (it may have changed while
    /// the scan read it).
    fn settled_now(
        dir: &Path,
        below: Vec<(PathBuf, bool)>,
        since: SystemTime,
    ) -> Option<WatchedDir> {
        let paths: Vec<PathBuf> = below.iter().map(|(p, _)| p.clone()).collect();
        let stamps = WatchedDir::stamps(dir, &paths)?;
        if stamps.iter().any(|s| s.is_some_and(|s| s.racy(since))) {
            return None;
        }
        let mut kept_paths = Vec::new();
        let mut kept = vec![stamps[0]];
        for ((path, keep_absent), stamp) in below.into_iter().zip(&stamps[1..]) {
            if stamp.is_some() || keep_absent {
                kept_paths.push(path);
                kept.push(*stamp);
            }
        }
        Some(WatchedDir {
            dir: dir.to_path_buf(),
            below: kept_paths,
            stamps: stamps_digest(&kept),
        })
    }

    /// Is every stamp what it was?
    fn still_true(&self) -> bool {
        WatchedDir::stamps(&self.dir, &self.below).is_some_and(|s| stamps_digest(&s) == self.stamps)
    }
}

fn to_stored(p: &Package) -> StoredPackage {
    let (location, p) = (&p.location, &p.package);
    StoredPackage {
        name: p.name.clone(),
        version: p.version.clone(),
        source: match &p.source {
            Source::Registry => StoredSource::Registry,
            Source::Vcs { url, commit } => StoredSource::Vcs {
                url: url.clone(),
                commit: commit.clone(),
            },
            Source::Archive { url, hash } => StoredSource::Archive {
                url: url.clone(),
                hash: hash.clone(),
            },
            Source::Directory { url, editable, .. } => StoredSource::Directory {
                url: url.clone(),
                editable: *editable,
            },
        },
        installer: p.installer.clone(),
        wheel_tag: p.wheel_tag.clone(),
        fingerprint: p.fingerprint.map(|d| d.to_string()),
        location: location.clone(),
    }
}

fn from_stored(p: StoredPackage, repos: &crate::probe::python::RepoStates) -> Option<Package> {
    let fingerprint = match p.fingerprint {
        Some(f) => Some(f.parse().ok()?),
        None => None,
    };
    Some(Package {
        package: PyPackage {
            name: p.name,
            version: p.version,
            source: match p.source {
                StoredSource::Registry => Source::Registry,
                StoredSource::Vcs { url, commit } => Source::Vcs { url, commit },
                StoredSource::Archive { url, hash } => Source::Archive { url, hash },
                StoredSource::Directory { url, editable } => {
                    let (commit, change) = match crate::probe::python::file_url_path(&url) {
                        Some(dir) => repos.of(&dir),
                        None => (None, None),
                    };
                    Source::Directory {
                        url,
                        editable,
                        commit,
                        change,
                    }
                }
            },
            installer: p.installer,
            wheel_tag: p.wheel_tag,
            fingerprint,
        },
        location: p.location,
    })
}

/// [`crate::probe::python::scan`], answered from the user's cache when no `sys.path` directory
/// changed (an install, upgrade or removal adds or removes a metadata directory, which moves
/// the directory's mtime and ctime) and no metadata file that the scan reads changed. The code
/// state of a package installed from a local directory is read again every time.
pub fn scan(sys_path: &[PathBuf]) -> (Vec<Package>, Vec<String>) {
    let mut key = Key::new("packages");
    for p in sys_path {
        key.path(p);
    }
    let key = key.finish();
    if let Some(hit) = load::<StoredScan>("packages", &key) {
        if hit.watched.iter().all(WatchedDir::still_true) {
            let repos = crate::probe::python::RepoStates::default();
            let packages: Option<Vec<Package>> = hit
                .packages
                .into_iter()
                .map(|p| from_stored(p, &repos))
                .collect();
            if let Some(packages) = packages {
                return (packages, hit.warnings);
            }
        }
    }
    let started = SystemTime::now();
    let (packages, warnings) = crate::probe::python::scan(sys_path);
    if let Some(watched) = scan_watched(sys_path, started) {
        store(
            "packages",
            &key,
            &StoredScan {
                packages: packages.iter().map(to_stored).collect(),
                warnings: warnings.clone(),
                watched,
            },
        );
    }
    (packages, warnings)
}

/// The metadata files a scan reads, in any of the layouts it knows.
const METADATA_FILES: &[&str] = &[
    "METADATA",
    "PKG-INFO",
    "RECORD",
    "WHEEL",
    "INSTALLER",
    "direct_url.json",
];

/// Every `sys.path` directory, every metadata entry in it and every metadata file the scan
/// reads there that exists, stamped now. `None` when one cannot be stamped or changed at or
/// after `since`.
fn scan_watched(sys_path: &[PathBuf], since: SystemTime) -> Option<Vec<WatchedDir>> {
    let mut out = Vec::new();
    for dir in sys_path {
        let mut below = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.filter_map(|e| e.ok()) {
                let name = PathBuf::from(e.file_name());
                let text = name.to_string_lossy();
                let meta = if text.ends_with(".dist-info") || text.ends_with(".egg-info") {
                    name.clone()
                } else if text.ends_with(".egg") {
                    name.join("EGG-INFO")
                } else {
                    continue;
                };
                below.push((name.clone(), true));
                if meta != name {
                    below.push((meta.clone(), true));
                }
                // Only the files there: one that appears or goes changes its directory's stamp.
                for f in METADATA_FILES {
                    below.push((meta.join(f), false));
                }
            }
        }
        below.sort();
        below.dedup();
        out.push(WatchedDir::settled_now(dir, below, since)?);
    }
    Some(out)
}

/// The boot id: a new one after every reboot.
fn boot_id() -> Option<Vec<u8>> {
    crate::fs::read_bounded(Path::new("/proc/sys/kernel/random/boot_id"), 4096).ok()
}

/// The output of `program args` (`getconf`, `nvidia-smi`), from the user's cache when the same
/// program (resolved path and stat identity), the same boot and the same contents of `files`
/// (the driver's version file) answered it before; else from `run`, whose answer is stored.
/// `None` (the program failed) is an answer too.
pub fn host_output(
    program: &Path,
    args: &[&str],
    files: &[&Path],
    run: impl FnOnce() -> Option<String>,
) -> Option<String> {
    let key_now = || {
        let canonical = program.canonicalize().ok()?;
        let mut key = Key::new("host");
        key.path(program);
        key.path(&canonical);
        let id = serde_json::to_vec(&stamp(&canonical).ok()??).ok()?;
        key.field(&id);
        for a in args {
            key.field(a.as_bytes());
        }
        key.field(&boot_id()?);
        for f in files {
            key.path(f);
            match crate::fs::read_bounded(f, MAX_SMALL_FILE) {
                Ok(b) => key.field(&b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => key.field(b"absent"),
                Err(_) => return None,
            }
        }
        Some(key.finish())
    };
    let key = key_now();
    if let Some(key) = &key {
        if let Some(hit) = load::<Option<String>>("host", key) {
            return hit;
        }
    }
    let answer = run();
    // Stored only when the program, the boot and the files are what they were before it ran.
    if let Some(key) = key.filter(|k| key_now().as_ref() == Some(k)) {
        store("host", &key, &answer);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_tell_racy_from_settled() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let s = stamp(&f).unwrap().unwrap();
        assert!(s.racy(SystemTime::now() - Duration::from_secs(60)));
        let old = Stamp {
            mtime: (1_000_000_000, 5),
            ctime: (1_000_000_000, 5),
            ..s
        };
        assert!(!old.racy(SystemTime::now()));
        // Whole seconds only: a file system that cannot tell, so two seconds of margin.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let coarse = Stamp {
            mtime: (now - 1, 0),
            ctime: (now - 1, 0),
            ..s
        };
        assert!(coarse.racy(SystemTime::now()));
        assert_eq!(stamp(&dir.path().join("missing")).unwrap(), None);
        assert_eq!(stamp(&f.join("below-a-file")).unwrap(), None);
    }

    #[test]
    fn a_scan_digest_sees_an_edit_in_place_and_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let meta = d.join("x-1.dist-info");
        std::fs::create_dir(&meta).unwrap();
        // Fixed mtimes, so that no change hides in one tick of the file system's clock.
        let at = |p: &Path, secs: u64| {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            std::fs::File::open(p).unwrap().set_modified(t).unwrap();
        };
        std::fs::write(meta.join("METADATA"), "Name: x\nVersion: 1\n").unwrap();
        at(&meta.join("METADATA"), 1_000_000_000);
        at(&meta, 1_000_000_000);
        let below = vec![
            (PathBuf::from("x-1.dist-info"), true),
            (PathBuf::from("x-1.dist-info/METADATA"), false),
            (PathBuf::from("x-1.dist-info/RECORD"), false),
        ];
        let later = SystemTime::now() + Duration::from_secs(3600);
        let w = WatchedDir::settled_now(d, below.clone(), later).unwrap();
        assert_eq!(w.below.len(), 2, "an absent file is left out");
        assert!(w.still_true());
        // Edited in place, the same size: only the file's own stamp moves.
        std::fs::write(meta.join("METADATA"), "Name: x\nVersion: 2\n").unwrap();
        at(&meta.join("METADATA"), 1_000_000_001);
        assert!(!w.still_true());
        let w = WatchedDir::settled_now(d, below.clone(), later).unwrap();
        assert!(w.still_true());
        // A file that was absent appears: its directory moves.
        std::fs::write(meta.join("RECORD"), "").unwrap();
        assert!(!w.still_true());
        // Something changed within a moment of the scan: nothing to store.
        assert!(
            WatchedDir::settled_now(d, below, SystemTime::now() - Duration::from_secs(60))
                .is_none()
        );
        // A sys.path directory that is gone, and one that never was.
        let gone = WatchedDir::settled_now(&d.join("missing"), Vec::new(), later).unwrap();
        assert!(gone.still_true());
    }

    #[test]
    fn keys_separate_their_fields() {
        let mut a = Key::new("t");
        a.field(b"ab");
        a.field(b"c");
        let mut b = Key::new("t");
        b.field(b"a");
        b.field(b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn pth_lines_name_their_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("extra.pth"),
            "# comment\n\nimport os\nsub\n/abs/where\n",
        )
        .unwrap();
        std::fs::write(d.join(".hidden.pth"), "ignored\n").unwrap();
        std::fs::write(d.join("notes.txt"), "not a pth\n").unwrap();
        let mut got = pth_files_and_targets(d).unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                PathBuf::from("/abs/where"),
                d.join("extra.pth"),
                d.join("sub")
            ]
        );
        assert_eq!(
            pth_files_and_targets(&d.join("missing")).unwrap(),
            Vec::<PathBuf>::new()
        );
    }
}
