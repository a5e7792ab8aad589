//! One side of a comparison: what a lock records ([`State::from_lock`]) or what
//! [`crate::probe::observe`] found here now, in the same types.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::model::lockfile::{Artifact, Host, Location, Lock, LockfileEntry, Metric, Python};
use crate::model::paths::RelPath;
use crate::probe::git::Entries;

/// The code of one side.
#[derive(Debug, Clone)]
pub struct CodeState {
    /// The commit (`None`: an unborn HEAD).
    pub commit: Option<ObjectId>,
    /// The git tree of the code (commit + change, exclusions applied).
    pub tree: ObjectId,
    /// The change sidecar's digest, for a locked side.
    pub change: Option<Digest>,
    /// The entries, when observed (the working tree); a locked side's are read on demand.
    pub entries: Option<Entries>,
}

/// Why a dataset, checkpoint or output has no content on a side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Absence {
    /// Nothing at the path.
    NotFound(PathBuf),
    /// An external dataset nobody located.
    Unlocated,
    /// The path leads out of the repository through a link and was not read.
    LeadsOutside {
        /// The path.
        place: PathBuf,
        /// Where it leads.
        target: PathBuf,
    },
    /// Nothing at the path, and the lock records that the run deleted this checkpoint itself
    /// before it ended (keep-last-N).
    DeletedByRun(PathBuf),
}

/// The content of a dataset, checkpoint or output on one side.
#[derive(Debug, Clone)]
pub struct Content {
    /// File or directory.
    pub kind: Kind,
    /// The digest.
    pub digest: Digest,
    /// The manifest, when it was just hashed (a locked side's comes from `.cairn/manifests/`).
    pub manifest: Option<Manifest>,
}

/// A dataset, checkpoint or output on one side.
#[derive(Debug, Clone)]
pub struct Item {
    /// Where a dataset was recorded (`None` for checkpoints and outputs).
    pub location: Option<Location>,
    /// Its content, or why there is none.
    pub content: std::result::Result<Content, Absence>,
    /// Metrics recorded with `cairn checkpoint add` (`None`: not known on this side).
    pub metrics: Option<BTreeMap<String, Metric>>,
}

/// The Python environment of one side.
#[derive(Debug, Clone)]
pub enum PythonState {
    /// Recorded or observed.
    Present(Python),
    /// Looked for and not found, with why.
    Absent(String),
}

/// The command, exit code and seed: only a lock has them.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// The argv.
    pub command: Option<Vec<String>>,
    /// The exit code.
    pub exit_code: Option<i64>,
    /// The seed.
    pub seed: Option<i64>,
}

/// One side of a comparison: a lock, or what is here now.
#[derive(Debug, Clone)]
pub struct State {
    /// The code (`None`: not recorded).
    pub code: Option<CodeState>,
    /// Datasets by name.
    pub data: BTreeMap<String, Item>,
    /// Checkpoints by path.
    pub checkpoints: BTreeMap<RelPath, Item>,
    /// Outputs by path.
    pub outputs: BTreeMap<RelPath, Item>,
    /// The Python environment (`None`: not recorded or not looked at).
    pub python: Option<PythonState>,
    /// Dependency lock files.
    pub lockfiles: Vec<LockfileEntry>,
    /// Python lock file pins the installed packages do not satisfy (observed only).
    pub pins: Vec<Difference>,
    /// Determinism variables.
    pub env: BTreeMap<String, String>,
    /// Command, exit code, seed (`None` for the current state).
    pub run: Option<RunFacts>,
    /// The host.
    pub host: Option<Host>,
    /// Warnings from observing (not differences).
    pub notes: Vec<Note>,
}

impl State {
    /// The state a lock records.
    pub fn from_lock(lock: &Lock) -> Result<State> {
        let code = lock.code.as_ref().map(|c| CodeState {
            commit: Some(c.commit),
            tree: c.tree,
            change: c.change,
            entries: None,
        });
        let artifacts = |list: &[Artifact]| {
            list.iter()
                .map(|a| {
                    let item = Item {
                        location: None,
                        content: Ok(Content {
                            kind: a.kind,
                            digest: a.digest,
                            manifest: None,
                        }),
                        metrics: Some(a.metrics.clone()),
                    };
                    (a.path.clone(), item)
                })
                .collect()
        };
        Ok(State {
            code,
            data: lock
                .data
                .iter()
                .map(|d| {
                    let item = Item {
                        location: Some(d.location.clone()),
                        content: Ok(Content {
                            kind: d.kind,
                            digest: d.digest,
                            manifest: None,
                        }),
                        metrics: None,
                    };
                    (d.name.clone(), item)
                })
                .collect(),
            checkpoints: artifacts(&lock.checkpoints),
            outputs: artifacts(&lock.outputs),
            python: lock.python.clone().map(PythonState::Present),
            lockfiles: lock.lockfiles.clone(),
            pins: Vec::new(),
            env: lock.run.env.clone(),
            run: Some(RunFacts {
                command: lock.run.command.clone(),
                exit_code: lock.run.exit_code,
                seed: lock.run.seed,
            }),
            host: lock.host.clone(),
            notes: Vec::new(),
        })
    }
}
