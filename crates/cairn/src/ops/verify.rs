//! `cairn verify`: check a checkout, its data and its checkpoints against a lock.
//!
//! Verification keeps going after the first difference and reports every one: each changed,
//! added or removed file of the code and of every dataset, checkpoint and output. It only reads;
//! it never runs anything and never writes outside `.cairn/`. An external dataset is read only
//! where the user's own cairn.toml or `--data NAME=PATH` says it is, never from the lock alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::content::digest::{self, Digest, HashOptions, Kind, Manifest, Progress};
use crate::error::{Error, Result};
use crate::model::lockfile::{Artifact, Location, Lock};
use crate::probe::env;
use crate::probe::git::{self, Excluder, PathChange};
use crate::project::Project;

/// What part of the lock a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Area {
    /// The code.
    Code,
    /// A dataset.
    Data,
    /// A checkpoint.
    Checkpoint,
    /// An output.
    Output,
    /// The Python environment and dependency lock files (drift).
    Environment,
    /// The host: OS, GPU, driver, C library, PyTorch build (drift).
    Host,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Verification fails (exit 1): code, data, checkpoints and outputs; everything with
    /// `--strict`.
    Error,
    /// Environment drift: reported, does not fail without `--strict`.
    Warning,
    /// Host facts: reported, do not fail without `--strict`.
    Info,
}

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Content differs.
    Changed,
    /// Present now, not in the lock.
    Added,
    /// In the lock, gone now.
    Removed,
    /// Only the mode differs (executable bit, file vs symlink).
    ModeChanged,
    /// The whole dataset, checkpoint or output is missing.
    Missing,
    /// It could not be checked (an external dataset with no location given).
    Unchecked,
}

/// One difference between the lock and what is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Code, data, checkpoint, output, environment or host.
    pub area: Area,
    /// Whether it fails verification.
    pub severity: Severity,
    /// The dataset name or artifact path (`code` for the code).
    pub subject: String,
    /// The file inside it that differs, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What differs.
    pub change: Change,
    /// More words, when useful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Counts of what was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Whether the code was checked.
    pub code: bool,
    /// Datasets checked.
    pub data: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Outputs checked.
    pub outputs: u64,
    /// Files checked (data, checkpoints, outputs).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files actually read; the others were known unchanged from the stat cache.
    pub files_read: u64,
    /// Bytes actually read.
    pub bytes_read: u64,
}

/// The result of a verification. `findings` empty means everything matched.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The lockfile verified.
    pub lock: PathBuf,
    /// The run id in that lock.
    pub run: String,
    /// `true` when nothing differs.
    pub ok: bool,
    /// Every difference, in lock order: code, data, checkpoints, outputs.
    pub findings: Vec<Finding>,
    /// Facts that are not differences (e.g. the code matches at a different commit).
    pub notes: Vec<String>,
    /// What was checked.
    pub checked: Checked,
}

/// Options for [`verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Dataset locations given on the command line (`--data NAME=PATH`), already absolute.
    pub data: BTreeMap<String, PathBuf>,
    /// Read every file even when the stat cache says it is unchanged.
    pub no_cache: bool,
    /// The Python interpreter to compare with the lock (`--python`).
    pub python: Option<PathBuf>,
    /// Environment and host drift fail too.
    pub strict: bool,
}

/// Verify the project against the lock at `lock_path`.
pub fn verify(
    project: &Project,
    lock_path: &Path,
    opts: &VerifyOptions,
    progress: Option<&dyn Progress>,
) -> Result<Report> {
    let lock = Lock::load(lock_path)?;
    let cache_dir = project.stat_cache_dir();
    let hopts = HashOptions {
        cache_dir: Some(&cache_dir),
        use_cache: !opts.no_cache,
        progress,
        confine: Some(project.boundary()),
    };
    for name in opts.data.keys() {
        if !lock.data.iter().any(|d| &d.name == name) {
            return Err(Error::Usage(format!(
                "--data {name}=...: the lock has no dataset named {name:?}"
            )));
        }
    }
    let mut report = Report {
        lock: lock_path.to_path_buf(),
        run: lock.run.id.clone(),
        ok: true,
        findings: Vec::new(),
        notes: Vec::new(),
        checked: Checked::default(),
    };
    verify_code(project, &lock, &mut report)?;
    for d in &lock.data {
        // `--data NAME=PATH` moves any dataset; cairn.toml only locates external ones (for an
        // in-project dataset the lock's path is the truth).
        let from_config = || {
            project
                .config
                .data
                .get(&d.name)
                .filter(|_| d.location == Location::External)
                .map(|p| project.resolve(&project.root, p).0)
        };
        let given = opts.data.get(&d.name).cloned().or_else(from_config);
        let place = match (&d.location, given) {
            (_, Some(p)) => Some(p),
            (Location::Path(rel), None) => {
                let p = rel.under(&project.root);
                if let Some(target) = leads_outside(project, &p) {
                    report.findings.push(Finding {
                        area: Area::Data,
                        severity: Severity::Error,
                        subject: d.name.clone(),
                        path: None,
                        change: Change::Unchecked,
                        detail: Some(format!(
                            "{rel} leads outside the repository (to {}); not read unless you say so: --data {}={rel} or cairn.toml",
                            target.display(),
                            d.name
                        )),
                    });
                    continue;
                }
                Some(p)
            }
            (Location::External, None) => None,
        };
        let Some(place) = place else {
            report.findings.push(Finding {
                area: Area::Data,
                severity: Severity::Error,
                subject: d.name.clone(),
                path: None,
                change: Change::Unchecked,
                detail: Some(format!(
                    "external dataset: say where it is with --data {}=PATH or in cairn.toml",
                    d.name
                )),
            });
            continue;
        };
        report.checked.data += 1;
        let item = Item {
            area: Area::Data,
            subject: &d.name,
            place: &place,
            kind: d.kind,
            locked: &d.digest,
        };
        check_item(project, &item, &hopts, &mut report)?;
    }
    for (area, list) in [
        (Area::Checkpoint, &lock.checkpoints),
        (Area::Output, &lock.outputs),
    ] {
        for a in list {
            check_artifact(project, area, a, &hopts, &mut report)?;
        }
    }
    verify_environment(project, &lock, opts, &mut report)?;
    report.ok = !report
        .findings
        .iter()
        .any(|f| f.severity == Severity::Error);
    Ok(report)
}

fn check_artifact(
    project: &Project,
    area: Area,
    a: &Artifact,
    hopts: &HashOptions<'_>,
    report: &mut Report,
) -> Result<()> {
    match area {
        Area::Checkpoint => report.checked.checkpoints += 1,
        _ => report.checked.outputs += 1,
    }
    let place = a.path.under(&project.root);
    if let Some(target) = leads_outside(project, &place) {
        report.findings.push(Finding {
            area,
            severity: Severity::Error,
            subject: a.path.to_string(),
            path: None,
            change: Change::Unchecked,
            detail: Some(format!(
                "leads outside the repository (to {}) through a symlink; not read",
                target.display()
            )),
        });
        return Ok(());
    }
    let item = Item {
        area,
        subject: a.path.as_str(),
        place: &place,
        kind: a.kind,
        locked: &a.digest,
    };
    check_item(project, &item, hopts, report)
}

/// Where a path from a lock really leads, when that is outside the repository (through a
/// symlink): a lock from someone else must not make verify read the rest of the disk.
fn leads_outside(project: &Project, place: &Path) -> Option<PathBuf> {
    let real = place.canonicalize().ok()?;
    (!real.starts_with(project.boundary())).then_some(real)
}

/// One dataset, checkpoint or output to check.
struct Item<'a> {
    area: Area,
    subject: &'a str,
    place: &'a Path,
    kind: Kind,
    locked: &'a Digest,
}

fn check_item(
    project: &Project,
    item: &Item<'_>,
    hopts: &HashOptions<'_>,
    report: &mut Report,
) -> Result<()> {
    let Item {
        area,
        subject,
        place,
        kind,
        locked,
    } = *item;
    let finding = |path: Option<String>, change: Change, detail: Option<String>| Finding {
        area,
        severity: Severity::Error,
        subject: subject.to_string(),
        path,
        change,
        detail,
    };
    let hashed = match digest::hash_path_with(place, hopts) {
        Ok(h) => h,
        Err(Error::Missing { .. }) => {
            report.findings.push(finding(
                None,
                Change::Missing,
                Some(format!("{} does not exist", place.display())),
            ));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    report.checked.files += hashed.files;
    report.checked.bytes += hashed.bytes;
    report.checked.files_read += hashed.files_read;
    report.checked.bytes_read += hashed.bytes_read;
    if &hashed.digest == locked && hashed.kind == kind {
        return Ok(());
    }
    if hashed.kind != kind {
        report.findings.push(finding(
            None,
            Change::Changed,
            Some(format!(
                "locked as a {}, now a {}",
                kind_name(kind),
                kind_name(hashed.kind)
            )),
        ));
        return Ok(());
    }
    let Some(now) = &hashed.manifest else {
        report.findings.push(finding(None, Change::Changed, None));
        return Ok(());
    };
    let manifest_path = project.manifest_path(locked);
    // The manifest file is the manifest text itself: check its bytes against the digest before
    // parsing them.
    let old = project
        .read_manifest(locked)
        .ok()
        .filter(|t| &Digest::of_bytes(t) == locked)
        .and_then(|t| Manifest::parse(&t).ok());
    let Some(old) = old else {
        report.findings.push(finding(
            None,
            Change::Changed,
            Some(format!(
                "digest differs; no manifest at {} to name the files",
                manifest_path.display()
            )),
        ));
        return Ok(());
    };
    let diffs = manifest_diff(&old, now);
    if diffs.is_empty() {
        // Same text, different digest cannot happen; be explicit rather than silent.
        report.findings.push(finding(None, Change::Changed, None));
    }
    for (path, change) in diffs {
        report.findings.push(finding(Some(path), change, None));
    }
    Ok(())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "directory",
    }
}

/// Files that differ between two manifests, shown by their escaped names ([`crate::content::digest::Entry::shown`]).
///
/// Both lists are normally sorted by the same bytes, so one merge pass does it; a stored
/// manifest written in another order is compared through maps instead.
pub fn manifest_diff(old: &Manifest, new: &Manifest) -> Vec<(String, Change)> {
    let sorted = |m: &Manifest| {
        m.entries.windows(2).all(|w| w[0].path < w[1].path)
            && m.entries
                .iter()
                .all(|e| std::str::from_utf8(&e.path).is_ok())
    };
    if !(sorted(old) && sorted(new)) {
        return manifest_diff_by_name(old, new);
    }
    let mut out = Vec::new();
    let (mut a, mut b) = (old.entries.iter().peekable(), new.entries.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(o), None) => {
                out.push((o.shown(), Change::Removed));
                a.next();
            }
            (None, Some(n)) => {
                out.push((n.shown(), Change::Added));
                b.next();
            }
            (Some(o), Some(n)) => match o.path.cmp(&n.path) {
                std::cmp::Ordering::Less => {
                    out.push((o.shown(), Change::Removed));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push((n.shown(), Change::Added));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if o.hash != n.hash {
                        out.push((o.shown(), Change::Changed));
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    out
}

fn manifest_diff_by_name(old: &Manifest, new: &Manifest) -> Vec<(String, Change)> {
    let old: BTreeMap<String, Digest> = old.entries.iter().map(|e| (e.shown(), e.hash)).collect();
    let new: BTreeMap<String, Digest> = new.entries.iter().map(|e| (e.shown(), e.hash)).collect();
    let mut out = Vec::new();
    for (p, h) in &old {
        match new.get(p) {
            None => out.push((p.clone(), Change::Removed)),
            Some(n) if n != h => out.push((p.clone(), Change::Changed)),
            Some(_) => {}
        }
    }
    for p in new.keys() {
        if !old.contains_key(p) {
            out.push((p.clone(), Change::Added));
        }
    }
    out.sort();
    out
}

/// Compare the environment (Python, lock files) and the host with the lock.
fn verify_environment(
    project: &Project,
    lock: &Lock,
    opts: &VerifyOptions,
    report: &mut Report,
) -> Result<()> {
    let severity = |level: env::Level| match (opts.strict, level) {
        (true, _) => Severity::Error,
        (false, env::Level::Environment) => Severity::Warning,
        (false, env::Level::Host) => Severity::Info,
    };
    let mut drifts = Vec::new();
    let mut current = None;
    let mut torch = None;
    let mut libc = None;
    if let Some(locked) = &lock.python {
        let configured = env::config_python(&project.root, project.config.python.as_deref());
        match env::capture_python(opts.python.as_deref(), configured.as_deref())? {
            Ok(e) => {
                let mut table = env::python_table(&e);
                env::align_repo_packages(locked, &mut table, project.repo_root.as_deref());
                drifts.extend(env::python_drift(locked, &table));
                torch = e.torch.clone();
                libc = e.interpreter.libc.clone();
                current = Some(table);
            }
            Err(why) => drifts.push(env::Drift {
                level: env::Level::Environment,
                subject: "python".into(),
                change: env::DriftChange::Removed,
                detail: why,
            }),
        }
    }
    let (lock_drifts, warnings) =
        env::lockfile_drift(&project.root, &lock.lockfiles, current.as_ref())?;
    drifts.extend(lock_drifts);
    report.notes.extend(warnings);
    if let Some(locked) = &lock.host {
        let mut now = crate::probe::host::probe();
        now.torch = torch;
        if now.glibc.is_none() {
            now.glibc = libc;
        }
        drifts.extend(env::host_drift(locked, &now));
    }
    for d in drifts {
        report.findings.push(Finding {
            area: match d.level {
                env::Level::Environment => Area::Environment,
                env::Level::Host => Area::Host,
            },
            severity: severity(d.level),
            subject: d.subject,
            path: None,
            change: match d.change {
                env::DriftChange::Added => Change::Added,
                env::DriftChange::Removed => Change::Removed,
                env::DriftChange::Changed => Change::Changed,
            },
            detail: Some(d.detail),
        });
    }
    Ok(())
}

fn verify_code(project: &Project, lock: &Lock, report: &mut Report) -> Result<()> {
    let Some(code) = &lock.code else {
        report
            .notes
            .push("the lock records no code (locked with --no-git)".into());
        return Ok(());
    };
    let Some(repo) = &project.repo else {
        return Err(Error::NotARepo {
            path: project.cwd.clone(),
        });
    };
    report.checked.code = true;
    let mut tracked: Vec<String> = Vec::new();
    for d in &lock.data {
        if let Location::Path(p) = &d.location {
            tracked.extend(project.repo_relative(p));
        }
    }
    for a in lock.checkpoints.iter().chain(&lock.outputs) {
        tracked.extend(project.repo_relative(&a.path));
    }
    let excluder = Excluder::new(tracked);
    let current = git::working_entries(repo, &excluder)?;
    let tree = git::tree_id(&current)?;
    let head = repo
        .head()
        .ok()
        .and_then(|h| h.target())
        .map(|o| o.to_string());
    if tree.to_string() == code.tree {
        if let Some(change) = &code.change {
            let sidecar = project.change_path(change);
            if !sidecar.is_file() {
                report.notes.push(format!(
                    "the code matches, but the recorded change {} is missing: commit it with the lock, or this run cannot be rebuilt from the repository",
                    sidecar.display()
                ));
            }
        }
        if head.as_deref() != Some(code.commit.as_str()) {
            report.notes.push(format!(
                "the code matches the lock; it was locked at commit {} and HEAD is now {}",
                short(&code.commit),
                head.as_deref().map(short).unwrap_or("unborn")
            ));
        }
        return Ok(());
    }
    let code_finding = |path: Option<String>, change: Change, detail: Option<String>| Finding {
        area: Area::Code,
        severity: Severity::Error,
        subject: "code".into(),
        path,
        change,
        detail,
    };
    if !git::has_commit(repo, &code.commit) {
        report.findings.push(code_finding(
            None,
            Change::Changed,
            Some(format!(
                "the working tree differs from the lock, and the locked commit {} is not in this repository (fetch it to see which files differ)",
                code.commit
            )),
        ));
        return Ok(());
    }
    let oid = git2::Oid::from_str(&code.commit).map_err(|e| Error::Git {
        message: "bad commit id".into(),
        source: e,
    })?;
    let mut locked = git::commit_entries(repo, oid, &excluder)?;
    if let Some(change) = &code.change {
        let sidecar = project.change_path(change);
        match project.read_change(change) {
            Ok(patch) if &Digest::of_bytes(&patch) == change => {
                locked = git::apply_patch_entries(locked, &patch)?;
            }
            Ok(_) => report.findings.push(code_finding(
                None,
                Change::Changed,
                Some(format!(
                    "the recorded change {} does not match its digest; showing differences from commit {}",
                    sidecar.display(),
                    short(&code.commit)
                )),
            )),
            Err(_) => report.notes.push(format!(
                "the recorded change {} is missing (commit it with the lock); showing differences from commit {}",
                sidecar.display(),
                short(&code.commit)
            )),
        }
    }
    let diffs = git::diff_entries(&locked, &current);
    if diffs.is_empty() {
        report.findings.push(code_finding(
            None,
            Change::Changed,
            Some("the working tree's git tree differs from the locked one".into()),
        ));
    }
    for (path, change) in diffs {
        let change = match change {
            PathChange::Added => Change::Added,
            PathChange::Removed => Change::Removed,
            PathChange::Modified => Change::Changed,
            PathChange::ModeChanged => Change::ModeChanged,
        };
        report.findings.push(code_finding(Some(path), change, None));
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::digest::Entry;

    fn m(items: &[(&[u8], u8)]) -> Manifest {
        Manifest {
            entries: items
                .iter()
                .map(|(p, h)| Entry {
                    path: p.to_vec(),
                    hash: Digest([*h; 32]),
                    size: None,
                })
                .collect(),
        }
    }

    #[test]
    fn merge_and_map_diffs_agree() {
        let old = m(&[(b"a", 1), (b"b", 2), (b"d/x", 3)]);
        let new = m(&[(b"a", 1), (b"b", 9), (b"c", 4)]);
        let want = vec![
            ("b".to_string(), Change::Changed),
            ("c".to_string(), Change::Added),
            ("d/x".to_string(), Change::Removed),
        ];
        let mut merged = manifest_diff(&old, &new);
        merged.sort();
        assert_eq!(merged, want);
        assert_eq!(manifest_diff_by_name(&old, &new), want);
        // Names that are not UTF-8 are told apart and shown escaped.
        let old = m(&[(b"\xfe", 1), (b"\xff", 1)]);
        let new = m(&[(b"\xfe", 1), (b"\xff", 2)]);
        let want = vec![("\\xff".to_string(), Change::Changed)];
        assert_eq!(manifest_diff(&old, &new), want);
        // A stored manifest out of order goes through maps, with the same answer.
        let unsorted = Manifest {
            entries: old.entries.iter().rev().cloned().collect(),
        };
        assert_eq!(manifest_diff(&unsorted, &new), want);
    }
}
