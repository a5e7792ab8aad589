//! Checkpoint records of a running `cairn lock -- COMMAND`: one append-only journal per writer.
//!
//! Inside a run, `cairn checkpoint add` (and the Python `cairn.checkpoint()`) does not rewrite
//! the in-progress lock. Each writing process appends one line per checkpoint to a journal file
//! of its own, `<in-progress lock>.d/<host>-<pid>-<random>.jsonl`, created with
//! `O_EXCL | O_NOFOLLOW | O_APPEND` and written with a single `write()`. No file lock is taken
//! (they are often missing or unreliable across the hosts of one training run sharing a
//! filesystem) and nothing is synced per record: a completed write survives the death of its
//! writer in the page cache; the run's final lock is synced once when `cairn lock` ends.
//!
//! A line is `{"b3":"<BLAKE3 hex of REC>","rec":REC}` and a newline, REC being the record's JSON.
//! A reader checks each line against its checksum and skips (with a note naming the file and
//! line) a line that does not match or has no newline yet: the last write of a writer killed
//! while writing, or one still being written.
//!
//! Readers merge every journal of the lock with the lock itself ([`merge`]): a later record of
//! the same path replaces an earlier one (order of addition: time, then writer, then the
//! writer's sequence number).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::content::digest::{Digest, Kind};
use crate::error::{Error, IoResultExt, Result};
use crate::model::lockfile::{self, Artifact, Metric, Parent};
use crate::model::paths::RelPath;

/// The largest journal line read (a record is a few hundred bytes; metrics make it longer).
const MAX_LINE: usize = 1 << 20;

/// The journal directory of the lock at `lock_path`: `<lock_path>.d`.
pub fn dir_of(lock_path: &Path) -> PathBuf {
    let mut s = lock_path.as_os_str().to_os_string();
    s.push(".d");
    PathBuf::from(s)
}

/// One checkpoint record of a journal.
#[derive(Debug, Clone)]
pub struct Record {
    /// The entry, as the lock will record it.
    pub artifact: Artifact,
    /// When it was added, in nanoseconds since the Unix epoch (the writer's clock).
    pub t_ns: u64,
    /// The writer (the journal's file name without `.jsonl`).
    pub writer: String,
    /// Its place in the writer's journal, from 0.
    pub seq: u64,
}

/// The JSON of a record. Metrics are kept as Rust's shortest round-trip text of the number, so
/// that a value reads back bit for bit.
#[derive(Serialize, Deserialize)]
struct Wire {
    path: String,
    kind: String,
    digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files: Option<u64>,
    bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent_run: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metrics: BTreeMap<String, String>,
    t_ns: u64,
    seq: u64,
}

fn encode(a: &Artifact, t_ns: u64, seq: u64) -> Vec<u8> {
    let wire = Wire {
        path: a.path.as_str().to_string(),
        kind: lockfile::kind_str(a.kind).to_string(),
        digest: a.digest.to_string(),
        files: a.files,
        bytes: a.bytes,
        step: a.step,
        parent: a.parent.as_ref().map(|p| p.to_string()),
        created_at: a.created_at.clone(),
        parent_run: a.parent_run.clone(),
        metrics: a
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), format!("{:?}", v.0)))
            .collect(),
        t_ns,
        seq,
    };
    let rec = serde_json::to_vec(&wire).expect("a record serialises");
    let sum = blake3::hash(&rec).to_hex();
    let mut line = Vec::with_capacity(rec.len() + 84);
    line.extend_from_slice(b"{\"b3\":\"");
    line.extend_from_slice(sum.as_bytes());
    line.extend_from_slice(b"\",\"rec\":");
    line.extend_from_slice(&rec);
    line.extend_from_slice(b"}\n");
    line
}

/// Decode one line (without its newline); `None` when it is not a whole, intact record.
fn decode(line: &[u8], writer: &str) -> Option<Record> {
    let rest = line.strip_prefix(b"{\"b3\":\"")?;
    let (sum, rest) = (rest.get(..64)?, rest.get(64..)?);
    let rec = rest.strip_prefix(b"\",\"rec\":")?.strip_suffix(b"}")?;
    if blake3::hash(rec).to_hex().as_bytes() != sum {
        return None;
    }
    let w: Wire = serde_json::from_slice(rec).ok()?;
    let kind = match w.kind.as_str() {
        "file" => Kind::File,
        "dir" => Kind::Dir,
        _ => return None,
    };
    let mut metrics = BTreeMap::new();
    for (k, v) in w.metrics {
        metrics.insert(k, Metric(v.parse().ok()?));
    }
    Some(Record {
        artifact: Artifact {
            path: RelPath::parse(&w.path).ok()?,
            kind,
            digest: w.digest.parse::<Digest>().ok()?,
            files: w.files,
            bytes: w.bytes,
            step: w.step,
            parent: match w.parent {
                Some(p) => Some(Parent::parse(&p).ok()?),
                None => None,
            },
            created_at: w.created_at,
            parent_run: w.parent_run,
            deleted_by_run: false,
            metrics,
        },
        t_ns: w.t_ns,
        writer: writer.to_string(),
        seq: w.seq,
    })
}

/// This process's journal: opened on its first record in a run, reused after.
struct Writer {
    pid: u32,
    lock: PathBuf,
    path: PathBuf,
    file: File,
    seq: u64,
}

/// The journal this process writes, and (held while a checkpoint is added) the guard that keeps
/// two threads of one process from inferring the same parent at once.
static WRITER: Mutex<Option<Writer>> = Mutex::new(None);

/// Hold this process's writer guard while `f` runs (reading the journals, choosing the parent
/// and appending happen under it).
pub(crate) fn with_writer<T>(f: impl FnOnce(&mut Appender<'_>) -> Result<T>) -> Result<T> {
    let mut guard = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut Appender { writer: &mut guard })
}

/// Appends records to this process's journal of a lock.
pub(crate) struct Appender<'a> {
    writer: &'a mut Option<Writer>,
}

impl Appender<'_> {
    /// Append `a` to this process's journal of `lock_path` with one `write()`.
    pub(crate) fn append(&mut self, lock_path: &Path, a: &Artifact) -> Result<()> {
        let pid = std::process::id();
        let reuse = self
            .writer
            .as_ref()
            .is_some_and(|w| w.pid == pid && w.lock == lock_path);
        if !reuse {
            *self.writer = Some(open_journal(lock_path, pid)?);
        }
        let w = self.writer.as_mut().expect("just opened");
        let line = encode(a, now_ns(), w.seq);
        match w.file.write(&line) {
            Ok(n) if n == line.len() => {
                w.seq += 1;
                Ok(())
            }
            // A short or failed write may have left part of a line: this journal is not written
            // again (its torn last line is skipped by readers); the next record starts a new one.
            Ok(_) => {
                let path = w.path.clone();
                *self.writer = None;
                Err(Error::Io {
                    op: "cannot append a whole checkpoint record to",
                    path,
                    source: std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
                })
            }
            Err(source) => {
                let path = w.path.clone();
                *self.writer = None;
                Err(Error::Io {
                    op: "cannot append a checkpoint record to",
                    path,
                    source,
                })
            }
        }
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// This machine's name as a file-name part (letters, digits, `.`, `-`, `_`).
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "host".into()
    } else {
        clean
    }
}

fn open_journal(lock_path: &Path, pid: u32) -> Result<Writer> {
    let dir = dir_of(lock_path);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).ctx("cannot create the journal directory", &dir),
    }
    // The directory sits beside the in-progress lock; a symlink there is not followed.
    let meta = std::fs::symlink_metadata(&dir).ctx("cannot read", &dir)?;
    if !meta.is_dir() {
        return Err(Error::Refused {
            message: format!("{} is not a directory", dir.display()),
            hint: "it holds the checkpoint journals of the running `cairn lock`; remove what is there and add the checkpoint again".into(),
        });
    }
    let host = host();
    let mut n = 0u64;
    loop {
        let seed = format!("{host}-{pid}-{}-{n}", now_ns());
        let tag = blake3::hash(seed.as_bytes()).to_hex();
        let path = dir.join(format!("{host}-{pid}-{}.jsonl", &tag[..8]));
        match rustix::fs::open(
            &path,
            OFlags::WRONLY
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::APPEND
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        ) {
            Ok(fd) => {
                return Ok(Writer {
                    pid,
                    lock: lock_path.to_path_buf(),
                    path,
                    file: File::from(fd),
                    seq: 0,
                })
            }
            Err(rustix::io::Errno::EXIST) => n += 1,
            Err(e) => return Err(std::io::Error::from(e)).ctx("cannot create the journal", &path),
        }
    }
}

/// What this process has read of one journal: the bytes up to the last whole line, and what
/// they held. Journals only grow, so a later read starts where the last one stopped.
struct Seen {
    dev_ino: (u64, u64),
    consumed: u64,
    lines: usize,
    records: Vec<Record>,
    notes: Vec<String>,
}

static SEEN: Mutex<Option<HashMap<PathBuf, Seen>>> = Mutex::new(None);

/// Read every journal of the lock at `lock_path` and call `f` with their intact records (in
/// journal-name order, each journal in its own order) and notes about the lines skipped.
pub(crate) fn visit<T>(lock_path: &Path, f: impl FnOnce(&[&Record], &[String]) -> T) -> Result<T> {
    let dir = dir_of(lock_path);
    let mut names = Vec::new();
    // A journal directory that is a symbolic link (a stranger's `.cairn/` can hold one) is not
    // followed: its writers never made it, so it holds no record of this run.
    let real = crate::fs::real_dir(&dir).unwrap_or(false);
    match std::fs::read_dir(&dir).and_then(|d| {
        if real {
            Ok(d)
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        }
    }) {
        Ok(entries) => {
            for e in entries {
                let e = e.ctx("cannot read the journal directory", &dir)?;
                let name = e.file_name();
                if let Some(s) = name.to_str().and_then(|s| s.strip_suffix(".jsonl")) {
                    names.push(s.to_string());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).ctx("cannot read the journal directory", &dir),
    }
    names.sort();
    let mut guard = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = guard.get_or_insert_with(HashMap::new);
    let mut tails = Vec::new();
    for name in &names {
        let path = dir.join(format!("{name}.jsonl"));
        let tail = read_journal(seen, &path, name)?;
        tails.extend(tail);
    }
    let mut records = Vec::new();
    let mut notes = Vec::new();
    for name in &names {
        if let Some(s) = seen.get(&dir.join(format!("{name}.jsonl"))) {
            records.extend(s.records.iter());
            notes.extend(s.notes.iter().cloned());
        }
    }
    notes.extend(tails);
    Ok(f(&records, &notes))
}

/// Bring what this process has seen of one journal up to date; returns a note when its last
/// line is incomplete.
fn read_journal(
    seen: &mut HashMap<PathBuf, Seen>,
    path: &Path,
    name: &str,
) -> Result<Option<String>> {
    let fd = match rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(std::io::Error::from(e)).ctx("cannot open the journal", path),
    };
    let mut file = File::from(fd);
    let meta = file.metadata().ctx("cannot read", path)?;
    if !meta.is_file() {
        return Ok(Some(format!(
            "skipped {}: not a regular file",
            path.display()
        )));
    }
    let id = (meta.dev(), meta.ino());
    let entry = seen.entry(path.to_path_buf()).or_insert_with(|| Seen {
        dev_ino: id,
        consumed: 0,
        lines: 0,
        records: Vec::new(),
        notes: Vec::new(),
    });
    if entry.dev_ino != id || meta.len() < entry.consumed {
        *entry = Seen {
            dev_ino: id,
            consumed: 0,
            lines: 0,
            records: Vec::new(),
            notes: Vec::new(),
        };
    }
    file.seek(SeekFrom::Start(entry.consumed))
        .ctx("cannot read the journal", path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .ctx("cannot read the journal", path)?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    for line in bytes[..whole].split_inclusive(|&b| b == b'\n') {
        entry.lines += 1;
        let line = &line[..line.len() - 1];
        match (line.len() <= MAX_LINE).then(|| decode(line, name)).flatten() {
            Some(r) => entry.records.push(r),
            None => entry.notes.push(format!(
                "skipped line {} of {}: not an intact checkpoint record (its checksum does not match)",
                entry.lines,
                path.display()
            )),
        }
    }
    entry.consumed += whole as u64;
    let tail = &bytes[whole..];
    Ok((!tail.is_empty()).then(|| {
        format!(
            "skipped the last line of {}: an incomplete checkpoint record ({} bytes, no newline: its writer was killed while writing it, or is writing it now)",
            path.display(),
            tail.len()
        )
    }))
}

/// The checkpoints of an in-progress lock: those in the lock itself, then each record of the
/// journals in the order they were added (a record of a path replaces what was there), sorted by
/// step, then time, then writer.
pub fn merge(lock: &[Artifact], records: &[&Record]) -> Vec<Artifact> {
    let mut order: Vec<&Record> = records.to_vec();
    order.sort_by(|a, b| (a.t_ns, &a.writer, a.seq).cmp(&(b.t_ns, &b.writer, b.seq)));
    let mut by_path: BTreeMap<&RelPath, (&Artifact, (u64, &str, u64))> = BTreeMap::new();
    for a in lock {
        by_path.insert(&a.path, (a, (0, "", 0)));
    }
    for r in order {
        by_path.insert(
            &r.artifact.path,
            (&r.artifact, (r.t_ns, r.writer.as_str(), r.seq)),
        );
    }
    let mut out: Vec<(&Artifact, (u64, &str, u64))> = by_path.into_values().collect();
    out.sort_by(|(a, ka), (b, kb)| (a.step, ka).cmp(&(b.step, kb)));
    out.into_iter().map(|(a, _)| a.clone()).collect()
}

/// The previous checkpoint among an in-progress lock's checkpoints and journal records, for a
/// new one at `path` with `step`: the highest step below it (or, without steps, the most
/// recently added), the journals read as [`merge`] reads them.
pub(crate) fn previous(
    lock: &[Artifact],
    records: &[&Record],
    step: Option<u64>,
    path: &RelPath,
) -> Option<Parent> {
    let mut by_path: BTreeMap<&RelPath, (&Artifact, (u64, &str, u64))> = BTreeMap::new();
    for a in lock {
        by_path.insert(&a.path, (a, (0, "", 0)));
    }
    let mut order: Vec<&Record> = records.to_vec();
    order.sort_by(|a, b| (a.t_ns, &a.writer, a.seq).cmp(&(b.t_ns, &b.writer, b.seq)));
    for r in order {
        by_path.insert(
            &r.artifact.path,
            (&r.artifact, (r.t_ns, r.writer.as_str(), r.seq)),
        );
    }
    by_path
        .into_values()
        .filter(|(a, _)| &a.path != path)
        .filter(|(a, _)| match (step, a.step) {
            (Some(s), Some(t)) => t < s,
            _ => true,
        })
        .max_by(|(a, ka), (b, kb)| {
            (a.step, a.created_at.as_deref(), ka, &a.path).cmp(&(
                b.step,
                b.created_at.as_deref(),
                kb,
                &b.path,
            ))
        })
        .map(|(a, _)| Parent::Path(a.path.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(path: &str, step: u64) -> Artifact {
        Artifact {
            path: RelPath::parse(path).unwrap(),
            kind: Kind::File,
            digest: Digest::of_bytes(path.as_bytes()),
            files: None,
            bytes: 4,
            step: Some(step),
            parent: None,
            created_at: Some("2026-11-30T19:00:00Z".into()),
            parent_run: None,
            deleted_by_run: false,
            metrics: [("loss".to_string(), Metric(0.1 + 0.2))].into(),
        }
    }

    #[test]
    fn a_record_reads_back_bit_for_bit() {
        let a = artifact("ckpt/a.bin", 3);
        let line = encode(&a, 7, 2);
        assert!(line.ends_with(b"}\n"));
        let r = decode(&line[..line.len() - 1], "w").expect("intact");
        assert_eq!(r.artifact, a);
        assert_eq!((r.t_ns, r.seq, r.writer.as_str()), (7, 2, "w"));
    }

    #[test]
    fn a_changed_byte_fails_the_checksum() {
        let line = encode(&artifact("ckpt/a.bin", 3), 7, 2);
        let mut bad = line[..line.len() - 1].to_vec();
        let i = bad.len() - 10;
        bad[i] ^= 1;
        assert!(decode(&bad, "w").is_none());
        assert!(decode(&line[..line.len() / 2], "w").is_none());
    }

    #[test]
    fn a_later_record_of_a_path_replaces_the_earlier() {
        let a1 = artifact("ckpt/a.bin", 1);
        let mut a2 = artifact("ckpt/a.bin", 5);
        a2.bytes = 9;
        let b = artifact("ckpt/b.bin", 2);
        let rs = [
            Record {
                artifact: a2.clone(),
                t_ns: 30,
                writer: "x".into(),
                seq: 1,
            },
            Record {
                artifact: a1,
                t_ns: 10,
                writer: "x".into(),
                seq: 0,
            },
            Record {
                artifact: b.clone(),
                t_ns: 20,
                writer: "y".into(),
                seq: 0,
            },
        ];
        let refs: Vec<&Record> = rs.iter().collect();
        assert_eq!(merge(&[], &refs), vec![b, a2]);
        let p = previous(&[], &refs, Some(9), &RelPath::parse("ckpt/c.bin").unwrap());
        assert_eq!(p, Some(Parent::Path(RelPath::parse("ckpt/a.bin").unwrap())));
    }

    #[test]
    fn a_reader_sees_a_record_once_its_line_is_whole_and_names_a_torn_one() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("run.lock");
        std::fs::create_dir(dir_of(&lock)).unwrap();
        let journal = dir_of(&lock).join("h-1-abcd.jsonl");
        let line = encode(&artifact("ckpt/a.bin", 1), 5, 0);
        let (first, rest) = line.split_at(40);
        std::fs::write(&journal, first).unwrap();
        let read = || visit(&lock, |r, n| (merge(&[], r), n.to_vec())).unwrap();
        let (seen, notes) = read();
        assert!(seen.is_empty());
        assert!(notes[0].contains("h-1-abcd.jsonl: an incomplete checkpoint record (40 bytes"));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        f.write_all(rest).unwrap();
        let (seen, notes) = read();
        assert_eq!(seen, vec![artifact("ckpt/a.bin", 1)]);
        assert!(notes.is_empty(), "{notes:?}");
        // A damaged whole line is skipped with its number; the records around it are kept.
        let mut bad = encode(&artifact("ckpt/b.bin", 2), 6, 1);
        bad[20] ^= 1;
        f.write_all(&bad).unwrap();
        f.write_all(&encode(&artifact("ckpt/c.bin", 3), 7, 2))
            .unwrap();
        let (seen, notes) = read();
        assert_eq!(seen.len(), 2);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].starts_with("skipped line 2 of "), "{notes:?}");
    }
}
