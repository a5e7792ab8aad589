//! The environment of a run, as the lock records it, and how another environment differs:
//! the Python interpreter and packages ([`crate::probe::python`]), the project's dependency lock files
//! ([`crate::probe::lockfiles`]), the determinism settings in the process environment, and the host.
//!
//! Differences here are *drift*: by default a warning (environment) or information (host), and
//! failures only under `--strict`; code, data and checkpoint differences always fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::content::digest;
use crate::error::Result;
use crate::model::lockfile::{Host, LockfileEntry, PyPackage, Python};
use crate::model::paths::RelPath;
use crate::probe::lockfiles;
use crate::probe::python::{self, Environment, Origin, Source};

/// Environment variables recorded by default, when set: the ones that change results or their
/// reproducibility. A trailing `*` matches a prefix.
pub const DEFAULT_ENV: &[&str] = &[
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "NVIDIA_TF32_OVERRIDE",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NCCL_*",
];

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// The values of the recorded variables that are set, from `vars` (normally `std::env::vars()`).
pub fn determinism_env(
    extra: &[String],
    vars: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(k, _)| {
            DEFAULT_ENV.iter().any(|p| matches(p, k)) || extra.iter().any(|p| matches(p, k))
        })
        .collect()
}

/// The `[python]` table of a captured environment.
pub fn python_table(env: &Environment) -> Python {
    Python {
        implementation: env.interpreter.implementation.clone(),
        version: env.interpreter.version.clone(),
        abi: env.interpreter.abi.clone(),
        platform: Some(env.interpreter.platform.clone()),
        packages: env
            .packages
            .iter()
            .map(|p| PyPackage {
                name: p.name.clone(),
                version: p.version.clone(),
                source: p.source.clone(),
                installer: p.installer.clone(),
                wheel_tag: p.wheel_tag.clone(),
                fingerprint: p.fingerprint,
            })
            .collect(),
        conda: env.conda.clone(),
    }
}

/// Find and capture the Python environment. `Ok(None)` with a reason when there is no
/// interpreter to capture; an interpreter the user named that does not work is an error.
pub fn capture_python(
    option: Option<&Path>,
    config: Option<&Path>,
) -> Result<std::result::Result<Environment, String>> {
    let Some((exe, origin)) = python::find_interpreter(option, config) else {
        return Ok(Err(
            "no Python interpreter found (no --python, no `python` in a trusted cairn.toml, no $CAIRN_PYTHON, $VIRTUAL_ENV or $CONDA_PREFIX, no python3 on PATH)"
                .into(),
        ));
    };
    match python::capture(&exe) {
        Ok(env) => Ok(Ok(env)),
        Err(e)
            if matches!(
                origin,
                Origin::Option | Origin::Config | Origin::CairnPython
            ) =>
        {
            Err(e)
        }
        Err(e) => Ok(Err(format!("the Python environment was not recorded: {e}"))),
    }
}

/// The project's dependency lock files with their digests.
pub fn lockfile_entries(root: &Path) -> Result<Vec<LockfileEntry>> {
    lockfiles::find(root)?
        .into_iter()
        .map(|f| {
            let (digest, _) = digest::hash_file(&f.path.under(root))?;
            Ok(LockfileEntry {
                path: f.path,
                kind: f.kind.to_string(),
                digest,
            })
        })
        .collect()
}

/// Everything about the environment that `cairn lock` records.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The Python environment, when there is one.
    pub python: Option<Environment>,
    /// The project's dependency lock files.
    pub lockfiles: Vec<LockfileEntry>,
    /// The determinism-related environment variables that are set.
    pub env: BTreeMap<String, String>,
    /// The host, with the PyTorch build when torch is installed.
    pub host: Host,
    /// Things worth telling the user (no interpreter, broken metadata, shadowed packages).
    pub warnings: Vec<String>,
}

impl Captured {
    /// The `[run.env]`, `[host]`, `[python]` and `[[lockfile]]` tables, as in a lock.
    pub fn to_toml(&self) -> String {
        crate::model::writer::env_fragment(
            &self.env,
            &self.host,
            self.python.as_ref().map(python_table).as_ref(),
            &self.lockfiles,
        )
    }
}

/// Capture the environment of a project: Python (unless `no_python`), lock files, determinism
/// variables and host.
pub fn capture(
    project: &crate::project::Project,
    python: Option<&Path>,
    no_python: bool,
) -> Result<Captured> {
    let mut warnings = Vec::new();
    let python = if no_python {
        None
    } else {
        let configured = config_python(&project.root, project.config.python.as_deref());
        match capture_python(python, configured.as_deref())? {
            Ok(e) => {
                warnings.extend(e.warnings.iter().cloned());
                Some(e)
            }
            Err(why) => {
                warnings.push(why);
                None
            }
        }
    };
    let mut host = crate::probe::host::probe();
    if let Some(e) = &python {
        host.torch = e.torch.clone();
        if host.glibc.is_none() {
            host.glibc = e.interpreter.libc.clone();
        }
    }
    Ok(Captured {
        lockfiles: lockfile_entries(&project.root)?,
        env: determinism_env(&project.config.env, std::env::vars()),
        host,
        python,
        warnings,
    })
}

/// How serious a drift is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A package, interpreter or lock file difference.
    Environment,
    /// A host fact (OS, GPU, driver, C library, PyTorch build).
    Host,
}

/// One difference between the locked environment and this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Environment or host.
    pub level: Level,
    /// What differs: a package name, `python`, a lock file path, a host item.
    pub subject: String,
    /// `added`, `removed` or `changed`.
    pub change: DriftChange,
    /// Locked value -> current value, or an explanation.
    pub detail: String,
}

/// The kind of drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftChange {
    /// Present now, not locked.
    Added,
    /// Locked, gone now.
    Removed,
    /// Different now.
    Changed,
}

fn source_text(s: &Source) -> String {
    match s {
        Source::Registry => "registry".into(),
        Source::Vcs { url, commit } => format!("{url}@{commit}"),
        Source::Archive { url, hash } => match hash {
            Some(h) => format!("{url}#{h}"),
            None => url.clone(),
        },
        Source::Directory {
            url,
            editable,
            commit,
            change,
        } => {
            let mut t = format!("{}{url}", if *editable { "editable " } else { "" });
            if let Some(c) = commit {
                t.push_str(&format!(" @ {}", &c[..c.len().min(12)]));
            }
            if change.is_some() {
                t.push_str(" + uncommitted change");
            }
            t
        }
    }
}

/// A directory package inside the repository is code: its content is compared in the code
/// section, and the commit it records moves with every commit (committing the lock is enough).
/// Compare it by name, version, URL and editable flag only.
pub fn same_repo_directory(a: &Source, b: &Source, repo_root: Option<&Path>) -> bool {
    let (
        Source::Directory {
            url: ua,
            editable: ea,
            ..
        },
        Source::Directory {
            url: ub,
            editable: eb,
            ..
        },
    ) = (a, b)
    else {
        return false;
    };
    let inside = |u: &str| {
        python::file_url_path(u)
            .zip(repo_root)
            .is_some_and(|(p, root)| p.canonicalize().unwrap_or(p).starts_with(root))
    };
    ua == ub && ea == eb && inside(ua)
}

/// Make the in-repository directory packages of `now` compare equal to `locked` when they are
/// the same package (see [`same_repo_directory`]): their content is the code, compared as code.
pub fn align_repo_packages(locked: &Python, now: &mut Python, repo_root: Option<&Path>) {
    for p in &mut now.packages {
        if let Some(l) = locked.packages.iter().find(|l| l.name == p.name) {
            if same_repo_directory(&l.source, &p.source, repo_root) {
                p.source = l.source.clone();
                p.fingerprint = l.fingerprint;
            }
        }
    }
}

/// Compare the locked `[python]` with a captured environment, package by package.
pub fn python_drift(locked: &Python, now: &Python) -> Vec<Drift> {
    let mut out = Vec::new();
    let env = |subject: &str, change, detail: String| Drift {
        level: Level::Environment,
        subject: subject.to_string(),
        change,
        detail,
    };
    if (locked.implementation.as_str(), locked.version.as_str())
        != (now.implementation.as_str(), now.version.as_str())
    {
        out.push(env(
            "python",
            DriftChange::Changed,
            format!(
                "{} {} -> {} {}",
                locked.implementation, locked.version, now.implementation, now.version
            ),
        ));
    }
    let now_by: BTreeMap<&str, &PyPackage> =
        now.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let locked_by: BTreeMap<&str, &PyPackage> = locked
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    for (name, l) in &locked_by {
        match now_by.get(name) {
            None => out.push(env(
                name,
                DriftChange::Removed,
                format!("{} was locked", l.version),
            )),
            Some(n) if n.version != l.version => out.push(env(
                name,
                DriftChange::Changed,
                format!("{} -> {}", l.version, n.version),
            )),
            Some(n) if n.source != l.source => out.push(env(
                name,
                DriftChange::Changed,
                format!(
                    "source {} -> {}",
                    source_text(&l.source),
                    source_text(&n.source)
                ),
            )),
            Some(n) if l.fingerprint.is_some() && n.fingerprint != l.fingerprint => out.push(env(
                name,
                DriftChange::Changed,
                format!("{} installed files differ from the locked ones", n.version),
            )),
            Some(_) => {}
        }
    }
    for (name, n) in &now_by {
        if !locked_by.contains_key(name) {
            out.push(env(
                name,
                DriftChange::Added,
                format!("{} is installed", n.version),
            ));
        }
    }
    out
}

/// Compare the locked lock files with the project's now, and the Python pins they make with the
/// packages installed now.
pub fn lockfile_drift(
    root: &Path,
    locked: &[LockfileEntry],
    installed: Option<&Python>,
) -> Result<(Vec<Drift>, Vec<String>)> {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let now = lockfile_entries(root)?;
    let drift = |subject: &RelPath, change, detail: String| Drift {
        level: Level::Environment,
        subject: subject.to_string(),
        change,
        detail,
    };
    let now_by: BTreeMap<&RelPath, &LockfileEntry> = now.iter().map(|e| (&e.path, e)).collect();
    let locked_by: BTreeMap<&RelPath, &LockfileEntry> =
        locked.iter().map(|e| (&e.path, e)).collect();
    for (path, l) in &locked_by {
        match now_by.get(path) {
            None => out.push(drift(
                path,
                DriftChange::Removed,
                "lock file was locked".into(),
            )),
            Some(n) if n.digest != l.digest => out.push(drift(
                path,
                DriftChange::Changed,
                "its content differs from the locked one".into(),
            )),
            Some(_) => {}
        }
    }
    for path in now_by.keys() {
        if !locked_by.contains_key(path) {
            out.push(drift(path, DriftChange::Added, "a new lock file".into()));
        }
    }
    if let Some(installed) = installed {
        let versions: BTreeMap<&str, &str> = installed
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        for e in now.iter().filter(|e| lockfiles::is_python(&e.kind)) {
            let path = e.path.under(root);
            // Bounded, regular files only; `lockfiles::find` kept only links inside the project.
            let read = path.canonicalize().and_then(|real| {
                let bytes = crate::fs::read_bounded(&real, crate::fs::MAX_SIDECAR_BYTES >> 2)?;
                String::from_utf8(bytes).map_err(std::io::Error::other)
            });
            let text = match read {
                Ok(t) => t,
                Err(err) => {
                    warnings.push(format!("cannot read {}: {err}", path.display()));
                    continue;
                }
            };
            let pins = match lockfiles::pins(&e.kind, &text) {
                Ok(p) => p,
                Err(err) => {
                    warnings.push(format!("cannot read the pins of {}: {err}", e.path));
                    continue;
                }
            };
            // A name may be pinned at several versions (uv forks): any of them matches.
            let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for pin in &pins {
                by_name.entry(&pin.name).or_default().push(&pin.version);
            }
            for (name, pinned) in by_name {
                // Only installed packages are compared: a lock file also lists packages for
                // other platforms, and conda names (`python`, `pytorch`) are not pip names.
                let Some(v) = versions.get(name) else {
                    continue;
                };
                if !pinned.iter().any(|p| pin_matches(&e.kind, p, v)) {
                    out.push(drift(
                        &e.path,
                        DriftChange::Changed,
                        format!(
                            "{} pins {name} {} but the environment has {v}",
                            e.path,
                            pinned.join(" or ")
                        ),
                    ));
                }
            }
        }
    }
    Ok((out, warnings))
}

/// Does an installed version satisfy a pin? Exact, except that conda's `name=1.26` accepts any
/// 1.26.x.
fn pin_matches(kind: &str, pinned: &str, installed: &str) -> bool {
    installed == pinned
        || (kind == "conda"
            && installed
                .strip_prefix(pinned)
                .is_some_and(|rest| rest.starts_with('.')))
}

/// Compare the host facts that matter for numerics: OS, architecture, C library, GPUs (model,
/// driver, CUDA) and the PyTorch build. CPU model, core count, memory and kernel are left out:
/// they differ between any two machines and rarely explain a result.
pub fn host_drift(locked: &Host, now: &Host) -> Vec<Drift> {
    let mut out = Vec::new();
    let mut cmp = |subject: &str, l: Option<String>, n: Option<String>| {
        if l != n {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
            out.push(Drift {
                level: Level::Host,
                subject: subject.into(),
                change: DriftChange::Changed,
                detail: format!("{} -> {}", show(&l), show(&n)),
            });
        }
    };
    cmp("os", locked.os.clone(), now.os.clone());
    cmp("arch", locked.arch.clone(), now.arch.clone());
    cmp("glibc", locked.glibc.clone(), now.glibc.clone());
    let gpus = |h: &Host| {
        (!h.gpus.is_empty()).then(|| {
            h.gpus
                .iter()
                .map(|g| g.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    cmp("gpu", gpus(locked), gpus(now));
    let first = |h: &Host, f: fn(&crate::model::lockfile::Gpu) -> Option<String>| {
        h.gpus.first().and_then(f)
    };
    cmp(
        "gpu driver",
        first(locked, |g| g.driver.clone()),
        first(now, |g| g.driver.clone()),
    );
    cmp(
        "gpu cuda",
        first(locked, |g| g.cuda.clone()),
        first(now, |g| g.cuda.clone()),
    );
    let t = |h: &Host, f: fn(&python::TorchStack) -> Option<String>| h.torch.as_ref().and_then(f);
    cmp(
        "torch",
        t(locked, |x| x.version.clone()),
        t(now, |x| x.version.clone()),
    );
    cmp(
        "torch cuda",
        t(locked, |x| x.cuda.clone()),
        t(now, |x| x.cuda.clone()),
    );
    cmp(
        "cudnn",
        t(locked, |x| x.cudnn.clone()),
        t(now, |x| x.cudnn.clone()),
    );
    cmp(
        "nccl",
        t(locked, |x| x.nccl.clone()),
        t(now, |x| x.nccl.clone()),
    );
    out
}

/// Resolve cairn.toml's `python` (relative to the project root).
pub fn config_python(root: &Path, configured: Option<&str>) -> Option<PathBuf> {
    configured.map(|p| crate::model::paths::absolutize(root, Path::new(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conda_pins_are_prefixes() {
        assert!(pin_matches("conda", "1.26", "1.26.4"));
        assert!(!pin_matches("conda", "1.2", "1.26.4"));
        assert!(!pin_matches("requirements", "1.26", "1.26.4"));
        assert!(pin_matches("uv", "2.5.1+cu121", "2.5.1+cu121"));
    }

    #[test]
    fn env_allow_list_and_patterns() {
        let vars = [
            ("PYTHONHASHSEED", "0"),
            ("NCCL_ALGO", "Ring"),
            ("HOME", "/root"),
            ("AWS_SECRET_ACCESS_KEY", "no"),
            ("MY_FLAG", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let got = determinism_env(&["MY_*".to_string()], vars);
        let keys: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(keys, ["MY_FLAG", "NCCL_ALGO", "PYTHONHASHSEED"]);
    }

    fn pkg(name: &str, version: &str) -> PyPackage {
        PyPackage {
            name: name.into(),
            version: version.into(),
            source: Source::Registry,
            installer: Some("pip".into()),
            wheel_tag: None,
            fingerprint: None,
        }
    }

    #[test]
    fn package_drift_names_each_difference() {
        let py = |pkgs: Vec<PyPackage>| Python {
            implementation: "cpython".into(),
            version: "3.11.7".into(),
            abi: None,
            platform: None,
            packages: pkgs,
            conda: vec![],
        };
        let locked = py(vec![
            pkg("numpy", "1.26.4"),
            pkg("six", "1.16.0"),
            pkg("tqdm", "4.66.0"),
        ]);
        let now = py(vec![
            pkg("numpy", "2.0.0"),
            pkg("tqdm", "4.66.0"),
            pkg("rich", "13.0"),
        ]);
        let d = python_drift(&locked, &now);
        let got: Vec<(&str, DriftChange)> =
            d.iter().map(|d| (d.subject.as_str(), d.change)).collect();
        assert_eq!(
            got,
            [
                ("numpy", DriftChange::Changed),
                ("six", DriftChange::Removed),
                ("rich", DriftChange::Added)
            ]
        );
        assert_eq!(d[0].detail, "1.26.4 -> 2.0.0");
    }
}
