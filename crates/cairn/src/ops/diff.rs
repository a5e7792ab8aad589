//! `cairn diff`: why two runs differ.
//!
//! Compares two locks, or a lock with the current state of the project (observed by
//! [`crate::probe::observe`], as verify does), through the one comparison
//! ([`crate::compare::compare`]): the code (the commits, the commits between them, the files
//! that differ), the datasets (and the files in them that differ, when both manifests are in
//! `.cairn/manifests/`), the Python interpreter and packages, the command, the determinism
//! variables, the seed, the dependency lock files and the host. Those are the possible
//! **causes**; the checkpoints and outputs that differ are the **effects**. Causes are ordered
//! by how likely each is to explain a different result: code, data, packages, command,
//! environment variables, seed, lock files, host. diff's policy is to report everything. When
//! checkpoints or outputs differ, the causes are also grouped by what changes float results
//! ([`compare::likely_causes`]: packages, BLAS library, CPU instruction sets, thread counts,
//! numerics variables, GPU stack), one line per group.
//!
//! The JSON form of the [`Report`] is specified in `spec/diff-report.md`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Serialize;

pub use crate::compare::Area as Section;
use crate::compare::{self, CodeState, ObjectId, State};
use crate::content::digest::Progress;
use crate::error::Result;
use crate::model::lockfile::Lock;
use crate::probe::observe::{self, ObserveOptions};
use crate::project::Project;

/// One difference between A and B.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// What part of the run.
    pub section: Section,
    /// The subject, the file inside it, what differs (`added`: only in B, `removed`: only in
    /// A) and the words, as every command reports them; diff's words leave the values to `a`
    /// and `b`.
    #[serde(flatten)]
    pub line: compare::Reported,
    /// The value in A, when there is a short one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<String>,
    /// The value in B.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<String>,
    /// For a package: how likely it is to matter (see [`compare::Salience`]); not in the JSON
    /// report.
    #[serde(skip)]
    pub salience: Option<compare::Salience>,
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// The lockfile, or `None` for the current state.
    pub lock: Option<PathBuf>,
    /// Its run id (`None` for the current state).
    pub run: Option<String>,
    /// When it was locked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_at: Option<String>,
    /// The commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A commit between the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitLine {
    /// Full id.
    pub commit: String,
    /// First line of its message.
    pub subject: String,
}

/// The code of the two sides at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct CodeSummary {
    /// A's commit.
    pub a: String,
    /// B's commit.
    pub b: String,
    /// Whether the code (commit + change, exclusions applied) is the same.
    pub same_tree: bool,
    /// Commits reachable from B but not from A (`git log A..B`), newest first; `None` when not
    /// both commits are in the repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ahead: Option<Vec<CommitLine>>,
    /// Commits reachable from A but not from B (`git log B..A`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind: Option<Vec<CommitLine>>,
    /// `true` when a list was cut at [`MAX_COMMITS`].
    pub truncated: bool,
}

/// At most this many commits are listed each way.
pub const MAX_COMMITS: usize = 50;

/// The result of a diff.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// A.
    pub a: Side,
    /// B.
    pub b: Side,
    /// `true` when no cause and no effect differs.
    pub same: bool,
    /// What differs and may explain a different result, most likely first.
    pub causes: Vec<Difference>,
    /// Checkpoints and outputs that differ.
    pub effects: Vec<Difference>,
    /// The code at a glance, when both sides record code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeSummary>,
    /// Facts that are not differences.
    pub notes: Vec<String>,
    /// Files in each of A's directories, by section and subject ([`compare::file_counts`]),
    /// for a summary's "N of M files"; not in the JSON report.
    #[serde(skip)]
    pub files: std::collections::BTreeMap<(Section, String), u64>,
    /// When checkpoints or outputs differ: the causes grouped by what changes float results,
    /// most likely first (code, data, command, seed, packages, BLAS library, CPU instruction
    /// sets, thread counts and affinity, numerics variables, GPU stack, system), one line each.
    pub likely_causes: Vec<compare::LikelyCause>,
}

/// How to observe the current state (`cairn diff A` with no B).
pub type CurrentOptions = ObserveOptions;

/// What B is.
#[derive(Debug, Clone)]
pub enum Target {
    /// Another lock.
    Lock(PathBuf),
    /// The project as it is now.
    Current(CurrentOptions),
}

/// Compare the lock at `a` with `b`.
pub fn diff(
    project: &Project,
    a: &Path,
    b: &Target,
    progress: Option<&dyn Progress>,
) -> Result<Report> {
    let lock_a = Lock::load(a)?;
    let state_a = State::from_lock(&lock_a)?;
    let mut metadata = Default::default();
    let (lock_b, state_b) = match b {
        Target::Lock(p) => {
            let lock = Lock::load(p)?;
            let state = State::from_lock(&lock)?;
            (Some(lock), state)
        }
        Target::Current(opts) => {
            let observed = observe::observe(project, &lock_a, opts, progress)?;
            metadata = observed.metadata;
            (None, observed.state)
        }
    };
    let tracked: Vec<&Lock> = std::iter::once(&lock_a).chain(lock_b.as_ref()).collect();
    let comparison = compare::compare(project, &state_a, &state_b, &tracked)?;
    let mut notes = Vec::new();
    let code = match (&state_a.code, &state_b.code) {
        (Some(ca), Some(cb)) => Some(summary(project, ca, cb, lock_b.is_none(), &mut notes)),
        _ => None,
    };
    notes.extend(comparison.notes.iter().map(|n| n.to_string()));
    let imports = crate::ops::verify::package_imports(project, &lock_a, &comparison.differences);
    let (effects, causes): (Vec<Difference>, Vec<Difference>) = comparison
        .differences
        .iter()
        .map(|d| Difference {
            salience: compare::salience(d, &imports, &metadata),
            ..difference(d)
        })
        .partition(|d| d.section.is_effect());
    let likely_causes = if effects.is_empty() {
        Vec::new()
    } else {
        // In the words verify and rebuild use (values and reason), not diff's bare reasons.
        let worded: Vec<(Section, compare::Reported)> = comparison
            .differences
            .iter()
            .filter(|d| !d.area.is_effect())
            .map(|d| (d.area, compare::Reported::from(d)))
            .collect();
        compare::likely_causes(worded.iter().map(|(a, r)| (*a, r)))
    };
    let side = |lock: Option<&Lock>, path: Option<&Path>, state: &State| Side {
        lock: path.map(Path::to_path_buf),
        run: lock.map(|l| l.run.id.clone()),
        locked_at: lock.and_then(|l| l.run.locked_at.clone()),
        commit: state
            .code
            .as_ref()
            .and_then(|c| c.commit)
            .map(|c| c.to_string()),
    };
    Ok(Report {
        a: side(Some(&lock_a), Some(a), &state_a),
        b: match b {
            Target::Lock(p) => side(lock_b.as_ref(), Some(p), &state_b),
            Target::Current(_) => side(None, None, &state_b),
        },
        same: causes.is_empty() && effects.is_empty(),
        causes,
        effects,
        code,
        notes,
        files: compare::file_counts(&lock_a),
        likely_causes,
    })
}

/// diff's words for one difference: every one is reported, with both values in full.
pub fn difference(d: &compare::Difference) -> Difference {
    Difference {
        section: d.area,
        line: compare::Reported {
            detail: d.reason_text(),
            ..compare::Reported::from(d)
        },
        a: d.locked.as_ref().map(|v| v.to_string()),
        b: d.now.as_ref().map(|v| v.to_string()),
        salience: None,
    }
}

fn git_log(repo_root: &Path, range: &str) -> Option<(Vec<CommitLine>, bool)> {
    crate::process::on_path("git")?;
    let out = crate::process::git_cmd(repo_root)
        .args([
            "log",
            "--no-color",
            "--format=%H%x09%s",
            &format!("--max-count={}", MAX_COMMITS + 1),
            "--end-of-options",
            range,
            "--",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut lines: Vec<CommitLine> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (c, s) = l.split_once('\t')?;
            Some(CommitLine {
                commit: c.to_string(),
                subject: s.to_string(),
            })
        })
        .collect();
    let truncated = lines.len() > MAX_COMMITS;
    lines.truncate(MAX_COMMITS);
    Some((lines, truncated))
}

/// The code of the two sides at a glance: the commits, and those between them.
fn summary(
    project: &Project,
    ca: &CodeState,
    cb: &CodeState,
    b_is_current: bool,
    notes: &mut Vec<String>,
) -> CodeSummary {
    let text = |c: Option<ObjectId>| c.map(|c| c.to_string()).unwrap_or_default();
    let mut summary = CodeSummary {
        a: text(ca.commit),
        b: text(cb.commit),
        same_tree: ca.tree == cb.tree,
        ahead: None,
        behind: None,
        truncated: false,
    };
    let (Some(repo), Some(a), Some(b)) = (&project.repo, ca.commit, cb.commit) else {
        return summary;
    };
    let here = |c: ObjectId| c.to_git().is_some_and(|o| repo.find_commit(o).is_ok());
    if a == b {
        summary.ahead = Some(Vec::new());
        summary.behind = Some(Vec::new());
    } else if here(a) && here(b) {
        if let Some(root) = &project.repo_root {
            let ahead = git_log(root, &format!("{a}..{b}"));
            let behind = git_log(root, &format!("{b}..{a}"));
            summary.truncated =
                ahead.as_ref().is_some_and(|x| x.1) || behind.as_ref().is_some_and(|x| x.1);
            summary.ahead = ahead.map(|x| x.0);
            summary.behind = behind.map(|x| x.0);
        }
    }
    for (c, current) in [(a, false), (b, b_is_current)] {
        if !current && !here(c) {
            notes.push(compare::Note::CommitNotHere(c).to_string());
        }
    }
    summary
}
