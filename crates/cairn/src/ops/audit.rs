//! `cairn audit`: follow models back through checkpoints, runs and inputs, and check every link.
//!
//! Each check is a named rule whose level (`error`, `warning` or `off`) can be set in
//! `[audit]` of cairn.toml. An error fails the audit (exit 1).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::compare;
use crate::content::digest::{self, Digest, HashOptions};
use crate::error::{Error, Result};
use crate::model::lockfile::{InputSource, Location};
use crate::ops::lineage::{Graph, Node};
use crate::probe::git;
use crate::probe::observe;
use crate::probe::python::Source;
use crate::project::Project;

/// Every rule, its default level and what it checks.
pub const RULES: &[(&str, Level, &str)] = &[
    ("lock-invalid", Level::Error, "a lock in the repository cannot be read"),
    ("checkpoint-digest", Level::Error, "a checkpoint's file differs from its recorded digest"),
    ("checkpoint-missing", Level::Warning, "a recorded checkpoint's file is not here"),
    ("dangling-parent", Level::Error, "a checkpoint's parent is in no lock: a path this lock lacks, or a digest of a run whose lock is not here"),
    ("dangling-input", Level::Error, "an input model points to a lock or checkpoint that is not there, or to one with another digest"),
    ("input-digest", Level::Error, "a local input model's file differs from its recorded digest"),
    ("mutable-ref", Level::Error, "an input is a hub branch or tag, not a commit"),
    ("dirty-code", Level::Error, "a run was locked on uncommitted changes"),
    ("no-code", Level::Warning, "a run records no code (locked with --no-git)"),
    ("unknown-commit", Level::Error, "a run's commit is not in this repository"),
    ("missing-change", Level::Error, "a dirty run's change sidecar is missing or altered"),
    ("local-package", Level::Error, "a local or editable Python package has no git commit to pin it"),
    ("data-digest", Level::Error, "a dataset present here differs from its recorded digest"),
    ("untracked-parent", Level::Warning, "a checkpoint's parent is a file no lock records (known by its digest only)"),
];

/// How much a rule matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Fails the audit.
    Error,
    /// Reported only.
    Warning,
    /// Not checked.
    Off,
}

/// Rule levels, from the defaults and cairn.toml's `[audit]`.
pub fn levels(config: &BTreeMap<String, String>) -> Result<BTreeMap<&'static str, Level>> {
    let mut out: BTreeMap<&'static str, Level> = RULES.iter().map(|(n, l, _)| (*n, *l)).collect();
    for (name, value) in config {
        let Some((rule, _, _)) = RULES.iter().find(|(n, _, _)| n == name) else {
            return Err(Error::Usage(format!(
                "cairn.toml [audit]: unknown rule {name:?}; rules are {}",
                RULES.iter().map(|r| r.0).collect::<Vec<_>>().join(", ")
            )));
        };
        let level = match value.as_str() {
            "error" => Level::Error,
            "warning" => Level::Warning,
            "off" => Level::Off,
            other => {
                return Err(Error::Usage(format!(
                    "cairn.toml [audit]: {name} = {other:?}; use \"error\", \"warning\" or \"off\""
                )))
            }
        };
        out.insert(rule, level);
    }
    Ok(out)
}

/// One broken or doubtful link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// `error` or `warning`.
    pub level: Level,
    /// The rule.
    pub rule: &'static str,
    /// The lock it is about (relative to the project root).
    pub lock: String,
    /// What in the lock (a checkpoint path, a dataset, an input, a package, `run`).
    pub subject: String,
    /// What is wrong, for people.
    pub message: String,
}

/// The result of an audit.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No error-level findings.
    pub ok: bool,
    /// Every finding, errors first.
    pub findings: Vec<Finding>,
    /// How many locks, runs and checkpoints were looked at.
    pub checked: Checked,
}

/// Counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checked {
    /// Locks found.
    pub locks: usize,
    /// Runs whose lineage was walked.
    pub runs: usize,
    /// Checkpoints whose lineage was walked.
    pub checkpoints: usize,
}

struct Auditor<'a> {
    project: &'a Project,
    graph: &'a Graph,
    levels: BTreeMap<&'static str, Level>,
    hopts: HashOptions<'a>,
    findings: BTreeSet<Finding>,
}

impl Auditor<'_> {
    fn report(&mut self, rule: &'static str, lock: usize, subject: &str, message: String) {
        let level = self.levels.get(rule).copied().unwrap_or(Level::Error);
        if level == Level::Off {
            return;
        }
        self.findings.insert(Finding {
            level,
            rule,
            lock: self.graph.locks[lock].shown.clone(),
            subject: subject.to_string(),
            message,
        });
    }

    fn on(&self, rule: &str) -> bool {
        self.levels.get(rule) != Some(&Level::Off)
    }

    fn digest_of(&self, path: &Path) -> Result<Digest> {
        Ok(digest::hash_path_with(path, &self.hopts)?.digest)
    }

    /// Compare what is at `place` with the locked `kind` and `digest` through the one
    /// comparison ([`compare::content_differences`]), read under the one read policy, and
    /// report the differences under `rule`, worded as verify and diff word them.
    fn check_content(
        &mut self,
        (rule, lock, subject): (&'static str, usize, &str),
        area: compare::Area,
        place: &Path,
        (kind, digest): (digest::Kind, Digest),
    ) -> Result<()> {
        if !self.readable(rule, lock, subject, place) {
            return Ok(());
        }
        let hashed = digest::hash_path_with(place, &self.hopts)?;
        let locked = compare::Content {
            kind,
            digest,
            manifest: None,
        };
        let now = compare::Content {
            kind: hashed.kind,
            digest: hashed.digest,
            manifest: hashed.manifest,
        };
        let found = compare::content_differences(self.project, (area, subject), &locked, &now);
        if found.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 5;
        let mut words: Vec<String> = found
            .iter()
            .take(SHOWN)
            .map(|d| {
                let r = compare::Reported::from(d);
                let mut w = match &r.path {
                    Some(p) => format!("{p} {}", r.change.as_str()),
                    None => r.change.as_str().to_string(),
                };
                if let Some(detail) = &r.detail {
                    w.push_str(&format!(" ({detail})"));
                }
                w
            })
            .collect();
        if found.len() > SHOWN {
            words.push(format!("and {} more", found.len() - SHOWN));
        }
        self.report(
            rule,
            lock,
            subject,
            format!("differs from the lock: {}", words.join("; ")),
        );
        Ok(())
    }

    /// The one read policy ([`crate::probe::observe`]): a path a lock names is not read when
    /// it leads out of the repository through a link; that is reported under `rule` instead.
    fn readable(&mut self, rule: &'static str, lock: usize, subject: &str, place: &Path) -> bool {
        let Some(target) = observe::leads_outside(self.project, place) else {
            return true;
        };
        self.report(
            rule,
            lock,
            subject,
            format!(
                "not read: {} leads outside the repository (to {}) through a link",
                place.display(),
                target.display()
            ),
        );
        false
    }

    fn checkpoint(&mut self, lock: usize, path: &str) -> Result<()> {
        let Some(c) = self.graph.checkpoint(lock, path).cloned() else {
            return Ok(());
        };
        let file = c.path.under(&self.project.root);
        let boundary = self.project.boundary();
        if file.exists()
            && !file
                .canonicalize()
                .is_ok_and(|real| real.starts_with(boundary))
        {
            // A checkpoint of the repository that is a link out of it is not read.
            self.report(
                "checkpoint-digest",
                lock,
                path,
                "it is a symbolic link leading outside the repository; not read".into(),
            );
        } else if file.exists() {
            if self.on("checkpoint-digest") {
                self.check_content(
                    ("checkpoint-digest", lock, path),
                    compare::Area::Checkpoint,
                    &file,
                    (c.kind, c.digest),
                )?;
            }
        } else if !c.deleted_by_run {
            // One the run deleted itself (keep-last-N) is not expected here.
            self.report(
                "checkpoint-missing",
                lock,
                path,
                format!("the file is not here (recorded as {})", c.digest),
            );
        }
        match self.graph.parent_of(lock, &c) {
            Some(Node::Missing { reference }) => self.report(
                "dangling-parent",
                lock,
                path,
                format!("its parent {reference} is in no lock"),
            ),
            Some(Node::Untracked { digest }) => self.report(
                "untracked-parent",
                lock,
                path,
                format!(
                    "its parent is a file no lock records (digest {digest}): lock the run that made it to follow its lineage"
                ),
            ),
            _ => {}
        }
        Ok(())
    }

    fn run(&mut self, i: usize) -> Result<()> {
        let Some(l) = self.graph.lock(i).cloned() else {
            return Ok(());
        };
        match &l.code {
            None => self.report("no-code", i, "run", "the run records no code".into()),
            Some(code) => {
                if code.dirty {
                    self.report(
                        "dirty-code",
                        i,
                        "run",
                        format!(
                            "run {} was locked on uncommitted changes to commit {}",
                            l.run.id,
                            &code.commit[..12.min(code.commit.len())]
                        ),
                    );
                }
                if let Some(repo) = &self.project.repo {
                    if !git::has_commit(repo, &code.commit) {
                        self.report(
                            "unknown-commit",
                            i,
                            "run",
                            format!(
                                "commit {} is not in this repository (fetch it)",
                                code.commit
                            ),
                        );
                    }
                }
                if let Some(change) = &code.change {
                    let sidecar = self.project.change_path(change);
                    let ok = self
                        .project
                        .read_change(change)
                        .map(|b| &Digest::of_bytes(&b) == change)
                        .unwrap_or(false);
                    if !ok {
                        self.report(
                            "missing-change",
                            i,
                            "run",
                            format!(
                                "the change sidecar {} is missing or altered",
                                sidecar.display()
                            ),
                        );
                    }
                }
            }
        }
        if let Some(py) = &l.python {
            for p in &py.packages {
                if let Source::Directory {
                    url, commit: None, ..
                } = &p.source
                {
                    self.report(
                        "local-package",
                        i,
                        &p.name,
                        format!(
                            "{} {} comes from the local directory {url}, which is not in a git repository",
                            p.name, p.version
                        ),
                    );
                }
            }
        }
        if self.on("data-digest") {
            for d in &l.data {
                if let Location::Path(p) = &d.location {
                    let abs = p.under(&self.project.root);
                    if abs.exists() {
                        self.check_content(
                            ("data-digest", i, &d.name),
                            compare::Area::Data,
                            &abs,
                            (d.kind, d.digest),
                        )?;
                    }
                }
            }
        }
        for input in &l.inputs {
            let reference = input.reference();
            if input.mutable {
                self.report(
                    "mutable-ref",
                    i,
                    &reference,
                    format!("input {reference} is a branch or tag, not a commit: it can move"),
                );
            }
            match &input.source {
                InputSource::Lock {
                    lock,
                    checkpoint,
                    run,
                } => {
                    let found = self
                        .graph
                        .input_lock(lock, run)
                        .and_then(|j| self.graph.checkpoint(j, checkpoint.as_str()));
                    match found {
                        None => self.report(
                            "dangling-input",
                            i,
                            &reference,
                            format!("input {reference} (run {run}) is in no lock here"),
                        ),
                        Some(c) if c.digest != input.digest => self.report(
                            "dangling-input",
                            i,
                            &reference,
                            format!(
                                "input {reference} was {} when used, its lock now records {}",
                                input.digest, c.digest
                            ),
                        ),
                        Some(_) => {}
                    }
                }
                InputSource::Local(p) => {
                    let abs = p.under(&self.project.root);
                    if abs.exists()
                        && self.on("input-digest")
                        && self.readable("input-digest", i, &reference, &abs)
                    {
                        let now = self.digest_of(&abs)?;
                        if now != input.digest {
                            self.report(
                                "input-digest",
                                i,
                                &reference,
                                format!("input {p} is {now}, the lock recorded {}", input.digest),
                            );
                        }
                    }
                }
                InputSource::Hf { .. } => {}
            }
        }
        Ok(())
    }
}

/// Audit the lineage of `roots` (all checkpoints when empty).
pub fn audit(
    project: &Project,
    graph: &Graph,
    roots: &[Node],
    hopts: HashOptions<'_>,
) -> Result<Report> {
    let mut a = Auditor {
        project,
        graph,
        levels: levels(&project.config.audit)?,
        hopts,
        findings: BTreeSet::new(),
    };
    for (i, f) in graph.locks.iter().enumerate() {
        if let Err(e) = &f.lock {
            a.report("lock-invalid", i, "lock", e.clone());
        }
    }
    let roots = if roots.is_empty() {
        let mut all = graph.checkpoints();
        // Runs without checkpoints are audited too.
        all.extend(
            (0..graph.locks.len())
                .filter(|i| graph.lock(*i).is_some_and(|l| l.checkpoints.is_empty()))
                .map(|lock| Node::Run { lock }),
        );
        all
    } else {
        roots.to_vec()
    };
    let (nodes, _) = graph.reachable(&roots);
    let mut checked = Checked {
        locks: graph.locks.len(),
        ..Default::default()
    };
    for n in &nodes {
        match n {
            Node::Checkpoint { lock, path } => {
                checked.checkpoints += 1;
                a.checkpoint(*lock, path)?;
            }
            Node::Run { lock } => {
                checked.runs += 1;
                a.run(*lock)?;
            }
            _ => {}
        }
    }
    let mut findings: Vec<Finding> = a.findings.into_iter().collect();
    findings.sort_by(|x, y| (x.level, &x.lock, &x.subject).cmp(&(y.level, &y.lock, &y.subject)));
    Ok(Report {
        ok: !findings.iter().any(|f| f.level == Level::Error),
        findings,
        checked,
    })
}
