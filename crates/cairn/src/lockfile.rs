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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use crate::digest::{Digest, Kind};
use crate::error::{Error, IoResultExt, Result};
use crate::paths::RelPath;
use crate::python::{CondaPackage, Source, TorchStack};

/// The lockfile version this build writes and the newest it reads.
pub const VERSION: i64 = 1;

/// The largest lockfile cairn reads (a lock of 100,000 checkpoints is about 30 MiB).
pub const MAX_LOCK_BYTES: u64 = 64 << 20;

/// The default lockfile name, at the project root.
pub const DEFAULT_NAME: &str = "cairn.lock";

/// The comment at the top of every lockfile.
pub const HEADER: &str = "# This file is written by cairn (https://example.invalid/cairn); do not edit it by hand.\n# Spec: spec/lockfile.md. Regenerate with `cairn lock`, check with `cairn verify`.\n";

// ---------------------------------------------------------------------------------------------
// Wire form: exactly the TOML, kebab-case, everything optional. Field order is the canonical
// key order of the written file.

mod wire {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Lock {
        pub version: Option<toml::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub created_by: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub run: Option<Run>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub code: Option<Code>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub host: Option<Host>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub python: Option<Python>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub lockfile: Vec<Lockfile>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub input: Vec<Input>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub data: Vec<Artifact>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub checkpoint: Vec<Artifact>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub output: Vec<Artifact>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Run {
        pub id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub locked_at: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub command: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub started_at: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub finished_at: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub exit_code: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub seed: Option<i64>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub env: BTreeMap<String, String>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Code {
        pub commit: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub branch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub remote: Option<String>,
        pub tree: Option<String>,
        pub dirty: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub change: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub submodule: Vec<Submodule>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Submodule {
        pub path: Option<String>,
        pub commit: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub url: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub dirty: bool,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Host {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub os: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub kernel: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub arch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cpu: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cores: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub memory: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub glibc: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub torch: Option<Torch>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub gpu: Vec<Gpu>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Torch {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub version: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cuda: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cudnn: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub nccl: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub git_version: Option<String>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Python {
        pub implementation: Option<String>,
        pub version: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub abi: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub platform: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub package: Vec<PyPackage>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub conda: Vec<Conda>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct PyPackage {
        pub name: Option<String>,
        pub version: Option<String>,
        pub source: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub url: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub commit: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub hash: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub editable: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub change: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub installer: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub wheel_tag: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub fingerprint: Option<String>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Conda {
        pub name: Option<String>,
        pub version: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub build: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub channel: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub sha256: Option<String>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Lockfile {
        pub path: Option<String>,
        pub kind: Option<String>,
        pub digest: Option<String>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Gpu {
        pub name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub uuid: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub memory: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub driver: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cuda: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub compute_capability: Option<String>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Artifact {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub path: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub external: bool,
        pub kind: Option<String>,
        pub digest: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub files: Option<u64>,
        pub bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub step: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub parent: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub created_at: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub metrics: BTreeMap<String, f64>,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Input {
        pub kind: Option<String>,
        #[serde(rename = "ref")]
        pub reference: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub run: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub commit: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub mutable: bool,
        pub digest: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub files: Option<u64>,
        pub bytes: Option<u64>,
    }
}

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
}

/// `[code]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The checked-out commit (hex object id).
    pub commit: String,
    /// The branch, `None` when HEAD was detached.
    pub branch: Option<String>,
    /// The URL of the branch's remote (or `origin`), credentials stripped.
    pub remote: Option<String>,
    /// The git tree id of the working tree (commit + change), lock and `.cairn/` excluded.
    pub tree: String,
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
    pub commit: String,
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
        if s.starts_with(crate::digest::PREFIX) {
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

/// Is `s` a git object id (40 or 64 lowercase hex digits)?
pub fn valid_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Format a time as RFC 3339 UTC with seconds (`2026-11-26T20:47:01Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "dir",
    }
}

// ---------------------------------------------------------------------------------------------
// Wire -> validated.

struct Checker {
    problems: Vec<String>,
}

impl Checker {
    fn req<T>(&mut self, v: Option<T>, what: &str) -> Option<T> {
        if v.is_none() {
            self.problems.push(format!("missing `{what}`"));
        }
        v
    }

    fn digest(&mut self, v: Option<String>, what: &str) -> Option<Digest> {
        let s = self.req(v, what)?;
        match s.parse() {
            Ok(d) => Some(d),
            Err(e) => {
                self.problems.push(format!("`{what}`: {e}"));
                None
            }
        }
    }

    fn oid(&mut self, v: Option<String>, what: &str) -> Option<String> {
        let s = self.req(v, what)?;
        if valid_oid(&s) {
            Some(s)
        } else {
            self.problems.push(format!(
                "`{what}` is not a git object id (40 or 64 hex digits): {s:?}"
            ));
            None
        }
    }

    fn path(&mut self, v: Option<String>, what: &str) -> Option<RelPath> {
        let s = self.req(v, what)?;
        match RelPath::parse(&s) {
            Ok(p) => Some(p),
            Err(e) => {
                self.problems.push(format!("`{what}`: {e}"));
                None
            }
        }
    }

    fn time(&mut self, v: Option<String>, what: &str) -> Option<String> {
        let s = v?;
        if humantime::parse_rfc3339(&s).is_err() {
            self.problems
                .push(format!("`{what}` is not an RFC 3339 UTC time: {s:?}"));
        }
        Some(s)
    }

    fn kind(&mut self, v: Option<String>, what: &str) -> Option<Kind> {
        match self.req(v, what)?.as_str() {
            "file" => Some(Kind::File),
            "dir" => Some(Kind::Dir),
            other => {
                self.problems.push(format!(
                    "`{what}` must be \"file\" or \"dir\", not {other:?}"
                ));
                None
            }
        }
    }

    fn artifact(&mut self, a: wire::Artifact, table: &str, i: usize) -> Option<Artifact> {
        let at = format!("{table}[{i}]");
        let path = self.path(a.path, &format!("{at}.path"));
        let kind = self.kind(a.kind, &format!("{at}.kind"));
        let digest = self.digest(a.digest, &format!("{at}.digest"));
        let bytes = self.req(a.bytes, &format!("{at}.bytes"));
        match (kind, a.files) {
            (Some(Kind::Dir), None) => self
                .problems
                .push(format!("missing `{at}.files` (required for a directory)")),
            (Some(Kind::File), Some(_)) => self
                .problems
                .push(format!("`{at}.files` is only for directories")),
            _ => {}
        }
        if a.name.is_some() || a.external {
            self.problems.push(format!(
                "`{at}` cannot have `name` or `external` (only datasets have them)"
            ));
        }
        let parent = a.parent.and_then(|p| match Parent::parse(&p) {
            Ok(p) => Some(p),
            Err(e) => {
                self.problems.push(format!("`{at}.parent`: {e}"));
                None
            }
        });
        let created_at = self.time(a.created_at, &format!("{at}.created-at"));
        for (k, v) in &a.metrics {
            if !valid_name(k) || !v.is_finite() {
                self.problems.push(format!(
                    "`{at}.metrics`: {k:?} = {v} (names are letters, digits, `.`, `_`, `-`; values finite)"
                ));
            }
        }
        Some(Artifact {
            path: path?,
            kind: kind?,
            digest: digest?,
            files: a.files,
            bytes: bytes?,
            step: a.step,
            parent,
            created_at,
            metrics: a.metrics.into_iter().map(|(k, v)| (k, Metric(v))).collect(),
        })
    }

    fn input(&mut self, w: wire::Input, i: usize) -> Option<Input> {
        let at = format!("input[{i}]");
        let reference = self.req(w.reference, &format!("{at}.ref"))?;
        let digest = self.digest(w.digest, &format!("{at}.digest"));
        let bytes = self.req(w.bytes, &format!("{at}.bytes"));
        let source = match w.kind.as_deref() {
            Some("local") => self
                .path(Some(reference), &format!("{at}.ref"))
                .map(InputSource::Local),
            Some("lock") => {
                let Some((lock, ckpt)) = reference.split_once('#') else {
                    self.problems
                        .push(format!("`{at}.ref` must be LOCK#CHECKPOINT: {reference:?}"));
                    return None;
                };
                let lock = self.path(Some(lock.to_string()), &format!("{at}.ref"));
                let checkpoint = self.path(Some(ckpt.to_string()), &format!("{at}.ref"));
                let run = self.req(w.run, &format!("{at}.run"));
                Some(InputSource::Lock {
                    lock: lock?,
                    checkpoint: checkpoint?,
                    run: run?,
                })
            }
            Some("hf") => {
                let parsed = reference
                    .strip_prefix("hf://")
                    .and_then(|r| r.rsplit_once('@'))
                    .filter(|(repo, rev)| !repo.is_empty() && !rev.is_empty());
                let Some((repo, revision)) = parsed else {
                    self.problems.push(format!(
                        "`{at}.ref` must be hf://REPO@REVISION: {reference:?}"
                    ));
                    return None;
                };
                let commit = self.req(w.commit, &format!("{at}.commit"));
                Some(InputSource::Hf {
                    repo: repo.to_string(),
                    revision: revision.to_string(),
                    commit: commit?,
                })
            }
            other => {
                self.problems.push(format!(
                    "`{at}.kind` must be local, lock or hf, not {other:?}"
                ));
                None
            }
        };
        Some(Input {
            source: source?,
            mutable: w.mutable,
            digest: digest?,
            files: w.files,
            bytes: bytes?,
        })
    }
}

impl TryFrom<wire::Lock> for Lock {
    /// Every problem found, not just the first.
    type Error = Vec<String>;

    fn try_from(w: wire::Lock) -> std::result::Result<Lock, Vec<String>> {
        convert(w)
    }
}

fn convert(w: wire::Lock) -> std::result::Result<Lock, Vec<String>> {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let run = c.req(w.run, "run").map(|r| {
        let id = c.req(r.id, "run.id");
        if let Some(id) = &id {
            if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                c.problems
                    .push(format!("`run.id` must be 32 lowercase hex digits: {id:?}"));
            }
        }
        if matches!(&r.command, Some(argv) if argv.is_empty()) {
            c.problems.push("`run.command` is an empty list".into());
        }
        Run {
            id: id.unwrap_or_default(),
            locked_at: c.time(r.locked_at, "run.locked-at"),
            command: r.command,
            started_at: c.time(r.started_at, "run.started-at"),
            finished_at: c.time(r.finished_at, "run.finished-at"),
            exit_code: r.exit_code,
            seed: r.seed,
            env: r.env,
        }
    });

    let code = w.code.map(|code| {
        let commit = c.oid(code.commit, "code.commit");
        let tree = c.oid(code.tree, "code.tree");
        let dirty = c.req(code.dirty, "code.dirty").unwrap_or(false);
        let change = code.change.and_then(|s| c.digest(Some(s), "code.change"));
        if dirty != change.is_some() {
            c.problems
                .push("`code.change` must be present exactly when `code.dirty` is true".into());
        }
        let mut submodules = Vec::new();
        for (i, s) in code.submodule.into_iter().enumerate() {
            let path = c.path(s.path, &format!("code.submodule[{i}].path"));
            let commit = c.oid(s.commit, &format!("code.submodule[{i}].commit"));
            if let (Some(path), Some(commit)) = (path, commit) {
                submodules.push(Submodule {
                    path,
                    commit,
                    url: s.url,
                    dirty: s.dirty,
                });
            }
        }
        submodules.sort_by(|a, b| a.path.cmp(&b.path));
        for pair in submodules.windows(2) {
            if pair[0].path == pair[1].path {
                c.problems
                    .push(format!("submodule `{}` appears twice", pair[0].path));
            }
        }
        Code {
            commit: commit.unwrap_or_default(),
            branch: code.branch,
            remote: code.remote,
            tree: tree.unwrap_or_default(),
            dirty,
            change,
            submodules,
        }
    });

    let host = w.host.map(|h| Host {
        os: h.os,
        kernel: h.kernel,
        arch: h.arch,
        cpu: h.cpu,
        cores: h.cores,
        memory: h.memory,
        glibc: h.glibc,
        torch: h.torch.map(|t| TorchStack {
            version: t.version,
            cuda: t.cuda,
            git_version: t.git_version,
            cudnn: t.cudnn,
            nccl: t.nccl,
        }),
        gpus: h
            .gpu
            .into_iter()
            .enumerate()
            .filter_map(|(i, g)| {
                Some(Gpu {
                    name: c.req(g.name, &format!("host.gpu[{i}].name"))?,
                    uuid: g.uuid,
                    memory: g.memory,
                    driver: g.driver,
                    cuda: g.cuda,
                    compute_capability: g.compute_capability,
                })
            })
            .collect(),
    });

    let mut data = Vec::new();
    for (i, d) in w.data.into_iter().enumerate() {
        let at = format!("data[{i}]");
        let name = c.req(d.name, &format!("{at}.name"));
        if let Some(name) = &name {
            if !valid_name(name) {
                c.problems.push(format!(
                    "`{at}.name` must be letters, digits, `.`, `_` or `-`: {name:?}"
                ));
            }
        }
        let location = match (d.path, d.external) {
            (Some(p), false) => c.path(Some(p), &format!("{at}.path")).map(Location::Path),
            (None, true) => Some(Location::External),
            (Some(_), true) => {
                c.problems
                    .push(format!("`{at}` has both `path` and `external = true`"));
                None
            }
            (None, false) => {
                c.problems
                    .push(format!("`{at}` needs `path` (or `external = true`)"));
                None
            }
        };
        let kind = c.kind(d.kind, &format!("{at}.kind"));
        let digest = c.digest(d.digest, &format!("{at}.digest"));
        let files = c.req(d.files, &format!("{at}.files"));
        if kind == Some(Kind::File) && files.is_some_and(|n| n != 1) {
            c.problems
                .push(format!("`{at}.files` must be 1 for a file"));
        }
        let bytes = c.req(d.bytes, &format!("{at}.bytes"));
        if let (Some(name), Some(location), Some(kind), Some(digest), Some(files), Some(bytes)) =
            (name, location, kind, digest, files, bytes)
        {
            data.push(Data {
                name,
                location,
                kind,
                digest,
                files,
                bytes,
            });
        }
    }
    data.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in data.windows(2) {
        if pair[0].name == pair[1].name {
            c.problems
                .push(format!("dataset name `{}` appears twice", pair[0].name));
        }
    }
    let mut seen = BTreeSet::new();
    for d in &data {
        if let Location::Path(p) = &d.location {
            if !seen.insert(p.clone()) {
                c.problems.push(format!("data path `{p}` appears twice"));
            }
        }
    }

    let python = w.python.map(|p| c.python(p));
    let mut lockfiles = Vec::new();
    for (i, l) in w.lockfile.into_iter().enumerate() {
        let at = format!("lockfile[{i}]");
        let path = c.path(l.path, &format!("{at}.path"));
        let kind = c.req(l.kind, &format!("{at}.kind"));
        let digest = c.digest(l.digest, &format!("{at}.digest"));
        if let (Some(path), Some(kind), Some(digest)) = (path, kind, digest) {
            lockfiles.push(LockfileEntry { path, kind, digest });
        }
    }
    lockfiles.sort_by(|a, b| a.path.cmp(&b.path));
    let mut inputs: Vec<Input> = w
        .input
        .into_iter()
        .enumerate()
        .filter_map(|(i, x)| c.input(x, i))
        .collect();
    inputs.sort_by_key(Input::reference);
    for pair in inputs.windows(2) {
        if pair[0].reference() == pair[1].reference() {
            c.problems
                .push(format!("input `{}` appears twice", pair[0].reference()));
        }
    }
    for pair in lockfiles.windows(2) {
        if pair[0].path == pair[1].path {
            c.problems
                .push(format!("lockfile path `{}` appears twice", pair[0].path));
        }
    }
    let mut artifacts = |list: Vec<wire::Artifact>, table: &str| {
        let mut out: Vec<Artifact> = list
            .into_iter()
            .enumerate()
            .filter_map(|(i, a)| c.artifact(a, table, i))
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        for pair in out.windows(2) {
            if pair[0].path == pair[1].path {
                c.problems
                    .push(format!("{table} path `{}` appears twice", pair[0].path));
            }
        }
        out
    };
    let checkpoints = artifacts(w.checkpoint, "checkpoint");
    let outputs = artifacts(w.output, "output");

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok(Lock {
        created_by: w.created_by,
        run: run.expect("checked above"),
        code,
        host,
        python,
        lockfiles,
        inputs,
        data,
        checkpoints,
        outputs,
    })
}

impl Checker {
    fn python(&mut self, p: wire::Python) -> Python {
        let mut packages = Vec::new();
        for (i, w) in p.package.into_iter().enumerate() {
            let at = format!("python.package[{i}]");
            let name = self.req(w.name, &format!("{at}.name"));
            if let Some(n) = &name {
                if *n != crate::python::normalize_name(n) || n.is_empty() {
                    self.problems
                        .push(format!("`{at}.name` is not a normalised name: {n:?}"));
                }
            }
            let version = self.req(w.version, &format!("{at}.version"));
            let source = match w.source.as_deref() {
                Some("registry") => Some(Source::Registry),
                Some("vcs") => match (w.url, w.commit) {
                    (Some(url), Some(commit)) => Some(Source::Vcs { url, commit }),
                    _ => {
                        self.problems
                            .push(format!("`{at}`: a vcs source needs `url` and `commit`"));
                        None
                    }
                },
                Some("archive") => match w.url {
                    Some(url) => Some(Source::Archive { url, hash: w.hash }),
                    None => {
                        self.problems
                            .push(format!("`{at}`: an archive source needs `url`"));
                        None
                    }
                },
                Some("directory") => match w.url {
                    Some(url) => {
                        let change = w
                            .change
                            .and_then(|d| self.digest(Some(d), &format!("{at}.change")));
                        Some(Source::Directory {
                            url,
                            editable: w.editable,
                            commit: w.commit,
                            change,
                        })
                    }
                    None => {
                        self.problems
                            .push(format!("`{at}`: a directory source needs `url`"));
                        None
                    }
                },
                other => {
                    self.problems.push(format!(
                        "`{at}.source` must be registry, vcs, archive or directory, not {other:?}"
                    ));
                    None
                }
            };
            let fingerprint = w
                .fingerprint
                .and_then(|d| self.digest(Some(d), &format!("{at}.fingerprint")));
            if let (Some(name), Some(version), Some(source)) = (name, version, source) {
                packages.push(PyPackage {
                    name,
                    version,
                    source,
                    installer: w.installer,
                    wheel_tag: w.wheel_tag,
                    fingerprint,
                });
            }
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        for pair in packages.windows(2) {
            if pair[0].name == pair[1].name {
                self.problems
                    .push(format!("python package `{}` appears twice", pair[0].name));
            }
        }
        let mut conda: Vec<CondaPackage> = p
            .conda
            .into_iter()
            .enumerate()
            .filter_map(|(i, w)| {
                Some(CondaPackage {
                    name: self.req(w.name, &format!("python.conda[{i}].name"))?,
                    version: self.req(w.version, &format!("python.conda[{i}].version"))?,
                    build: w.build,
                    channel: w.channel,
                    sha256: w.sha256,
                })
            })
            .collect();
        conda.sort_by(|a, b| a.name.cmp(&b.name));
        Python {
            implementation: self
                .req(p.implementation, "python.implementation")
                .unwrap_or_default(),
            version: self.req(p.version, "python.version").unwrap_or_default(),
            abi: p.abi,
            platform: p.platform,
            packages,
            conda,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validated -> wire -> text.

impl From<&Lock> for wire::Lock {
    fn from(l: &Lock) -> Self {
        let artifact = |a: &Artifact| wire::Artifact {
            name: None,
            path: Some(a.path.to_string()),
            external: false,
            kind: Some(kind_str(a.kind).into()),
            digest: Some(a.digest.to_string()),
            files: a.files,
            bytes: Some(a.bytes),
            step: a.step,
            parent: a.parent.as_ref().map(|p| p.to_string()),
            created_at: a.created_at.clone(),
            metrics: a.metrics.iter().map(|(k, v)| (k.clone(), v.0)).collect(),
        };
        wire::Lock {
            version: Some(toml::Value::Integer(VERSION)),
            created_by: l.created_by.clone(),
            run: Some(wire::Run {
                id: Some(l.run.id.clone()),
                locked_at: l.run.locked_at.clone(),
                command: l.run.command.clone(),
                started_at: l.run.started_at.clone(),
                finished_at: l.run.finished_at.clone(),
                exit_code: l.run.exit_code,
                seed: l.run.seed,
                env: l.run.env.clone(),
            }),
            code: l.code.as_ref().map(|c| wire::Code {
                commit: Some(c.commit.clone()),
                branch: c.branch.clone(),
                remote: c.remote.clone(),
                tree: Some(c.tree.clone()),
                dirty: Some(c.dirty),
                change: c.change.map(|d| d.to_string()),
                submodule: c
                    .submodules
                    .iter()
                    .map(|s| wire::Submodule {
                        path: Some(s.path.to_string()),
                        commit: Some(s.commit.clone()),
                        url: s.url.clone(),
                        dirty: s.dirty,
                    })
                    .collect(),
            }),
            host: l.host.as_ref().map(|h| wire::Host {
                os: h.os.clone(),
                kernel: h.kernel.clone(),
                arch: h.arch.clone(),
                cpu: h.cpu.clone(),
                cores: h.cores,
                memory: h.memory,
                glibc: h.glibc.clone(),
                torch: h.torch.as_ref().map(|t| wire::Torch {
                    version: t.version.clone(),
                    cuda: t.cuda.clone(),
                    cudnn: t.cudnn.clone(),
                    nccl: t.nccl.clone(),
                    git_version: t.git_version.clone(),
                }),
                gpu: h
                    .gpus
                    .iter()
                    .map(|g| wire::Gpu {
                        name: Some(g.name.clone()),
                        uuid: g.uuid.clone(),
                        memory: g.memory,
                        driver: g.driver.clone(),
                        cuda: g.cuda.clone(),
                        compute_capability: g.compute_capability.clone(),
                    })
                    .collect(),
            }),
            data: l
                .data
                .iter()
                .map(|d| wire::Artifact {
                    name: Some(d.name.clone()),
                    path: match &d.location {
                        Location::Path(p) => Some(p.to_string()),
                        Location::External => None,
                    },
                    external: d.location == Location::External,
                    kind: Some(kind_str(d.kind).into()),
                    digest: Some(d.digest.to_string()),
                    files: Some(d.files),
                    bytes: Some(d.bytes),
                    ..Default::default()
                })
                .collect(),
            input: l
                .inputs
                .iter()
                .map(|i| wire::Input {
                    kind: Some(i.kind().into()),
                    reference: Some(i.reference()),
                    run: match &i.source {
                        InputSource::Lock { run, .. } => Some(run.clone()),
                        _ => None,
                    },
                    commit: match &i.source {
                        InputSource::Hf { commit, .. } => Some(commit.clone()),
                        _ => None,
                    },
                    mutable: i.mutable,
                    digest: Some(i.digest.to_string()),
                    files: i.files,
                    bytes: Some(i.bytes),
                })
                .collect(),
            checkpoint: l.checkpoints.iter().map(artifact).collect(),
            output: l.outputs.iter().map(artifact).collect(),
            python: l.python.as_ref().map(python_to_wire),
            lockfile: l
                .lockfiles
                .iter()
                .map(|e| wire::Lockfile {
                    path: Some(e.path.to_string()),
                    kind: Some(e.kind.clone()),
                    digest: Some(e.digest.to_string()),
                })
                .collect(),
        }
    }
}

/// The environment tables of a lock (`[run.env]`, `[host]`, `[python]`, `[[lockfile]]`) on their
/// own, in canonical form: what `cairn env` prints.
pub fn env_fragment(
    env: &BTreeMap<String, String>,
    host: &Host,
    python: Option<&Python>,
    lockfiles: &[LockfileEntry],
) -> String {
    let lock = Lock {
        created_by: None,
        run: Run {
            id: String::new(),
            locked_at: None,
            command: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            seed: None,
            env: env.clone(),
        },
        code: None,
        host: Some(host.clone()),
        python: python.cloned(),
        lockfiles: lockfiles.to_vec(),
        inputs: Vec::new(),
        data: Vec::new(),
        checkpoints: Vec::new(),
        outputs: Vec::new(),
    };
    let mut w = wire::Lock::from(&lock);
    w.version = None;
    if let Some(run) = &mut w.run {
        run.id = None;
    }
    if env.is_empty() {
        w.run = None;
    }
    toml::to_string(&w).expect("the lock model always serialises to TOML")
}

fn python_to_wire(p: &Python) -> wire::Python {
    wire::Python {
        implementation: Some(p.implementation.clone()),
        version: Some(p.version.clone()),
        abi: p.abi.clone(),
        platform: p.platform.clone(),
        package: p
            .packages
            .iter()
            .map(|k| {
                let mut w = wire::PyPackage {
                    name: Some(k.name.clone()),
                    version: Some(k.version.clone()),
                    installer: k.installer.clone(),
                    wheel_tag: k.wheel_tag.clone(),
                    fingerprint: k.fingerprint.map(|d| d.to_string()),
                    ..Default::default()
                };
                match &k.source {
                    Source::Registry => w.source = Some("registry".into()),
                    Source::Vcs { url, commit } => {
                        w.source = Some("vcs".into());
                        w.url = Some(url.clone());
                        w.commit = Some(commit.clone());
                    }
                    Source::Archive { url, hash } => {
                        w.source = Some("archive".into());
                        w.url = Some(url.clone());
                        w.hash = hash.clone();
                    }
                    Source::Directory {
                        url,
                        editable,
                        commit,
                        change,
                    } => {
                        w.source = Some("directory".into());
                        w.url = Some(url.clone());
                        w.editable = *editable;
                        w.commit = commit.clone();
                        w.change = change.map(|d| d.to_string());
                    }
                }
                w
            })
            .collect(),
        conda: p
            .conda
            .iter()
            .map(|c| wire::Conda {
                name: Some(c.name.clone()),
                version: Some(c.version.clone()),
                build: c.build.clone(),
                channel: c.channel.clone(),
                sha256: c.sha256.clone(),
            })
            .collect(),
    }
}

impl Lock {
    /// The canonical text of this lock: header comment, `version` first, fixed key order,
    /// sorted entries, one trailing newline.
    pub fn to_toml(&self) -> String {
        let mut sorted = self.clone();
        sorted.sort();
        let body = toml::to_string(&wire::Lock::from(&sorted))
            .expect("the lock model always serialises to TOML");
        let mut out = String::with_capacity(HEADER.len() + body.len() + 1);
        out.push_str(HEADER);
        out.push_str(body.trim_end_matches('\n'));
        out.push('\n');
        out
    }

    /// Put every list in canonical order.
    pub fn sort(&mut self) {
        self.data.sort_by(|a, b| a.name.cmp(&b.name));
        self.checkpoints.sort_by(|a, b| a.path.cmp(&b.path));
        self.outputs.sort_by(|a, b| a.path.cmp(&b.path));
        self.lockfiles.sort_by(|a, b| a.path.cmp(&b.path));
        self.inputs.sort_by_key(Input::reference);
        if let Some(p) = &mut self.python {
            p.packages.sort_by(|a, b| a.name.cmp(&b.name));
            p.conda.sort_by(|a, b| a.name.cmp(&b.name));
        }
        if let Some(code) = &mut self.code {
            code.submodules.sort_by(|a, b| a.path.cmp(&b.path));
        }
    }

    /// Parse and validate lockfile text. `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Lock> {
        read_version(text, path)?;
        let wire: wire::Lock = toml::from_str(text).map_err(|e| Error::LockSyntax {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        Lock::try_from(wire).map_err(|problems| Error::LockInvalid {
            path: path.to_path_buf(),
            message: problems.join("; "),
        })
    }

    /// Read and validate a lockfile. Files over [`MAX_LOCK_BYTES`] are refused before they are
    /// read.
    pub fn load(path: &Path) -> Result<Lock> {
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.len() > MAX_LOCK_BYTES {
                return Err(Error::LockInvalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "it is {} MiB; cairn reads lockfiles up to {} MiB",
                        meta.len() >> 20,
                        MAX_LOCK_BYTES >> 20
                    ),
                });
            }
        }
        let bytes =
            std::fs::read(path).map_err(|source| Error::reading("lockfile", path, source))?;
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
        source: Box::new(e),
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

/// Write `text` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. Returns `false` (and writes nothing) when the file already holds
/// exactly these bytes.
pub fn write_if_changed(path: &Path, text: &[u8]) -> Result<bool> {
    if let Ok(old) = std::fs::read(path) {
        if old == text {
            return Ok(false);
        }
    }
    atomic_write(path, text)?;
    Ok(true)
}

/// Remove cairn's temporary files older than an hour from `dir`: what a killed writer left
/// behind (a live writer's file is seconds old).
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let hour = std::time::Duration::from_secs(3600);
    for e in rd.filter_map(|e| e.ok()) {
        let stale = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(crate::git::TEMP_PREFIX))
            && e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > hour);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Atomically replace `path` with `bytes` (see [`write_if_changed`]), durably.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, true, |w| w.write_all(bytes))
}

/// Atomically replace `path` with what `write` produces, streamed through a buffer into a
/// temporary file in the same directory, then renamed. `durable` also fsyncs the file before
/// the rename and the directory after it; files that check themselves (content-addressed
/// manifests) can skip that cost.
pub fn atomic_write_with(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).ctx("cannot create directory", &dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(crate::git::TEMP_PREFIX)
        .tempfile_in(&dir)
        .ctx("cannot create a temporary file in", &dir)?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        write(&mut w).ctx("cannot write", tmp.path())?;
        w.flush().ctx("cannot write", tmp.path())?;
    }
    if durable {
        tmp.as_file().sync_all().ctx("cannot sync", tmp.path())?;
    }
    tmp.persist(path).map_err(|e| Error::Io {
        op: "cannot replace",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    if durable {
        if let Ok(d) = std::fs::File::open(&dir) {
            // Make the rename durable; a directory that cannot be opened is not worth failing for.
            let _ = d.sync_all();
        }
    }
    Ok(())
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
            },
            code: Some(Code {
                commit: "a".repeat(40),
                branch: Some("main".into()),
                remote: None,
                tree: "b".repeat(40),
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
    fn duplicate_names_are_refused() {
        let mut lock = sample();
        lock.data[1].name = "val".into();
        let err = Lock::from_toml(&lock.to_toml(), Path::new("cairn.lock")).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }
}
