//! Sharded hashing: one directory hashed by many machines, each taking a share of its bytes,
//! and the shares merged into the digest and manifest one machine would have made
//! (spec/lockfile.md §9.6).
//!
//! Every shard walks the whole tree (stat only: cheap next to reading the bytes), splits the
//! sorted file list into N contiguous ranges of about equal weight (a file weighs its size plus
//! [`FILE_WEIGHT`], the cost of opening it), and hashes its own range. Since the split is a
//! function of the listing alone, shards that saw the same listing agree on it without talking
//! to each other. Each writes a *part*: its range's manifest lines with their sizes, the
//! listing's digest, and a checksum line at the end. With a listing made once ([`list_tree`],
//! [`hash_shard_listed`]) the shards read it instead of walking, and look only at their own
//! files.
//!
//! [`merge_files`] puts the parts together and proves they cover the tree exactly once: every part
//! saw the same listing (same digest), every shard 1..=N is there once, every part is complete,
//! and the concatenated entries, in order, have exactly that listing digest. The merged
//! manifest is then the one-machine manifest line for line, so its BLAKE3 is the directory
//! digest, byte for byte.

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::content::cache::{now_ns, CacheReader};
use crate::content::digest::{self, Digest, HashOptions, Skipped};
use crate::content::manifest::{self, Entry, Manifest, Segment};
use crate::content::walk::{self, Chunk};
use crate::error::{Error, IoResultExt, Result};

/// The first line of a part file, with its format version.
pub const PART_MAGIC: &str = "cairn-shard-part";
/// The part format this cairn writes and reads.
pub const PART_VERSION: u32 = 1;
/// The first line of a listing file, with its format version.
pub const LISTING_MAGIC: &str = "cairn-shard-listing";
/// The listing format this cairn writes and reads.
pub const LISTING_VERSION: u32 = 1;
/// What a file weighs beyond its bytes when shards are balanced: about the cost of opening,
/// reading and closing one small file, so that a shard of many tiny files is not overloaded.
pub const FILE_WEIGHT: u64 = 4096;
/// The most shards a directory can be split into.
pub const MAX_SHARDS: u32 = 1 << 16;

/// Which shard: `K/N`, K counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard {
    /// This shard, 1..=n.
    pub k: u32,
    /// How many shards.
    pub n: u32,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl FromStr for Shard {
    type Err = String;
    /// `K/N` with 1 <= K <= N <= 65536.
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || {
            format!("{s:?} is not a shard: expected K/N with 1 <= K <= N (e.g. 2/8; shards count from 1)")
        };
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || k > n {
            return Err(bad());
        }
        if n > MAX_SHARDS {
            return Err(format!("{s:?}: at most {MAX_SHARDS} shards"));
        }
        Ok(Shard { k, n })
    }
}

/// The file name a part gets in a directory of parts: `<name>.<K>-of-<N>.part`.
pub fn part_name(name: &str, shard: Shard) -> String {
    format!("{name}.{}-of-{}.part", shard.k, shard.n)
}

/// What every shard must agree on: the list of files (paths and sizes) it walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    /// BLAKE3 over every file's path length, path and size ([`ListingHasher`]).
    pub digest: Digest,
    /// Number of files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Computes a [`Listing`]: for each file in manifest order, its path's length (u64, little
/// endian), the path's bytes, and its size (u64, little endian). Fed to BLAKE3 in blocks: a
/// million tiny updates would cost more than the hashing.
#[derive(Default)]
pub struct ListingHasher {
    hasher: blake3::Hasher,
    pending: Vec<u8>,
    files: u64,
    bytes: u64,
}

impl ListingHasher {
    /// Add the next file.
    pub fn add(&mut self, path: &[u8], size: u64) {
        self.pending
            .extend_from_slice(&(path.len() as u64).to_le_bytes());
        self.pending.extend_from_slice(path);
        self.pending.extend_from_slice(&size.to_le_bytes());
        if self.pending.len() >= 64 << 10 {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
        self.files += 1;
        self.bytes += size;
    }

    /// The listing of everything added.
    pub fn finish(&self) -> Listing {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.pending);
        Listing {
            digest: hasher.finalize().into(),
            files: self.files,
            bytes: self.bytes,
        }
    }
}

/// The head of a part: whose share of which tree it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHeader {
    /// The directory, as the shard resolved it (canonical, absolute).
    pub root: PathBuf,
    /// Which shard.
    pub shard: Shard,
    /// The whole tree as this shard saw it.
    pub tree: Listing,
    /// Files in this shard's range.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One shard's share: its header and its range's manifest (with sizes).
#[derive(Debug, Clone)]
pub struct Part {
    /// Whose share.
    pub header: PartHeader,
    /// The manifest lines of the range.
    pub manifest: Manifest,
}

/// What hashing one shard did.
#[derive(Debug, Clone)]
pub struct ShardHash {
    /// The part to write.
    pub part: Part,
    /// Entries of this shard's range that were skipped (FIFOs, dangling links...).
    pub skipped: Vec<Skipped>,
    /// Files read (not from the stat cache).
    pub files_read: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

/// The first index of each shard's range in a listing of `weights`, and the end: `n + 1`
/// numbers, non-decreasing. A file goes to the shard in whose share of the total weight its
/// middle falls, so ranges are contiguous and balanced to within one file.
pub fn split(weights: impl Iterator<Item = u64>, total: u128, n: u32) -> Vec<usize> {
    let mut starts = vec![0usize; n as usize + 1];
    let mut before: u128 = 0;
    let mut shard = 0usize;
    let mut count = 0usize;
    for w in weights {
        let s = shard_of(before, w, total, n);
        while shard < s {
            shard += 1;
            starts[shard] = count;
        }
        before += u128::from(w);
        count += 1;
    }
    while shard < n as usize {
        shard += 1;
        starts[shard] = count;
    }
    starts
}

/// The shard (from 0) of a file of weight `w` with `before` weight before it, of `total`: the
/// one in whose share its middle falls, `floor((2 * before + w) * n / (2 * total))`, at most
/// `n - 1`.
fn shard_of(before: u128, w: u64, total: u128, n: u32) -> usize {
    let middle = 2 * before + u128::from(w);
    ((middle * u128::from(n)) / (2 * total.max(1))).min(u128::from(n) - 1) as usize
}

/// The cache identity of one shard of `root`: its range has a stat cache of its own
/// (`.cairn/cache/stat`), so shards on different machines never replace each other's. The NUL
/// cannot occur in a real path, so no directory shares it.
fn cache_identity(root: &Path, shard: Shard) -> PathBuf {
    let mut id = OsString::from(root.as_os_str());
    id.push(format!("\0shard {shard}"));
    PathBuf::from(id)
}

/// The canonical absolute path of a directory to shard, or why it cannot be.
fn canonical_dir(dir: &Path) -> Result<PathBuf> {
    let real = std::fs::canonicalize(dir).map_err(|e| Error::reading("directory", dir, e))?;
    if !real.is_dir() {
        return Err(Error::BadPath {
            path: dir.display().to_string(),
            message: "only a directory can be hashed in shards (a single file is one shard's work)"
                .into(),
        });
    }
    Ok(real)
}

/// Keep entries `lo..hi` (indexes over all chunks, in order) and drop the rest.
fn take_range(chunks: Vec<Chunk>, lo: usize, hi: usize) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut at = 0usize;
    for c in chunks {
        let (start, end) = (at, at + c.len());
        at = end;
        let (from, to) = (lo.max(start), hi.min(end));
        if from >= to {
            continue;
        }
        if from == start && to == end {
            out.push(c);
            continue;
        }
        let (a, b) = (from - start, to - start);
        let mut seg = Segment::default();
        for i in a..b {
            seg.push_path(c.seg.path(i));
        }
        seg.hashes = c.seg.hashes[a..b].to_vec();
        out.push(Chunk {
            seg,
            keys: c.keys[a..b].to_vec(),
            flags: c.flags[a..b].to_vec(),
        });
    }
    out
}

/// Hash shard `shard` of the directory `dir`: walk it all (stat only), split it, hash this
/// shard's range (through the stat cache of this shard, when `opts` has a cache directory).
pub fn hash_shard(dir: &Path, shard: Shard, opts: &HashOptions<'_>) -> Result<ShardHash> {
    let started = now_ns();
    let root = canonical_dir(dir)?;
    let confine = opts.confine.filter(|b| root.starts_with(b));
    // Walk what the user named (as `hash_dir` does); the part records the canonical path.
    let tree = walk::walk_tree(dir, confine, None)?;
    let listing = listing_of(&tree.chunks);
    let weights = tree
        .chunks
        .iter()
        .flat_map(|c| c.keys.iter().map(|k| k.size.saturating_add(FILE_WEIGHT)));
    let total = u128::from(listing.bytes) + u128::from(FILE_WEIGHT) * u128::from(listing.files);
    let starts = split(weights, total, shard.n);
    let (lo, hi) = (starts[shard.k as usize - 1], starts[shard.k as usize]);

    // The skipped entries whose paths fall in this shard's stretch of the path order.
    let bound = |i: usize| -> Option<Vec<u8>> {
        let mut at = 0;
        for c in &tree.chunks {
            if i < at + c.len() {
                return Some(c.seg.path(i - at).to_vec());
            }
            at += c.len();
        }
        None
    };
    let (low, high) = (
        (shard.k > 1).then(|| bound(lo)).flatten(),
        (shard.k < shard.n).then(|| bound(hi)).flatten(),
    );
    let in_stretch = |p: &[u8]| {
        low.as_deref().is_none_or(|l| p >= l) && high.as_deref().is_none_or(|h| p < h)
            // A shard past the last file has an empty stretch.
            && !(shard.k > 1 && low.is_none())
    };
    let skipped = tree
        .skipped
        .into_iter()
        .filter(|s| in_stretch(s.path.as_os_str().as_bytes()))
        .collect();

    let chunks = take_range(tree.chunks, lo, hi);
    let what = Share {
        dir,
        root,
        shard,
        tree: listing,
        skipped,
    };
    hash_share(what, chunks, opts, started)
}

/// A shard's range, found, to be read.
struct Share<'a> {
    /// The directory as named (files are read below it).
    dir: &'a Path,
    /// Its canonical path (recorded in the part).
    root: PathBuf,
    shard: Shard,
    /// The whole tree's listing.
    tree: Listing,
    /// What the walk skipped in this shard's stretch.
    skipped: Vec<Skipped>,
}

/// Read a shard's files (through its own stat cache, when `opts` has a cache directory) and
/// make its part.
fn hash_share(
    what: Share<'_>,
    mut chunks: Vec<Chunk>,
    opts: &HashOptions<'_>,
    started: i64,
) -> Result<ShardHash> {
    let identity = cache_identity(&what.root, what.shard);
    let reader = match (opts.use_cache, opts.cache_dir) {
        (true, Some(cache)) => CacheReader::open(cache, &identity),
        _ => None,
    };
    let files: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let (files_read, bytes_read) = digest::hash_chunks(
        what.dir,
        &mut chunks,
        reader,
        opts.cache_dir.map(|c| (c, identity.as_path())),
        started,
        opts.progress,
        Some(files),
    )?;
    let manifest = digest::manifest_of(chunks);
    let bytes = manifest.bytes().unwrap_or(0);
    Ok(ShardHash {
        part: Part {
            header: PartHeader {
                root: what.root,
                shard: what.shard,
                tree: what.tree,
                files,
                bytes,
            },
            manifest,
        },
        skipped: what.skipped,
        files_read,
        bytes_read,
    })
}

/// A directory's listing made once, for shards that should not each walk the whole tree
/// (`cairn hash DIR --list -o LISTING`, then `--shard K/N --listing LISTING`): on a network
/// filesystem with millions of files, N walks are N times the metadata load.
pub struct TreeListing {
    root: PathBuf,
    tree: Listing,
    chunks: Vec<Chunk>,
    /// What the walk skipped (FIFOs, dangling links...).
    pub skipped: Vec<Skipped>,
}

/// Walk `dir` (stat only) into a [`TreeListing`].
pub fn list_tree(dir: &Path) -> Result<TreeListing> {
    let root = canonical_dir(dir)?;
    let tree = walk::walk_tree(dir, None, None)?;
    Ok(TreeListing {
        root,
        tree: listing_of(&tree.chunks),
        chunks: tree.chunks,
        skipped: tree.skipped,
    })
}

impl TreeListing {
    /// The directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What every shard made from it will record as the tree.
    pub fn tree(&self) -> Listing {
        self.tree
    }

    /// Write it: `cairn-shard-listing 1`, `root`, `tree`, `tree-files`, `tree-bytes`, a blank
    /// line, `[\\]<size> <path>` per file in manifest order (the path escaped as in a manifest,
    /// the line flagged with a leading backslash when it is), then `end blake3:<hex>` over
    /// everything before it.
    pub fn write_to(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(72 << 10);
        let mut hasher = blake3::Hasher::new();
        write!(
            out,
            "{LISTING_MAGIC} {LISTING_VERSION}\nroot = {}\ntree = {}\ntree-files = {}\ntree-bytes = {}\n\n",
            escaped(&self.root),
            self.tree.digest,
            self.tree.files,
            self.tree.bytes
        )?;
        for c in &self.chunks {
            for i in 0..c.len() {
                let (path, flagged) = Entry {
                    path: c.seg.path(i),
                    hash: Digest::default(),
                    size: None,
                }
                .display_path();
                if flagged {
                    out.push(b'\\');
                }
                writeln!(out, "{} {path}", c.keys[i].size)?;
                if out.len() >= 64 << 10 {
                    hasher.update(&out);
                    w.write_all(&out)?;
                    out.clear();
                }
            }
        }
        hasher.update(&out);
        w.write_all(&out)?;
        writeln!(w, "end {}", Digest::from(hasher.finalize()))
    }

    /// Write it to `path` atomically (temporary file, synced, renamed).
    pub fn write_file(&self, path: &Path) -> Result<()> {
        crate::fs::atomic_write_with(path, true, |w| self.write_to(w))
    }
}

/// Hash shard `shard` of `dir` from a listing made once (`list_tree`) instead of walking the
/// whole tree: the listing is read and checked (its checksum, its order, its digest), this
/// shard's files are taken from it by the same split, and only they are stat'ed and read. A
/// listed file that is gone or has another size now is an error (make the listing again). The
/// part is the one a walking shard makes of the same tree. No confinement: for `cairn hash`.
pub fn hash_shard_listed(
    dir: &Path,
    shard: Shard,
    listing: &Path,
    opts: &HashOptions<'_>,
) -> Result<ShardHash> {
    use rayon::prelude::*;
    let started = now_ns();
    let root = canonical_dir(dir)?;
    let mut head = read_head(listing, LISTING)?;
    let listed_root = head.root(listing, LISTING)?;
    if listed_root != root {
        return Err(refused(
            format!(
                "{} is the listing of {}, not of {}",
                listing.display(),
                listed_root.display(),
                root.display()
            ),
            "give the listing of this directory, made where every shard sees it at the same path",
        ));
    }
    let tree = head.tree(listing, LISTING)?;
    let total = u128::from(tree.bytes) + u128::from(FILE_WEIGHT) * u128::from(tree.files);
    let damaged = || {
        refused(
            format!(
                "{} is damaged: its content does not match its checksum or its header",
                listing.display()
            ),
            "make the listing again (`cairn hash DIR --list -o LISTING`)",
        )
    };
    let mut kept: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut check = ListingHasher::default();
    let (mut before, mut prev) = (0u128, Vec::new());
    let (mut line, mut scratch) = (Vec::new(), Vec::new());
    let mut pending: Vec<u8> = Vec::with_capacity(72 << 10);
    let mut shape = false;
    loop {
        line.clear();
        let got = head
            .reader
            .read_until(b'\n', &mut line)
            .ctx("cannot read", listing)?;
        if got == 0 || line.last() != Some(&b'\n') {
            return Err(incomplete(listing, None));
        }
        if let Some(rest) = line.strip_prefix(b"end ") {
            head.hasher.update(&pending);
            let want = std::str::from_utf8(&rest[..rest.len() - 1])
                .ok()
                .and_then(|s| s.parse::<Digest>().ok());
            let mut tail = [0u8; 1];
            let more =
                std::io::Read::read(&mut head.reader, &mut tail).ctx("cannot read", listing)?;
            if want != Some(head.hasher.finalize().into()) || more != 0 {
                return Err(damaged());
            }
            break;
        }
        pending.extend_from_slice(&line);
        if pending.len() >= 64 << 10 {
            head.hasher.update(&pending);
            pending.clear();
        }
        if shape {
            continue;
        }
        let text = std::str::from_utf8(&line[..line.len() - 1]).ok();
        let (flagged, text) = match text.map(|t| (t.strip_prefix('\\'), t)) {
            Some((Some(rest), _)) => (true, Some(rest)),
            Some((None, t)) => (false, Some(t)),
            None => (false, None),
        };
        let parsed = text
            .and_then(|t| t.split_once(' '))
            .and_then(|(size, path)| {
                let size: u64 = size.parse().ok()?;
                if flagged {
                    manifest::unescape(path, &mut scratch)?;
                } else {
                    scratch.clear();
                    scratch.extend_from_slice(path.as_bytes());
                }
                (!scratch.is_empty()).then_some(size)
            });
        let Some(size) = parsed else {
            // Read on to the checksum: a damaged listing says so rather than what broke.
            shape = true;
            continue;
        };
        if !(check.files == 0 || prev.as_slice() < scratch.as_slice()) {
            shape = true;
            continue;
        }
        check.add(&scratch, size);
        let w = size.saturating_add(FILE_WEIGHT);
        if shard_of(before, w, total, shard.n) == shard.k as usize - 1 {
            kept.push((scratch.clone(), size));
        }
        before += u128::from(w);
        prev.clear();
        prev.extend_from_slice(&scratch);
    }
    if shape || check.finish() != tree {
        return Err(damaged());
    }

    // Only this shard's files are looked at, in parallel, each as the walk would (links
    // followed); one that is gone or changed size since the listing stops the shard.
    let keys: Vec<crate::content::cache::StatKey> = kept
        .par_iter()
        .with_min_len(64)
        .map(|(rel, size)| {
            let abs = dir.join(std::ffi::OsStr::from_bytes(rel));
            let changed = |now: String| {
                refused(
                    format!(
                        "{} changed since the listing was made: {now}, the listing says {size} bytes",
                        abs.display()
                    ),
                    "make the listing again (`cairn hash DIR --list -o LISTING`) and hash every shard from it",
                )
            };
            match std::fs::metadata(&abs) {
                Ok(m) if m.is_file() && m.len() == *size => {
                    Ok(crate::content::cache::StatKey::of(&m))
                }
                Ok(m) if m.is_file() => Err(changed(format!("it is {} bytes", m.len()))),
                Ok(_) => Err(changed("it is no longer a regular file".into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(changed("it is gone".into()))
                }
                Err(e) => Err(Error::reading("file", &abs, e)),
            }
        })
        .collect::<Result<_>>()?;
    let mut chunks: Vec<Chunk> = Vec::new();
    for ((rel, _), key) in kept.iter().zip(keys) {
        if !chunks.last().is_some_and(|c| c.seg.has_room(rel)) {
            chunks.push(Chunk::default());
        }
        let c = chunks.last_mut().expect("pushed above");
        c.seg.push_path(rel);
        c.seg.hashes.push(Digest::default());
        c.keys.push(key);
        c.flags.push(0);
    }
    drop(kept);
    let what = Share {
        dir,
        root,
        shard,
        tree,
        skipped: Vec::new(),
    };
    hash_share(what, chunks, opts, started)
}

/// The listing of `dir` as a stat-only walk sees it now (to check merged parts against the
/// tree), and what the walk skipped.
pub fn listing(dir: &Path, confine: Option<&Path>) -> Result<(Listing, Vec<Skipped>)> {
    let tree = walk::walk_tree(dir, confine, None)?;
    Ok((listing_of(&tree.chunks), tree.skipped))
}

/// The listing of walked files.
fn listing_of(chunks: &[Chunk]) -> Listing {
    let mut listing = ListingHasher::default();
    for c in chunks {
        for i in 0..c.len() {
            listing.add(c.seg.path(i), c.keys[i].size);
        }
    }
    listing.finish()
}

/// A path as a part's `root` line writes it: the manifest's escaping.
fn escaped(path: &Path) -> String {
    Entry {
        path: path.as_os_str().as_bytes(),
        hash: Digest::default(),
        size: None,
    }
    .shown()
}

impl Part {
    /// Write the part: the header, a blank line, `<size> <manifest line>` for every entry, and
    /// `end blake3:<hex>` over everything before it.
    pub fn write_to(&self, w: &mut dyn Write) -> std::io::Result<()> {
        struct Tee<'a> {
            w: &'a mut dyn Write,
            hasher: blake3::Hasher,
        }
        impl Write for Tee<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let n = self.w.write(buf)?;
                self.hasher.update(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.w.flush()
            }
        }
        let h = &self.header;
        let mut tee = Tee {
            w,
            hasher: blake3::Hasher::new(),
        };
        write!(
            tee,
            "{PART_MAGIC} {PART_VERSION}\nroot = {}\nshard = {}\ntree = {}\ntree-files = {}\ntree-bytes = {}\nfiles = {}\nbytes = {}\n\n",
            escaped(&h.root),
            h.shard,
            h.tree.digest,
            h.tree.files,
            h.tree.bytes,
            h.files,
            h.bytes
        )?;
        let mut line = Vec::with_capacity(64 << 10);
        for e in self.manifest.iter() {
            line.extend_from_slice(e.size.unwrap_or(0).to_string().as_bytes());
            line.push(b' ');
            e.write_line(&mut line);
            if line.len() >= 60 << 10 {
                tee.write_all(&line)?;
                line.clear();
            }
        }
        tee.write_all(&line)?;
        let end = Digest::from(tee.hasher.finalize());
        writeln!(tee.w, "end {end}")
    }

    /// Write the part to `path` atomically (a temporary file renamed into place, synced: the
    /// merge usually runs on another machine).
    pub fn write_file(&self, path: &Path) -> Result<()> {
        crate::fs::atomic_write_with(path, true, |w| self.write_to(w))
    }
}

/// A part file read back: where it came from, its header, and where its body starts.
/// Only the header is read and the file closed again: a merge of thousands of parts must not
/// hold thousands of files open. The body is read by [`Opened::body`].
struct Opened {
    path: PathBuf,
    header: PartHeader,
    /// Where the body starts.
    body_at: u64,
    /// Which file it was (device, inode), so the body comes from the same one.
    id: (u64, u64),
    /// The checksum's state after the header.
    hasher: blake3::Hasher,
}

impl Opened {
    /// The part's file again, positioned at its body.
    fn body(&self) -> Result<std::io::BufReader<std::fs::File>> {
        use std::io::Seek;
        use std::os::unix::fs::MetadataExt;
        let (mut file, _) = crate::fs::open_regular(&self.path)
            .map_err(|e| Error::reading("part", &self.path, e))?;
        let meta = file.metadata().ctx("cannot read", &self.path)?;
        if (meta.dev(), meta.ino()) != self.id {
            return Err(refused(
                format!(
                    "{} was replaced while it was being merged",
                    self.path.display()
                ),
                "merge again once nothing writes to the parts",
            ));
        }
        file.seek(std::io::SeekFrom::Start(self.body_at))
            .ctx("cannot read", &self.path)?;
        Ok(std::io::BufReader::with_capacity(256 << 10, file))
    }
}

fn refused(message: String, hint: &str) -> Error {
    Error::Refused {
        message,
        hint: hint.to_string(),
    }
}

const REHASH: &str = "hash that shard again (`cairn hash DIR --shard K/N -o PART`); its job's log says why it failed";

/// What kind of file a header opens: its magic word, what it is called, and the version read.
#[derive(Clone, Copy)]
struct Kind {
    magic: &'static str,
    version: u32,
    what: &'static str,
    hint: &'static str,
}

const PART: Kind = Kind {
    magic: PART_MAGIC,
    version: PART_VERSION,
    what: "shard part",
    hint: "give the files `cairn hash DIR --shard K/N -o PART` wrote",
};

const LISTING: Kind = Kind {
    magic: LISTING_MAGIC,
    version: LISTING_VERSION,
    what: "shard listing",
    hint: "give the file `cairn hash DIR --list -o LISTING` wrote",
};

/// A header read: its fields, where the body starts, which file it was, and the checksum so far.
struct Head {
    fields: std::collections::BTreeMap<String, String>,
    body_at: u64,
    id: (u64, u64),
    hasher: blake3::Hasher,
    reader: std::io::BufReader<std::fs::File>,
}

impl Head {
    fn get(&self, path: &Path, kind: Kind, k: &str) -> Result<&str> {
        self.fields
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| not_a(path, kind, &format!("no `{k}` line")))
    }

    fn num(&self, path: &Path, kind: Kind, k: &str) -> Result<u64> {
        self.get(path, kind, k)?
            .parse()
            .map_err(|_| not_a(path, kind, &format!("`{k}` is not a number")))
    }

    fn root(&self, path: &Path, kind: Kind) -> Result<PathBuf> {
        let mut scratch = Vec::new();
        let bytes = unescape_root(self.get(path, kind, "root")?, &mut scratch)
            .ok_or_else(|| not_a(path, kind, "bad `root`"))?;
        Ok(PathBuf::from(OsString::from_vec(bytes)))
    }

    fn tree(&self, path: &Path, kind: Kind) -> Result<Listing> {
        Ok(Listing {
            digest: self
                .get(path, kind, "tree")?
                .parse()
                .map_err(|_| not_a(path, kind, "bad `tree` digest"))?,
            files: self.num(path, kind, "tree-files")?,
            bytes: self.num(path, kind, "tree-bytes")?,
        })
    }
}

fn not_a(path: &Path, kind: Kind, why: &str) -> Error {
    refused(
        format!("{} is not a {}: {why}", path.display(), kind.what),
        kind.hint,
    )
}

/// Read the header of a part or listing file: `<magic> <version>`, `key = value` lines, a blank
/// line.
fn read_head(path: &Path, kind: Kind) -> Result<Head> {
    let what = if kind.magic == PART_MAGIC {
        "part"
    } else {
        "listing"
    };
    let (file, _) = crate::fs::open_regular(path).map_err(|e| Error::reading(what, path, e))?;
    let id = {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().ctx("cannot read", path)?;
        (meta.dev(), meta.ino())
    };
    let mut reader = std::io::BufReader::with_capacity(64 << 10, file);
    let mut body_at = 0u64;
    let mut hasher = blake3::Hasher::new();
    let bad = |why: &str| not_a(path, kind, why);
    let mut fields = std::collections::BTreeMap::new();
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .ctx("cannot read", path)?;
        if n == 0 || line.last() != Some(&b'\n') || line.len() > 64 << 10 {
            return Err(if first {
                bad("it is empty or has no header")
            } else {
                incomplete(path, None)
            });
        }
        hasher.update(&line);
        body_at += line.len() as u64;
        let text =
            std::str::from_utf8(&line[..line.len() - 1]).map_err(|_| bad("header is not UTF-8"))?;
        if first {
            first = false;
            let version = text
                .strip_prefix(kind.magic)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .ok_or_else(|| bad(&format!("its first line is not `{} <version>`", kind.magic)))?;
            if version > kind.version {
                return Err(refused(
                    format!(
                        "{} is a {} of format {version}; this cairn reads format {}",
                        path.display(),
                        kind.what,
                        kind.version
                    ),
                    "use the cairn that wrote it (or a newer one)",
                ));
            }
            continue;
        }
        if text.is_empty() {
            break;
        }
        let (k, v) = text
            .split_once(" = ")
            .ok_or_else(|| bad("a header line is not `key = value`"))?;
        fields.insert(k.to_string(), v.to_string());
    }
    Ok(Head {
        fields,
        body_at,
        id,
        hasher,
        reader,
    })
}

/// Read the header of a part file (the body is read when it is merged).
fn open_part(path: &Path) -> Result<Opened> {
    let head = read_head(path, PART)?;
    let header = PartHeader {
        root: head.root(path, PART)?,
        shard: head
            .get(path, PART, "shard")?
            .parse()
            .map_err(|e: String| not_a(path, PART, &e))?,
        tree: head.tree(path, PART)?,
        files: head.num(path, PART, "files")?,
        bytes: head.num(path, PART, "bytes")?,
    };
    Ok(Opened {
        path: path.to_path_buf(),
        header,
        body_at: head.body_at,
        id: head.id,
        hasher: head.hasher,
    })
}

/// Undo a root line's escaping (a manifest line's rules).
fn unescape_root(text: &str, scratch: &mut Vec<u8>) -> Option<Vec<u8>> {
    let line = format!("\\{}  {text}", "0".repeat(64));
    let (path, _) = manifest::parse_line(&line, 1, scratch).ok()?;
    Some(path.to_vec())
}

fn incomplete(path: &Path, shard: Option<Shard>) -> Error {
    refused(
        format!(
            "{}{} is incomplete: it stops before its `end` line (the shard was killed while writing it, or the copy is partial)",
            path.display(),
            shard.map(|s| format!(" (shard {s})")).unwrap_or_default()
        ),
        REHASH,
    )
}

/// Parts merged: the directory's digest and manifest as one machine would have made them.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The directory the parts are of.
    pub root: PathBuf,
    /// How many shards.
    pub n: u32,
    /// The listing every shard saw (and the merged manifest has).
    pub tree: Listing,
    /// The manifest, with sizes.
    pub manifest: Manifest,
    /// Its digest: the directory digest.
    pub digest: Digest,
}

/// Read the parts at `paths` and merge those of each directory. Every set must be whole (the
/// checks of spec/lockfile.md §9.6). Sets come back in the order of their roots.
pub fn merge_files(paths: &[PathBuf]) -> Result<Vec<Merged>> {
    let mut by_root: std::collections::BTreeMap<PathBuf, Vec<Opened>> = Default::default();
    for p in paths {
        let o = open_part(p)?;
        by_root.entry(o.header.root.clone()).or_default().push(o);
    }
    // One tree hashed under two paths (mounted at /lustre/data on some nodes and at
    // /mnt/lustre/data on others) would only show up as shards missing from each: say so.
    let heads: Vec<&PartHeader> = by_root.values().map(|v| &v[0].header).collect();
    for (i, a) in heads.iter().enumerate() {
        if let Some(b) = heads[i + 1..]
            .iter()
            .find(|b| b.tree == a.tree && b.shard.n == a.shard.n)
        {
            return Err(refused(
                format!(
                    "the parts are of one tree seen at two paths: {} and {}",
                    a.root.display(),
                    b.root.display()
                ),
                "every shard must see the directory at the same path: mount it at the same place on every machine, or hash through a path that is the same everywhere",
            ));
        }
    }
    by_root.into_values().map(merge).collect()
}

/// Merge the parts of one directory, checking that they are the shards 1..=N of one listing,
/// each once and complete, and that together they are exactly that listing.
fn merge(mut parts: Vec<Opened>) -> Result<Merged> {
    let first = &parts[0].header;
    let (root, n, tree) = (first.root.clone(), first.shard.n, first.tree);
    for o in &parts {
        if o.header.shard.n != n {
            return Err(refused(
                format!(
                    "the parts of {} were split differently: {} is shard {} but {} is shard {}",
                    root.display(),
                    parts[0].path.display(),
                    parts[0].header.shard,
                    o.path.display(),
                    o.header.shard
                ),
                "give the parts of one `--shard K/N` run (the same N)",
            ));
        }
    }
    parts.sort_by_key(|o| o.header.shard.k);
    for w in parts.windows(2) {
        if w[0].header.shard.k == w[1].header.shard.k {
            return Err(refused(
                format!(
                    "shard {} of {} is given twice: {} and {}",
                    w[0].header.shard,
                    root.display(),
                    w[0].path.display(),
                    w[1].path.display()
                ),
                "give each shard's part once",
            ));
        }
    }
    let missing: Vec<String> = (1..=n)
        .filter(|k| !parts.iter().any(|o| o.header.shard.k == *k))
        .map(|k| format!("{k}/{n}"))
        .collect();
    if !missing.is_empty() {
        let many = missing.len() > 1;
        return Err(refused(
            format!(
                "{} {} of {} {} missing: no part for {} among the {} given",
                if many { "shards" } else { "shard" },
                missing.join(", "),
                root.display(),
                if many { "are" } else { "is" },
                if many { "them" } else { "it" },
                parts.len()
            ),
            REHASH,
        ));
    }
    for o in &parts {
        if o.header.tree != tree {
            return Err(refused(
                format!(
                    "the shards saw different trees of {}: shard {} saw {} files ({} bytes), shard {} saw {} files ({} bytes){}; the directory changed while they ran",
                    root.display(),
                    parts[0].header.shard,
                    tree.files,
                    tree.bytes,
                    o.header.shard,
                    o.header.tree.files,
                    o.header.tree.bytes,
                    if o.header.tree.files == tree.files && o.header.tree.bytes == tree.bytes {
                        " (same counts, other names or sizes)"
                    } else {
                        ""
                    }
                ),
                "hash every shard again once nothing writes to the directory",
            ));
        }
    }

    let mut merged = Manifest::default();
    let mut listing = ListingHasher::default();
    let mut prev: Vec<u8> = Vec::new();
    let mut scratch = Vec::new();
    let mut line = Vec::new();
    for o in &mut parts {
        let (mut files, mut bytes) = (0u64, 0u64);
        let mut fault: Option<Error> = None;
        let mut reader = o.body()?;
        // The checksum is fed in blocks, not a line at a time.
        let mut pending: Vec<u8> = Vec::with_capacity(72 << 10);
        loop {
            line.clear();
            let got = reader
                .read_until(b'\n', &mut line)
                .ctx("cannot read", &o.path)?;
            if got == 0 || line.last() != Some(&b'\n') {
                return Err(incomplete(&o.path, Some(o.header.shard)));
            }
            if let Some(rest) = line.strip_prefix(b"end ") {
                o.hasher.update(&pending);
                pending.clear();
                let want = std::str::from_utf8(&rest[..rest.len() - 1])
                    .ok()
                    .and_then(|s| s.parse::<Digest>().ok());
                let mut tail = [0u8; 1];
                let more =
                    std::io::Read::read(&mut reader, &mut tail).ctx("cannot read", &o.path)?;
                if want != Some(o.hasher.finalize().into()) || more != 0 {
                    return Err(refused(
                        format!(
                            "{} is damaged: its checksum does not match its content",
                            o.path.display()
                        ),
                        REHASH,
                    ));
                }
                break;
            }
            pending.extend_from_slice(&line);
            if pending.len() >= 64 << 10 {
                o.hasher.update(&pending);
                pending.clear();
            }
            if fault.is_some() {
                // Read on to the checksum: a damaged part says so rather than what broke.
                continue;
            }
            let bad = |why: String| {
                refused(
                    format!("{} is not a shard part: {why}", o.path.display()),
                    REHASH,
                )
            };
            let shape = || bad("a line is not `<size> <hex>  <path>`".into());
            let Some((size, rest)) = std::str::from_utf8(&line[..line.len() - 1])
                .ok()
                .and_then(|t| t.split_once(' '))
            else {
                fault = Some(shape());
                continue;
            };
            let Ok(size) = size.parse::<u64>() else {
                fault = Some(shape());
                continue;
            };
            let (path, hash) = match manifest::parse_line(rest, 0, &mut scratch) {
                Ok(e) => e,
                Err(e) => {
                    fault = Some(bad(e));
                    continue;
                }
            };
            if !(merged.is_empty() || prev.as_slice() < path) {
                fault = Some(refused(
                    format!(
                        "{} overlaps or is out of order with the parts before it (at {:?})",
                        o.path.display(),
                        String::from_utf8_lossy(path)
                    ),
                    "give the parts of one `--shard K/N` run, unchanged",
                ));
                continue;
            }
            listing.add(path, size);
            merged.push(path, hash, Some(size));
            prev.clear();
            prev.extend_from_slice(path);
            files += 1;
            bytes += size;
        }
        if let Some(e) = fault {
            return Err(e);
        }
        if (files, bytes) != (o.header.files, o.header.bytes) {
            return Err(refused(
                format!(
                    "{} says it holds {} files ({} bytes) but holds {files} ({bytes} bytes)",
                    o.path.display(),
                    o.header.files,
                    o.header.bytes
                ),
                REHASH,
            ));
        }
    }
    if listing.finish() != tree {
        return Err(refused(
            format!(
                "the parts of {} do not add up to the tree the shards saw ({} files, {} bytes): some files are in no part or in two",
                root.display(),
                tree.files,
                tree.bytes
            ),
            "give the parts of one `--shard K/N` run, unchanged",
        ));
    }
    let digest = merged.digest();
    Ok(Merged {
        root,
        n,
        tree,
        manifest: merged,
        digest,
    })
}

impl Merged {
    /// Check that `dir` is the directory these parts are of, and that its listing now (a
    /// stat-only walk) is the one the shards saw. Returns what the walk skipped.
    pub fn check_against(&self, dir: &Path, confine: Option<&Path>) -> Result<Vec<Skipped>> {
        let real = canonical_dir(dir)?;
        if real != self.root {
            return Err(refused(
                format!(
                    "the parts are of {}, not of {}",
                    self.root.display(),
                    real.display()
                ),
                "give the parts of this directory",
            ));
        }
        let (now, skipped) = listing(dir, confine)?;
        if now != self.tree {
            return Err(refused(
                format!(
                    "{} changed since its shards were hashed: the shards saw {} files ({} bytes), it holds {} ({} bytes) now{}",
                    dir.display(),
                    self.tree.files,
                    self.tree.bytes,
                    now.files,
                    now.bytes,
                    if now.files == self.tree.files && now.bytes == self.tree.bytes {
                        ", with other names or sizes"
                    } else {
                        ""
                    }
                ),
                "hash the shards again",
            ));
        }
        Ok(skipped)
    }

    /// As a hashed directory (nothing read here).
    pub fn hashed(self, skipped: Vec<Skipped>) -> digest::Hashed {
        digest::Hashed {
            kind: digest::Kind::Dir,
            digest: self.digest,
            files: self.tree.files,
            bytes: self.tree.bytes,
            files_read: 0,
            bytes_read: 0,
            manifest: Some(self.manifest),
            skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse() {
        assert_eq!("2/8".parse::<Shard>().unwrap(), Shard { k: 2, n: 8 });
        for bad in ["0/4", "5/4", "1", "a/b", "1/0", "-1/2", "1/70000"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        // A lock's dataset names may be `.` or `..`: a part's file name is never one of them.
        let s = Shard { k: 1, n: 2 };
        assert_eq!(part_name("..", s), "...1-of-2.part");
        assert_eq!(part_name(".", s), "..1-of-2.part");
    }

    #[test]
    fn split_is_contiguous_balanced_and_total() {
        // Ten equal files in 3 shards: 3, 4, 3 by where their middles fall.
        let s = split(std::iter::repeat_n(10, 10), 100, 3);
        assert_eq!(s, [0, 3, 7, 10]);
        // One huge file: it lands in the shard where its middle is; others may be empty.
        let s = split([1, 1000, 1].into_iter(), 1002, 4);
        assert_eq!(s.len(), 5);
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!((s[0], s[4]), (0, 3));
        // More shards than files: every file once.
        let s = split([5, 5].into_iter(), 10, 5);
        assert_eq!((s[0], s[5]), (0, 2));
        // No files.
        assert_eq!(split(std::iter::empty(), 0, 3), [0, 0, 0, 0]);
        // Bytes, not counts: 1 big file then 9 small ones splits 1 | 9.
        let s = split(
            [900].into_iter().chain(std::iter::repeat_n(100, 9)),
            1800,
            2,
        );
        assert_eq!(s, [0, 1, 10]);
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in [
            "a",
            "b/c",
            "b/d e",
            "b.txt",
            "big",
            "z/y/x",
            "empty",
            "new\nline",
        ]
        .iter()
        .enumerate()
        {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let len = if *name == "big" {
                50_000
            } else if *name == "empty" {
                0
            } else {
                100 * i
            };
            std::fs::write(&p, vec![i as u8; len]).unwrap();
        }
        dir
    }

    fn write_parts(dir: &Path, out: &Path, n: u32) -> Vec<PathBuf> {
        (1..=n)
            .map(|k| {
                let h = hash_shard(dir, Shard { k, n }, &HashOptions::default()).unwrap();
                let p = out.join(part_name("t", h.part.header.shard));
                h.part.write_file(&p).unwrap();
                p
            })
            .collect()
    }

    #[test]
    fn merged_parts_are_the_one_machine_digest_for_every_n() {
        let dir = tree();
        let whole = digest::hash_dir(dir.path(), &HashOptions::default()).unwrap();
        for n in [1, 2, 3, 5, 8, 13] {
            let out = tempfile::tempdir().unwrap();
            let parts = write_parts(dir.path(), out.path(), n);
            let merged = merge_files(&parts).unwrap();
            assert_eq!(merged.len(), 1);
            let m = &merged[0];
            assert_eq!(m.digest, whole.digest, "n = {n}");
            assert_eq!(&m.manifest, whole.manifest.as_ref().unwrap());
            assert_eq!(
                m.manifest.to_text(),
                whole.manifest.as_ref().unwrap().to_text()
            );
            assert_eq!((m.tree.files, m.tree.bytes), (whole.files, whole.bytes));
            m.check_against(dir.path(), None).unwrap();
        }
    }

    #[test]
    fn a_missing_twice_given_cut_or_changed_part_is_named() {
        let dir = tree();
        let out = tempfile::tempdir().unwrap();
        let parts = write_parts(dir.path(), out.path(), 3);
        let msg = |r: Result<Vec<Merged>>| r.unwrap_err().to_string();

        let m = msg(merge_files(&[parts[0].clone(), parts[2].clone()]));
        assert!(
            m.contains("shard 2/3 of") && m.contains("is missing"),
            "{m}"
        );
        let m = msg(merge_files(&[
            parts[0].clone(),
            parts[1].clone(),
            parts[1].clone(),
        ]));
        assert!(m.contains("shard 2/3") && m.contains("given twice"), "{m}");

        // Cut short at every length: never merged, always named.
        let good = std::fs::read(&parts[1]).unwrap();
        let cut = out.path().join("cut.part");
        for len in [0, 10, good.len() / 2, good.len() - 1] {
            std::fs::write(&cut, &good[..len]).unwrap();
            let m = msg(merge_files(&[
                parts[0].clone(),
                cut.clone(),
                parts[2].clone(),
            ]));
            assert!(m.contains("cut.part"), "{len}: {m}");
        }
        // One flipped digit in the body: the checksum says so.
        let mut bad = good.clone();
        let at = bad.len() - 80;
        bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
        std::fs::write(&cut, &bad).unwrap();
        let m = msg(merge_files(&[
            parts[0].clone(),
            cut.clone(),
            parts[2].clone(),
        ]));
        assert!(m.contains("damaged"), "{m}");

        // The tree changes between shards: the parts disagree.
        std::fs::write(dir.path().join("b/new"), b"late").unwrap();
        let h = hash_shard(dir.path(), Shard { k: 2, n: 3 }, &HashOptions::default()).unwrap();
        h.part.write_file(&cut).unwrap();
        let m = msg(merge_files(&[
            parts[0].clone(),
            cut.clone(),
            parts[2].clone(),
        ]));
        assert!(m.contains("different trees"), "{m}");
        // And merged parts no longer describe the directory.
        let merged = merge_files(&parts).unwrap();
        let m = merged[0]
            .check_against(dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(m.contains("changed since its shards were hashed"), "{m}");
    }

    #[test]
    fn shards_from_a_listing_write_the_parts_walking_shards_write() {
        let dir = tree();
        let out = tempfile::tempdir().unwrap();
        let listing = out.path().join("t.listing");
        list_tree(dir.path()).unwrap().write_file(&listing).unwrap();
        for n in [1, 2, 3, 5, 8] {
            for k in 1..=n {
                let shard = Shard { k, n };
                let (walked, listed) = (out.path().join("w.part"), out.path().join("l.part"));
                let opts = HashOptions::default();
                hash_shard(dir.path(), shard, &opts)
                    .unwrap()
                    .part
                    .write_file(&walked)
                    .unwrap();
                hash_shard_listed(dir.path(), shard, &listing, &opts)
                    .unwrap()
                    .part
                    .write_file(&listed)
                    .unwrap();
                assert_eq!(
                    std::fs::read(&walked).unwrap(),
                    std::fs::read(&listed).unwrap(),
                    "shard {shard}"
                );
            }
        }
        // A listed file that changed size, a damaged listing, another directory's listing.
        let shard = Shard { k: 1, n: 1 };
        let msg = |r: Result<ShardHash>| r.unwrap_err().to_string();
        let good = std::fs::read(&listing).unwrap();
        let mut bad = good.clone();
        let at = bad.len() - 80;
        bad[at] = if bad[at] == b'1' { b'2' } else { b'1' };
        std::fs::write(&listing, &bad).unwrap();
        let m = msg(hash_shard_listed(
            dir.path(),
            shard,
            &listing,
            &HashOptions::default(),
        ));
        assert!(m.contains("is damaged"), "{m}");
        std::fs::write(&listing, &good[..good.len() - 10]).unwrap();
        let m = msg(hash_shard_listed(
            dir.path(),
            shard,
            &listing,
            &HashOptions::default(),
        ));
        assert!(m.contains("is incomplete"), "{m}");
        std::fs::write(&listing, &good).unwrap();
        let other = tempfile::tempdir().unwrap();
        let m = msg(hash_shard_listed(
            other.path(),
            shard,
            &listing,
            &HashOptions::default(),
        ));
        assert!(m.contains("is the listing of"), "{m}");
        std::fs::write(dir.path().join("b/c"), b"another size").unwrap();
        let m = msg(hash_shard_listed(
            dir.path(),
            shard,
            &listing,
            &HashOptions::default(),
        ));
        assert!(m.contains("changed since the listing was made"), "{m}");
        std::fs::write(dir.path().join("b/c"), vec![1u8; 100]).unwrap();
        std::fs::remove_file(dir.path().join("a")).unwrap();
        let m = msg(hash_shard_listed(
            dir.path(),
            shard,
            &listing,
            &HashOptions::default(),
        ));
        assert!(m.contains("it is gone"), "{m}");
    }

    #[test]
    fn one_tree_at_two_paths_is_named() {
        let dir = tree();
        let out = tempfile::tempdir().unwrap();
        let link = out.path().join("mounted-elsewhere");
        let copy = out.path().join("copy");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        // A copy of the tree at another path: same listing, other root.
        for e in walkdir::WalkDir::new(dir.path()) {
            let e = e.unwrap();
            let to = copy.join(e.path().strip_prefix(dir.path()).unwrap());
            if e.file_type().is_dir() {
                std::fs::create_dir_all(&to).unwrap();
            } else {
                std::fs::copy(e.path(), &to).unwrap();
            }
        }
        let a = hash_shard(dir.path(), Shard { k: 1, n: 2 }, &HashOptions::default()).unwrap();
        let b = hash_shard(&copy, Shard { k: 2, n: 2 }, &HashOptions::default()).unwrap();
        let (pa, pb) = (out.path().join("a.part"), out.path().join("b.part"));
        a.part.write_file(&pa).unwrap();
        b.part.write_file(&pb).unwrap();
        let m = merge_files(&[pa.clone(), pb]).unwrap_err().to_string();
        assert!(m.contains("one tree seen at two paths"), "{m}");
        // Through a link, the canonical path is recorded: the same tree, the same root.
        let c = hash_shard(&link, Shard { k: 2, n: 2 }, &HashOptions::default()).unwrap();
        let pc = out.path().join("c.part");
        c.part.write_file(&pc).unwrap();
        assert_eq!(merge_files(&[pa, pc]).unwrap().len(), 1);
    }

    #[test]
    fn shards_have_stat_caches_of_their_own() {
        let dir = tree();
        let cache = tempfile::tempdir().unwrap();
        crate::content::cache::settle(dir.path()).unwrap();
        let opts = HashOptions {
            cache_dir: Some(cache.path()),
            use_cache: true,
            ..HashOptions::default()
        };
        let s1 = Shard { k: 1, n: 2 };
        let s2 = Shard { k: 2, n: 2 };
        let cold1 = hash_shard(dir.path(), s1, &opts).unwrap();
        let cold2 = hash_shard(dir.path(), s2, &opts).unwrap();
        assert_eq!(cold1.files_read + cold2.files_read, 8);
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 2);
        let warm1 = hash_shard(dir.path(), s1, &opts).unwrap();
        let warm2 = hash_shard(dir.path(), s2, &opts).unwrap();
        assert_eq!((warm1.files_read, warm2.files_read), (0, 0));
        assert_eq!(warm1.part.manifest, cold1.part.manifest);
        // The one-machine cache is another file, untouched by the shards.
        digest::hash_dir(dir.path(), &opts).unwrap();
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 3);
    }
}
