//! The Python environment of a run: the interpreter and every installed distribution, exactly as
//! `pip freeze --all` would list them, read from the metadata files on disk.
//!
//! The interpreter is run once, with nothing imported beyond the standard library, to learn its
//! version, ABI, platform, prefix and `sys.path` (which includes `PYTHONPATH` and the path lines of
//! `.pth` files, as the run would see them). Then every `sys.path` directory is scanned in order
//! for `*.dist-info`, `*.egg-info` and `*.egg`; the first distribution of each PEP 503 normalised
//! name wins and a later one is reported as shadowed. No package is imported.
//!
//! For each distribution: name, version, where it came from (PEP 610 `direct_url.json`: a VCS
//! commit, an archive and its hash, or a local directory, editable or not, with that directory's
//! own git commit and uncommitted change), the installer, the wheel tag, and a fingerprint of its
//! installed files from `RECORD` that is the same whether pip or uv installed the same wheel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::content::digest::Digest;
use crate::error::{Error, Result};
use crate::model::lockfile::PyPackage;
use crate::probe::git;

pub use crate::model::python::{file_url_path, normalize_name, CondaPackage, Source, TorchStack};

/// The interpreter as it describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// The executable that was run (for a pyenv shim, the version's own executable).
    pub executable: PathBuf,
    /// `sys.implementation.name` (`cpython`).
    pub implementation: String,
    /// Full version (`3.11.7`).
    pub version: String,
    /// `SOABI` (`cpython-311-x86_64-linux-gnu`), when the build has one.
    pub abi: Option<String>,
    /// `sysconfig.get_platform()` (`linux-x86_64`).
    pub platform: String,
    /// `sys.prefix`.
    pub prefix: String,
    /// The C library, from `os.confstr("CS_GNU_LIBC_VERSION")` (`glibc 2.36`).
    pub libc: Option<String>,
    /// `sys.path`, in order, without the script directory.
    pub sys_path: Vec<PathBuf>,
}

/// One installed distribution: what the lock records of it, and where it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Name, version, source, installer, wheel tag(s) from the `WHEEL` file and the fingerprint
    /// of `RECORD` (see [`record_fingerprint`]): the lock's `[[python.package]]`.
    pub package: PyPackage,
    /// The metadata directory or file it was read from (not recorded in the lock).
    pub location: PathBuf,
}

/// A captured environment.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The interpreter.
    pub interpreter: Interpreter,
    /// Distributions, sorted by name.
    pub packages: Vec<Package>,
    /// conda packages, when the prefix is a conda environment; sorted by name.
    pub conda: Vec<CondaPackage>,
    /// PyTorch's build, when torch is installed.
    pub torch: Option<TorchStack>,
    /// Problems that did not stop the capture (broken metadata, shadowed duplicates).
    pub warnings: Vec<String>,
    /// Why a pyenv shim was run instead of the version it chooses (a refused version name).
    pub choice_warnings: Vec<String>,
}

/// Where the interpreter was found, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--python PATH`.
    Option,
    /// `python = ...` in a cairn.toml the user trusts (`cairn trust`).
    Config,
    /// `$CAIRN_PYTHON`.
    CairnPython,
    /// `$VIRTUAL_ENV`.
    VirtualEnv,
    /// `$CONDA_PREFIX`.
    Conda,
    /// `python3` on `PATH`.
    Path,
}

/// Find the interpreter: `--python`, then a trusted cairn.toml's `python` (the caller passes
/// `config` only when the user trusts the file; see [`crate::trust`]), `$CAIRN_PYTHON`,
/// `$VIRTUAL_ENV`, `$CONDA_PREFIX`, then `python3` on `PATH`. `None` when there is none.
///
/// Every source is the user's: a command-line flag, the user's environment, or a file the user
/// trusted. Relative entries of `PATH` (an empty entry or `.`, which mean the current directory,
/// often a stranger's checkout) are skipped, as are relative `$VIRTUAL_ENV` and `$CONDA_PREFIX`.
/// A pyenv shim found here is resolved to the version it would run by [`capture`].
pub fn find_interpreter(option: Option<&Path>, config: Option<&Path>) -> Option<(PathBuf, Origin)> {
    if let Some(p) = option {
        return Some((p.to_path_buf(), Origin::Option));
    }
    if let Some(p) = config {
        return Some((p.to_path_buf(), Origin::Config));
    }
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("CAIRN_PYTHON") {
        return Some((p, Origin::CairnPython));
    }
    for (name, origin) in [
        ("VIRTUAL_ENV", Origin::VirtualEnv),
        ("CONDA_PREFIX", Origin::Conda),
    ] {
        if let Some(prefix) = var(name).filter(|p| p.is_absolute()) {
            let exe = prefix.join("bin/python");
            if exe.exists() {
                return Some((exe, origin));
            }
        }
    }
    crate::process::on_path("python3").map(|p| (p, Origin::Path))
}

/// The script the interpreter runs: standard library modules that `site` has already loaded,
/// and NUL-separated bytes out (`json` alone would cost the interpreter more than everything
/// else cairn does here). Fields: implementation, version, SOABI, platform, prefix, libc, then
/// every `sys.path` entry but the one `-c` adds for the current directory (none when safe-path
/// mode is on, as it is from Python 3.11).
pub(crate) const PROBE: &str = r#"
import os, sys, sysconfig
try:
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
except (AttributeError, ValueError, OSError):
    libc = ""
fields = [sys.implementation.name, sys.version.split()[0],
          sysconfig.get_config_var("SOABI") or "", sysconfig.get_platform(), sys.prefix, libc]
path = sys.path if getattr(sys.flags, "safe_path", False) else sys.path[1:]
sys.stdout.buffer.write(b"\0".join(os.fsencode(f) for f in fields + path))
"#;

/// Environment variables removed for the probe: they make the interpreter run code or change
/// how it starts, and none of them changes `sys.path`. (`PYTHONPATH`, `PYTHONHOME`,
/// `PYTHONUSERBASE` and `PYTHONNOUSERSITE` stay: they are the user's, and the run sees them.)
const PROBE_ENV_REMOVED: &[&str] = &[
    "PYTHONSTARTUP",
    "PYTHONINSPECT",
    "PYTHONBREAKPOINT",
    "PYTHONDEBUG",
    "PYTHONVERBOSE",
    "PYTHONWARNINGS",
    "PYTHONDEVMODE",
    "PYTHONMALLOC",
    "PYTHONPROFILEIMPORTTIME",
    "PYTHONEXECUTABLE",
];

/// Run the interpreter once to learn what it is and where it looks for packages.
///
/// It runs isolated from wherever cairn was started (spec/security.md): in a new empty
/// directory outside the project, with safe-path mode on (`PYTHONSAFEPATH=1`, Python 3.11 and
/// later; on older interpreters `-c` puts only that empty directory on `sys.path`), with stdin
/// closed and without the variables of `PROBE_ENV_REMOVED`. So a `sysconfig.py`, `site.py`
/// or `sitecustomize.py` in a checkout is never imported. The interpreter itself and its own
/// site-packages (`.pth` files run at start-up) are the user's choice: see
/// [`find_interpreter`].
pub fn probe_interpreter(executable: &Path) -> Result<Interpreter> {
    use std::os::unix::ffi::OsStrExt;
    // A path with a slash is resolved here, since the probe runs elsewhere; a bare name is
    // looked up on PATH as the shell would.
    let program = if executable.components().count() > 1 {
        std::path::absolute(executable).map_err(|source| Error::Io {
            op: "cannot find the Python interpreter",
            path: executable.to_path_buf(),
            source,
        })?
    } else {
        executable.to_path_buf()
    };
    let neutral = tempfile::Builder::new()
        .prefix("cairn-probe-")
        .tempdir()
        .map_err(|source| Error::Io {
            op: "cannot create a temporary directory in",
            path: std::env::temp_dir(),
            source,
        })?;
    let mut cmd = Command::new(&program);
    cmd.args(["-c", PROBE])
        .current_dir(neutral.path())
        .env("PYTHONSAFEPATH", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    for k in PROBE_ENV_REMOVED {
        cmd.env_remove(k);
    }
    let out = cmd.output().map_err(|source| Error::Io {
        op: "cannot run the Python interpreter",
        path: executable.to_path_buf(),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::InterpreterFailed {
            path: executable.to_path_buf(),
            detail: format!(
                "it {}: {}",
                crate::process::status_text(out.status),
                crate::process::tail(&out, 5)
            ),
        });
    }
    let mut fields = out.stdout.split(|&b| b == 0);
    let mut text = || {
        fields
            .next()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .ok_or_else(|| Error::InterpreterFailed {
                path: executable.to_path_buf(),
                detail: "it ran, but did not describe itself (is it a Python interpreter?)".into(),
            })
    };
    let nonempty = |s: String| (!s.is_empty()).then_some(s);
    let implementation = text()?;
    let version = text()?;
    let abi = nonempty(text()?);
    let platform = text()?;
    let prefix = text()?;
    let libc = nonempty(text()?);
    let sys_path = fields
        .filter(|f| !f.is_empty())
        .map(|f| PathBuf::from(std::ffi::OsStr::from_bytes(f)))
        .filter(|p| p != neutral.path())
        .collect();
    Ok(Interpreter {
        executable: executable.to_path_buf(),
        implementation,
        version,
        abi,
        platform,
        prefix,
        libc,
        sys_path,
    })
}

/// The header block of a core metadata file: up to the first blank line (the long description
/// after it can be large and is not needed).
fn read_headers(path: &Path) -> std::io::Result<String> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::with_capacity(8192, std::fs::File::open(path)?);
    let mut out = Vec::new();
    loop {
        let start = out.len();
        if reader.read_until(b'\n', &mut out)? == 0 {
            break;
        }
        if out[start..].iter().all(|b| b.is_ascii_whitespace()) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `Name` and `Version` from core metadata (RFC 822 style headers, up to the first blank line).
fn parse_metadata(text: &str) -> Option<(String, String)> {
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "Name" if name.is_none() => name = Some(v.trim().to_string()),
                "Version" if version.is_none() => version = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => Some((n, v)),
        _ => None,
    }
}

/// A fingerprint of the installed files: BLAKE3 over the sorted lines `path,hash` of `RECORD`,
/// leaving out `__pycache__` files, the metadata directory itself, paths outside site-packages
/// (`../`, such as scripts) and lines without a hash. These are exactly the parts that differ
/// between installers of the same wheel.
pub fn record_fingerprint(record: &str) -> Option<Digest> {
    use std::borrow::Cow;
    let keep = |path: &str, hash: &str| {
        let first = path.split('/').next().unwrap_or("");
        !(hash.is_empty()
            || path.starts_with("../")
            || path.starts_with('/')
            || path.split('/').any(|c| c == "__pycache__")
            || first.ends_with(".dist-info"))
    };
    // A RECORD lists every installed file (thousands for a large package). Without a quote
    // anywhere, every line is one row and `path,hash` is the line up to its second comma: taken
    // as a slice of itself, no allocation. With quotes, the file is read as what it is, CSV as
    // Python's csv module writes it (`,`, `"` quoting, `""` for a quote), so a quoted path with a
    // comma or a line break is one field. A row that cannot be read is skipped, as one without a
    // hash is.
    let mut lines: Vec<Cow<'_, str>> = Vec::new();
    if !record.contains('"') {
        for line in record.lines() {
            let Some((path, rest)) = line.split_once(',') else {
                continue;
            };
            let hash = rest.split_once(',').map_or(rest, |(h, _)| h);
            if keep(path, hash) {
                lines.push(Cow::Borrowed(&line[..path.len() + 1 + hash.len()]));
            }
        }
    } else {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(record.as_bytes());
        let mut row = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut row) {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => continue,
            }
            let (Some(path), Some(hash)) = (row.get(0), row.get(1)) else {
                continue;
            };
            if keep(path, hash) {
                lines.push(Cow::Owned(format!("{path},{hash}")));
            }
        }
    }
    if lines.is_empty() {
        return None;
    }
    lines.sort_unstable();
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in &lines {
        text.push_str(l);
        text.push('\n');
    }
    Some(blake3::hash(text.as_bytes()).into())
}

#[derive(Deserialize)]
struct DirectUrl {
    url: String,
    #[serde(default)]
    vcs_info: Option<VcsInfo>,
    #[serde(default)]
    archive_info: Option<ArchiveInfo>,
    #[serde(default)]
    dir_info: Option<DirInfo>,
}

#[derive(Deserialize)]
struct VcsInfo {
    vcs: String,
    commit_id: String,
}

#[derive(Deserialize)]
struct ArchiveInfo {
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    hashes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct DirInfo {
    #[serde(default)]
    editable: bool,
}

/// The code state (commit, digest of the uncommitted change) of a repository that packages were
/// installed from.
type RepoState = (Option<String>, Option<Digest>);

/// The repositories that local-directory packages come from, each captured once per scan.
/// Capturing reads the whole working tree, and the libraries of one monorepo, installed from
/// their subdirectories, all name the same repository: one capture serves them all, even while
/// the packages are read in parallel.
#[derive(Default)]
pub(crate) struct RepoStates {
    by_git_dir: std::sync::Mutex<BTreeMap<PathBuf, std::sync::Arc<std::sync::OnceLock<RepoState>>>>,
}

impl RepoStates {
    /// The state of the repository holding `dir`; nothing for a directory outside any repository
    /// or a repository that cannot be captured.
    pub(crate) fn of(&self, dir: &Path) -> RepoState {
        let Ok(repo) = git::discover(dir) else {
            return (None, None);
        };
        let cell = self
            .by_git_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(repo.path().to_path_buf())
            .or_default()
            .clone();
        cell.get_or_init(|| match git::capture(&repo, &git::Excluder::default()) {
            Ok(state) => (
                Some(state.commit.to_string()),
                (!state.patch.is_empty()).then(|| Digest::of_bytes(&state.patch)),
            ),
            Err(_) => (None, None),
        })
        .clone()
    }
}

/// The source of a distribution from its `direct_url.json` (PEP 610), or the registry.
fn source_of(meta_dir: &Path, repos: &RepoStates) -> std::result::Result<Source, String> {
    let path = meta_dir.join("direct_url.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Source::Registry),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let d: DirectUrl =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let url = git::strip_credentials(&d.url);
    if let Some(v) = d.vcs_info {
        return Ok(Source::Vcs {
            url: format!("{}+{url}", v.vcs),
            commit: v.commit_id,
        });
    }
    if let Some(a) = d.archive_info {
        let hash = a.hash.or_else(|| {
            a.hashes
                .and_then(|h| h.into_iter().next())
                .map(|(k, v)| format!("{k}={v}"))
        });
        return Ok(Source::Archive { url, hash });
    }
    let editable = d.dir_info.map(|i| i.editable).unwrap_or(false);
    let (commit, change) = match file_url_path(&d.url) {
        Some(dir) => repos.of(&dir),
        None => (None, None),
    };
    Ok(Source::Directory {
        url,
        editable,
        commit,
        change,
    })
}

/// Read one metadata directory (or egg-info file): `None` with a warning when it is broken.
fn read_distribution(
    entry: &Path,
    repos: &RepoStates,
    warnings: &mut Vec<String>,
) -> Option<Package> {
    let name = entry.file_name()?.to_string_lossy().into_owned();
    let (meta_dir, metadata_file) = if name.ends_with(".dist-info") {
        (entry.to_path_buf(), entry.join("METADATA"))
    } else if name.ends_with(".egg-info") {
        if entry.is_dir() {
            (entry.to_path_buf(), entry.join("PKG-INFO"))
        } else {
            (entry.to_path_buf(), entry.to_path_buf())
        }
    } else {
        // foo-1.0-py3.11.egg/EGG-INFO/PKG-INFO
        let egg_info = entry.join("EGG-INFO");
        (egg_info.clone(), egg_info.join("PKG-INFO"))
    };
    let text = match read_headers(&metadata_file) {
        Ok(text) => text,
        Err(e) => {
            warnings.push(format!(
                "skipped {}: cannot read its metadata ({e})",
                entry.display()
            ));
            return None;
        }
    };
    let Some((raw_name, version)) = parse_metadata(&text) else {
        warnings.push(format!(
            "skipped {}: its metadata has no Name or Version",
            entry.display()
        ));
        return None;
    };
    let source = match source_of(&meta_dir, repos) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!(
                "{}: unreadable direct_url.json: {e}",
                entry.display()
            ));
            Source::Registry
        }
    };
    let read = |f: &str| {
        std::fs::read_to_string(meta_dir.join(f))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let wheel_tag = read("WHEEL").and_then(|w| {
        let tags: Vec<&str> = w
            .lines()
            .filter_map(|l| l.strip_prefix("Tag:"))
            .map(str::trim)
            .collect();
        (!tags.is_empty()).then(|| tags.join(" "))
    });
    Some(Package {
        package: PyPackage {
            name: normalize_name(&raw_name),
            version,
            source,
            installer: read("INSTALLER"),
            wheel_tag,
            fingerprint: read("RECORD").and_then(|r| record_fingerprint(&r)),
        },
        location: entry.to_path_buf(),
    })
}

fn is_metadata_entry(name: &str) -> bool {
    name.ends_with(".dist-info") || name.ends_with(".egg-info") || name.ends_with(".egg")
}

/// Scan `sys.path` in order; the first distribution of each name wins.
pub fn scan(sys_path: &[PathBuf]) -> (Vec<Package>, Vec<String>) {
    use rayon::prelude::*;
    let mut entries: Vec<PathBuf> = Vec::new();
    for dir in sys_path {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut here: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| is_metadata_entry(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        here.sort();
        entries.extend(here);
    }
    // Reading the metadata files is the slow part: do it on the pool, then decide which of
    // each name wins in sys.path order.
    let repos = RepoStates::default();
    let read: Vec<(Option<Package>, Vec<String>)> = entries
        .par_iter()
        .map(|entry| {
            let mut warnings = Vec::new();
            (read_distribution(entry, &repos, &mut warnings), warnings)
        })
        .collect();
    let mut warnings = Vec::new();
    let mut found: BTreeMap<String, Package> = BTreeMap::new();
    for (pkg, w) in read {
        warnings.extend(w);
        {
            let Some(pkg) = pkg else {
                continue;
            };
            match found.get(&pkg.package.name) {
                Some(first) => warnings.push(format!(
                    "{} {} at {} is shadowed by {} {} at {}",
                    pkg.package.name,
                    pkg.package.version,
                    pkg.location.display(),
                    first.package.name,
                    first.package.version,
                    first.location.display()
                )),
                None => {
                    found.insert(pkg.package.name.clone(), pkg);
                }
            }
        }
    }
    (found.into_values().collect(), warnings)
}

/// conda packages from `<prefix>/conda-meta/*.json`; empty when the prefix is not a conda env.
pub fn conda_packages(prefix: &Path, warnings: &mut Vec<String>) -> Vec<CondaPackage> {
    #[derive(Deserialize)]
    struct Meta {
        name: String,
        version: String,
        #[serde(default)]
        build: Option<String>,
        #[serde(default)]
        channel: Option<String>,
        #[serde(default)]
        sha256: Option<String>,
    }
    let Ok(rd) = std::fs::read_dir(prefix.join("conda-meta")) else {
        return Vec::new();
    };
    let mut out: Vec<CondaPackage> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let parsed = std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Meta>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(m) => Some(CondaPackage {
                    name: m.name,
                    version: m.version,
                    build: m.build,
                    channel: m.channel.map(|c| git::strip_credentials(&c)),
                    sha256: m.sha256,
                }),
                Err(e) => {
                    warnings.push(format!("skipped {}: {e}", p.display()));
                    None
                }
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn quoted_value(line: &str) -> Option<String> {
    let (_, rhs) = line.split_once('=')?;
    let rhs = rhs.trim();
    let q = rhs.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = &rhs[1..];
    let end = inner.find(q)?;
    Some(inner[..end].to_string())
}

fn header_define(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some("#define") && it.next() == Some(name))
            .then(|| it.next().map(str::to_string))
            .flatten()
    })
}

/// PyTorch's build, read from `torch/version.py` and the nvidia wheels' headers in the first
/// `sys.path` directory that has torch.
pub fn torch_stack(sys_path: &[PathBuf]) -> Option<TorchStack> {
    let site = sys_path
        .iter()
        .find(|d| d.join("torch/version.py").is_file())?;
    let version_py = std::fs::read_to_string(site.join("torch/version.py")).ok()?;
    let mut t = TorchStack::default();
    for line in version_py.lines() {
        let key = line.split([':', '=']).next().unwrap_or("").trim();
        match key {
            "__version__" => t.version = quoted_value(line),
            "cuda" => t.cuda = quoted_value(line),
            "git_version" => t.git_version = quoted_value(line),
            _ => {}
        }
    }
    let read = |rel: &str| std::fs::read_to_string(site.join(rel)).ok();
    // MAJOR.MINOR.PATCH from three `#define`s of a header.
    let version = |h: String, names: [&str; 3]| {
        let parts: Option<Vec<String>> = names.iter().map(|n| header_define(&h, n)).collect();
        parts.map(|p| p.join("."))
    };
    t.cudnn = read("nvidia/cudnn/include/cudnn_version.h")
        .and_then(|h| version(h, ["CUDNN_MAJOR", "CUDNN_MINOR", "CUDNN_PATCHLEVEL"]));
    t.nccl = read("nvidia/nccl/include/nccl.h")
        .and_then(|h| version(h, ["NCCL_MAJOR", "NCCL_MINOR", "NCCL_PATCH"]));
    Some(t)
}

/// Capture the environment of the interpreter at `executable`. A pyenv shim is not run: the
/// version it would run is (see [`crate::probe::pyenv`]), unless cairn cannot tell which that
/// is; then the shim runs, and [`Environment::choice_warnings`] says why.
pub fn capture(executable: &Path) -> Result<Environment> {
    use crate::probe::pyenv::{self, Shim};
    let mut choice_warnings = Vec::new();
    let interpreter = match pyenv::resolve(executable) {
        Shim::Resolved(choice) => {
            crate::probe::cache::interpreter(&choice.executable, Some(&choice))?
        }
        Shim::Refused(why) => match crate::probe::cache::interpreter(executable, None) {
            Ok(i) => {
                choice_warnings.push(why);
                i
            }
            // The reason the shim ran belongs with its failure.
            Err(Error::InterpreterFailed { path, detail }) => {
                return Err(Error::InterpreterFailed {
                    path,
                    detail: format!("{detail} ({why})"),
                })
            }
            Err(e) => return Err(e),
        },
        Shim::No => crate::probe::cache::interpreter(executable, None)?,
    };
    let (packages, mut warnings) = crate::probe::cache::scan(&interpreter.sys_path);
    let conda = conda_packages(Path::new(&interpreter.prefix), &mut warnings);
    let torch = torch_stack(&interpreter.sys_path);
    Ok(Environment {
        interpreter,
        packages,
        conda,
        torch,
        warnings,
        choice_warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_like_pep_503() {
        for (raw, want) in [
            ("Django", "django"),
            ("ruamel.yaml", "ruamel-yaml"),
            ("typing_extensions", "typing-extensions"),
            ("Foo__Bar-.baz", "foo-bar-baz"),
            ("  zope.interface ", "zope-interface"),
        ] {
            assert_eq!(normalize_name(raw), want);
        }
    }

    #[test]
    fn metadata_headers_stop_at_the_body() {
        let text = "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n\nName: not-this\n";
        assert_eq!(parse_metadata(text), Some(("six".into(), "1.16.0".into())));
        assert_eq!(parse_metadata("garbage\x00\x01"), None);
        assert_eq!(parse_metadata("Name: x\n"), None);
    }

    #[test]
    fn fingerprint_ignores_what_installers_differ_in() {
        let pip = "six.py,sha256=abc,34549\n__pycache__/six.cpython-311.pyc,,\nsix-1.16.0.dist-info/INSTALLER,sha256=x,4\nsix-1.16.0.dist-info/RECORD,,\n../../../bin/tool,sha256=y,10\n";
        let uv = "six-1.16.0.dist-info/INSTALLER,sha256=z,3\nsix.py,sha256=abc,34549\nsix-1.16.0.dist-info/RECORD,,\n";
        assert_eq!(record_fingerprint(pip), record_fingerprint(uv));
        assert!(record_fingerprint(pip).is_some());
        let edited = "six.py,sha256=abd,34549\n";
        assert_ne!(record_fingerprint(edited), record_fingerprint(uv));
    }

    #[test]
    fn record_is_read_as_csv() {
        // What the fingerprint hashes, computed by hand: the sorted `path,hash` lines.
        let by_hand = |lines: &str| -> Digest { blake3::hash(lines.as_bytes()).into() };
        // A quoted path with a comma, a doubled quote and a line break is one field; CRLF line
        // ends and a row without a size are read as Python's csv module writes them.
        let record = "\"a,b.py\",sha256=q,1\r\n\"say \"\"hi\"\".py\",sha256=r,2\r\n\"two\nlines.py\",sha256=s\r\n";
        assert_eq!(
            record_fingerprint(record),
            Some(by_hand(
                "a,b.py,sha256=q\nsay \"hi\".py,sha256=r\ntwo\nlines.py,sha256=s\n"
            ))
        );
        // The plain case is what every earlier lock recorded.
        assert_eq!(
            record_fingerprint("six.py,sha256=abc,34549\n"),
            Some(by_hand("six.py,sha256=abc\n"))
        );
        assert_eq!(record_fingerprint(""), None);
        assert_eq!(record_fingerprint("\"unclosed,sha256=x,1\n"), None);
    }

    /// The fingerprint as first written (every line split as CSV, one `String` each): the
    /// faster one must give the same digests, or every lock's fingerprints would change.
    fn reference_fingerprint(record: &str) -> Option<Digest> {
        let mut lines: Vec<String> = Vec::new();
        for line in record.lines() {
            let fields = split_csv(line);
            let (Some(path), Some(hash)) = (fields.first(), fields.get(1)) else {
                continue;
            };
            let first = path.split('/').next().unwrap_or("");
            if hash.is_empty()
                || path.starts_with("../")
                || path.starts_with('/')
                || path.split('/').any(|c| c == "__pycache__")
                || first.ends_with(".dist-info")
            {
                continue;
            }
            lines.push(format!("{path},{hash}"));
        }
        if lines.is_empty() {
            return None;
        }
        lines.sort();
        let mut h = blake3::Hasher::new();
        for l in &lines {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        Some(h.finalize().into())
    }

    /// Split one CSV line the way the first fingerprint did (the reference above only).
    fn split_csv(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                ('"', true) => quoted = false,
                ('"', false) if field.is_empty() => quoted = true,
                (',', false) => out.push(std::mem::take(&mut field)),
                (c, _) => field.push(c),
            }
        }
        out.push(field);
        out
    }

    #[test]
    fn the_fast_fingerprint_is_the_reference_one() {
        let record = "a+b.py,sha256=1,2\na.py,sha256=2,3\na,sha256=3,1\n\"we,ird\".py,sha256=4,5\n\"q\"\"uote.py\",sha256=5,6\nno_size.py,sha256=6\nonly-path\nempty_hash.py,,\npkg/__pycache__/x.pyc,sha256=7,8\npkg/__pycache__x.py,sha256=8,9\nx-1.0.dist-info/METADATA,sha256=9,1\n../../bin/tool,sha256=a,1\n/abs.py,sha256=b,1\nsp ace.py,sha256=c,1\r\n";
        assert_eq!(record_fingerprint(record), reference_fingerprint(record));
        assert!(record_fingerprint(record).is_some());
        for r in ["", "\n\n", "only-path\n", "x.py,,\n"] {
            assert_eq!(record_fingerprint(r), None);
            assert_eq!(reference_fingerprint(r), None);
        }
    }

    #[test]
    fn torch_version_file_and_headers() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path();
        std::fs::create_dir_all(site.join("torch")).unwrap();
        std::fs::write(
            site.join("torch/version.py"),
            "from typing import Optional\n\n__all__ = ['__version__']\n__version__ = '2.11.0+cu130'\ndebug = False\ncuda: Optional[str] = '13.0'\ngit_version = '70d99e998b4955e0049d13a98d77ae1b14db1f45'\nhip: Optional[str] = None\n",
        )
        .unwrap();
        std::fs::create_dir_all(site.join("nvidia/cudnn/include")).unwrap();
        std::fs::write(
            site.join("nvidia/cudnn/include/cudnn_version.h"),
            "#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 19\n#define CUDNN_PATCHLEVEL 0\n",
        )
        .unwrap();
        let t = torch_stack(&[site.to_path_buf()]).unwrap();
        assert_eq!(t.version.as_deref(), Some("2.11.0+cu130"));
        assert_eq!(t.cuda.as_deref(), Some("13.0"));
        assert_eq!(t.cudnn.as_deref(), Some("9.19.0"));
        assert_eq!(t.nccl, None);
    }
}
