//! The stat cache: lets an unchanged file skip being read again.
//!
//! One cache file per hashed root (a dataset, checkpoint or output), at
//! `.cairn/cache/stat/<id>.stat`, where `<id>` is derived from the root's absolute path. It maps
//! each file's relative path to the file's `stat` identity (device, inode, size, mtime and ctime in
//! nanoseconds) and its BLAKE3.
//!
//! A cached digest is used only when every stat field matches. An entry is only ever made for a
//! file that is not *racy*: a file whose mtime or ctime falls within [`racy_window`] of the moment
//! hashing started could be changed again within the same timestamp tick without its stat
//! changing, so it is not cached and is read again next time (git's racy-clean rule). ctime cannot
//! be set by users, so an in-place rewrite of the same size with the mtime put back is still
//! caught.
//!
//! The file is written whole to a temporary file and renamed into place, and ends with the BLAKE3
//! of everything before it. A directory's cache is read by [`CacheReader`], front to back in a
//! small buffer, merged with the walk's sorted list (a million-file cache is about 90 MB, and is
//! never held whole); a single file's by [`StatCache::open`]. A cache that is truncated, corrupt, of another format version, or made
//! for another root is ignored (and rebuilt), never trusted. Layout, all integers little-endian:
//!
//! ```text
//! "CAIRNSC2" | u32 root length | root path bytes | u64 entry count
//! entries, sorted by path: u32 path length | path | u64 dev | u64 ino | u64 size
//!                          | i64 mtime ns | i64 ctime ns | 32-byte BLAKE3
//! 32-byte BLAKE3 of all of the above
//! ```

use std::fs::Metadata;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::content::digest::Digest;
use crate::error::Result;

const MAGIC: &[u8; 8] = b"CAIRNSC2";
const FIXED: usize = 8 * 5 + 32;

/// The fixed part of an entry (`FIXED` bytes): device, inode, size, mtime and ctime as
/// little-endian `u64`s, then the digest.
fn decode_fixed(f: &[u8]) -> Cached {
    let u = |i: usize| u64::from_le_bytes(f[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Cached {
        key: StatKey {
            dev: u(0),
            ino: u(1),
            size: u(2),
            mtime_ns: u(3) as i64,
            ctime_ns: u(4) as i64,
        },
        hash: Digest(f[40..72].try_into().expect("32 bytes")),
    }
}

/// What identifies one version of a file, from `stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatKey {
    /// Device id.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
}

impl StatKey {
    /// The key of a file's metadata.
    pub fn of(meta: &Metadata) -> StatKey {
        StatKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

/// How close to the hashing moment a timestamp makes an entry racy: 100 ms on file systems with
/// sub-second timestamps (the kernel's coarse clock lags by up to a tick), 2 s where timestamps are
/// whole seconds (2 s covers FAT's granularity).
pub fn racy_window(key: &StatKey) -> i64 {
    if key.mtime_ns % 1_000_000_000 == 0 && key.ctime_ns % 1_000_000_000 == 0 {
        2_000_000_000
    } else {
        100_000_000
    }
}

/// May a file with this stat, hashed after `started` (nanoseconds since the epoch, taken before
/// the file was examined), be cached? Not when it was modified so close to `started` that a
/// further change could leave its timestamps as they are.
pub fn trustworthy(key: &StatKey, started: i64) -> bool {
    key.mtime_ns.max(key.ctime_ns) + racy_window(key) < started
}

/// A cache entry as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cached {
    /// The file's stat identity when it was hashed.
    pub key: StatKey,
    /// The file's BLAKE3.
    pub hash: Digest,
}

impl Cached {
    /// May this entry stand in for a file whose stat is now `now`?
    pub fn valid_for(&self, now: &StatKey) -> bool {
        self.key == *now
    }
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Wait until every regular file below `dir` (`.git` left out) is outside the racy window, so
/// that the next hash trusts its stat and caches it. For tests and benchmarks: the window is
/// measured from the files' own timestamps with the rule of [`trustworthy`]; ctime cannot be
/// set back, so this waits for that condition rather than sleeping a guessed time, and holds on
/// a loaded machine and on file systems with whole-second timestamps alike.
pub fn settle(dir: &Path) -> std::io::Result<()> {
    let mut keys = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let meta = std::fs::symlink_metadata(e.path())?;
            if meta.is_dir() {
                if e.file_name() != ".git" {
                    stack.push(e.path());
                }
            } else if meta.is_file() {
                keys.push(StatKey::of(&meta));
            }
        }
    }
    for key in keys {
        while !trustworthy(&key, now_ns()) {
            let left = key.mtime_ns.max(key.ctime_ns) + racy_window(&key) - now_ns();
            std::thread::sleep(std::time::Duration::from_nanos(left.max(1_000_000) as u64));
        }
    }
    Ok(())
}

/// The loaded cache of one root.
#[derive(Debug, Default)]
pub struct StatCache {
    file: Option<PathBuf>,
    root: Vec<u8>,
    raw: Vec<u8>,
    offsets: Vec<usize>,
}

impl StatCache {
    /// A cache that finds nothing and saves nothing.
    pub fn disabled() -> StatCache {
        StatCache::default()
    }

    /// The cache for `root` in `dir`. `read` false ignores what is there (it is still replaced
    /// on [`StatCache::save`]). Anything unreadable is treated as empty.
    pub fn open(dir: &Path, root: &Path, read: bool) -> StatCache {
        let root_bytes = root.as_os_str().as_bytes().to_vec();
        let file = cache_file(dir, root);
        let mut cache = StatCache {
            file: Some(file),
            root: root_bytes,
            raw: Vec::new(),
            offsets: Vec::new(),
        };
        if read {
            let file = cache.file.as_ref().expect("set above");
            if let Ok(raw) = crate::fs::read_bounded(file, crate::fs::MAX_MANIFEST_BYTES) {
                if let Some(offsets) = parse(&raw, &cache.root) {
                    cache.raw = raw;
                    cache.offsets = offsets;
                }
            }
        }
        cache
    }

    /// Number of entries loaded.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether nothing was loaded.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    fn path_at(&self, off: usize) -> &[u8] {
        let len = u32::from_le_bytes(self.raw[off..off + 4].try_into().expect("4 bytes")) as usize;
        &self.raw[off + 4..off + 4 + len]
    }

    /// The entry for a relative path (`b""` for a root that is a single file).
    pub fn get(&self, rel: &[u8]) -> Option<Cached> {
        let i = self
            .offsets
            .binary_search_by(|&off| self.path_at(off).cmp(rel))
            .ok()?;
        let off = self.offsets[i];
        let len = self.path_at(off).len();
        Some(decode_fixed(
            &self.raw[off + 4 + len..off + 4 + len + FIXED],
        ))
    }

    /// Replace the cache file with these entries (sorted by path, as a manifest is). Written to
    /// a temporary file and renamed by [`crate::fs::atomic_write_with`] (so never through a
    /// symlink); not fsynced (a cache lost in a crash is only rebuilt).
    pub fn save<'a>(
        &self,
        entries: impl ExactSizeIterator<Item = (&'a [u8], Cached)>,
    ) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        crate::fs::atomic_write_with(file, false, |out| {
            let mut w = HashingWriter::new(out);
            w.write_all(MAGIC)?;
            w.write_all(&(self.root.len() as u32).to_le_bytes())?;
            w.write_all(&self.root)?;
            w.write_all(&(entries.len() as u64).to_le_bytes())?;
            for (path, c) in entries {
                w.write_all(&(path.len() as u32).to_le_bytes())?;
                w.write_all(path)?;
                for v in [
                    c.key.dev,
                    c.key.ino,
                    c.key.size,
                    c.key.mtime_ns as u64,
                    c.key.ctime_ns as u64,
                ] {
                    w.write_all(&v.to_le_bytes())?;
                }
                w.write_all(&c.hash.0)?;
            }
            w.finish()
        })?;
        Ok(())
    }
}

/// The cache file of `root` in `dir`.
fn cache_file(dir: &Path, root: &Path) -> PathBuf {
    let id = blake3::hash(root.as_os_str().as_bytes()).to_hex();
    dir.join(format!("{}.stat", &id[..32]))
}

/// Reads one root's cache file front to back, an entry at a time, in a small buffer (a
/// million-file cache is about 90 MB; [`StatCache::open`] holds all of it), checking the
/// checksum as it goes. The entries come in path order, so a caller with a sorted list of files
/// merges the two in one pass. What it gave counts only if [`CacheReader::finish`] then says
/// the whole file was sound; the same checks as [`StatCache::open`]'s apply.
pub struct CacheReader {
    file: std::fs::File,
    buf: Vec<u8>,
    /// Start of the current entry in `buf`.
    pos: usize,
    /// Body bytes (everything before the trailer) not yet read from the file.
    left: u64,
    hasher: blake3::Hasher,
    /// Entries not yet parsed.
    count: u64,
    /// Entries in the file, from its header.
    total: u64,
    /// The current entry (its path at `pos + 4` in `buf`), once parsed.
    current: Option<(usize, Cached)>,
    /// The previous entry's path, for the order check.
    prev: Vec<u8>,
    bad: bool,
}

const READ_BLOCK: usize = 1 << 20;

impl CacheReader {
    /// The cache of `root` in `dir`, its header read and checked; `None` when there is no such
    /// file or it is not a cache of this root in this format.
    pub fn open(dir: &Path, root: &Path) -> Option<CacheReader> {
        let (file, size) = crate::fs::open_regular(&cache_file(dir, root)).ok()?;
        let body = size.checked_sub(32)?;
        let mut r = CacheReader {
            file,
            buf: Vec::with_capacity(READ_BLOCK),
            pos: 0,
            left: body,
            hasher: blake3::Hasher::new(),
            count: 0,
            total: 0,
            current: None,
            prev: Vec::new(),
            bad: false,
        };
        let root = root.as_os_str().as_bytes();
        let head = 8 + 4 + root.len() + 8;
        if !r.fill(head) || &r.buf[..8] != MAGIC {
            return None;
        }
        let root_len = u32::from_le_bytes(r.buf[8..12].try_into().ok()?) as usize;
        if root_len != root.len() || &r.buf[12..12 + root_len] != root {
            return None;
        }
        r.total = u64::from_le_bytes(r.buf[12 + root_len..head].try_into().ok()?);
        // Each entry takes at least 4 + FIXED bytes.
        if r.total > body / (4 + FIXED) as u64 {
            return None;
        }
        r.count = r.total;
        r.pos = head;
        Some(r)
    }

    /// Make at least `n` bytes from `pos` available in `buf`; false at the end of the body or
    /// on a read error (which also marks the file bad).
    fn fill(&mut self, n: usize) -> bool {
        use std::io::Read;
        if self.buf.len() - self.pos >= n {
            return true;
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        while self.buf.len() < n {
            if self.left == 0 {
                return false;
            }
            let want = (n - self.buf.len()).max(READ_BLOCK).min(self.left as usize);
            let start = self.buf.len();
            self.buf.resize(start + want, 0);
            match self.file.read(&mut self.buf[start..]) {
                Ok(0) | Err(_) => {
                    self.buf.truncate(start);
                    self.bad = true;
                    return false;
                }
                Ok(got) => {
                    self.buf.truncate(start + got);
                    self.hasher.update(&self.buf[start..]);
                    self.left -= got as u64;
                }
            }
        }
        true
    }

    /// The current entry: its path and what it records; `None` after the last one (or at
    /// anything malformed, which makes [`CacheReader::finish`] say false).
    pub fn peek(&mut self) -> Option<(&[u8], Cached)> {
        if self.current.is_none() {
            if self.bad || self.count == 0 || !self.fill(4) {
                return None;
            }
            let len =
                u32::from_le_bytes(self.buf[self.pos..self.pos + 4].try_into().ok()?) as usize;
            if !self.fill(4 + len + FIXED) {
                self.bad = true;
                return None;
            }
            let path = &self.buf[self.pos + 4..self.pos + 4 + len];
            if self.count != self.total && self.prev.as_slice() >= path {
                self.bad = true;
                return None;
            }
            let cached = decode_fixed(&self.buf[self.pos + 4 + len..self.pos + 4 + len + FIXED]);
            self.current = Some((len, cached));
        }
        let (len, cached) = self.current?;
        Some((&self.buf[self.pos + 4..self.pos + 4 + len], cached))
    }

    /// Move past the current entry.
    pub fn advance(&mut self) {
        if self.peek().is_none() {
            return;
        }
        let (len, _) = self.current.take().expect("peeked");
        self.prev.clear();
        self.prev
            .extend_from_slice(&self.buf[self.pos + 4..self.pos + 4 + len]);
        self.pos += 4 + len + FIXED;
        self.count -= 1;
    }

    /// Read the rest, check the checksum, the count and the order: `Some(entries)` when the
    /// whole file was sound, so that everything [`CacheReader::peek`] gave may be used.
    pub fn finish(mut self) -> Option<u64> {
        while self.peek().is_some() {
            self.advance();
        }
        if self.bad || self.count != 0 || self.buf.len() != self.pos || self.left != 0 {
            return None;
        }
        let mut trailer = [0u8; 32];
        std::io::Read::read_exact(&mut self.file, &mut trailer).ok()?;
        (self.hasher.finalize().as_bytes() == &trailer).then_some(self.total)
    }
}

/// Writes through a 1 MiB buffer, hashing each full buffer (BLAKE3 is much faster on large
/// inputs than on the small pieces an entry is made of).
struct HashingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
    hasher: blake3::Hasher,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            buf: Vec::with_capacity(1 << 20),
            hasher: blake3::Hasher::new(),
        }
    }

    fn drain(&mut self) -> std::io::Result<()> {
        self.hasher.update(&self.buf);
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Write what is buffered and the BLAKE3 of everything written.
    fn finish(mut self) -> std::io::Result<()> {
        self.drain()?;
        let trailer = *self.hasher.finalize().as_bytes();
        self.inner.write_all(&trailer)?;
        self.inner.flush()
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 20 {
            self.drain()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Check a cache file and return the offset of each entry; `None` for anything unexpected.
fn parse(raw: &[u8], root: &[u8]) -> Option<Vec<usize>> {
    let body_len = raw.len().checked_sub(32)?;
    let (body, trailer) = raw.split_at(body_len);
    if blake3::hash(body).as_bytes() != trailer {
        return None;
    }
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let end = pos.checked_add(n)?;
        let s = body.get(*pos..end)?;
        *pos = end;
        Some(s)
    };
    if take(&mut pos, 8)? != MAGIC {
        return None;
    }
    let root_len = u32::from_le_bytes(take(&mut pos, 4)?.try_into().ok()?) as usize;
    if take(&mut pos, root_len)? != root {
        return None;
    }
    let count = u64::from_le_bytes(take(&mut pos, 8)?.try_into().ok()?);
    // Each entry takes at least 4 + FIXED bytes: refuse counts the body cannot hold before
    // allocating for them.
    if count > (body.len() / (4 + FIXED)) as u64 {
        return None;
    }
    let mut offsets = Vec::with_capacity(count as usize);
    let mut prev: Option<&[u8]> = None;
    for _ in 0..count {
        let off = pos;
        let len = u32::from_le_bytes(take(&mut pos, 4)?.try_into().ok()?) as usize;
        let path = take(&mut pos, len)?;
        if prev.is_some_and(|p| p >= path) {
            return None;
        }
        prev = Some(path);
        take(&mut pos, FIXED)?;
        offsets.push(off);
    }
    (pos == body.len()).then_some(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Cached {
        Cached {
            key: StatKey {
                dev: 1,
                ino: n as u64,
                size: 10,
                mtime_ns: 1_000_000_123,
                ctime_ns: 1_000_000_456,
            },
            hash: Digest([n; 32]),
        }
    }

    #[test]
    fn round_trip_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/data/train");
        let c = StatCache::open(dir.path(), root, true);
        assert!(c.is_empty());
        let paths: [&[u8]; 3] = [b"a", b"b/c", b"d"];
        c.save(paths.iter().enumerate().map(|(i, p)| (*p, entry(i as u8))))
            .unwrap();
        let c = StatCache::open(dir.path(), root, true);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(b"b/c"), Some(entry(1)));
        assert_eq!(c.get(b"zz"), None);
        // Not read when asked not to.
        assert!(StatCache::open(dir.path(), root, false).is_empty());
        // Another root's cache has another file name, and a renamed one is refused.
        let other = StatCache::open(dir.path(), Path::new("/data/val"), true);
        assert!(other.is_empty());
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let other_file = other.file.clone().unwrap();
        std::fs::copy(&file, &other_file).unwrap();
        assert!(StatCache::open(dir.path(), Path::new("/data/val"), true).is_empty());
    }

    #[test]
    fn damaged_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/r");
        let c = StatCache::open(dir.path(), root, true);
        c.save([(&b"a"[..], entry(1))].into_iter()).unwrap();
        let file = c.file.clone().unwrap();
        let good = std::fs::read(&file).unwrap();
        for bad in [
            good[..good.len() / 2].to_vec(),
            vec![0u8; good.len()],
            b"garbage".to_vec(),
            Vec::new(),
            {
                let mut flipped = good.clone();
                flipped[20] ^= 1;
                flipped
            },
        ] {
            std::fs::write(&file, &bad).unwrap();
            assert!(StatCache::open(dir.path(), root, true).is_empty());
        }
    }

    /// The streaming reader gives what was saved, in order, and says at the end whether the
    /// file was sound: truncated, bit-flipped, unsorted or foreign files are not.
    #[test]
    fn reader_streams_entries_and_checks_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new("/data/train");
        let c = StatCache::open(dir.path(), root, false);
        let names: Vec<Vec<u8>> = (0..5000)
            .map(|i| format!("d/{i:05}").into_bytes())
            .collect();
        let save = |order: &[usize]| {
            c.save(order.iter().map(|&i| (names[i].as_slice(), entry(i as u8))))
                .unwrap()
        };
        let all: Vec<usize> = (0..names.len()).collect();
        save(&all);
        let read_all = || {
            let mut r = CacheReader::open(dir.path(), root)?;
            let mut got = Vec::new();
            while let Some((p, e)) = r.peek() {
                got.push((p.to_vec(), e));
                r.advance();
            }
            r.finish().map(|n| (n, got))
        };
        let (n, got) = read_all().unwrap();
        assert_eq!(n, 5000);
        assert_eq!(got.len(), 5000);
        assert_eq!(got[4321], (names[4321].clone(), entry(4321u32 as u8)));
        assert!(CacheReader::open(dir.path(), Path::new("/data/val")).is_none());

        let file = c.file.clone().unwrap();
        let good = std::fs::read(&file).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        for bad in [good[..good.len() - 1].to_vec(), flipped] {
            std::fs::write(&file, &bad).unwrap();
            assert!(read_all().is_none());
        }
        let mut unsorted = all.clone();
        unsorted.swap(10, 11);
        save(&unsorted);
        assert!(read_all().is_none());
    }

    #[test]
    fn changed_or_racy_files_are_not_trusted() {
        let e = entry(1);
        assert!(e.valid_for(&e.key));
        let mut other = e.key;
        other.ctime_ns += 1;
        assert!(!e.valid_for(&other), "ctime differs");
        // Hashed in the same tick as the last change: not cached.
        assert!(!trustworthy(&e.key, e.key.ctime_ns + 50_000_000));
        assert!(trustworthy(&e.key, e.key.ctime_ns + 150_000_000));
        // Whole-second timestamps get a 2 s window.
        let coarse = StatKey {
            mtime_ns: 1_000_000_000,
            ctime_ns: 1_000_000_000,
            ..e.key
        };
        assert!(!trustworthy(&coarse, 2_500_000_000));
        assert!(trustworthy(&coarse, 3_500_000_000));
    }
}
