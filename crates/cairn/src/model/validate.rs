//! Wire -> validated: every field of a lock checked, entries sorted, duplicates refused. A lock
//! that fails here is never used, whatever command read it.

use std::collections::BTreeSet;

use crate::content::digest::{Digest, Kind};
use crate::model::lockfile::*;
use crate::model::oid::ObjectId;
use crate::model::paths::RelPath;
use crate::model::python::{CondaPackage, Source, TorchStack};
use crate::model::rules::*;
use crate::model::wire;
use crate::text::{has_control, visible};

struct Checker {
    problems: Vec<String>,
}

impl Checker {
    /// Sort `list` by `key` and name each key that appears twice: "{what} `{key}` appears twice".
    fn sort_unique<T, K: Ord + std::fmt::Display>(
        &mut self,
        list: &mut [T],
        key: impl Fn(&T) -> K,
        what: &str,
    ) {
        list.sort_by_key(|x| key(x));
        for pair in list.windows(2) {
            let k = key(&pair[0]);
            if k == key(&pair[1]) {
                self.problems.push(format!("{what} `{k}` appears twice"));
            }
        }
    }

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

    fn oid(&mut self, v: Option<String>, what: &str) -> Option<ObjectId> {
        let s = self.req(v, what)?;
        if let Some(id) = ObjectId::parse(&s) {
            Some(id)
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
        if let Some(run) = &a.parent_run {
            if !is_run_id(run) {
                self.problems.push(format!(
                    "`{at}.parent-run` is not a run id (32 hex digits): {run:?}"
                ));
            } else if !matches!(parent, Some(Parent::Digest(_))) {
                self.problems.push(format!(
                    "`{at}.parent-run` is only for a parent given by digest"
                ));
            }
        }
        if a.deleted_by_run && table != "checkpoint" {
            self.problems
                .push(format!("`{at}.deleted-by-run` is only for checkpoints"));
        }
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
            parent_run: a.parent_run,
            deleted_by_run: a.deleted_by_run,
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
                if has_control(repo) || has_control(revision) {
                    self.problems.push(format!(
                        "`{at}.ref` contains a control character: {reference:?}"
                    ));
                }
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

/// Is `s` a run id: 32 lowercase hex digits?
pub(crate) fn is_run_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
        // The argv may hold any character a shell could pass (it is shown escaped), but not
        // NUL, which no program can receive.
        for (i, arg) in r.command.iter().flatten().enumerate() {
            if arg.contains('\0') {
                c.problems
                    .push(format!("`run.command[{i}]` contains a NUL byte: {arg:?}"));
            }
        }
        for (k, v) in &r.env {
            if !valid_env_name(k) || v.contains('\0') {
                c.problems.push(format!(
                    "`run.env`: {k:?} = {v:?} (names are letters, digits and `_`, not starting with a digit; no NUL in values)"
                ));
            }
        }
        let cwd = match (r.cwd, r.cwd_outside) {
            (None, false) => None,
            (None, true) => Some(RunDir::Outside),
            (Some(d), false) if d == "." => Some(RunDir::Root),
            (Some(d), false) => c.path(Some(d), "run.cwd").map(RunDir::Inside),
            (Some(_), true) => {
                c.problems
                    .push("`run` has both `cwd` and `cwd-outside = true`".into());
                None
            }
        };
        Run {
            cwd,
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
            if let Some(url) = &s.url {
                if url.starts_with('-') || has_control(url) {
                    c.problems.push(format!(
                        "`code.submodule[{i}].url` is not a repository location: {url:?}"
                    ));
                }
            }
            if let (Some(path), Some(commit)) = (path, commit) {
                submodules.push(Submodule {
                    path,
                    commit,
                    url: s.url,
                    dirty: s.dirty,
                });
            }
        }
        c.sort_unique(&mut submodules, |s| s.path.clone(), "submodule");
        if let Some(remote) = &code.remote {
            if let Err(why) = check_remote(remote) {
                c.problems
                    .push(format!("`code.remote` {why}: {:?}", visible(remote)));
            }
        }
        if let Some(branch) = &code.branch {
            if has_control(branch) {
                c.problems.push(format!(
                    "`code.branch` contains a control character: {branch:?}"
                ));
            }
        }
        Code {
            // An invalid id has been reported; the lock is refused below.
            commit: commit.unwrap_or_else(ObjectId::null),
            branch: code.branch,
            remote: code.remote,
            tree: tree.unwrap_or_else(ObjectId::null),
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
        cpu_features: h.cpu_features,
        affinity: h.affinity,
        cpu_quota: h.cpu_quota,
        blas: h
            .blas
            .into_iter()
            .enumerate()
            .filter_map(|(i, b)| {
                Some(Blas {
                    package: c.req(b.package, &format!("host.blas[{i}].package"))?,
                    library: c.req(b.library, &format!("host.blas[{i}].library"))?,
                    version: b.version,
                    file: b.file,
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
    c.sort_unique(&mut data, |d| d.name.clone(), "dataset name");
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
    let mut inputs: Vec<Input> = w
        .input
        .into_iter()
        .enumerate()
        .filter_map(|(i, x)| c.input(x, i))
        .collect();
    c.sort_unique(&mut inputs, Input::reference, "input");
    c.sort_unique(&mut lockfiles, |l| l.path.clone(), "lockfile path");
    let mut artifacts = |list: Vec<wire::Artifact>, table: &str| {
        let mut out: Vec<Artifact> = list
            .into_iter()
            .enumerate()
            .filter_map(|(i, a)| c.artifact(a, table, i))
            .collect();
        c.sort_unique(&mut out, |a| a.path.clone(), &format!("{table} path"));
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
                if *n != crate::model::python::normalize_name(n) || !valid_package_name(n) {
                    self.problems.push(format!(
                        "`{at}.name` is not a normalised package name (PEP 503): {n:?}"
                    ));
                }
            }
            let version = self.req(w.version, &format!("{at}.version"));
            if let Some(v) = &version {
                if !valid_package_version(v) {
                    self.problems.push(format!(
                        "`{at}.version` is not a package version (letters, digits, `.`, `+`, `!`, `_`, `-`, starting with a letter or digit): {v:?}"
                    ));
                }
            }
            for (field, value) in [("url", &w.url), ("commit", &w.commit), ("hash", &w.hash)] {
                if let Some(v) = value {
                    if v.starts_with('-')
                        || v.chars().any(|ch| ch.is_whitespace())
                        || has_control(v)
                    {
                        self.problems.push(format!(
                            "`{at}.{field}` starts with `-` or holds a space or control character: {v:?}"
                        ));
                    }
                }
            }
            let source = match w.source.as_deref() {
                Some("registry") => Some(Source::Registry),
                Some("vcs") => match (w.url, w.commit) {
                    (Some(url), Some(commit)) => {
                        if !has_scheme(&url, VCS_SCHEMES) {
                            self.problems.push(format!(
                                "`{at}.url` of a vcs package must start with {}: {url:?}",
                                VCS_SCHEMES.join(", ")
                            ));
                        }
                        if !(4..=64).contains(&commit.len())
                            || !commit.bytes().all(|b| b.is_ascii_hexdigit())
                        {
                            self.problems.push(format!(
                                "`{at}.commit` is not a commit id (hex digits): {commit:?}"
                            ));
                        }
                        Some(Source::Vcs { url, commit })
                    }
                    _ => {
                        self.problems
                            .push(format!("`{at}`: a vcs source needs `url` and `commit`"));
                        None
                    }
                },
                Some("archive") => match w.url {
                    Some(url) => {
                        if !has_scheme(&url, ARCHIVE_SCHEMES) {
                            self.problems.push(format!(
                                "`{at}.url` of an archive must start with {}: {url:?}",
                                ARCHIVE_SCHEMES.join(", ")
                            ));
                        }
                        if let Some(h) = &w.hash {
                            let ok = h.split_once('=').is_some_and(|(algo, hex)| {
                                !algo.is_empty()
                                    && algo.bytes().all(|b| b.is_ascii_alphanumeric())
                                    && !hex.is_empty()
                                    && hex.bytes().all(|b| b.is_ascii_hexdigit())
                            });
                            if !ok {
                                self.problems
                                    .push(format!("`{at}.hash` must be ALGORITHM=HEX: {h:?}"));
                            }
                        }
                        Some(Source::Archive { url, hash: w.hash })
                    }
                    None => {
                        self.problems
                            .push(format!("`{at}`: an archive source needs `url`"));
                        None
                    }
                },
                Some("directory") => match w.url {
                    Some(url) => {
                        let path = crate::model::python::file_url_path(&url);
                        let plain = path.as_deref().is_some_and(|p| {
                            p.is_absolute()
                                && p.components().all(|c| {
                                    !matches!(
                                        c,
                                        std::path::Component::ParentDir
                                            | std::path::Component::CurDir
                                    )
                                })
                        });
                        if !plain || has_control(&path.unwrap_or_default().to_string_lossy()) {
                            self.problems.push(format!(
                                "`{at}.url` of a directory must be a file:// URL of an absolute path without `..`: {url:?}"
                            ));
                        }
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
        self.sort_unique(&mut packages, |p| p.name.clone(), "python package");
        let mut conda: Vec<CondaPackage> = p
            .conda
            .into_iter()
            .enumerate()
            .filter_map(|(i, w)| {
                for v in [&w.name, &w.version, &w.build, &w.channel]
                    .into_iter()
                    .flatten()
                {
                    if has_control(v) {
                        self.problems.push(format!(
                            "`python.conda[{i}]` contains a control character: {v:?}"
                        ));
                    }
                }
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
        let implementation = self
            .req(p.implementation, "python.implementation")
            .unwrap_or_default();
        if !implementation.is_empty()
            && !implementation
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            self.problems.push(format!(
                "`python.implementation` must be a lower-case name like \"cpython\": {implementation:?}"
            ));
        }
        let version = self.req(p.version, "python.version").unwrap_or_default();
        if !version.is_empty() && !valid_python_version(&version) {
            self.problems.push(format!(
                "`python.version` is not a PEP 440 release like \"3.11.7\": {version:?}"
            ));
        }
        for (i, url) in p.index_url.iter().chain(&p.extra_index_url).enumerate() {
            if let Err(why) = check_index_url(url) {
                let at = if p.index_url.is_some() && i == 0 {
                    "python.index-url".to_string()
                } else {
                    format!(
                        "python.extra-index-url[{}]",
                        i - usize::from(p.index_url.is_some())
                    )
                };
                self.problems
                    .push(format!("`{at}` {why}: {:?}", visible(url)));
            }
        }
        Python {
            implementation,
            version,
            abi: p.abi,
            platform: p.platform,
            packages,
            conda,
            index_url: p.index_url,
            extra_index_urls: p.extra_index_url,
        }
    }
}
