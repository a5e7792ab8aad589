//! Content digests of files and directories, exactly as `spec/lockfile.md` defines them.
//!
//! * A file's digest is `blake3:` + the hex BLAKE3 of its bytes.
//! * A directory's digest is `blake3:` + the hex BLAKE3 of its *manifest*: the text `b3sum`
//!   prints for every regular file below it (symlinks followed), one `<hex>  <path>\n` line per
//!   file, paths relative to the directory with `/` separators, sorted by their bytes, and
//!   escaped as b3sum escapes them. So for UTF-8 names
//!   `cd DIR && find -L . -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 -r b3sum | b3sum --no-names`
//!   prints the same hex. Bytes that are not UTF-8 are written `\xHH` (b3sum loses them).
//!
//! Files are hashed in parallel on a rayon pool; a large file goes through BLAKE3's
//! multithreaded memory-mapped path (blake3 maps only files of 16 KiB and more).

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;

use crate::content::cache::{now_ns, trustworthy, Cached, StatCache, StatKey};
use crate::content::walk::Found;
use crate::error::{Error, IoResultExt, Result};

/// The prefix of every digest string.
pub const PREFIX: &str = "blake3:";

/// A BLAKE3 digest, written `blake3:<64 lowercase hex digits>`.
///
/// ```
/// use cairn::content::digest::Digest;
/// let d = Digest::of_bytes(b"");
/// assert_eq!(
///     d.to_string(),
///     "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
/// );
/// assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
/// assert!("sha256:00".parse::<Digest>().is_err());
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The 64 lowercase hex digits without the `blake3:` prefix.
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The digest of some bytes.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Digest(*h.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a digest (expected `blake3:` and 64 lowercase hex digits): {0:?}")]
pub struct DigestParseError(pub String);

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix(PREFIX)
            .and_then(Digest::from_hex)
            .ok_or_else(|| DigestParseError(s.to_string()))
    }
}

impl Digest {
    /// Parse exactly 64 lowercase hex digits (no prefix).
    pub fn from_hex(hex: &str) -> Option<Digest> {
        fn nibble(b: u8) -> Option<u8> {
            match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                _ => None,
            }
        }
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = nibble(bytes[2 * i])? << 4 | nibble(bytes[2 * i + 1])?;
        }
        Some(Digest(out))
    }
}

/// Whether a hashed path was a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file (or a symlink to one).
    File,
    /// A directory, digested through its manifest.
    Dir,
}

/// One line of a directory manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path relative to the directory, `/`-separated, as raw bytes.
    pub path: Vec<u8>,
    /// BLAKE3 of the file's bytes.
    pub hash: Digest,
    /// The file's size in bytes, when known (manifests read back from text do not carry it).
    pub size: Option<u64>,
}

impl Entry {
    /// The path as a manifest line writes it, and whether it was escaped: `\`, newline and
    /// carriage return as b3sum escapes them (`\\`, `\n`, `\r`), and every byte that is not part
    /// of valid UTF-8 as `\xHH`, so that no two names share a line (b3sum itself writes such
    /// bytes as U+FFFD, losing them).
    pub fn display_path(&self) -> (String, bool) {
        let mut out = String::with_capacity(self.path.len());
        let mut escaped = false;
        for chunk in self.path.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => {
                        out.push(c);
                        continue;
                    }
                }
                escaped = true;
            }
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02x}"));
                escaped = true;
            }
        }
        (out, escaped)
    }

    /// The path as reports show it: the manifest's escaped form without the leading flag
    /// (`a.txt`, `line\nbreak`, `bad\xffname`).
    pub fn shown(&self) -> String {
        self.display_path().0
    }

    /// Append this entry's manifest line (`[\\]<hex>  <path>\n`) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let hex = blake3::Hash::from_bytes(self.hash.0).to_hex();
        let plain = !self.path.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r'))
            && std::str::from_utf8(&self.path).is_ok();
        if plain {
            // The common case, without an allocation: the bytes are already what b3sum prints.
            out.extend_from_slice(hex.as_bytes());
            out.extend_from_slice(b"  ");
            out.extend_from_slice(&self.path);
        } else {
            let (path, escaped) = self.display_path();
            if escaped {
                out.push(b'\\');
            }
            out.extend_from_slice(hex.as_bytes());
            out.extend_from_slice(b"  ");
            out.extend_from_slice(path.as_bytes());
        }
        out.push(b'\n');
    }

    /// The path as a person reads it (lossy UTF-8, unescaped).
    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// The list of files below a directory, sorted by path bytes: the thing a directory digest is
/// the BLAKE3 of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Entries, sorted by `path` bytes, no duplicates.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// The manifest text, byte for byte what `b3sum` prints for these files in this order.
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 100);
        for e in &self.entries {
            e.write_line(&mut out);
        }
        out
    }

    /// Write the manifest text to `w` (see [`Manifest::to_text`]) without building it in memory.
    pub fn write_text(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(256);
        for e in &self.entries {
            line.clear();
            e.write_line(&mut line);
            w.write_all(&line)?;
        }
        Ok(())
    }

    /// The directory digest: BLAKE3 over [`Manifest::to_text`], without building the whole text.
    pub fn digest(&self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        let mut line = Vec::with_capacity(256);
        for e in &self.entries {
            line.clear();
            e.write_line(&mut line);
            hasher.update(&line);
        }
        hasher.finalize().into()
    }

    /// Parse manifest text (b3sum's output format, with cairn's `\xHH` for bytes that are not
    /// UTF-8). Paths come back as their exact bytes.
    pub fn parse(text: &[u8]) -> std::result::Result<Manifest, String> {
        let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
        let mut entries = Vec::with_capacity(text.len() / 80);
        for (n, line) in text.split_terminator('\n').enumerate() {
            let lineno = n + 1;
            let (escaped, rest) = match line.strip_prefix('\\') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            // `<64 hex digits>  <path>`: the hash has a fixed width.
            let (hex, path) = match (rest.get(..64), rest.get(64..66), rest.get(66..)) {
                (Some(hex), Some("  "), Some(path)) => (hex, path),
                _ => return Err(format!("line {lineno}: expected `<hex>  <path>`")),
            };
            let hash =
                Digest::from_hex(hex).ok_or_else(|| format!("line {lineno}: bad hash {hex:?}"))?;
            let path = if escaped {
                unescape(path).ok_or_else(|| format!("line {lineno}: bad escape in path"))?
            } else {
                path.as_bytes().to_vec()
            };
            if path.is_empty() {
                return Err(format!("line {lineno}: empty path"));
            }
            entries.push(Entry {
                path,
                hash,
                size: None,
            });
        }
        // Order is not checked here: callers check the manifest's digest instead.
        Ok(Manifest { entries })
    }

    /// Total size of the files, when every entry knows its size.
    pub fn bytes(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.size).sum()
    }
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'\\' {
            match bytes.next()? {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hi = (bytes.next()? as char).to_digit(16)?;
                    let lo = (bytes.next()? as char).to_digit(16)?;
                    out.push((hi * 16 + lo) as u8);
                }
                _ => return None,
            }
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Something below a directory that is not hashed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path, relative to the hashed directory.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: &'static str,
}

/// The result of hashing a file or directory.
#[derive(Debug, Clone)]
pub struct Hashed {
    /// File or directory.
    pub kind: Kind,
    /// The digest as the spec defines it.
    pub digest: Digest,
    /// Number of regular files (1 for a file).
    pub files: u64,
    /// Total bytes hashed.
    pub bytes: u64,
    /// Files actually read (the others' digests came from the stat cache).
    pub files_read: u64,
    /// Bytes actually read.
    pub bytes_read: u64,
    /// For a directory, its manifest.
    pub manifest: Option<Manifest>,
    /// Entries that were not hashed (FIFOs, sockets, devices, dangling symlinks).
    pub skipped: Vec<Skipped>,
}

/// Files from this size up are memory-mapped and hashed by BLAKE3 on several threads; smaller
/// ones are read into a buffer (many at once, one per pool thread).
pub const MMAP_MIN: u64 = 4 << 20;

/// Reports hashing progress; the CLI draws a bar with it. Calls come from many threads.
pub trait Progress: Sync {
    /// Hashing of `files` files is about to start.
    fn start(&self, _files: u64) {}
    /// One file is done: `bytes` long, `read` false when its digest came from the cache.
    fn file_done(&self, _bytes: u64, _read: bool) {}
    /// Hashing is over.
    fn finish(&self) {}
}

/// How to hash: with a stat cache directory or not, reporting progress or not.
#[derive(Clone, Copy, Default)]
pub struct HashOptions<'a> {
    /// Where stat caches live (`.cairn/cache/stat`); `None` hashes without a cache.
    pub cache_dir: Option<&'a Path>,
    /// Use what the cache holds (false: read every file, but still refresh the cache).
    pub use_cache: bool,
    /// Progress reporting.
    pub progress: Option<&'a dyn Progress>,
    /// The repository of a command that only reads (spec/security.md): below a root inside it,
    /// symlinks that lead out of it are skipped and reported, not followed. `None` follows every
    /// link (`cairn lock`, `cairn hash`, and roots the user named outside the repository).
    pub confine: Option<&'a Path>,
}

impl<'a> HashOptions<'a> {
    /// How a command that only reads hashes (`lineage`, `audit`): through the stat cache in
    /// `cache_dir`, without progress, not following links out of `boundary` (the repository).
    pub fn read_only(cache_dir: &'a Path, boundary: &'a Path) -> Self {
        HashOptions {
            cache_dir: Some(cache_dir),
            use_cache: true,
            progress: None,
            confine: Some(boundary),
        }
    }
}

/// One hashed file: its digest, size, and what to cache for it.
struct FileHash {
    hash: Digest,
    size: u64,
    read: bool,
    /// What to cache for it: `None` for a racy file.
    cache: Option<Cached>,
}

thread_local! {
    static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn changed_while_reading(path: &Path) -> Error {
    Error::ChangedWhileReading {
        path: path.to_path_buf(),
    }
}

/// Hash one file, using `cached` when it is still valid. The file is stat'ed before and after it
/// is read; any difference (an append, a rewrite, a replacement) is an error, never a digest.
///
/// `known` is the file's stat from the walk, when there was one: a cache hit then costs no
/// system call at all, and a read costs open, read, one fstat and close.
fn hash_one(
    path: &Path,
    known: Option<StatKey>,
    cached: Option<Cached>,
    started: i64,
) -> Result<FileHash> {
    use std::io::Read;
    if let Some(c) = cached {
        let now = match known {
            Some(k) => k,
            None => {
                StatKey::of(&std::fs::metadata(path).map_err(|e| Error::reading("file", path, e))?)
            }
        };
        if c.valid_for(&now) {
            return Ok(FileHash {
                hash: c.hash,
                size: now.size,
                read: false,
                cache: Some(c),
            });
        }
    }
    let mut file = std::fs::File::open(path).map_err(|e| Error::reading("file", path, e))?;
    // The walk's stat is the "before": a change between the walk and the read counts too.
    let before = match known {
        Some(k) => k,
        None => StatKey::of(&file.metadata().ctx("cannot read", path)?),
    };
    let hash: Digest = if before.size >= MMAP_MIN {
        let mut hasher = blake3::Hasher::new();
        hasher.update_mmap_rayon(path).ctx("cannot read", path)?;
        if hasher.count() != before.size {
            return Err(changed_while_reading(path));
        }
        hasher.finalize().into()
    } else {
        BUF.with(|buf| -> Result<Digest> {
            let mut buf = buf.borrow_mut();
            buf.clear();
            buf.reserve(before.size as usize + 1);
            file.read_to_end(&mut buf).ctx("cannot read", path)?;
            if buf.len() as u64 != before.size {
                return Err(changed_while_reading(path));
            }
            Ok(blake3::hash(&buf).into())
        })?
    };
    let after = StatKey::of(&file.metadata().ctx("cannot read", path)?);
    // For the memory-mapped path BLAKE3 opened the file again by name: compare the name's stat
    // too, so a replacement in between is caught.
    let replaced = before.size >= MMAP_MIN
        && std::fs::metadata(path).map(|m| StatKey::of(&m)).ok() != Some(before);
    if after != before || replaced {
        return Err(changed_while_reading(path));
    }
    Ok(FileHash {
        hash,
        size: before.size,
        read: true,
        cache: trustworthy(&before, started).then_some(Cached { key: before, hash }),
    })
}

/// BLAKE3 of one file's bytes, and its size (no cache). A file that changes while it is read is
/// an error.
pub fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    let h = hash_one(path, None, None, now_ns())?;
    Ok((h.hash, h.size))
}

/// Hash a file or a directory (following symlinks) as the spec defines, without a cache.
pub fn hash_path(path: &Path) -> Result<Hashed> {
    hash_path_with(path, &HashOptions::default())
}

/// Hash a file or a directory (following symlinks) as the spec defines.
pub fn hash_path_with(path: &Path, opts: &HashOptions<'_>) -> Result<Hashed> {
    let meta = std::fs::metadata(path).map_err(|source| Error::reading("path", path, source))?;
    if meta.is_dir() {
        hash_dir(path, opts)
    } else if meta.is_file() {
        let started = now_ns();
        let cache = open_cache(path, opts);
        if let Some(p) = opts.progress {
            p.start(1);
        }
        let cached = cache.get(b"").filter(|_| opts.use_cache);
        let h = hash_one(path, None, cached, started)?;
        if let Some(p) = opts.progress {
            p.file_done(h.size, h.read);
            p.finish();
        }
        if h.read {
            // A cache that cannot be written only costs a re-read next time.
            let _ = cache.save(h.cache.iter().map(|c| (&b""[..], *c)));
        }
        Ok(Hashed {
            kind: Kind::File,
            digest: h.hash,
            files: 1,
            bytes: h.size,
            files_read: u64::from(h.read),
            bytes_read: if h.read { h.size } else { 0 },
            manifest: None,
            skipped: Vec::new(),
        })
    } else {
        Err(Error::BadPath {
            path: path.display().to_string(),
            message: "not a regular file or directory".into(),
        })
    }
}

fn open_cache(root: &Path, opts: &HashOptions<'_>) -> StatCache {
    match opts.cache_dir {
        Some(dir) => StatCache::open(dir, root, opts.use_cache),
        None => StatCache::disabled(),
    }
}

/// Hash every regular file below `root` in parallel, reusing cached digests where the cache
/// allows, and build the manifest.
///
/// Memory is what matters at a million files: the walk's list is the only per-file list while
/// hashing (plus a small result per file, written in place), and the cache's bytes are dropped
/// before the manifest is built.
pub fn hash_dir(root: &Path, opts: &HashOptions<'_>) -> Result<Hashed> {
    /// What hashing one file gave.
    #[derive(Clone, Copy, Default)]
    struct Out {
        hash: Digest,
        read: bool,
        cacheable: bool,
    }
    let started = now_ns();
    // Confinement is for what the repository holds; a root the user named outside it is the
    // user's, and is walked as it is.
    let confine = opts
        .confine
        .filter(|b| std::fs::canonicalize(root).is_ok_and(|r| r.starts_with(b)));
    let (files, skipped) = crate::content::walk::walk_within(root, confine)?;
    let cache = open_cache(root, opts);
    if let Some(p) = opts.progress {
        p.start(files.len() as u64);
    }
    let first_error = std::sync::Mutex::new(None::<Error>);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let mut outs: Vec<Out> = Vec::with_capacity(files.len());
    files
        .par_iter()
        .map(|Found { rel, key }| {
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return Out::default();
            }
            let abs = root.join(OsStr::from_bytes(rel));
            let cached = if opts.use_cache { cache.get(rel) } else { None };
            match hash_one(&abs, Some(*key), cached, started) {
                Ok(h) => {
                    if let Some(p) = opts.progress {
                        p.file_done(h.size, h.read);
                    }
                    Out {
                        hash: h.hash,
                        read: h.read,
                        cacheable: h.cache.is_some(),
                    }
                }
                Err(e) => {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                    Out::default()
                }
            }
        })
        .collect_into_vec(&mut outs);
    if let Some(p) = opts.progress {
        p.finish();
    }
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let files_read = outs.iter().filter(|o| o.read).count() as u64;
    let bytes_read = files
        .iter()
        .zip(&outs)
        .filter(|(_, o)| o.read)
        .map(|(f, _)| f.key.size)
        .sum();
    let cacheable = outs.iter().filter(|o| o.cacheable).count();
    if files_read > 0 || cache.len() != cacheable {
        let entries = files
            .iter()
            .zip(&outs)
            .filter(|(_, o)| o.cacheable)
            .map(|(f, o)| {
                let c = Cached {
                    key: f.key,
                    hash: o.hash,
                };
                (f.rel.as_slice(), c)
            });
        // A cache that cannot be written only costs a re-read next time.
        let _ = cache.save(ExactLen(entries, cacheable));
    }
    drop(cache);
    let entries: Vec<Entry> = files
        .into_iter()
        .zip(outs)
        .map(|(f, o)| Entry {
            path: f.rel,
            hash: o.hash,
            size: Some(f.key.size),
        })
        .collect();
    let manifest = Manifest { entries };
    Ok(Hashed {
        kind: Kind::Dir,
        digest: manifest.digest(),
        files: manifest.entries.len() as u64,
        bytes: manifest.bytes().unwrap_or(0),
        files_read,
        bytes_read,
        manifest: Some(manifest),
        skipped,
    })
}

/// An iterator whose length is known from elsewhere (for [`StatCache::save`]'s header).
struct ExactLen<I>(I, usize);

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.0.next();
        if item.is_some() {
            self.1 -= 1;
        }
        item
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}

/// The relative path of an entry as an `OsStr` (for joining onto a root).
pub fn entry_os_path(entry: &Entry) -> &OsStr {
    OsStr::from_bytes(&entry.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_and_rejects_bad_text() {
        let d = Digest::of_bytes(b"abc");
        let s = d.to_string();
        assert!(s.starts_with("blake3:"));
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        for bad in [
            "",
            "blake3:",
            "sha256:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
            "blake3:6437B3AC38465133FFB63B75273A8DB548C558465D79DB03FD359C6CD5BD9D85",
            "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d8",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn manifest_escapes_like_b3sum_and_parses_back() {
        let m = Manifest {
            entries: vec![
                Entry {
                    path: b"a\\b".to_vec(),
                    hash: Digest::of_bytes(b"1"),
                    size: None,
                },
                Entry {
                    path: b"line\nbreak".to_vec(),
                    hash: Digest::of_bytes(b"2"),
                    size: None,
                },
                Entry {
                    path: b"plain.txt".to_vec(),
                    hash: Digest::of_bytes(b"3"),
                    size: None,
                },
            ],
        };
        let text = String::from_utf8(m.to_text()).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert!(lines[0].starts_with('\\') && lines[0].ends_with("  a\\\\b"));
        assert!(lines[1].starts_with('\\') && lines[1].ends_with("  line\\nbreak"));
        assert!(!lines[2].starts_with('\\'));
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), m);
        assert_eq!(m.digest(), Digest::of_bytes(text.as_bytes()));
    }

    #[test]
    fn names_that_are_not_utf8_are_kept_exactly() {
        let m = Manifest {
            entries: vec![
                Entry {
                    path: b"bad\xfename".to_vec(),
                    hash: Digest::of_bytes(b"1"),
                    size: None,
                },
                Entry {
                    path: b"bad\xffname".to_vec(),
                    hash: Digest::of_bytes(b"2"),
                    size: None,
                },
            ],
        };
        let text = String::from_utf8(m.to_text()).unwrap();
        assert!(
            text.contains("  bad\\xfename\n") && text.contains("  bad\\xffname\n"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.starts_with('\\')));
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), m);
        assert_eq!(m.entries[1].shown(), "bad\\xffname");
    }

    #[test]
    fn manifest_parse_rejects_garbage() {
        assert!(Manifest::parse(b"zz  a\n").is_err());
        assert!(Manifest::parse(b"no separator\n").is_err());
        let h = Digest::of_bytes(b"x").hex();
        let bad_escape = format!("\\{h}  a\\qb\n");
        assert!(Manifest::parse(bad_escape.as_bytes()).is_err());
    }

    #[test]
    fn directory_order_is_by_whole_path_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/b"), b"x").unwrap();
        std::fs::write(dir.path().join("a.txt"), b"y").unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let h = hash_dir(dir.path(), &HashOptions::default()).unwrap();
        let paths: Vec<String> = h
            .manifest
            .unwrap()
            .entries
            .iter()
            .map(|e| e.path_lossy())
            .collect();
        assert_eq!(paths, ["a.txt", "a/b"]);
        assert_eq!(h.files, 2);
        assert_eq!(h.bytes, 2);
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink("..", dir.path().join("d/up")).unwrap();
        match hash_dir(dir.path(), &HashOptions::default()) {
            Err(Error::SymlinkLoop { path }) => assert!(path.ends_with("d/up"), "{path:?}"),
            other => panic!("expected a loop error, got {other:?}"),
        }
    }

    #[test]
    fn dangling_symlink_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("broken")).unwrap();
        let h = hash_dir(dir.path(), &HashOptions::default()).unwrap();
        assert_eq!(h.files, 1);
        assert_eq!(h.skipped.len(), 1);
        assert_eq!(h.skipped[0].path, PathBuf::from("broken"));
    }
}
