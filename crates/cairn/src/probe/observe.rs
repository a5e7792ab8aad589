//! The one probe: what is here now, at the places a lock names, under one read policy.
//!
//! `cairn verify`, `cairn diff LOCK` and `cairn rebuild` all look at the current state through
//! [`observe`] (rebuild through [`user_location`] and [`leads_outside`] for its datasets), so
//! they read the same things and [`crate::compare`] finds the same differences for all three.
//!
//! The read policy: a path the **lock** chooses (a dataset, checkpoint or output inside the
//! project) is read only when it stays inside the repository once links are followed; a path
//! the **user** chooses (`--data NAME=PATH`, or the user's settings for an external dataset) is
//! read wherever it is. An external dataset nobody located is not read at all. Nothing is
//! written except the stat cache in `.cairn/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::compare::{self, Absence, CodeState, Content, Item, ObjectId, PythonState, State};
use crate::content::digest::{self, HashOptions, Progress};
use crate::error::{Error, Result};
use crate::model::lockfile::{Location, Lock};
use crate::model::paths::RelPath;
use crate::probe::{env, git};
use crate::project::Project;

/// How to observe.
#[derive(Debug, Clone, Default)]
pub struct ObserveOptions {
    /// Dataset locations the user gave (`--data NAME=PATH`), already absolute.
    pub data: BTreeMap<String, PathBuf>,
    /// The interpreter whose environment to observe (`--python`).
    pub python: Option<PathBuf>,
    /// Do not observe the Python environment.
    pub no_python: bool,
    /// Read every file, even those the stat cache knows.
    pub no_cache: bool,
    /// Datasets hashed in shards (`cairn verify --shard K/N` on other machines), merged: a
    /// dataset whose directory one of these is of is walked (stat only) to check it is the tree
    /// the shards saw, and takes its content from the parts instead of being read.
    pub shards: Vec<crate::content::shard::Merged>,
}

/// What was read to observe the datasets, checkpoints and outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadStats {
    /// Datasets read.
    pub data: u64,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Outputs read.
    pub outputs: u64,
    /// Files checked.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files actually read; the others were known unchanged from the stat cache.
    pub files_read: u64,
    /// Bytes actually read.
    pub bytes_read: u64,
}

/// The current state, and what reading it took.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The state, ready for [`compare::compare`] against the lock.
    pub state: State,
    /// What was read.
    pub read: ReadStats,
    /// Where each installed distribution's metadata is (normalised name -> its `*.dist-info`
    /// or `*.egg-info`), for [`crate::probe::imports`]; empty when Python was not observed.
    pub metadata: BTreeMap<String, PathBuf>,
}

/// Refuse `--data NAME=...` for a name the lock does not have.
pub fn check_data_names(lock: &Lock, given: &BTreeMap<String, PathBuf>) -> Result<()> {
    for name in given.keys() {
        if !lock.data.iter().any(|d| &d.name == name) {
            return Err(Error::Usage(format!(
                "--data {name}=...: the lock has no dataset named {name:?}"
            )));
        }
    }
    Ok(())
}

/// Where the user says a dataset is: `--data NAME=PATH` for any dataset; for an external one,
/// the user's settings, else where this user's own `cairn lock` found it in this project on
/// this machine ([`crate::places`]). For a dataset inside the project the lock's path is the
/// truth.
pub fn user_location(
    project: &Project,
    name: &str,
    location: &Location,
    given: &BTreeMap<String, PathBuf>,
) -> Option<PathBuf> {
    given.get(name).cloned().or_else(|| {
        if *location != Location::External {
            return None;
        }
        project
            .config
            .data
            .get(name)
            .map(|p| project.resolve(&project.root, p).0)
            .or_else(|| crate::places::recall(&project.root, project.boundary(), name))
    })
}

/// Where a path the lock chose really leads, when that is outside the repository (through a
/// link): a lock from someone else must not make cairn read the rest of the disk.
pub fn leads_outside(project: &Project, place: &Path) -> Option<PathBuf> {
    let real = place.canonicalize().ok()?;
    (!real.starts_with(project.boundary())).then_some(real)
}

/// The place to read for a path the lock chose, under the read policy.
fn lock_place(project: &Project, rel: &RelPath) -> std::result::Result<PathBuf, Absence> {
    let place = rel.under(&project.root);
    match leads_outside(project, &place) {
        Some(target) => Err(Absence::LeadsOutside { place, target }),
        None => Ok(place),
    }
}

/// Where to read a locked dataset (or why it cannot be read), and a note when the place came
/// from this user's own record of where `cairn lock` found it.
pub fn dataset_place(
    project: &Project,
    d: &crate::model::lockfile::Data,
    opts: &ObserveOptions,
) -> (std::result::Result<PathBuf, Absence>, Option<compare::Note>) {
    match (
        user_location(project, &d.name, &d.location, &opts.data),
        &d.location,
    ) {
        (Some(p), Location::External)
            if !opts.data.contains_key(&d.name) && !project.config.data.contains_key(&d.name) =>
        {
            // Found only through this user's own record: say where it was read.
            let note = compare::Note::Remembered {
                name: d.name.clone(),
                place: p.clone(),
            };
            (Ok(p), Some(note))
        }
        (Some(p), _) => (Ok(p), None),
        (None, Location::Path(rel)) => (lock_place(project, rel), None),
        (None, Location::External) => (Err(Absence::Unlocated), None),
    }
}

/// Observe the project now at the places `lock` names: the code (with the lock's exclusions),
/// its datasets, checkpoints and outputs, the Python environment it records, the dependency
/// lock files, the determinism variables and the host.
pub fn observe(
    project: &Project,
    lock: &Lock,
    opts: &ObserveOptions,
    progress: Option<&dyn Progress>,
) -> Result<Observed> {
    check_data_names(lock, &opts.data)?;
    let cache_dir = project.stat_cache_dir();
    let hopts = HashOptions {
        cache_dir: Some(&cache_dir),
        use_cache: !opts.no_cache,
        progress,
        confine: Some(project.boundary()),
    };
    let mut read = ReadStats::default();
    let hash = |place: std::result::Result<PathBuf, Absence>,
                read: &mut ReadStats|
     -> Result<std::result::Result<Content, Absence>> {
        let place = match place {
            Ok(p) => p,
            Err(a) => return Ok(Err(a)),
        };
        match digest::hash_path_with(&place, &hopts) {
            Ok(h) => {
                read.files += h.files;
                read.bytes += h.bytes;
                read.files_read += h.files_read;
                read.bytes_read += h.bytes_read;
                Ok(Ok(Content {
                    kind: h.kind,
                    digest: h.digest,
                    manifest: h.manifest,
                }))
            }
            Err(Error::Missing { .. }) => Ok(Err(Absence::NotFound(place))),
            Err(e) => Err(e),
        }
    };
    let mut data = BTreeMap::new();
    let mut remembered = Vec::new();
    let mut shards_used = vec![false; opts.shards.len()];
    for d in &lock.data {
        let (place, note) = dataset_place(project, d, opts);
        remembered.extend(note);
        let merged = place
            .as_ref()
            .ok()
            .filter(|_| !opts.shards.is_empty())
            .and_then(|p| {
                let real = p.canonicalize().ok()?;
                opts.shards.iter().position(|m| m.root == real)
            });
        let content = match (merged, &place) {
            (Some(i), Ok(p)) => {
                shards_used[i] = true;
                let m = &opts.shards[i];
                let confine = Some(project.boundary()).filter(|b| m.root.starts_with(b));
                m.check_against(p, confine)?;
                read.files += m.tree.files;
                read.bytes += m.tree.bytes;
                Ok(Content {
                    kind: digest::Kind::Dir,
                    digest: m.digest,
                    manifest: Some(m.manifest.clone()),
                })
            }
            _ => hash(place, &mut read)?,
        };
        if content.is_ok() || matches!(content, Err(Absence::NotFound(_))) {
            read.data += 1;
        }
        let item = Item {
            location: Some(d.location.clone()),
            content,
            metrics: None,
        };
        data.insert(d.name.clone(), item);
    }
    if let Some(i) = shards_used.iter().position(|used| !used) {
        return Err(Error::Refused {
            message: format!(
                "--from-shards: the parts are of {}, which is no dataset of this lock (or not where it is read from)",
                opts.shards[i].root.display()
            ),
            hint: "give the parts `cairn verify --shard K/N` wrote for this lock's datasets, or say where a dataset is with --data NAME=PATH".into(),
        });
    }
    let mut artifacts = |list: &[crate::model::lockfile::Artifact],
                         count: fn(&mut ReadStats) -> &mut u64|
     -> Result<BTreeMap<RelPath, Item>> {
        let mut out = BTreeMap::new();
        for a in list {
            *count(&mut read) += 1;
            let content = match hash(lock_place(project, &a.path), &mut read)? {
                // Gone, as the lock says the run left it.
                Err(Absence::NotFound(p)) if a.deleted_by_run => Err(Absence::DeletedByRun(p)),
                other => other,
            };
            let item = Item {
                location: None,
                content,
                metrics: None,
            };
            out.insert(a.path.clone(), item);
        }
        Ok(out)
    };
    let checkpoints = artifacts(&lock.checkpoints, |r| &mut r.checkpoints)?;
    let outputs = artifacts(&lock.outputs, |r| &mut r.outputs)?;

    let code = match (&lock.code, &project.repo) {
        (Some(_), Some(repo)) => {
            let excluder = compare::excluder(project, &[lock]);
            let entries = git::working_entries(repo, &excluder)?;
            let tree = ObjectId::from(git::tree_id(&entries)?);
            let commit = repo
                .head()
                .ok()
                .and_then(|h| h.target())
                .map(ObjectId::from);
            Some(CodeState {
                commit,
                tree,
                change: None,
                entries: Some(entries),
            })
        }
        _ => None,
    };

    let mut notes = remembered;
    let mut torch = None;
    let mut libc = None;
    let mut metadata = BTreeMap::new();
    let mut blas = Vec::new();
    let python = match &lock.python {
        Some(_) if !opts.no_python => {
            let configured = env::config_python(&project.root, project.config.python.as_deref());
            Some(
                match env::capture_python(opts.python.as_deref(), configured.as_deref())? {
                    Ok(e) => {
                        notes.extend(
                            e.choice_warnings
                                .iter()
                                .cloned()
                                .map(compare::Note::Environment),
                        );
                        blas = env::blas_of(&e);
                        torch = e.torch.clone();
                        libc = e.interpreter.libc.clone();
                        metadata = e
                            .packages
                            .iter()
                            .map(|p| (p.package.name.clone(), p.location.clone()))
                            .collect();
                        PythonState::Present(env::python_table(&e))
                    }
                    Err(why) => PythonState::Absent(why),
                },
            )
        }
        _ => None,
    };
    let lockfiles = env::lockfile_entries(&project.root)?;
    let mut pins = Vec::new();
    if let Some(PythonState::Present(p)) = &python {
        let (found, warnings) = compare::pins(&project.root, &lockfiles, p);
        pins = found;
        notes.extend(warnings);
    }
    let host = lock.host.as_ref().map(|_| crate::model::lockfile::Host {
        blas,
        ..env::host_with(torch, libc)
    });
    Ok(Observed {
        state: State {
            code,
            data,
            checkpoints,
            outputs,
            python,
            lockfiles,
            pins,
            env: env::determinism_env(&project.config.env, std::env::vars()),
            run: None,
            host,
            notes,
        },
        read,
        metadata,
    })
}
