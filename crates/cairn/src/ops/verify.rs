//! `cairn verify`: check a checkout, its data and its checkpoints against a lock.
//!
//! A policy over the one comparison: [`crate::probe::observe`] reads the current state,
//! [`crate::compare::compare`] names every difference, and verify decides what fails. Code,
//! data, checkpoints and outputs fail (exit 1); environment drift is a warning and host facts
//! are information, both failing only with `--strict`; the CPU model and core count, which
//! differ between any two machines, are left out. Verification keeps going after the first
//! difference and reports every one. It only reads; it never runs anything of the repository's
//! and never writes outside `.cairn/`.

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::compare::Change;
use crate::compare::{self, Reason, State};
use crate::content::digest::Progress;
use crate::error::{Error, Result};
use crate::model::lockfile::Lock;
use crate::probe::observe::{self, ObserveOptions, ReadStats};
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

/// One difference between the lock and what is on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Code, data, checkpoint, output, environment or host.
    pub area: Area,
    /// Whether it fails verification.
    pub severity: Severity,
    /// The subject (the dataset name or artifact path, `code` for the code), the file inside
    /// it, what differs and the words: the same for every command.
    #[serde(flatten)]
    pub line: compare::Reported,
    /// The part of the run in the comparison's terms (a package, the seed, the command...),
    /// for a summary's order; not in the JSON report.
    #[serde(skip)]
    pub section: compare::Area,
    /// For a package: how likely it is to matter (see [`compare::Salience`]); not in the JSON
    /// report.
    #[serde(skip)]
    pub salience: Option<compare::Salience>,
}

/// Counts of what was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Whether the code was checked.
    pub code: bool,
    /// Datasets, checkpoints, outputs, files and bytes checked, and what was actually read.
    #[serde(flatten)]
    pub read: ReadStats,
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
    /// Files in each locked directory, by area and subject ([`compare::file_counts`]), for a
    /// summary's "N of M files"; not in the JSON report.
    #[serde(skip)]
    pub files: std::collections::BTreeMap<(compare::Area, String), u64>,
}

/// Options for [`verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Where datasets are (`--data NAME=PATH`), the interpreter (`--python`), `--no-cache`.
    pub observe: ObserveOptions,
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
    if lock.code.is_some() && project.repo.is_none() {
        return Err(Error::NotARepo {
            path: project.cwd.clone(),
        });
    }
    let observed = observe::observe(project, &lock, &opts.observe, progress)?;
    let locked = State::from_lock(&lock)?;
    let comparison = compare::compare(project, &locked, &observed.state, &[&lock])?;
    let mut notes: Vec<String> = Vec::new();
    if lock.code.is_none() {
        notes.push(compare::Note::NoCode.to_string());
    }
    notes.extend(
        comparison
            .notes
            .iter()
            .filter(|n| !matches!(n, compare::Note::NoCommand))
            .map(|n| n.to_string()),
    );
    let imports = package_imports(project, &lock, &comparison.differences);
    let findings: Vec<Finding> = comparison
        .differences
        .iter()
        .filter_map(|d| {
            let mut f = finding(d, opts.strict)?;
            f.salience = compare::salience(d, &imports, &observed.metadata);
            Some(f)
        })
        .collect();
    Ok(Report {
        lock: lock_path.to_path_buf(),
        run: lock.run.id.clone(),
        ok: !findings.iter().any(|f| f.severity == Severity::Error),
        findings,
        notes,
        checked: Checked {
            code: observed.state.code.is_some(),
            read: observed.read,
        },
        files: compare::file_counts(&lock),
    })
}

/// One dataset's share written by [`verify_shard`].
#[derive(Debug, Clone)]
pub struct ShardWritten {
    /// The dataset.
    pub name: String,
    /// The part file.
    pub part: PathBuf,
    /// What the shard covered and read.
    pub hashed: crate::content::shard::ShardHash,
}

/// What [`verify_shard`] did: the parts it wrote, and the datasets it left to the merging
/// verify (`--from-shards`), with why.
#[derive(Debug, Clone, Default)]
pub struct ShardReport {
    /// Parts written, in lock order.
    pub written: Vec<ShardWritten>,
    /// Datasets not hashed by shards: a single file, or not found here (the merging verify
    /// reads or reports them).
    pub left: Vec<(String, String)>,
}

/// Hash shard `shard` of every locked dataset that is a directory, each through a stat cache of
/// its own, and write the parts into `out_dir` as `<dataset>.<K>-of-<N>.part`. The datasets are
/// found as [`verify`] finds them; nothing is compared here: `cairn verify --from-shards`
/// merges the parts and compares.
pub fn verify_shard(
    project: &Project,
    lock_path: &Path,
    shard: crate::content::shard::Shard,
    out_dir: &Path,
    opts: &VerifyOptions,
    progress: Option<&dyn Progress>,
) -> Result<ShardReport> {
    let lock = Lock::load(lock_path)?;
    observe::check_data_names(&lock, &opts.observe.data)?;
    let cache_dir = project.stat_cache_dir();
    let hopts = crate::content::digest::HashOptions {
        cache_dir: Some(&cache_dir),
        use_cache: !opts.observe.no_cache,
        progress,
        confine: Some(project.boundary()),
    };
    let mut report = ShardReport::default();
    for d in &lock.data {
        let (place, _) = observe::dataset_place(project, d, &opts.observe);
        let place = match place {
            Ok(p) if p.is_dir() => p,
            Ok(p) if p.exists() => {
                report.left.push((
                    d.name.clone(),
                    "a single file: the merging verify reads it".into(),
                ));
                continue;
            }
            Ok(p) => {
                report.left.push((
                    d.name.clone(),
                    format!("{} does not exist here", p.display()),
                ));
                continue;
            }
            Err(why) => {
                let why = match why {
                    compare::Absence::Unlocated => {
                        "external, and not located here (--data NAME=PATH says where)".into()
                    }
                    compare::Absence::LeadsOutside { place, .. } => format!(
                        "{} leads out of the repository; not read (--data NAME=PATH reads it)",
                        place.display()
                    ),
                    compare::Absence::NotFound(p) | compare::Absence::DeletedByRun(p) => {
                        format!("{} does not exist here", p.display())
                    }
                };
                report.left.push((d.name.clone(), why));
                continue;
            }
        };
        let hashed = crate::content::shard::hash_shard(&place, shard, &hopts)?;
        let part = out_dir.join(crate::content::shard::part_name(&d.name, shard));
        hashed.part.write_file(&part)?;
        report.written.push(ShardWritten {
            name: d.name.clone(),
            part,
            hashed,
        });
    }
    Ok(report)
}

/// What the locked command imports ([`crate::probe::imports`]), read only when a package
/// differs.
pub fn package_imports(
    project: &Project,
    lock: &Lock,
    differences: &[compare::Difference],
) -> crate::probe::imports::Imports {
    let any_package = differences
        .iter()
        .any(|d| d.area == compare::Area::Python && d.subject != "python");
    match &lock.run.command {
        Some(command) if any_package => {
            crate::probe::imports::scan(&project.root, project.boundary(), command)
        }
        _ => Default::default(),
    }
}

/// Verify's policy for one difference: its area, whether it fails, and its words. `None` for
/// what verify does not report (host facts that differ between any two machines).
pub fn finding(d: &compare::Difference, strict: bool) -> Option<Finding> {
    use compare::Area as A;
    if d.reason == Some(Reason::MachineOnly) {
        return None;
    }
    // A checkpoint the run deleted itself is a fact of the run, not a difference: never a
    // failure, not even with --strict.
    if d.change == Change::Deleted {
        return Some(Finding {
            area: Area::Checkpoint,
            severity: Severity::Info,
            line: compare::Reported::from(d),
            section: d.area,
            salience: None,
        });
    }
    let (area, level) = match d.area {
        A::Code => (Area::Code, Severity::Error),
        A::Data => (Area::Data, Severity::Error),
        A::Checkpoint => (Area::Checkpoint, Severity::Error),
        A::Output => (Area::Output, Severity::Error),
        A::Host => (Area::Host, Severity::Info),
        A::Python | A::Command | A::Env | A::Seed | A::Lockfile => {
            (Area::Environment, Severity::Warning)
        }
    };
    Some(Finding {
        area,
        severity: if strict { Severity::Error } else { level },
        line: compare::Reported::from(d),
        section: d.area,
        salience: None,
    })
}
