//! `cairn._cairn`: the native half of the Python package `cairn` (crates/py/python/cairn).
//!
//! Each function here is a thin call into the library (`cairn::ops`, `cairn::content`,
//! `cairn::probe`) with the GIL released while it hashes or reads, so a training loop's other
//! threads (data loaders) keep running. Results cross into Python as JSON text that the Python
//! side parses, so a report is exactly what `--format json` prints. Library errors become the
//! exceptions of `cairn/_errors.py`, carrying cairn's message (with its causes) and its hint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use cairn::content::digest::HashOptions;
use cairn::model::lockfile::Lock;
use cairn::ops::checkpoint::{self, AddOptions, ParentChoice};
use cairn::ops::lineage::{self, Graph};
use cairn::ops::verify::VerifyOptions;
use cairn::probe::observe::ObserveOptions;
use cairn::project::Project;
use cairn::Error;

/// The exception class (in `cairn._errors`) for a library error.
fn class_of(e: &Error) -> &'static str {
    match e {
        Error::NotARepo { .. } | Error::BareRepository { .. } => "NotARepositoryError",
        Error::LockTooNew { .. } => "LockTooNewError",
        Error::LockSyntax { .. } | Error::LockInvalid { .. } => "InvalidLockError",
        Error::Missing { .. } => "MissingPathError",
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            "MissingPathError"
        }
        _ => "CairnError",
    }
}

/// The message as the CLI prints it: the error, then each cause after `: `.
fn message(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Raise `class` of `cairn._errors` with `message` and `hint`.
fn raise(py: Python<'_>, class: &str, message: String, hint: Option<String>) -> PyErr {
    let made = py
        .import("cairn._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((message, hint)));
    match made {
        Ok(value) => PyErr::from_value(value),
        Err(e) => e,
    }
}

fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let hint = match &e {
        // The library's hint names cargo; from Python, the package to upgrade is this one.
        Error::LockTooNew { .. } => Some(
            "upgrade cairn (pip install -U cairn-ml, or cargo install cairn-cli) to read this lockfile; it was left untouched".into(),
        ),
        _ => e.hint(),
    };
    raise(py, class_of(&e), message(&e), hint)
}

/// A failure inside a call: a library error, or one of this module's own (an exception class
/// of `cairn._errors`, its message and its hint).
enum Fail {
    Lib(Error),
    Own(&'static str, String, String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Lib(e)
    }
}

/// Run `f` without the GIL and turn its error into the matching Python exception.
fn detached<T: Send>(py: Python<'_>, f: impl Send + FnOnce() -> Result<T, Fail>) -> PyResult<T> {
    py.detach(f).map_err(|e| match e {
        Fail::Lib(e) => to_py(py, e),
        Fail::Own(class, message, hint) => raise(py, class, message, Some(hint)),
    })
}

fn cwd() -> cairn::Result<PathBuf> {
    let here = Path::new(".");
    std::env::current_dir().map_err(|source| Error::Io {
        op: "cannot read the current directory",
        path: here.to_path_buf(),
        source,
    })
}

fn open_project() -> cairn::Result<Project> {
    Project::open(&cwd()?, false)
}

fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The cairn digest of a file or directory (`blake3:<hex>`), as `cairn hash` prints it.
#[pyfunction]
fn hash(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    detached(py, || Ok(cairn::content::digest::hash_path(&path)?)).map(|h| h.digest.to_string())
}

/// The lock a checkpoint of this process goes to: `lock` when given (it must exist), else the
/// running `cairn lock`'s in-progress lock (CAIRN_RUN_LOCK). Outside a run without `lock` it
/// refuses, as `cairn checkpoint add` does: a checkpoint belongs to the run that made it.
fn checkpoint_lock(project: &Project, lock: Option<PathBuf>) -> Result<PathBuf, Fail> {
    if let Some(p) = lock {
        return Ok(project.lock_path(Some(&p))?);
    }
    if let Some(p) = std::env::var_os(checkpoint::RUN_LOCK_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if project.repo.is_none() {
        return Err(Fail::Own(
            "NotARepositoryError",
            format!(
                "not inside a locked run, and not in a git repository: {}",
                project.cwd.display()
            ),
            "run the training under `cairn lock -- python train.py` inside a git repository, and cairn.checkpoint() records into that run".into(),
        ));
    }
    Err(Fail::Own(
        "NoRunError",
        "not inside a locked run: cairn.checkpoint() records into the run that `cairn lock -- COMMAND` is running, and none is".into(),
        "run the training under `cairn lock -- python train.py`; to add to an existing lock instead, name it: cairn.checkpoint(path, lock=\"cairn.lock\")".into(),
    ))
}

/// Add the checkpoint at `path` to the current run's lock; returns the entry as JSON.
#[pyfunction]
#[pyo3(name = "checkpoint", signature = (path, step=None, parent=None, no_parent=false, metrics=BTreeMap::new(), lock=None, no_cache=false))]
#[allow(clippy::too_many_arguments)]
fn add_checkpoint(
    py: Python<'_>,
    path: PathBuf,
    step: Option<u64>,
    parent: Option<String>,
    no_parent: bool,
    metrics: BTreeMap<String, f64>,
    lock: Option<PathBuf>,
    no_cache: bool,
) -> PyResult<String> {
    let (entry, lock_path) = detached(py, || {
        let project = open_project()?;
        let lock_path = checkpoint_lock(&project, lock)?;
        let parent = match (parent, no_parent) {
            (_, true) => ParentChoice::None,
            (Some(p), false) => ParentChoice::from_arg(&project.cwd, &p)?,
            (None, false) => ParentChoice::Previous,
        };
        let opts = AddOptions {
            step,
            parent,
            metrics,
            no_cache,
        };
        let abs = cairn::model::paths::absolutize(&project.cwd, &path);
        let entry = checkpoint::add(&project, &lock_path, &abs, &opts)?;
        Ok((entry, lock_path))
    })?;
    json(&serde_json::json!({
        "path": entry.path.as_str(),
        "digest": entry.digest.to_string(),
        "step": entry.step,
        "parent": entry.parent.as_ref().map(|p| p.to_string()),
        "parent-run": entry.parent_run,
        "lock": lock_path,
    }))
}

/// The environment `cairn env --format json` prints, as JSON.
#[pyfunction]
#[pyo3(signature = (python=None))]
fn env(py: Python<'_>, python: Option<PathBuf>) -> PyResult<String> {
    let text = detached(py, || {
        let project = open_project()?;
        Ok(cairn::probe::env::capture(&project, python.as_deref(), false)?.to_toml())
    })?;
    let value: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| PyValueError::new_err(e.to_string()))?;
    json(&value)
}

/// `cairn verify --format json`'s report, as JSON.
#[pyfunction]
#[pyo3(signature = (lock=None, python=None, strict=false, data=BTreeMap::new(), no_cache=false))]
fn verify(
    py: Python<'_>,
    lock: Option<PathBuf>,
    python: Option<PathBuf>,
    strict: bool,
    data: BTreeMap<String, String>,
    no_cache: bool,
) -> PyResult<String> {
    let report = detached(py, || {
        let project = open_project()?;
        let lock_path = project.lock_path(lock.as_deref())?;
        let data = data
            .iter()
            .map(|(name, path)| (name.clone(), project.resolve(&project.cwd, path).0))
            .collect();
        let opts = VerifyOptions {
            observe: ObserveOptions {
                data,
                python,
                no_python: false,
                no_cache,
                shards: Vec::new(),
            },
            strict,
        };
        Ok(cairn::ops::verify::verify(
            &project, &lock_path, &opts, None,
        )?)
    })?;
    json(&report)
}

/// `cairn lineage [TARGET] --format json`'s graph, as JSON.
#[pyfunction]
#[pyo3(name = "lineage", signature = (target=None, locks=Vec::new()))]
fn trace(py: Python<'_>, target: Option<String>, locks: Vec<PathBuf>) -> PyResult<String> {
    let value = detached(py, || {
        let project = open_project()?;
        let graph = Graph::new(lineage::discover(&project, &locks)?);
        let cache = project.stat_cache_dir();
        let hopts = HashOptions::read_only(&cache, project.boundary());
        let roots = match &target {
            Some(t) => lineage::targets(&graph, &project, t, &hopts)?,
            None => graph.leaves(),
        };
        Ok(graph.json(&roots))
    })?;
    json(&value)
}

/// The run id of the `cairn lock` this process runs under, or None.
#[pyfunction]
fn run_id(py: Python<'_>) -> PyResult<Option<String>> {
    let Some(path) = std::env::var_os(checkpoint::RUN_LOCK_ENV).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let lock = detached(py, || Ok(Lock::load(Path::new(&path))?))?;
    Ok(Some(lock.run.id))
}

/// The native module.
#[pymodule]
fn _cairn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(hash, m)?)?;
    m.add_function(wrap_pyfunction!(add_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(env, m)?)?;
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(trace, m)?)?;
    m.add_function(wrap_pyfunction!(run_id, m)?)?;
    Ok(())
}
