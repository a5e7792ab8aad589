//! The environment of a run, as the lock records it, and how another environment differs:
//! the Python interpreter and packages ([`crate::probe::python`]), the project's dependency lock files
//! ([`crate::probe::lockfiles`]), the determinism settings in the process environment, and the host.
//!
//! How two environments differ is [`crate::compare`]'s business; this module only captures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::content::digest;
use crate::error::Result;
use crate::model::lockfile::{Host, LockfileEntry, Python};
use crate::probe::python::{self, Environment, Origin, Source};
use crate::probe::{depfiles, lockfiles};

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
    // Thread pools: a reduction split over another number of threads sums in another order.
    "OMP_*",
    "KMP_AFFINITY",
    "KMP_DETERMINISTIC_REDUCTION",
    "GOMP_CPU_AFFINITY",
    "RAYON_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    // Kernel choice and numerics.
    "OPENBLAS_CORETYPE",
    "OPENBLAS_VERBOSE",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DYNAMIC",
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_XLA_FLAGS",
    "XLA_FLAGS",
    "JAX_*",
];

/// Is this recorded variable about thread counts or CPU placement (rather than about which
/// kernels run or how they round)? [`crate::compare`] names the two as separate causes.
pub fn is_thread_variable(name: &str) -> bool {
    name.ends_with("_THREADS")
        || name.starts_with("OMP_")
        || matches!(
            name,
            "TOKENIZERS_PARALLELISM"
                | "KMP_AFFINITY"
                | "GOMP_CPU_AFFINITY"
                | "CUDA_VISIBLE_DEVICES"
                | "MKL_DYNAMIC"
        )
}

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

/// The `[python]` table of a captured environment, with the package indexes its installer is
/// configured with ([`crate::probe::index`]).
pub fn python_table(env: &Environment) -> Python {
    let uv = env
        .packages
        .iter()
        .filter(|p| p.package.installer.as_deref() == Some("uv"))
        .count();
    let indexes = crate::probe::index::probe(
        Some(Path::new(&env.interpreter.prefix)),
        uv * 2 > env.packages.len(),
    );
    Python {
        index_url: indexes.index_url,
        extra_index_urls: indexes.extra,
        implementation: env.interpreter.implementation.clone(),
        version: env.interpreter.version.clone(),
        abi: env.interpreter.abi.clone(),
        platform: Some(env.interpreter.platform.clone()),
        packages: env.packages.iter().map(|p| p.package.clone()).collect(),
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
    capture_at(
        &project.root,
        project.config.python.as_deref(),
        &project.config.env,
        python,
        no_python,
    )
}

/// [`capture`] from the parts of a project it reads (the root, cairn.toml's `python` and `env`),
/// so that it can run on a thread of its own: a [`crate::project::Project`] holds a git
/// repository, which threads do not share. The Python probe and the host probe run at once.
pub fn capture_at(
    root: &Path,
    config_python_setting: Option<&str>,
    env_patterns: &[String],
    python: Option<&Path>,
    no_python: bool,
) -> Result<Captured> {
    let mut warnings = Vec::new();
    let (python, host) = std::thread::scope(|s| {
        let host = s.spawn(crate::probe::host::probe);
        let python = if no_python {
            Ok(None)
        } else {
            let configured = config_python(root, config_python_setting);
            capture_python(python, configured.as_deref()).map(Some)
        };
        let host = host.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (python, host)
    });
    let python = match python? {
        None => None,
        Some(Ok(e)) => {
            warnings.extend(e.choice_warnings.iter().cloned());
            warnings.extend(e.warnings.iter().cloned());
            Some(e)
        }
        Some(Err(why)) => {
            warnings.push(why);
            None
        }
    };
    let mut host = merge_host(
        host,
        python.as_ref().and_then(|e| e.torch.clone()),
        python.as_ref().and_then(|e| e.interpreter.libc.clone()),
    );
    host.blas = python.as_ref().map(blas_of).unwrap_or_default();
    Ok(Captured {
        lockfiles: lockfile_entries(root)?,
        env: determinism_env(env_patterns, std::env::vars()),
        host,
        python,
        warnings,
    })
}

/// The host now, with what only a Python environment knows: the PyTorch build, and the C
/// library when the host probe could not tell (the interpreter reports the one it runs on).
pub fn host_with(torch: Option<python::TorchStack>, libc: Option<String>) -> Host {
    merge_host(crate::probe::host::probe(), torch, libc)
}

/// The BLAS libraries of a captured environment's numeric packages, from their files
/// ([`crate::probe::host::blas`]).
pub fn blas_of(env: &Environment) -> Vec<crate::model::lockfile::Blas> {
    crate::probe::host::blas(
        &env.interpreter.sys_path,
        Some(Path::new(&env.interpreter.prefix)),
    )
}

/// [`host_with`] for a host already probed.
fn merge_host(mut host: Host, torch: Option<python::TorchStack>, libc: Option<String>) -> Host {
    host.torch = torch;
    if host.glibc.is_none() {
        host.glibc = libc;
    }
    host
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

/// What one Python dependency file (`entry`, under `root`) asks that `installed` does not meet
/// ([`depfiles::unmet`]), and the problems met reading it (a line that does not parse, an
/// include that is missing or leads outside the project). `Err` with a warning when the file
/// itself cannot be read.
pub fn unmet_requirements(
    root: &Path,
    entry: &lockfiles::Found,
    installed: &Python,
) -> std::result::Result<(Vec<depfiles::Unmet>, Vec<String>), String> {
    let path = entry.path.under(root);
    // Bounded, regular files only; `lockfiles::find` kept only links inside the project.
    let text = read_inside(root, &path)?;
    let mut read = |rel: &str| -> std::result::Result<(String, String), String> {
        let name = normal_relative(rel)
            .ok_or_else(|| format!("`{rel}` is outside the project; not read"))?;
        Ok((name.clone(), read_inside(root, &root.join(&name))?))
    };
    let parsed = depfiles::parse(entry.kind, entry.path.as_str(), &text, &mut read);
    let unmet = depfiles::unmet(&parsed, &depfiles::Installed::new(installed));
    let problems = parsed
        .problems
        .into_iter()
        .map(|p| {
            // A requirements file's problems already start with the file they are in.
            if p.starts_with(&format!("{} ", entry.path)) {
                p
            } else {
                format!("{}: {p}", entry.path)
            }
        })
        .collect();
    Ok((unmet, problems))
}

/// A `/`-separated path with `.` and `..` resolved, `None` when it is absolute or climbs out.
fn normal_relative(rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    if rel.starts_with('/') {
        return None;
    }
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Read a text file of the project: its real path must be inside `root` (a link out of the
/// project is a file of the user's, spec/security.md), and its size bounded.
fn read_inside(root: &Path, path: &Path) -> std::result::Result<String, String> {
    let real = path
        .canonicalize()
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    if !real.starts_with(&root) {
        return Err(format!(
            "{} leads outside the project; not read",
            path.display()
        ));
    }
    crate::fs::read_bounded(&real, crate::fs::MAX_SIDECAR_BYTES >> 2)
        .and_then(|bytes| String::from_utf8(bytes).map_err(std::io::Error::other))
        .map_err(|err| format!("cannot read {}: {err}", path.display()))
}

/// Resolve cairn.toml's `python` (relative to the project root).
pub fn config_python(root: &Path, configured: Option<&str>) -> Option<PathBuf> {
    configured.map(|p| crate::model::paths::absolutize(root, Path::new(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_relative_paths_inside_the_project() {
        assert_eq!(
            normal_relative("reqs/./a/../b.txt").as_deref(),
            Some("reqs/b.txt")
        );
        assert_eq!(normal_relative("../b.txt"), None);
        assert_eq!(normal_relative("/etc/passwd"), None);
        assert_eq!(normal_relative("a/.."), None);
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
}
