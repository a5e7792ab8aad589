//! The manifest of a directory: every file below it with its BLAKE3, in path-byte order, the
//! thing a directory digest is the BLAKE3 of (spec/lockfile.md).
//!
//! Stored compactly, because a dataset can hold a million files: the paths of a run of entries
//! sit end to end in one buffer with a `u32` end offset each, beside a plain array of 32-byte
//! digests and one of sizes (about 44 bytes per entry plus the path, against about 100 for a
//! `Vec<u8>` per path). The runs ([`Segment`]s) are what the parallel walk produces, one or more
//! per directory, so a hashed tree becomes a manifest without copying its paths again.

use crate::content::digest::Digest;

/// One line of a directory manifest, borrowed from a [`Manifest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path relative to the directory, `/`-separated, as raw bytes.
    pub path: &'a [u8],
    /// BLAKE3 of the file's bytes.
    pub hash: Digest,
    /// The file's size in bytes, when known (manifests read back from text do not carry it).
    pub size: Option<u64>,
}

impl Entry<'_> {
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
            && std::str::from_utf8(self.path).is_ok();
        if plain {
            // The common case, without an allocation: the bytes are already what b3sum prints.
            out.extend_from_slice(hex.as_bytes());
            out.extend_from_slice(b"  ");
            out.extend_from_slice(self.path);
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
        String::from_utf8_lossy(self.path).into_owned()
    }
}

/// A run of manifest entries: paths end to end in one buffer, digests and sizes beside them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Segment {
    /// Every path of the run, end to end.
    pub(crate) paths: Vec<u8>,
    /// Where each path ends in `paths`.
    pub(crate) ends: Vec<u32>,
    /// Each file's BLAKE3.
    pub(crate) hashes: Vec<Digest>,
    /// Each file's size (0 where the manifest does not know sizes).
    pub(crate) sizes: Vec<u64>,
}

/// A segment's path buffer is split before it would pass this many bytes (so `u32` ends fit).
pub(crate) const SEGMENT_BYTES: usize = 1 << 30;

impl Segment {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn path(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.paths[start..self.ends[i] as usize]
    }

    /// Whether `path` can still be added without passing [`SEGMENT_BYTES`].
    pub(crate) fn has_room(&self, path: &[u8]) -> bool {
        self.paths.len() + path.len() <= SEGMENT_BYTES
    }

    /// Add a path (its digest and size are pushed by the caller).
    pub(crate) fn push_path(&mut self, path: &[u8]) {
        self.paths.extend_from_slice(path);
        self.ends.push(self.paths.len() as u32);
    }
}

/// The list of files below a directory, sorted by path bytes: the thing a directory digest is
/// the BLAKE3 of.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    segments: Vec<Segment>,
    len: usize,
    /// Whether every entry's size is known.
    sized: bool,
}

impl PartialEq for Manifest {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Manifest {}

impl<'a> FromIterator<Entry<'a>> for Manifest {
    fn from_iter<I: IntoIterator<Item = Entry<'a>>>(iter: I) -> Self {
        let mut m = Manifest::default();
        for e in iter {
            m.push(e.path, e.hash, e.size);
        }
        m
    }
}

impl Manifest {
    /// A manifest made of segments whose sizes are all known.
    pub(crate) fn from_segments(segments: Vec<Segment>) -> Manifest {
        let len = segments.iter().map(Segment::len).sum();
        Manifest {
            segments: segments.into_iter().filter(|s| s.len() > 0).collect(),
            len,
            sized: true,
        }
    }

    /// Add an entry at the end (the caller keeps the order).
    pub fn push(&mut self, path: &[u8], hash: Digest, size: Option<u64>) {
        if self.len == 0 {
            self.sized = true;
        }
        self.sized &= size.is_some();
        let room = self.segments.last().is_some_and(|s| s.has_room(path));
        if !room {
            self.segments.push(Segment::default());
        }
        let seg = self.segments.last_mut().expect("pushed above");
        seg.push_path(path);
        seg.hashes.push(hash);
        seg.sizes.push(size.unwrap_or(0));
        self.len += 1;
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> + Clone + '_ {
        let sized = self.sized;
        self.segments.iter().flat_map(move |s| {
            (0..s.len()).map(move |i| Entry {
                path: s.path(i),
                hash: s.hashes[i],
                size: sized.then_some(s.sizes[i]),
            })
        })
    }

    /// The manifest text, byte for byte what `b3sum` prints for these files in this order.
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len * 100);
        for e in self.iter() {
            e.write_line(&mut out);
        }
        out
    }

    /// Write the manifest text to `w` (see [`Manifest::to_text`]) without building it in memory.
    pub fn write_text(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.blocks(|block| w.write_all(block))
    }

    /// The text in blocks of about 64 KiB, each handed to `f`.
    fn blocks<E>(&self, mut f: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        const BLOCK: usize = 64 << 10;
        let mut buf = Vec::with_capacity(BLOCK + 4096);
        for e in self.iter() {
            e.write_line(&mut buf);
            if buf.len() >= BLOCK {
                f(&buf)?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            f(&buf)?;
        }
        Ok(())
    }

    /// The directory digest: BLAKE3 over [`Manifest::to_text`], without building the whole text.
    pub fn digest(&self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        let _ = self.blocks(|block| -> Result<(), ()> {
            hasher.update(block);
            Ok(())
        });
        hasher.finalize().into()
    }

    /// Parse manifest text (b3sum's output format, with cairn's `\xHH` for bytes that are not
    /// UTF-8). Paths come back as their exact bytes.
    pub fn parse(text: &[u8]) -> std::result::Result<Manifest, String> {
        let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
        let mut m = Manifest::default();
        let mut unescaped = Vec::new();
        for (n, line) in text.split_terminator('\n').enumerate() {
            let (path, hash) = parse_line(line, n + 1, &mut unescaped)?;
            m.push(path, hash, None);
        }
        // Order is not checked here: callers check the manifest's digest instead.
        Ok(m)
    }

    /// Total size of the files, when every entry knows its size.
    pub fn bytes(&self) -> Option<u64> {
        if !self.sized && self.len > 0 {
            return None;
        }
        Some(self.segments.iter().flat_map(|s| &s.sizes).sum())
    }
}

/// One manifest line without its newline (`lineno` for the message): the path's exact bytes
/// (unescaped into `scratch` when the line is escaped) and the digest.
pub(crate) fn parse_line<'a>(
    line: &'a str,
    lineno: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<(&'a [u8], Digest), String> {
    let (escaped, rest) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    // `<64 hex digits>  <path>`: the hash has a fixed width.
    let (hex, path) = match (rest.get(..64), rest.get(64..66), rest.get(66..)) {
        (Some(hex), Some("  "), Some(path)) => (hex, path),
        _ => return Err(format!("line {lineno}: expected `<hex>  <path>`")),
    };
    let hash = Digest::from_hex(hex).ok_or_else(|| format!("line {lineno}: bad hash {hex:?}"))?;
    let path = if escaped {
        unescape(path, scratch).ok_or_else(|| format!("line {lineno}: bad escape in path"))?;
        &scratch[..]
    } else {
        path.as_bytes()
    };
    if path.is_empty() {
        return Err(format!("line {lineno}: empty path"));
    }
    Ok((path, hash))
}

/// Undo a manifest path's escaping (`\\`, `\n`, `\r`, `\xHH`) into `out`; `None` for a bad escape.
pub(crate) fn unescape(s: &str, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
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
    Some(())
}

/// A manifest of `(path, h)` entries, the digest of each `h` repeated 32 times: for tests.
#[cfg(test)]
pub(crate) fn test_manifest(items: &[(&[u8], u8)]) -> Manifest {
    items
        .iter()
        .map(|(p, h)| Entry {
            path: p,
            hash: Digest([*h; 32]),
            size: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_manifest as m;

    #[test]
    fn manifest_escapes_like_b3sum_and_parses_back() {
        let m = m(&[(b"a\\b", 1), (b"line\nbreak", 2), (b"plain.txt", 3)]);
        let text = String::from_utf8(m.to_text()).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert!(lines[0].starts_with('\\') && lines[0].ends_with("  a\\\\b"));
        assert!(lines[1].starts_with('\\') && lines[1].ends_with("  line\\nbreak"));
        assert!(!lines[2].starts_with('\\'));
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), m);
        assert_eq!(m.digest(), Digest::of_bytes(text.as_bytes()));
        let mut written = Vec::new();
        m.write_text(&mut written).unwrap();
        assert_eq!(written, text.as_bytes());
    }

    #[test]
    fn names_that_are_not_utf8_are_kept_exactly() {
        let m = m(&[(b"bad\xfename", 1), (b"bad\xffname", 2)]);
        let text = String::from_utf8(m.to_text()).unwrap();
        assert!(
            text.contains("  bad\\xfename\n") && text.contains("  bad\\xffname\n"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.starts_with('\\')));
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), m);
        assert_eq!(m.iter().nth(1).unwrap().shown(), "bad\\xffname");
    }

    #[test]
    fn manifest_parse_rejects_garbage() {
        assert!(Manifest::parse(b"zz  a\n").is_err());
        assert!(Manifest::parse(b"no separator\n").is_err());
        let h = Digest::of_bytes(b"x").hex();
        let bad_escape = format!("\\{h}  a\\qb\n");
        assert!(Manifest::parse(bad_escape.as_bytes()).is_err());
    }

    /// Entries spread over several segments read back as one list, equal to the same entries
    /// in one segment, with the same text, digest and byte count.
    #[test]
    fn segments_are_invisible() {
        let names: Vec<Vec<u8>> = (0..300).map(|i| format!("d/{i:04}").into_bytes()).collect();
        let mut segs = Vec::new();
        for part in names.chunks(64) {
            let mut s = Segment::default();
            for n in part {
                s.push_path(n);
                s.hashes.push(Digest::of_bytes(n));
                s.sizes.push(n.len() as u64);
            }
            segs.push(s);
        }
        segs.insert(2, Segment::default());
        let split = Manifest::from_segments(segs);
        let whole: Manifest = names
            .iter()
            .map(|n| Entry {
                path: n,
                hash: Digest::of_bytes(n),
                size: Some(n.len() as u64),
            })
            .collect();
        assert_eq!(split.len(), 300);
        assert_eq!(split, whole);
        assert_eq!(split.to_text(), whole.to_text());
        assert_eq!(split.digest(), Digest::of_bytes(&whole.to_text()));
        assert_eq!(split.bytes(), Some(300 * 6));
        assert_eq!(Manifest::parse(&whole.to_text()).unwrap().bytes(), None);
        assert_eq!(Manifest::default().bytes(), Some(0));
    }
}
