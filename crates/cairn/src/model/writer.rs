//! Validated -> wire -> text: the canonical layout of `cairn.lock`.

use std::collections::BTreeMap;

use crate::model::lockfile::*;
use crate::model::python::Source;
use crate::model::wire;

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
            parent_run: a.parent_run.clone(),
            deleted_by_run: a.deleted_by_run,
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
                cwd: match &l.run.cwd {
                    Some(RunDir::Root) => Some(".".into()),
                    Some(RunDir::Inside(p)) => Some(p.to_string()),
                    Some(RunDir::Outside) | None => None,
                },
                cwd_outside: l.run.cwd == Some(RunDir::Outside),
            }),
            code: l.code.as_ref().map(|c| wire::Code {
                commit: Some(c.commit.to_string()),
                branch: c.branch.clone(),
                remote: c.remote.clone(),
                tree: Some(c.tree.to_string()),
                dirty: Some(c.dirty),
                change: c.change.map(|d| d.to_string()),
                submodule: c
                    .submodules
                    .iter()
                    .map(|s| wire::Submodule {
                        path: Some(s.path.to_string()),
                        commit: Some(s.commit.to_string()),
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
                cpu_features: h.cpu_features.clone(),
                affinity: h.affinity,
                cpu_quota: h.cpu_quota.clone(),
                blas: h
                    .blas
                    .iter()
                    .map(|b| wire::Blas {
                        package: Some(b.package.clone()),
                        library: Some(b.library.clone()),
                        version: b.version.clone(),
                        file: b.file.clone(),
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
        host: Some(host.clone()),
        python: python.cloned(),
        lockfiles: lockfiles.to_vec(),
        ..Lock::of_run(Run::blank(env.clone()))
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
                    source: Some(k.source.kind().into()),
                    url: k.source.url().map(Into::into),
                    commit: k.source.commit().map(Into::into),
                    installer: k.installer.clone(),
                    wheel_tag: k.wheel_tag.clone(),
                    fingerprint: k.fingerprint.map(|d| d.to_string()),
                    ..Default::default()
                };
                match &k.source {
                    Source::Registry | Source::Vcs { .. } => {}
                    Source::Archive { hash, .. } => w.hash = hash.clone(),
                    Source::Directory {
                        editable, change, ..
                    } => {
                        w.editable = *editable;
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
        index_url: p.index_url.clone(),
        extra_index_url: p.extra_index_urls.clone(),
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
        if let Some(host) = &mut self.host {
            host.cpu_features.sort();
            host.cpu_features.dedup();
            host.blas.sort();
        }
    }
}
