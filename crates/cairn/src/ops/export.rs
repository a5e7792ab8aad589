//! `cairn export`: a lock as an in-toto Statement v1 carrying a SLSA Provenance v1 predicate,
//! for supply-chain tools that already understand those formats (policy engines, signers,
//! artifact stores). `spec/export.md` is the normative description.
//!
//! * The **subjects** are the run's checkpoints. Each carries the `blake3` digest of the lock
//!   and, read from the file now, `sha256` (for a file) or `dirHash1` (for a directory: SHA-256
//!   over a `sha256sum`-style manifest, as the in-toto DigestSet spec defines it). Reading the
//!   file also checks its BLAKE3 against the lock, so an export never attests bytes that the
//!   lock does not describe. A checkpoint that is no longer on disk keeps only `blake3`.
//! * **resolvedDependencies** are the code commit (`gitCommit`), the uncommitted change, the
//!   submodules, dependency lock files, datasets, input models and Python and conda packages
//!   (as `pkg:` URLs).
//! * The output is deterministic: every value comes from the lock or from the checkpoint files,
//!   object keys are sorted, and arrays are in the lock's (sorted) order.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rayon::prelude::*;
use serde_json::{json, Map, Value};
use sha2::Digest as _;

use crate::content::cache::StatKey;
use crate::content::digest::{Digest, Kind, Manifest};
use crate::error::{Error, IoResultExt, Result};
use crate::model::lockfile::{Artifact, InputSource, Location, Lock};
use crate::probe::python::Source;
use crate::project::Project;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of SLSA Provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// cairn's `buildType`: a training run recorded by `cairn lock` (spec/export.md).
pub const BUILD_TYPE: &str = "https://example.invalid/cairn/build-types/training-run/v1";
/// cairn's `builder.id`: cairn on the machine that ran the command, unsigned (spec/export.md).
pub const BUILDER_ID: &str = "https://example.invalid/cairn/builders/local/v1";

/// One subject: a checkpoint and its digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The checkpoint's path in the lock.
    pub name: String,
    /// Its digest as the lock records it.
    pub blake3: Digest,
    /// SHA-256 of a file's bytes (files only; `None` when the file is not here).
    pub sha256: Option<String>,
    /// SHA-256 of the `sha256sum` manifest of a directory (directories only; `None` when the
    /// directory is not here).
    pub dir_hash1: Option<String>,
}

/// The lock file itself, listed first among the byproducts so that a consumer can tie the
/// statement to the exact lock it restates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockFile {
    /// Its path relative to the project root.
    pub name: String,
    /// BLAKE3 of its bytes.
    pub blake3: Digest,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// The result of an export.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The in-toto Statement, keys sorted.
    pub statement: Value,
    /// Things worth telling the user (a checkpoint that is not here).
    pub warnings: Vec<String>,
}

/// Export the lock at `lock_path` as an in-toto Statement with a SLSA Provenance predicate.
///
/// Fails when the lock records no checkpoint, when its run failed, or when a checkpoint that is
/// present differs from its recorded digest.
pub fn in_toto(project: &Project, lock_path: &Path) -> Result<Exported> {
    // One read: the lock exported and the lock whose digests are listed are the same bytes.
    let bytes = crate::fs::read_file(
        lock_path,
        "lockfile",
        crate::model::lockfile::MAX_LOCK_BYTES,
    )?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::LockInvalid {
        path: lock_path.to_path_buf(),
        message: "not UTF-8 text".into(),
    })?;
    let lock = Lock::from_toml(text, lock_path)?;
    let shown = lock_path
        .strip_prefix(&project.root)
        .unwrap_or(lock_path)
        .display()
        .to_string();
    if let Some(code) = lock.run.exit_code.filter(|c| *c != 0) {
        return Err(Error::Refused {
            message: format!(
                "{shown} records a run that failed (exit code {code}); there is nothing to attest"
            ),
            hint: "lock a run that succeeded, then export it".into(),
        });
    }
    if lock.checkpoints.is_empty() {
        return Err(Error::Refused {
            message: format!("{shown} records no checkpoint, so the statement would have no subject"),
            hint: "declare checkpoints with `cairn lock --checkpoint PATH|GLOB` or `checkpoints` in cairn.toml, or record them with `cairn checkpoint add`".into(),
        });
    }
    let mut warnings = Vec::new();
    let mut subjects = Vec::with_capacity(lock.checkpoints.len());
    for c in &lock.checkpoints {
        match subject(&project.root, c)? {
            Some(s) => subjects.push(s),
            None => {
                // One the run deleted itself (keep-last-N) is expected to be gone.
                if !c.deleted_by_run {
                    warnings.push(format!(
                    "checkpoint {} is not here; its subject carries only the blake3 digest from the lock",
                    c.path
                    ));
                }
                subjects.push(Subject {
                    name: c.path.to_string(),
                    blake3: c.digest,
                    sha256: None,
                    dir_hash1: None,
                });
            }
        }
    }
    let lock_file = LockFile {
        name: shown,
        blake3: Digest::of_bytes(&bytes),
        sha256: hex(&sha2::Sha256::digest(&bytes)),
    };
    let statement = statement(&lock, &lock_file, &subjects);
    Ok(Exported {
        statement,
        warnings,
    })
}

/// Read a checkpoint and compute its subject digests; `None` when it is not on disk. A
/// checkpoint whose BLAKE3 is not the recorded one is an error.
pub fn subject(root: &Path, artifact: &Artifact) -> Result<Option<Subject>> {
    let path = artifact.path.under(root);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx("cannot read", &path),
    };
    // A checkpoint of the repository that is a link out of it is not read (spec/security.md).
    let root = root.canonicalize().ctx("cannot open directory", root)?;
    if !path
        .canonicalize()
        .is_ok_and(|real| real.starts_with(&root))
    {
        return Err(Error::Refused {
            message: format!(
                "checkpoint {} leads outside the repository (a symbolic link); it was not read",
                crate::text::visible(artifact.path.as_str())
            ),
            hint: "export a checkout whose checkpoints are files inside it".into(),
        });
    }
    let (b3, sha256, dir_hash1) = if meta.is_dir() {
        let (b3, dir_hash1) = hash_dir_both(&path, &root)?;
        (b3, None, Some(dir_hash1))
    } else {
        let (b3, sha) = hash_file_both(&path)?;
        (b3, Some(hex(&sha)), None)
    };
    let now_kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    if b3 != artifact.digest || now_kind != artifact.kind {
        return Err(Error::Refused {
            message: format!(
                "checkpoint {} changed since it was locked (locked {}, now {b3})",
                artifact.path, artifact.digest
            ),
            hint: "`cairn verify` names every difference; lock the run again if the change is intended".into(),
        });
    }
    Ok(Some(Subject {
        name: artifact.path.to_string(),
        blake3: b3,
        sha256,
        dir_hash1,
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// BLAKE3 and SHA-256 of a file in one read. A file that changes while it is read is an error.
fn hash_file_both(path: &Path) -> Result<(Digest, [u8; 32])> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::reading("file", path, e))?;
    let before = StatKey::of(&file.metadata().ctx("cannot read", path)?);
    let mut b3 = blake3::Hasher::new();
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).ctx("cannot read", path),
        };
        b3.update(&buf[..n]);
        sha.update(&buf[..n]);
        total += n as u64;
    }
    let after = StatKey::of(&file.metadata().ctx("cannot read", path)?);
    if after != before || total != before.size {
        return Err(Error::ChangedWhileReading {
            path: path.to_path_buf(),
        });
    }
    Ok((b3.finalize().into(), sha.finalize().into()))
}

/// The BLAKE3 directory digest (lockfile.md §9.3) and in-toto's `dirHash1` of a directory, from
/// one read of every file. Both manifests list the same files in the same order and format; only
/// the hash differs (so `dirHash1` is what `sha256sum` over the sorted files, then `sha256sum` of
/// that, prints).
///
/// Links below it that lead out of `confine` (the project) are not followed.
fn hash_dir_both(root: &Path, confine: &Path) -> Result<(Digest, String)> {
    let (files, _skipped) = crate::content::walk::walk_within(root, Some(confine))?;
    let hashed: Vec<(Digest, [u8; 32])> = files
        .par_iter()
        .map(|f| hash_file_both(&root.join(OsStr::from_bytes(&f.rel))))
        .collect::<Result<_>>()?;
    let mut b3 = Manifest::default();
    let mut sha = Manifest::default();
    for (f, (b, s)) in files.iter().zip(hashed) {
        b3.push(&f.rel, b, Some(f.key.size));
        // A manifest holds any 32-byte hash; its line is the hex, whatever the algorithm.
        sha.push(&f.rel, Digest(s), Some(f.key.size));
    }
    let dir_hash1 = hex(&sha2::Sha256::digest(sha.to_text()));
    Ok((b3.digest(), dir_hash1))
}

/// The Statement for `lock` (whose file is `lock_file`) with these subjects, in this order, keys
/// sorted. Pure: everything comes from its arguments.
pub fn statement(lock: &Lock, lock_file: &LockFile, subjects: &[Subject]) -> Value {
    let subject: Vec<Value> = subjects
        .iter()
        .map(|s| {
            let mut digest = Map::new();
            digest.insert("blake3".into(), s.blake3.hex().into());
            if let Some(sha) = &s.sha256 {
                digest.insert("sha256".into(), sha.clone().into());
            }
            if let Some(d) = &s.dir_hash1 {
                digest.insert("dirHash1".into(), d.clone().into());
            }
            json!({"name": s.name, "digest": digest})
        })
        .collect();
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external_parameters(lock),
                "internalParameters": internal_parameters(lock),
                "resolvedDependencies": resolved_dependencies(lock),
            },
            "runDetails": run_details(lock, lock_file),
        },
    });
    sort_keys(statement)
}

/// Insert `key` when `value` is present.
fn put(map: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v.into());
    }
}

fn external_parameters(lock: &Lock) -> Value {
    let mut p = Map::new();
    put(&mut p, "command", lock.run.command.clone());
    put(&mut p, "seed", lock.run.seed);
    if !lock.run.env.is_empty() {
        p.insert("env".into(), json!(lock.run.env));
    }
    if !lock.data.is_empty() {
        let data: Vec<Value> = lock
            .data
            .iter()
            .map(|d| match &d.location {
                Location::Path(path) => json!({"name": d.name, "path": path.as_str()}),
                Location::External => json!({"name": d.name, "external": true}),
            })
            .collect();
        p.insert("data".into(), data.into());
    }
    if !lock.inputs.is_empty() {
        let inputs: Vec<Value> = lock.inputs.iter().map(|i| i.reference().into()).collect();
        p.insert("inputs".into(), inputs.into());
    }
    Value::Object(p)
}

fn internal_parameters(lock: &Lock) -> Value {
    let mut p = Map::new();
    if let Some(h) = &lock.host {
        let mut host = Map::new();
        put(&mut host, "os", h.os.clone());
        put(&mut host, "kernel", h.kernel.clone());
        put(&mut host, "arch", h.arch.clone());
        put(&mut host, "cpu", h.cpu.clone());
        put(&mut host, "cores", h.cores);
        put(&mut host, "memory", h.memory);
        put(&mut host, "glibc", h.glibc.clone());
        if let Some(t) = &h.torch {
            let mut torch = Map::new();
            put(&mut torch, "version", t.version.clone());
            put(&mut torch, "cuda", t.cuda.clone());
            put(&mut torch, "cudnn", t.cudnn.clone());
            put(&mut torch, "nccl", t.nccl.clone());
            put(&mut torch, "gitVersion", t.git_version.clone());
            host.insert("torch".into(), torch.into());
        }
        if !h.gpus.is_empty() {
            let gpus: Vec<Value> = h
                .gpus
                .iter()
                .map(|g| {
                    let mut gpu = Map::new();
                    gpu.insert("name".into(), g.name.clone().into());
                    put(&mut gpu, "uuid", g.uuid.clone());
                    put(&mut gpu, "memory", g.memory);
                    put(&mut gpu, "driver", g.driver.clone());
                    put(&mut gpu, "cuda", g.cuda.clone());
                    put(&mut gpu, "computeCapability", g.compute_capability.clone());
                    Value::Object(gpu)
                })
                .collect();
            host.insert("gpus".into(), gpus.into());
        }
        p.insert("host".into(), host.into());
    }
    if let Some(py) = &lock.python {
        let mut python = Map::new();
        python.insert("implementation".into(), py.implementation.clone().into());
        python.insert("version".into(), py.version.clone().into());
        put(&mut python, "abi", py.abi.clone());
        put(&mut python, "platform", py.platform.clone());
        p.insert("python".into(), python.into());
    }
    Value::Object(p)
}

fn run_details(lock: &Lock, lock_file: &LockFile) -> Value {
    let mut builder = Map::new();
    builder.insert("id".into(), BUILDER_ID.into());
    if let Some(by) = &lock.created_by {
        let (name, version) = by.split_once(' ').unwrap_or(("cairn", by.as_str()));
        builder.insert("version".into(), json!({ name: version }));
    }
    let mut metadata = Map::new();
    metadata.insert("invocationId".into(), lock.run.id.clone().into());
    put(
        &mut metadata,
        "startedOn",
        lock.run
            .started_at
            .clone()
            .or_else(|| lock.run.locked_at.clone()),
    );
    put(&mut metadata, "finishedOn", lock.run.finished_at.clone());
    let lock_entry = json!({
        "name": lock_file.name,
        "digest": {"blake3": lock_file.blake3.hex(), "sha256": lock_file.sha256},
        "mediaType": "application/toml",
        "annotations": {"role": "cairn-lock"},
    });
    let byproducts: Vec<Value> = std::iter::once(lock_entry)
        .chain(lock.outputs.iter().map(|o| {
            let mut a = artifact_annotations(o.kind, o.files, o.bytes);
            a.insert("role".into(), "output".into());
            json!({
                "name": o.path.as_str(),
                "digest": {"blake3": o.digest.hex()},
                "annotations": a,
            })
        }))
        .collect();
    json!({"builder": builder, "metadata": metadata, "byproducts": byproducts})
}

fn artifact_annotations(kind: Kind, files: Option<u64>, bytes: u64) -> Map<String, Value> {
    let mut a = Map::new();
    a.insert(
        "kind".into(),
        match kind {
            Kind::File => "file",
            Kind::Dir => "dir",
        }
        .into(),
    );
    put(&mut a, "files", files);
    a.insert("bytes".into(), bytes.into());
    a
}

/// The `git+` form of a remote URL (SPDX download location style), `None` for a local path.
pub fn git_uri(remote: &str) -> Option<String> {
    if remote.starts_with("git+") {
        return Some(remote.to_string());
    }
    if remote.contains("://") {
        return Some(format!("git+{remote}"));
    }
    // scp-like `user@host:path`.
    let (authority, path) = remote.split_once(':')?;
    if authority.contains('/') || authority.is_empty() {
        return None;
    }
    Some(format!(
        "git+ssh://{authority}/{}",
        path.trim_start_matches('/')
    ))
}

/// Percent-encode a purl component: everything but ASCII letters, digits and `-._~`.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `pkg:pypi/NAME@VERSION` for a (PEP 503-normalised) Python package.
pub fn pypi_purl(name: &str, version: &str) -> String {
    format!("pkg:pypi/{}@{}", pct(name), pct(version))
}

fn resolved_dependencies(lock: &Lock) -> Vec<Value> {
    let mut deps = Vec::new();
    if let Some(code) = &lock.code {
        let mut d = Map::new();
        if let Some(uri) = code.remote.as_deref().and_then(git_uri) {
            let uri = match &code.branch {
                Some(b) => format!("{uri}@refs/heads/{b}"),
                None => uri,
            };
            d.insert("uri".into(), uri.into());
        }
        d.insert("name".into(), "code".into());
        d.insert("digest".into(), json!({"gitCommit": code.commit}));
        d.insert(
            "annotations".into(),
            json!({"role": "code", "tree": code.tree, "dirty": code.dirty}),
        );
        deps.push(Value::Object(d));
        if let Some(change) = &code.change {
            deps.push(json!({
                "name": format!(".cairn/changes/{}.patch", change.hex()),
                "digest": {"blake3": change.hex()},
                "mediaType": "text/x-diff",
                "annotations": {"role": "uncommitted-change"},
            }));
        }
        for s in &code.submodules {
            let mut d = Map::new();
            put(&mut d, "uri", s.url.as_deref().and_then(git_uri));
            d.insert("name".into(), s.path.as_str().into());
            d.insert("digest".into(), json!({"gitCommit": s.commit}));
            let mut a = Map::new();
            a.insert("role".into(), "submodule".into());
            if s.dirty {
                a.insert("dirty".into(), true.into());
            }
            d.insert("annotations".into(), a.into());
            deps.push(Value::Object(d));
        }
    }
    for l in &lock.lockfiles {
        deps.push(json!({
            "name": l.path.as_str(),
            "digest": {"blake3": l.digest.hex()},
            "annotations": {"role": "lockfile", "format": l.kind},
        }));
    }
    for d in &lock.data {
        let name = match &d.location {
            Location::Path(p) => p.to_string(),
            Location::External => d.name.clone(),
        };
        let mut a = artifact_annotations(d.kind, Some(d.files), d.bytes);
        a.insert("role".into(), "dataset".into());
        a.insert("dataset".into(), d.name.clone().into());
        if d.location == Location::External {
            a.insert("external".into(), true.into());
        }
        deps.push(json!({
            "name": name,
            "digest": {"blake3": d.digest.hex()},
            "annotations": a,
        }));
    }
    for i in &lock.inputs {
        let mut d = Map::new();
        let mut digest = Map::new();
        digest.insert("blake3".into(), i.digest.hex().into());
        let mut a = artifact_annotations(
            if i.files.is_some() {
                Kind::Dir
            } else {
                Kind::File
            },
            i.files,
            i.bytes,
        );
        a.insert("role".into(), "input-model".into());
        a.insert("source".into(), i.kind().into());
        match &i.source {
            InputSource::Local(_) => {}
            InputSource::Lock { run, .. } => {
                a.insert("run".into(), run.clone().into());
            }
            InputSource::Hf { repo, commit, .. } => {
                digest.insert("gitCommit".into(), commit.clone().into());
                let uri = match repo.strip_prefix("datasets/") {
                    Some(ds) => format!("https://huggingface.co/datasets/{ds}"),
                    None => {
                        let parts: Vec<String> = repo.split('/').map(pct).collect();
                        format!("pkg:huggingface/{}@{}", parts.join("/"), pct(commit))
                    }
                };
                d.insert("uri".into(), uri.into());
            }
        }
        if i.mutable {
            a.insert("mutable".into(), true.into());
        }
        d.insert("name".into(), i.reference().into());
        d.insert("digest".into(), digest.into());
        d.insert("annotations".into(), a.into());
        deps.push(Value::Object(d));
    }
    if let Some(py) = &lock.python {
        for p in &py.packages {
            let mut d = Map::new();
            d.insert("uri".into(), pypi_purl(&p.name, &p.version).into());
            let mut a = Map::new();
            if let Some(url) = p.source.url() {
                d.insert("downloadLocation".into(), url.into());
            }
            if let Some(c) = p.source.commit() {
                d.insert("digest".into(), json!({"gitCommit": c}));
            }
            match &p.source {
                Source::Registry | Source::Vcs { .. } => {}
                Source::Archive { hash, .. } => {
                    if let Some((alg, value)) = hash.as_deref().and_then(|h| h.split_once('=')) {
                        d.insert("digest".into(), json!({ alg: value }));
                    }
                }
                Source::Directory {
                    editable, change, ..
                } => {
                    if *editable {
                        a.insert("editable".into(), true.into());
                    }
                    put(&mut a, "change", change.map(|c| c.to_string()));
                }
            }
            a.insert("role".into(), "python-package".into());
            a.insert("source".into(), p.source.kind().into());
            put(&mut a, "installer", p.installer.clone());
            put(&mut a, "wheelTag", p.wheel_tag.clone());
            put(&mut a, "fingerprint", p.fingerprint.map(|f| f.to_string()));
            d.insert("annotations".into(), a.into());
            deps.push(Value::Object(d));
        }
        for c in &py.conda {
            let mut q = Vec::new();
            if let Some(b) = &c.build {
                q.push(format!("build={}", pct(b)));
            }
            if let Some(ch) = &c.channel {
                q.push(format!("channel={}", pct(ch)));
            }
            let mut uri = format!("pkg:conda/{}@{}", pct(&c.name), pct(&c.version));
            if !q.is_empty() {
                uri.push('?');
                uri.push_str(&q.join("&"));
            }
            let mut d = Map::new();
            d.insert("uri".into(), uri.into());
            if let Some(sha) = &c.sha256 {
                d.insert("digest".into(), json!({"sha256": sha}));
            }
            d.insert("annotations".into(), json!({"role": "conda-package"}));
            deps.push(Value::Object(d));
        }
    }
    deps
}

/// The same value with every object's keys in sorted order, whatever map type serde_json was
/// built with.
pub fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut pairs: Vec<(String, Value)> = m.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(pairs.into_iter().map(|(k, v)| (k, sort_keys(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_uris() {
        assert_eq!(
            git_uri("https://github.com/o/r.git").as_deref(),
            Some("git+https://github.com/o/r.git")
        );
        assert_eq!(
            git_uri("git@github.com:o/r.git").as_deref(),
            Some("git+ssh://git@github.com/o/r.git")
        );
        assert_eq!(git_uri("/srv/git/r.git"), None);
        assert_eq!(git_uri("../r"), None);
    }

    #[test]
    fn purls_encode_what_purl_requires() {
        assert_eq!(
            pypi_purl("torch", "2.5.1+cu121"),
            "pkg:pypi/torch@2.5.1%2Bcu121"
        );
        assert_eq!(
            pypi_purl("zope-interface", "6.0"),
            "pkg:pypi/zope-interface@6.0"
        );
    }

    #[test]
    fn keys_are_sorted_at_every_level() {
        let v = sort_keys(json!({"b": 1, "a": [{"d": 1, "c": 2}]}));
        assert_eq!(v.to_string(), r#"{"a":[{"c":2,"d":1}],"b":1}"#);
    }

    #[test]
    fn dir_hash1_is_in_totos_dirhash() {
        // The in-toto DigestSet spec: sha256 of the `sha256sum` lines "<sha256>  <path>\n" of
        // every file, in byte order of the paths (`a.txt` before `b.txt` before `sub/a`).
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.txt"), "bee\n").unwrap();
        std::fs::write(dir.path().join("sub/a"), "a\n").unwrap();
        std::fs::write(dir.path().join("a.txt"), "").unwrap();
        let (b3, dh) = hash_dir_both(dir.path(), dir.path()).unwrap();
        assert_eq!(
            b3,
            crate::content::digest::hash_path(dir.path())
                .unwrap()
                .digest
        );
        let line =
            |data: &[u8], name: &str| format!("{}  {name}\n", hex(&sha2::Sha256::digest(data)));
        let manifest = line(b"", "a.txt") + &line(b"bee\n", "b.txt") + &line(b"a\n", "sub/a");
        assert_eq!(dh, hex(&sha2::Sha256::digest(manifest.as_bytes())));
    }
}
