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

use crate::content::cache::{now_ns, trustworthy, CacheReader, Cached, StatCache, StatKey};
use crate::content::walk;
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

pub use crate::content::manifest::{Entry, Manifest};

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
    /// A cold hash reads files while it is still finding them: `files` more were found
    /// (after a `start(0)`).
    fn found(&self, _files: u64) {}
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
pub(crate) struct FileHash {
    pub(crate) hash: Digest,
    size: u64,
    read: bool,
    /// What to cache for it: `None` for a racy file.
    pub(crate) cache: Option<Cached>,
}

thread_local! {
    static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn changed_while_reading(path: &Path) -> Error {
    Error::ChangedWhileReading {
        path: path.to_path_buf(),
    }
}

/// BLAKE3 of an open file under [`MMAP_MIN`] whose stat before opening was `before`, read into
/// the thread's buffer; a `fstat` after the read must still show `before` (else the file changed
/// while it was read: an error naming `path()`).
///
/// One `read` of one byte more than the expected size normally does it: a short read at the
/// expected size is the end of the file, or a change that the `fstat` then shows.
pub(crate) fn read_small(
    mut file: std::fs::File,
    before: StatKey,
    path: impl Fn() -> PathBuf,
) -> Result<Digest> {
    use std::io::Read;
    let want = before.size as usize + 1;
    let hash = BUF.with(|buf| -> Result<Digest> {
        let mut buf = buf.borrow_mut();
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let mut got = 0;
        while got < want {
            match file.read(&mut buf[got..want]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    if got == want - 1 {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Io {
                        op: "cannot read",
                        path: path(),
                        source: e,
                    })
                }
            }
        }
        if got != want - 1 {
            return Err(Error::ChangedWhileReading { path: path() });
        }
        Ok(blake3::hash(&buf[..got]).into())
    })?;
    let after = StatKey::of(&file.metadata().map_err(|e| Error::Io {
        op: "cannot read",
        path: path(),
        source: e,
    })?);
    if after != before {
        return Err(Error::ChangedWhileReading { path: path() });
    }
    Ok(hash)
}

/// Hash one file, using `cached` when it is still valid. The file is stat'ed before and after it
/// is read; any difference (an append, a rewrite, a replacement) is an error, never a digest.
///
/// `known` is the file's stat from the walk, when there was one: a cache hit then costs no
/// system call at all, and a read costs open, read, one fstat and close.
pub(crate) fn hash_one(
    path: &Path,
    known: Option<StatKey>,
    cached: Option<Cached>,
    started: i64,
) -> Result<FileHash> {
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
    let file = std::fs::File::open(path).map_err(|e| Error::reading("file", path, e))?;
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
        let after = StatKey::of(&file.metadata().ctx("cannot read", path)?);
        // BLAKE3 opened the file again by name: compare the name's stat too, so a
        // replacement in between is caught.
        let replaced = std::fs::metadata(path).map(|m| StatKey::of(&m)).ok() != Some(before);
        if after != before || replaced {
            return Err(changed_while_reading(path));
        }
        hasher.finalize().into()
    } else {
        read_small(file, before, || path.to_path_buf())?
    };
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
/// Two ways, by whether there is a stat cache to use:
///
/// * **cold** (`--no-cache`, no cache file, or one of another format or root): the walk itself
///   reads and hashes each directory's files as it lists them ([`walk::walk_tree`]).
/// * **warm**: the walk only stats; the cache file is then read front to back and merged with
///   the walk's sorted list in one pass ([`CacheReader`]), never held whole; what it does not
///   vouch for is read in parallel afterwards. Should the cache fail its checksum at the end,
///   nothing it gave is used and every file is read.
///
/// Memory is what matters at a million files: the walk's packed chunks (paths end to end, a
/// stat, a digest and a flag byte per file) are the only per-file list, and become the
/// manifest in place.
pub fn hash_dir(root: &Path, opts: &HashOptions<'_>) -> Result<Hashed> {
    let started = now_ns();
    // Confinement is for what the repository holds; a root the user named outside it is the
    // user's, and is walked as it is.
    let confine = opts
        .confine
        .filter(|b| std::fs::canonicalize(root).is_ok_and(|r| r.starts_with(b)));
    let reader = match (opts.use_cache, opts.cache_dir) {
        (true, Some(dir)) => CacheReader::open(dir, root),
        _ => None,
    };
    let cold = reader.is_none().then_some(walk::HashIn {
        started,
        progress: opts.progress,
    });
    if let (Some(p), Some(_)) = (opts.progress, cold) {
        p.start(0);
    }
    let walk::Tree {
        mut chunks,
        skipped,
    } = walk::walk_tree(root, confine, cold)?;
    let files: usize = chunks.iter().map(walk::Chunk::len).sum();
    let rest = reader.is_some();
    let (files_read, bytes_read) = hash_chunks(
        root,
        &mut chunks,
        reader,
        opts.cache_dir.map(|d| (d, root)),
        started,
        opts.progress,
        rest.then_some(files as u64),
    )?;
    let manifest = manifest_of(chunks);
    Ok(Hashed {
        kind: Kind::Dir,
        digest: manifest.digest(),
        files: manifest.len() as u64,
        bytes: manifest.bytes().unwrap_or(0),
        files_read,
        bytes_read,
        manifest: Some(manifest),
        skipped,
    })
}

/// The manifest of hashed chunks (their digests known), with the walk's sizes.
pub(crate) fn manifest_of(chunks: Vec<walk::Chunk>) -> Manifest {
    let segments = chunks
        .into_iter()
        .map(|c| {
            let mut seg = c.seg;
            seg.sizes = c.keys.iter().map(|k| k.size).collect();
            seg
        })
        .collect();
    Manifest::from_segments(segments)
}

/// Finish hashing walked files: take what the cache `reader` vouches for, read the rest in
/// parallel (when `rest` gives their number: a cold walk has read them all already), and save
/// the stat cache of `save_to` (cache directory, root) when anything changed. Returns the
/// files and bytes read, here or by the walk.
pub(crate) fn hash_chunks(
    root: &Path,
    chunks: &mut [walk::Chunk],
    reader: Option<CacheReader>,
    save_to: Option<(&Path, &Path)>,
    started: i64,
    progress: Option<&dyn Progress>,
    rest: Option<u64>,
) -> Result<(u64, u64)> {
    // Entries in a sound cache file that was read (`None`: none, or not sound).
    let mut cached_entries = None;
    if let Some(reader) = reader {
        cached_entries = merge_cache(reader, chunks);
        if cached_entries.is_none() {
            for c in chunks.iter_mut() {
                c.flags.fill(0);
            }
        }
    }
    if let Some(files) = rest {
        if let Some(p) = progress {
            p.start(files);
        }
        chunks
            .par_iter_mut()
            .try_for_each(|c| hash_rest(root, c, started, progress))?;
    }
    if let Some(p) = progress {
        p.finish();
    }
    let (mut files_read, mut bytes_read, mut cacheable) = (0u64, 0u64, 0usize);
    for c in chunks.iter() {
        for (k, f) in c.keys.iter().zip(&c.flags) {
            if f & walk::READ != 0 {
                files_read += 1;
                bytes_read += k.size;
            }
            cacheable += usize::from(f & walk::CACHEABLE != 0);
        }
    }
    if files_read > 0 || cached_entries != Some(cacheable as u64) {
        if let Some((dir, root)) = save_to {
            let entries = chunks.iter().flat_map(|c| {
                (0..c.len())
                    .filter(|&i| c.flags[i] & walk::CACHEABLE != 0)
                    .map(|i| {
                        let cached = Cached {
                            key: c.keys[i],
                            hash: c.seg.hashes[i],
                        };
                        (c.seg.path(i), cached)
                    })
            });
            // A cache that cannot be written only costs a re-read next time.
            let _ = StatCache::open(dir, root, false).save(ExactLen(entries, cacheable));
        }
    }
    Ok((files_read, bytes_read))
}

/// Take from the cache every digest whose stat still matches the walk's, in one pass over both
/// sorted lists. The number of entries in the cache when the whole file proved sound, else
/// `None` (and then what it gave must not be used).
fn merge_cache(mut reader: CacheReader, chunks: &mut [walk::Chunk]) -> Option<u64> {
    use std::cmp::Ordering;
    for c in chunks.iter_mut() {
        for i in 0..c.len() {
            let path = c.seg.path(i);
            while let Some((cpath, cached)) = reader.peek() {
                match cpath.cmp(path) {
                    Ordering::Less => reader.advance(),
                    Ordering::Greater => break,
                    Ordering::Equal => {
                        if cached.valid_for(&c.keys[i]) {
                            c.seg.hashes[i] = cached.hash;
                            c.flags[i] = walk::DONE | walk::CACHEABLE;
                        }
                        reader.advance();
                        break;
                    }
                }
            }
        }
    }
    reader.finish()
}

/// Read, in parallel, the files of a chunk whose digest the cache did not give.
fn hash_rest(
    root: &Path,
    c: &mut walk::Chunk,
    started: i64,
    progress: Option<&dyn Progress>,
) -> Result<()> {
    let crate::content::manifest::Segment {
        paths,
        ends,
        hashes,
        ..
    } = &mut c.seg;
    let (paths, ends) = (&*paths, &*ends);
    hashes
        .par_iter_mut()
        .zip(c.flags.par_iter_mut())
        .zip(c.keys.par_iter())
        .enumerate()
        .with_min_len(64)
        .try_for_each(|(i, ((hash, flags), key))| -> Result<()> {
            if *flags & walk::DONE == 0 {
                let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                let rel = &paths[start..ends[i] as usize];
                let abs = root.join(OsStr::from_bytes(rel));
                let h = hash_one(&abs, Some(*key), None, started)?;
                *hash = h.hash;
                *flags = walk::READ
                    | walk::DONE
                    | if h.cache.is_some() {
                        walk::CACHEABLE
                    } else {
                        0
                    };
            }
            if let Some(p) = progress {
                p.file_done(key.size, *flags & walk::READ != 0);
            }
            Ok(())
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
pub fn entry_os_path<'a>(entry: &Entry<'a>) -> &'a OsStr {
    OsStr::from_bytes(entry.path)
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
    fn directory_order_is_by_whole_path_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/b"), b"x").unwrap();
        std::fs::write(dir.path().join("a.txt"), b"y").unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let h = hash_dir(dir.path(), &HashOptions::default()).unwrap();
        let paths: Vec<String> = h.manifest.unwrap().iter().map(|e| e.path_lossy()).collect();
        assert_eq!(paths, ["a.txt", "a/b"]);
        assert_eq!(h.files, 2);
        assert_eq!(h.bytes, 2);
    }

    /// Cold, warm, a damaged cache and a changed file: the digest is always the true one, a
    /// damaged cache gives nothing (every file is read again), and a warm run reads only what
    /// changed.
    #[test]
    fn warm_runs_merge_the_cache_and_a_damaged_one_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (root, cache) = (dir.path().join("ds"), dir.path().join("cache"));
        for (i, name) in ["a", "b/c", "b/d", "b.txt", "e"].iter().enumerate() {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![i as u8; 100 + i]).unwrap();
        }
        // ctime cannot be set: wait until no file is racy (a condition, not a guessed time).
        crate::content::cache::settle(&root).unwrap();
        let opts = HashOptions {
            cache_dir: Some(&cache),
            use_cache: true,
            ..HashOptions::default()
        };
        let truth = hash_dir(&root, &HashOptions::default()).unwrap();
        let cold = hash_dir(&root, &opts).unwrap();
        assert_eq!((cold.digest, cold.files_read), (truth.digest, 5));
        let warm = hash_dir(&root, &opts).unwrap();
        assert_eq!((warm.digest, warm.files_read), (truth.digest, 0));
        assert_eq!(warm.manifest, truth.manifest);

        // Flip a bit of a cached digest: the checksum fails at the end of the merge.
        let file = std::fs::read_dir(&cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        let at = bad.len() - 32 - 5;
        bad[at] ^= 1;
        std::fs::write(&file, &bad).unwrap();
        let damaged = hash_dir(&root, &opts).unwrap();
        assert_eq!((damaged.digest, damaged.files_read), (truth.digest, 5));
        assert_eq!(std::fs::read(&file).unwrap(), good, "rebuilt as it was");

        // A same-size rewrite is seen (its ctime moved), and only it is read.
        std::fs::write(root.join("b/c"), vec![9u8; 101]).unwrap();
        crate::content::cache::settle(&root).unwrap();
        let changed = hash_dir(&root, &opts).unwrap();
        assert_eq!(changed.files_read, 1);
        assert_eq!(
            changed.digest,
            hash_dir(&root, &HashOptions::default()).unwrap().digest
        );
        assert_ne!(changed.digest, truth.digest);
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
