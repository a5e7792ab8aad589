//! The `cairn.lock` model: a serde *wire* form that mirrors the TOML, a validated [`Lock`]
//! built from it with `TryFrom`, and the canonical writer. `spec/lockfile.md` is the normative
//! description; change the two together.
//!
//! # Format history
//! * **version 1** (cairn 0.1): `[run]`, `[code]` (+ `[[code.submodule]]`), `[[data]]`,
//!   `[[checkpoint]]`, `[[output]]`, `[host]` (+ `[[host.gpu]]`). Tables reserved for later
//!   additions without a version bump are listed in the spec.
//!
//! Reading is two-step: [`read_version`] looks at `version` alone, so a lock from a newer cairn
//! says "upgrade" instead of failing on some key it does not know; then the full parse.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::Deserialize;

use crate::content::digest::{Digest, Kind};
use crate::error::{Error, Result};
pub use crate::model::oid::ObjectId;
use crate::model::paths::RelPath;
use crate::model::python::{CondaPackage, Source, TorchStack};
use crate::model::wire;

/// The lockfile version this build writes and the newest it reads.
pub const VERSION: i64 = 1;

/// The largest lockfile cairn reads (a lock of 100,000 checkpoints is about 30 MiB).
pub const MAX_LOCK_BYTES: u64 = 64 << 20;

/// The default lockfile name, at the project root.
pub const DEFAULT_NAME: &str = "cairn.lock";

/// The comment at the top of every lockfile.
pub const HEADER: &str = "# This file is written by cairn (https://example.invalid/cairn); do not edit it by hand.\n# Spec: spec/lockfile.md. Regenerate with `cairn lock`, check with `cairn verify`.\n";

// ---------------------------------------------------------------------------------------------
// Validated form.

/// A parsed, validated lockfile. Entries are sorted and free of duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The cairn that wrote it (`cairn 0.1.0`); informational.
    pub created_by: Option<String>,
    /// The run: id, times, command, exit code.
    pub run: Run,
    /// The code; `None` for a lock made with `--no-git`.
    pub code: Option<Code>,
    /// The machine the run happened on.
    pub host: Option<Host>,
    /// The Python environment, when one was captured.
    pub python: Option<Python>,
    /// Dependency lock files found in the project, sorted by path.
    pub lockfiles: Vec<LockfileEntry>,
    /// Models the run started from, sorted by reference.
    pub inputs: Vec<Input>,
    /// Datasets, sorted by name.
    pub data: Vec<Data>,
    /// Checkpoints, sorted by path.
    pub checkpoints: Vec<Artifact>,
    /// Other outputs (metrics files, exports), sorted by path.
    pub outputs: Vec<Artifact>,
}

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// A unique id for this run (32 lowercase hex digits).
    pub id: String,
    /// When the lock was taken (RFC 3339 UTC).
    pub locked_at: Option<String>,
    /// The command's argv, when a command was run.
    pub command: Option<Vec<String>>,
    /// When the command started.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
    /// Its exit code (negative: killed by that signal).
    pub exit_code: Option<i64>,
    /// The seed given with `--seed`.
    pub seed: Option<i64>,
    /// The determinism-relevant environment variables that were set.
    pub env: BTreeMap<String, String>,
    /// Where the command ran, relative to the repository root (`None`: not recorded, as in
    /// locks from before cairn recorded it, or without git).
    pub cwd: Option<RunDir>,
}

/// `run.cwd` and `run.cwd-outside`: the directory the command ran in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunDir {
    /// The repository root (`cwd = "."`).
    Root,
    /// A directory inside the repository.
    Inside(RelPath),
    /// Outside the repository (`cwd-outside = true`): a rebuild does not run it there.
    Outside,
}

/// `[code]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The checked-out commit.
    pub commit: ObjectId,
    /// The branch, `None` when HEAD was detached.
    pub branch: Option<String>,
    /// The URL of the branch's remote (or `origin`), credentials stripped.
    pub remote: Option<String>,
    /// The git tree id of the working tree (commit + change), lock and `.cairn/` excluded.
    pub tree: ObjectId,
    /// Whether the working tree differed from the commit.
    pub dirty: bool,
    /// The digest of the change sidecar (`.cairn/changes/<hex>.patch`), present iff dirty.
    pub change: Option<Digest>,
    /// Submodules, sorted by path.
    pub submodules: Vec<Submodule>,
}

/// `[[code.submodule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submodule {
    /// Path in the superproject.
    pub path: RelPath,
    /// The commit checked out in the submodule.
    pub commit: ObjectId,
    /// Its URL, credentials stripped.
    pub url: Option<String>,
    /// Whether the submodule's own working tree had changes (not captured).
    pub dirty: bool,
}

/// `[host]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// OS name and version (os-release `PRETTY_NAME`).
    pub os: Option<String>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// CPU architecture (`x86_64`, `aarch64`).
    pub arch: Option<String>,
    /// CPU model name.
    pub cpu: Option<String>,
    /// Logical cores.
    pub cores: Option<u64>,
    /// Total memory, bytes.
    pub memory: Option<u64>,
    /// The C library (`glibc 2.36`).
    pub glibc: Option<String>,
    /// What the installed PyTorch was built with.
    pub torch: Option<TorchStack>,
    /// GPUs, in device order.
    pub gpus: Vec<Gpu>,
    /// The instruction-set features numeric libraries dispatch on (`avx2`, `fma`, `avx512f`,
    /// or the arm64 `Features`), sorted: the subset of `/proc/cpuinfo` flags in
    /// [`crate::probe::host::NUMERIC_CPU_FEATURES`].
    pub cpu_features: Vec<String>,
    /// How many CPUs the process may run on (its affinity mask).
    pub affinity: Option<u64>,
    /// The cgroup CPU quota, in CPUs (`1.5`), when one is set.
    pub cpu_quota: Option<String>,
    /// The BLAS/LAPACK library each numeric package loads, sorted by package and file.
    pub blas: Vec<Blas>,
}

/// `[[host.blas]]`: a BLAS/LAPACK library a numeric package ships or loads, found from its
/// files without importing it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Blas {
    /// The Python package it belongs to (`numpy`, `scipy`, `torch`).
    pub package: String,
    /// The library (`openblas`, `mkl`, `blis`, `flexiblas`, `accelerate`).
    pub library: String,
    /// Its version, when the package's build configuration records it.
    pub version: Option<String>,
    /// The library file, relative to the `site-packages` directory (or the environment's
    /// prefix for a conda library), when there is one.
    pub file: Option<String>,
}

impl Blas {
    /// `openblas 0.3.27 (numpy.libs/libscipy_openblas64_-ff651d7f.so)`.
    pub fn text(&self) -> String {
        let mut t = self.library.clone();
        if let Some(v) = &self.version {
            t.push(' ');
            t.push_str(v);
        }
        if let Some(f) = &self.file {
            t.push_str(&format!(" ({f})"));
        }
        t
    }
}

/// `[python]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    /// `cpython`, `pypy`.
    pub implementation: String,
    /// `3.11.7`.
    pub version: String,
    /// The ABI (`cpython-311-x86_64-linux-gnu`).
    pub abi: Option<String>,
    /// The platform (`linux-x86_64`).
    pub platform: Option<String>,
    /// Installed distributions, sorted by name.
    pub packages: Vec<PyPackage>,
    /// conda packages, sorted by name.
    pub conda: Vec<CondaPackage>,
    /// The package index registry packages were installed from, credentials removed (`None`:
    /// the installer's default, PyPI).
    pub index_url: Option<String>,
    /// Further indexes, credentials removed, in the order given.
    pub extra_index_urls: Vec<String>,
}

/// `[[python.package]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyPackage {
    /// PEP 503 normalised name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Where it came from.
    pub source: Source,
    /// The installer (`pip`, `uv`).
    pub installer: Option<String>,
    /// Wheel tag(s).
    pub wheel_tag: Option<String>,
    /// Fingerprint of the installed files.
    pub fingerprint: Option<Digest>,
}

/// `[[lockfile]]`: a dependency lock file of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockfileEntry {
    /// Path in the project.
    pub path: RelPath,
    /// Format (`uv`, `pylock`, `poetry`, `pipfile`, `requirements`, `conda`, `cargo`, `npm`, ...).
    pub kind: String,
    /// File digest.
    pub digest: Digest,
}

/// `[[host.gpu]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gpu {
    /// Product name.
    pub name: String,
    /// GPU UUID.
    pub uuid: Option<String>,
    /// Memory, bytes.
    pub memory: Option<u64>,
    /// Driver version.
    pub driver: Option<String>,
    /// Highest CUDA version the driver supports.
    pub cuda: Option<String>,
    /// Compute capability (`9.0`).
    pub compute_capability: Option<String>,
}

/// Where a dataset lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Inside the project, at this path.
    Path(RelPath),
    /// Outside the project; verify reads it only where cairn.toml or `--data NAME=PATH` says.
    External,
}

/// `[[data]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// Unique name (`[A-Za-z0-9._-]+`).
    pub name: String,
    /// Where it lives.
    pub location: Location,
    /// File or directory.
    pub kind: Kind,
    /// The digest.
    pub digest: Digest,
    /// Number of files.
    pub files: u64,
    /// Total bytes.
    pub bytes: u64,
}

/// `[[checkpoint]]` and `[[output]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Path in the project.
    pub path: RelPath,
    /// File or directory.
    pub kind: Kind,
    /// The digest.
    pub digest: Digest,
    /// Number of files (directories only).
    pub files: Option<u64>,
    /// Total bytes.
    pub bytes: u64,
    /// The training step (checkpoints).
    pub step: Option<u64>,
    /// What it was trained from: a checkpoint path in this lock or a digest.
    pub parent: Option<Parent>,
    /// When it was added (RFC 3339 UTC).
    pub created_at: Option<String>,
    /// The `run.id` of the lock that records the parent, when the parent is a digest found in
    /// another lock (`cairn checkpoint add --parent FILE`).
    pub parent_run: Option<String>,
    /// The run deleted this checkpoint itself before it ended (keep-last-N): recorded with the
    /// digest it was added with, and not expected on disk.
    pub deleted_by_run: bool,
    /// Metrics at this checkpoint.
    pub metrics: BTreeMap<String, Metric>,
}

/// A checkpoint's parent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Parent {
    /// Another checkpoint of the same lock, by path.
    Path(RelPath),
    /// A checkpoint anywhere, by digest.
    Digest(Digest),
}

impl std::fmt::Display for Parent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Parent::Path(p) => write!(f, "{p}"),
            Parent::Digest(d) => write!(f, "{d}"),
        }
    }
}

impl Parent {
    /// Parse `blake3:<hex>` as a digest, anything else as a path.
    pub fn parse(s: &str) -> Result<Parent> {
        if s.starts_with(crate::content::digest::PREFIX) {
            s.parse().map(Parent::Digest).map_err(|e| Error::BadPath {
                path: s.to_string(),
                message: e.to_string(),
            })
        } else {
            RelPath::parse(s).map(Parent::Path)
        }
    }
}

/// A metric value (compared bit for bit, so that a lock equals itself).
#[derive(Debug, Clone, Copy)]
pub struct Metric(pub f64);

impl PartialEq for Metric {
    fn eq(&self, other: &Metric) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Metric {}

/// Where an input model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// A file or directory in the project.
    Local(RelPath),
    /// A checkpoint recorded in another lock of the repository.
    Lock {
        /// The other lock, relative to the project root.
        lock: RelPath,
        /// The checkpoint's path in that lock.
        checkpoint: RelPath,
        /// That lock's run id.
        run: String,
    },
    /// A Hugging Face Hub snapshot.
    Hf {
        /// `org/name`, or `datasets/org/name` for a dataset.
        repo: String,
        /// The revision as given (a commit, or a branch or tag).
        revision: String,
        /// The commit it resolved to.
        commit: String,
    },
}

/// `[[input]]`: a model the run started from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Where it comes from.
    pub source: InputSource,
    /// Whether the reference can move (a hub branch or tag rather than a commit).
    pub mutable: bool,
    /// Its digest (file or directory digest) as used.
    pub digest: Digest,
    /// Number of files (directories only).
    pub files: Option<u64>,
    /// Total bytes.
    pub bytes: u64,
}

impl Input {
    /// The `ref` string: the path, `LOCK#CHECKPOINT`, or `hf://REPO@REVISION`.
    pub fn reference(&self) -> String {
        match &self.source {
            InputSource::Local(p) => p.to_string(),
            InputSource::Lock {
                lock, checkpoint, ..
            } => format!("{lock}#{checkpoint}"),
            InputSource::Hf { repo, revision, .. } => format!("hf://{repo}@{revision}"),
        }
    }

    /// `local`, `lock` or `hf`.
    pub fn kind(&self) -> &'static str {
        match &self.source {
            InputSource::Local(_) => "local",
            InputSource::Lock { .. } => "lock",
            InputSource::Hf { .. } => "hf",
        }
    }
}

/// Is `name` acceptable as a dataset name?
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Format a time as RFC 3339 UTC with seconds (`2026-11-26T20:47:01Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "dir",
    }
}

impl Run {
    /// A run with nothing recorded yet (no id, times, command, exit code or seed), with these
    /// determinism variables: the start of a run being locked, or the frame of a state that is
    /// not a run (`cairn env`, the current state `cairn diff` compares with).
    pub fn blank(env: BTreeMap<String, String>) -> Run {
        Run {
            id: String::new(),
            locked_at: None,
            command: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            seed: None,
            env,
            cwd: None,
        }
    }
}

impl Lock {
    /// A lock of `run` and nothing else (no code, host, environment, inputs, data, checkpoints
    /// or outputs): the frame that a lock being built, or a partial one, fills in.
    pub fn of_run(run: Run) -> Lock {
        Lock {
            created_by: None,
            run,
            code: None,
            host: None,
            python: None,
            lockfiles: Vec::new(),
            inputs: Vec::new(),
            data: Vec::new(),
            checkpoints: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Parse and validate lockfile text. `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Lock> {
        // A first line `version = N` of a version this cairn reads is all [`read_version`]
        // would find (a second `version` is a syntax error of the full parse below): the
        // separate parse of the whole text is needed only otherwise.
        if !leading_version(text).is_some_and(|n| (1..=VERSION).contains(&n)) {
            read_version(text, path)?;
        }
        let wire: wire::Lock = toml::from_str(text).map_err(|e| Error::LockSyntax {
            path: path.to_path_buf(),
            source: crate::error::TomlSyntax::new(text, &e),
        })?;
        Lock::try_from(wire).map_err(|problems| Error::LockInvalid {
            path: path.to_path_buf(),
            message: problems.join("; "),
        })
    }

    /// Read and validate a lockfile: a regular file (a symlink, FIFO or device is refused) of
    /// at most [`MAX_LOCK_BYTES`], measured on the open file.
    pub fn load(path: &Path) -> Result<Lock> {
        let bytes = crate::fs::read_file(path, "lockfile", MAX_LOCK_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|_| Error::LockInvalid {
            path: path.to_path_buf(),
            message: "not UTF-8 text".into(),
        })?;
        Lock::from_toml(&text, path)
    }

    /// The same lock with everything that changes between two identical runs (run id and
    /// times) blanked, for "has anything changed?" comparisons.
    pub fn without_times(&self) -> Lock {
        let mut l = self.clone();
        l.run.id.clear();
        l.run.locked_at = None;
        l.run.started_at = None;
        l.run.finished_at = None;
        l
    }
}

/// Read `version` alone. Fails with [`Error::LockTooNew`] for a newer format, and with a syntax
/// error (line and column) when the text is not TOML.
pub fn read_version(text: &str, path: &Path) -> Result<i64> {
    // First the line itself: a newer cairn may write something this parser cannot read, and
    // it must still say "upgrade" rather than fail on syntax.
    if let Some(n) = leading_version(text) {
        if n > VERSION {
            return Err(Error::LockTooNew {
                path: path.to_path_buf(),
                found: n,
                supported: VERSION,
            });
        }
    }
    #[derive(Deserialize)]
    struct VersionOnly {
        version: Option<toml::Value>,
    }
    let v: VersionOnly = toml::from_str(text).map_err(|e| Error::LockSyntax {
        path: path.to_path_buf(),
        source: crate::error::TomlSyntax::new(text, &e),
    })?;
    let invalid = |message: &str| Error::LockInvalid {
        path: path.to_path_buf(),
        message: message.into(),
    };
    match v.version {
        None => Err(invalid(
            "missing `version` (a cairn.lock starts with `version = 1`)",
        )),
        Some(toml::Value::Integer(n)) if n > VERSION => Err(Error::LockTooNew {
            path: path.to_path_buf(),
            found: n,
            supported: VERSION,
        }),
        Some(toml::Value::Integer(n)) if n >= 1 => Ok(n),
        Some(other) => Err(invalid(&format!(
            "`version` must be a positive integer, not {other}"
        ))),
    }
}

/// The integer of a `version = N` line, when it is the first line that is neither blank nor a
/// comment.
fn leading_version(text: &str) -> Option<i64> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let value = line
        .strip_prefix("version")?
        .trim_start()
        .strip_prefix('=')?;
    let value = value.split('#').next()?.trim();
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        Lock {
            created_by: Some("cairn 0.1.0".into()),
            run: Run {
                id: "0123456789abcdef0123456789abcdef".into(),
                locked_at: Some("2026-11-26T20:00:00Z".into()),
                command: Some(vec!["python".into(), "train.py".into()]),
                started_at: Some("2026-11-26T20:00:00Z".into()),
                finished_at: Some("2026-11-26T20:05:00Z".into()),
                exit_code: Some(0),
                seed: Some(42),
                env: BTreeMap::from([("PYTHONHASHSEED".to_string(), "0".to_string())]),
                cwd: Some(RunDir::Inside(RelPath::parse("src/train").unwrap())),
            },
            code: Some(Code {
                commit: ObjectId::parse(&"a".repeat(40)).unwrap(),
                branch: Some("main".into()),
                remote: None,
                tree: ObjectId::parse(&"b".repeat(40)).unwrap(),
                dirty: true,
                change: Some(Digest::of_bytes(b"patch")),
                submodules: vec![],
            }),
            host: None,
            python: Some(Python {
                implementation: "cpython".into(),
                version: "3.11.7".into(),
                abi: Some("cpython-311-x86_64-linux-gnu".into()),
                platform: Some("linux-x86_64".into()),
                packages: vec![
                    PyPackage {
                        name: "torch".into(),
                        version: "2.5.1".into(),
                        source: Source::Registry,
                        installer: Some("uv".into()),
                        wheel_tag: Some("cp311-cp311-manylinux_2_28_x86_64".into()),
                        fingerprint: Some(Digest::of_bytes(b"t")),
                    },
                    PyPackage {
                        name: "mylib".into(),
                        version: "0.1.0".into(),
                        source: Source::Directory {
                            url: "file:///src/mylib".into(),
                            editable: true,
                            commit: Some("c".repeat(40)),
                            change: None,
                        },
                        installer: Some("pip".into()),
                        wheel_tag: None,
                        fingerprint: None,
                    },
                ],
                conda: vec![],
                index_url: Some("https://download.pytorch.org/whl/cu121".into()),
                extra_index_urls: vec!["https://pypi.org/simple".into()],
            }),
            lockfiles: vec![LockfileEntry {
                path: RelPath::parse("uv.lock").unwrap(),
                kind: "uv".into(),
                digest: Digest::of_bytes(b"uv"),
            }],
            inputs: vec![
                Input {
                    source: InputSource::Hf {
                        repo: "org/base".into(),
                        revision: "main".into(),
                        commit: "e".repeat(40),
                    },
                    mutable: true,
                    digest: Digest::of_bytes(b"hf"),
                    files: Some(3),
                    bytes: 30,
                },
                Input {
                    source: InputSource::Lock {
                        lock: RelPath::parse("pretrain.cairn.lock").unwrap(),
                        checkpoint: RelPath::parse("runs/ckpt-2").unwrap(),
                        run: "f".repeat(32),
                    },
                    mutable: false,
                    digest: Digest::of_bytes(b"ck"),
                    files: None,
                    bytes: 3,
                },
            ],
            data: vec![
                Data {
                    name: "val".into(),
                    location: Location::Path(RelPath::parse("data/val").unwrap()),
                    kind: Kind::Dir,
                    digest: Digest::of_bytes(b"v"),
                    files: 2,
                    bytes: 10,
                },
                Data {
                    name: "shared".into(),
                    location: Location::External,
                    kind: Kind::Dir,
                    digest: Digest::of_bytes(b"s"),
                    files: 2,
                    bytes: 10,
                },
            ],
            checkpoints: vec![
                Artifact {
                    path: RelPath::parse("runs/final.bin").unwrap(),
                    kind: Kind::File,
                    digest: Digest::of_bytes(b"c"),
                    files: None,
                    bytes: 1,
                    step: Some(2000),
                    parent: Some(Parent::Path(RelPath::parse("runs/step-1000.bin").unwrap())),
                    created_at: Some("2026-11-26T20:04:00Z".into()),
                    parent_run: None,
                    deleted_by_run: false,
                    metrics: BTreeMap::from([("loss".to_string(), Metric(0.25))]),
                },
                Artifact {
                    path: RelPath::parse("runs/step-1000.bin").unwrap(),
                    kind: Kind::File,
                    digest: Digest::of_bytes(b"d"),
                    files: None,
                    bytes: 1,
                    step: Some(1000),
                    parent: Some(Parent::Digest(Digest::of_bytes(b"base"))),
                    created_at: None,
                    parent_run: Some("f".repeat(32)),
                    deleted_by_run: true,
                    metrics: BTreeMap::new(),
                },
            ],
            outputs: vec![],
        }
    }

    #[test]
    fn round_trip_is_canonical() {
        let lock = sample();
        let text = lock.to_toml();
        assert!(text.starts_with(HEADER));
        assert!(text[HEADER.len()..].starts_with("version = 1\n"));
        assert!(text.ends_with("\n") && !text.ends_with("\n\n"));
        let back = Lock::from_toml(&text, Path::new("cairn.lock")).unwrap();
        // Data comes back sorted by name.
        assert_eq!(back.data[0].name, "shared");
        assert_eq!(back.to_toml(), text);
    }

    #[test]
    fn newer_version_says_upgrade() {
        let text = "version = 2\n[run]\nid = 5\nwhatever = {}\n";
        match Lock::from_toml(text, Path::new("cairn.lock")) {
            Err(Error::LockTooNew { found: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn newer_version_wins_over_syntax_errors() {
        let text = "# a comment\n\nversion = 7 # future\nthis is not { toml\n";
        match Lock::from_toml(text, Path::new("cairn.lock")) {
            Err(Error::LockTooNew { found: 7, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = Lock::from_toml("version = 1\n[run\n", Path::new("x.lock")).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("line 2"), "{chain}");
        assert!(chain.contains("column"), "{chain}");
    }

    #[test]
    fn invalid_entries_are_all_reported() {
        let mut text = sample().to_toml();
        text = text.replace("path = \"data/val\"", "path = \"../etc\"");
        text = text.replace(&"a".repeat(40), "nothex");
        let err = Lock::from_toml(&text, Path::new("cairn.lock")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("escapes the project"), "{msg}");
        assert!(msg.contains("code.commit"), "{msg}");
    }

    #[test]
    fn lineage_keys_are_checked() {
        // Round trip keeps them, in canonical order, after created-at.
        let text = sample().to_toml();
        let i = text.find("parent-run = ").expect("written");
        assert!(
            text[i..].starts_with(&format!(
                "parent-run = \"{}\"\ndeleted-by-run = true\n",
                "f".repeat(32)
            )),
            "{text}"
        );
        // A run id that is not one, a run for a path parent, deleted-by-run on an output.
        let bad = text.replace(
            &format!("parent-run = \"{}\"", "f".repeat(32)),
            "parent-run = \"nope\"",
        );
        let err = Lock::from_toml(&bad, Path::new("cairn.lock")).unwrap_err();
        assert!(
            err.to_string()
                .contains("`checkpoint[1].parent-run` is not a run id"),
            "{err}"
        );
        let mut lock = sample();
        lock.checkpoints[0].parent_run = Some("a".repeat(32));
        let err = Lock::from_toml(&lock.to_toml(), Path::new("cairn.lock")).unwrap_err();
        assert!(
            err.to_string()
                .contains("only for a parent given by digest"),
            "{err}"
        );
        let mut lock = sample();
        let mut out = lock.checkpoints[1].clone();
        out.parent = None;
        out.parent_run = None;
        lock.outputs.push(out);
        let err = Lock::from_toml(&lock.to_toml(), Path::new("cairn.lock")).unwrap_err();
        assert!(
            err.to_string()
                .contains("`output[0].deleted-by-run` is only for checkpoints"),
            "{err}"
        );
        // A lock without them (every lock before they existed) reads as before.
        let old = text
            .lines()
            .filter(|l| !l.starts_with("parent-run") && !l.starts_with("deleted-by-run"))
            .collect::<Vec<_>>()
            .join("\n");
        let back = Lock::from_toml(&format!("{old}\n"), Path::new("cairn.lock")).unwrap();
        assert!(back
            .checkpoints
            .iter()
            .all(|c| c.parent_run.is_none() && !c.deleted_by_run));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut lock = sample();
        lock.data[1].name = "val".into();
        let err = Lock::from_toml(&lock.to_toml(), Path::new("cairn.lock")).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }
}
