//! The environment of a run: the Python interpreter and packages, the command, the
//! determinism variables, the dependency lock files and their pins, the host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;
use crate::model::lockfile::{Host, LockfileEntry, Python};
use crate::probe::env;
use crate::probe::python::Source;

fn interpreter_text(p: &Python) -> String {
    format!("{} {}", p.implementation, p.version)
}

pub(super) fn python_section(
    a: &State,
    b: &State,
    repo_root: Option<&Path>,
    out: &mut Vec<Difference>,
) {
    let (pa, pb) = match (&a.python, &b.python) {
        (Some(PythonState::Present(pa)), Some(PythonState::Present(pb))) => (pa, pb),
        (None, None) => return,
        (x, y) => {
            let text = |s: &Option<PythonState>| match s {
                Some(PythonState::Present(p)) => Some(Value::Text(interpreter_text(p))),
                _ => None,
            };
            let why = [x, y].into_iter().find_map(|s| match s {
                Some(PythonState::Absent(why)) => Some(why.clone()),
                _ => None,
            });
            let mut d = value_difference(Area::Python, "python", text(x), text(y));
            if let Some(why) = why {
                d = d.because(Reason::NoPython(why));
            }
            if d.locked.is_some() || d.now.is_some() {
                out.push(d);
            }
            return;
        }
    };
    out.extend(python(pa, pb, repo_root));
}

/// Compare two Python environments: the interpreter, each package (version, source, installed
/// files), each conda package.
pub fn python(pa: &Python, pb: &Python, repo_root: Option<&Path>) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut pb = pb.clone();
    env::align_repo_packages(pa, &mut pb, repo_root);
    if (pa.implementation.as_str(), pa.version.as_str())
        != (pb.implementation.as_str(), pb.version.as_str())
    {
        out.push(
            Difference::new(Area::Python, "python", Change::Changed).values(
                Some(Value::Text(interpreter_text(pa))),
                Some(Value::Text(interpreter_text(&pb))),
            ),
        );
    }
    let by = |p: &Python| -> BTreeMap<String, crate::model::lockfile::PyPackage> {
        p.packages
            .iter()
            .map(|x| (x.name.clone(), x.clone()))
            .collect()
    };
    let (la, lb) = (by(pa), by(&pb));
    let names: BTreeSet<&String> = la.keys().chain(lb.keys()).collect();
    for name in names {
        let version = |p: &crate::model::lockfile::PyPackage| Some(Value::Text(p.version.clone()));
        match (la.get(name), lb.get(name)) {
            (Some(x), None) => out.push(value_difference(Area::Python, name, version(x), None)),
            (None, Some(y)) => out.push(value_difference(Area::Python, name, None, version(y))),
            (Some(x), Some(y)) if x.version != y.version => {
                out.push(value_difference(Area::Python, name, version(x), version(y)))
            }
            (Some(x), Some(y)) if x.source != y.source => out.push(
                Difference::new(Area::Python, name.as_str(), Change::Changed)
                    .values(
                        Some(Value::Text(source_text(&x.source))),
                        Some(Value::Text(source_text(&y.source))),
                    )
                    .because(Reason::Source),
            ),
            (Some(x), Some(y)) if x.fingerprint.is_some() && x.fingerprint != y.fingerprint => out
                .push(
                    Difference::new(Area::Python, name.as_str(), Change::Changed)
                        .values(version(x), version(y))
                        .because(Reason::Fingerprint),
                ),
            _ => {}
        }
    }
    let conda = |p: &Python| -> BTreeMap<String, String> {
        p.conda
            .iter()
            .map(|c| {
                let v = match &c.build {
                    Some(b) => format!("{} {b}", c.version),
                    None => c.version.clone(),
                };
                (c.name.clone(), v)
            })
            .collect()
    };
    let (ca, cb) = (conda(pa), conda(&pb));
    let names: BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();
    for name in names {
        let (x, y) = (ca.get(name), cb.get(name));
        if x != y {
            out.push(
                value_difference(
                    Area::Python,
                    name,
                    x.map(|v| Value::Text(v.clone())),
                    y.map(|v| Value::Text(v.clone())),
                )
                .because(Reason::Conda),
            );
        }
    }
    out
}

fn source_text(s: &Source) -> String {
    let mut text = match s {
        Source::Registry => return "registry".into(),
        Source::Vcs { url, commit } => return format!("{url}@{commit}"),
        Source::Archive { url, hash: None } => return url.clone(),
        Source::Archive { url, hash: Some(h) } => return format!("{url}#{h}"),
        Source::Directory {
            url,
            editable: true,
            ..
        } => format!("editable {url}"),
        Source::Directory { url, .. } => url.clone(),
    };
    if let Source::Directory {
        commit: Some(c), ..
    } = s
    {
        text.push_str(&format!(" @ {}", &c[..c.len().min(12)]));
    }
    if let Source::Directory {
        change: Some(_), ..
    } = s
    {
        text.push_str(" + uncommitted change");
    }
    text
}

/// The command, its exit code and the seed (two locks only).
pub(super) fn run_facts(a: &RunFacts, b: &RunFacts, out: &mut Vec<Difference>) {
    let line = |argv: &Option<Vec<String>>| {
        argv.as_ref().map(|v| {
            Value::Text(
                v.iter()
                    .map(|s| crate::process::shell_quote(s))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
    };
    if a.command != b.command {
        out.push(value_difference(
            Area::Command,
            "command",
            line(&a.command),
            line(&b.command),
        ));
    }
    let number = |n: Option<i64>| n.map(|n| Value::Text(n.to_string()));
    for (area, subject, x, y) in [
        (Area::Seed, "seed", a.seed, b.seed),
        (Area::Command, "exit-code", a.exit_code, b.exit_code),
    ] {
        if x != y {
            out.push(value_difference(area, subject, number(x), number(y)));
        }
    }
}

pub(super) fn env_vars(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    out: &mut Vec<Difference>,
) {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x != y {
            out.push(value_difference(
                Area::Env,
                k,
                x.map(|v| Value::Text(v.clone())),
                y.map(|v| Value::Text(v.clone())),
            ));
        }
    }
}

pub(super) fn lockfiles(a: &[LockfileEntry], b: &[LockfileEntry], out: &mut Vec<Difference>) {
    let ma: BTreeMap<&RelPath, &Digest> = a.iter().map(|e| (&e.path, &e.digest)).collect();
    let mb: BTreeMap<&RelPath, &Digest> = b.iter().map(|e| (&e.path, &e.digest)).collect();
    let paths: BTreeSet<&RelPath> = ma.keys().chain(mb.keys()).copied().collect();
    for p in paths {
        let (x, y) = (ma.get(p), mb.get(p));
        if x != y {
            out.push(value_difference(
                Area::Lockfile,
                p.as_str(),
                x.map(|d| Value::Digest(**d)),
                y.map(|d| Value::Digest(**d)),
            ));
        }
    }
}

/// The requirements and pins of the project's Python dependency files (the lock files `now`,
/// and `pyproject.toml` and `Pipfile` at `root`) that the installed packages do not meet, read
/// with each ecosystem's rules ([`crate::probe::depfiles`]); a file or line that cannot be read
/// is a note (observed only).
pub fn pins(
    root: &Path,
    now: &[LockfileEntry],
    installed: &Python,
) -> (Vec<Difference>, Vec<Note>) {
    use crate::probe::lockfiles::{self, Found};
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    // The lock files found now, and the files that state requirements without being recorded
    // (pyproject.toml, Pipfile).
    let mut files: Vec<Found> = now
        .iter()
        .filter_map(|e| {
            let kind = lockfiles::python_kind(&e.kind)?;
            Some(Found {
                path: e.path.clone(),
                kind,
            })
        })
        .collect();
    match lockfiles::find_requirement_sources(root) {
        Ok(found) => files.extend(found),
        Err(e) => notes.push(Note::Environment(e.to_string())),
    }
    for e in &files {
        match env::unmet_requirements(root, e, installed) {
            Ok((list, problems)) => {
                out.extend(list.into_iter().map(|u| {
                    Difference::new(Area::Lockfile, e.path.as_str(), Change::Changed).because(
                        Reason::Pin {
                            package: u.package,
                            pinned: u.wants,
                            installed: u.installed,
                        },
                    )
                }));
                notes.extend(problems.into_iter().map(Note::Environment));
            }
            Err(w) => notes.push(Note::Environment(w)),
        }
    }
    (out, notes)
}

/// Compare the host facts that matter for numerics: OS, architecture, C library, GPUs (model,
/// driver, CUDA), the PyTorch build, the instruction-set features numeric kernels dispatch on
/// (only those one side has) and the BLAS library of each numeric package; and the CPU model,
/// core count, affinity and CPU quota, marked [`Reason::MachineOnly`] (they differ between
/// many pairs of machines, and verify leaves them out; diff and rebuild name them).
pub fn host(a: &Host, b: &Host) -> Vec<Difference> {
    let mut out = Vec::new();
    // Each fact, read the same way from both sides, in report order.
    type Fact = fn(&Host) -> Option<String>;
    let facts: [(&str, Fact); 14] = [
        ("os", |h| h.os.clone()),
        ("arch", |h| h.arch.clone()),
        ("glibc", |h| h.glibc.clone()),
        ("gpu", |h| {
            (!h.gpus.is_empty()).then(|| {
                h.gpus
                    .iter()
                    .map(|g| g.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        }),
        ("gpu driver", |h| h.gpus.first()?.driver.clone()),
        ("gpu cuda", |h| h.gpus.first()?.cuda.clone()),
        ("torch", |h| h.torch.as_ref()?.version.clone()),
        ("torch cuda", |h| h.torch.as_ref()?.cuda.clone()),
        ("cudnn", |h| h.torch.as_ref()?.cudnn.clone()),
        ("nccl", |h| h.torch.as_ref()?.nccl.clone()),
        ("cpu", |h| h.cpu.clone()),
        ("cores", |h| h.cores.map(|c| c.to_string())),
        ("affinity", |h| h.affinity.map(|c| c.to_string())),
        ("cpu quota", |h| h.cpu_quota.clone()),
    ];
    // Affinity and quota were first recorded with the instruction sets: a lock from before
    // has neither, and says nothing about them.
    let recorded_cpus = a.affinity.is_some() && b.affinity.is_some();
    for (subject, fact) in facts {
        if matches!(subject, "affinity" | "cpu quota") && !recorded_cpus {
            continue;
        }
        let (l, n) = (fact(a), fact(b));
        if l != n {
            let d = value_difference(Area::Host, subject, l.map(Value::Text), n.map(Value::Text));
            out.push(
                if matches!(subject, "cpu" | "cores" | "affinity" | "cpu quota") {
                    d.because(Reason::MachineOnly)
                } else {
                    d
                },
            );
        }
    }
    // Instruction sets: only when both sides recorded them (a lock from before cairn recorded
    // them has none), and only the features one side lacks.
    if !a.cpu_features.is_empty() && !b.cpu_features.is_empty() {
        let only = |x: &Host, y: &Host| -> Option<Value> {
            let v: Vec<&str> = x
                .cpu_features
                .iter()
                .filter(|f| !y.cpu_features.contains(f))
                .map(String::as_str)
                .collect();
            (!v.is_empty()).then(|| Value::Text(v.join(" ")))
        };
        let (l, n) = (only(a, b), only(b, a));
        if l.is_some() || n.is_some() {
            out.push(
                Difference::new(Area::Host, "cpu features", Change::Changed)
                    .values(l, n)
                    .because(Reason::CpuFeatures),
            );
        }
    }
    // BLAS, per package.
    let by_package = |h: &Host| -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for x in &h.blas {
            m.entry(x.package.clone()).or_default().push(x.text());
        }
        m.into_iter().map(|(k, v)| (k, v.join(", "))).collect()
    };
    let (ba, bb) = (by_package(a), by_package(b));
    // A side that recorded no BLAS at all (an older lock, no Python) says nothing.
    if !ba.is_empty() && !bb.is_empty() {
        let packages: BTreeSet<&String> = ba.keys().chain(bb.keys()).collect();
        for p in packages {
            let (l, n) = (ba.get(p), bb.get(p));
            if l != n {
                out.push(
                    value_difference(
                        Area::Host,
                        &format!("blas {p}"),
                        l.map(|v| Value::Text(v.clone())),
                        n.map(|v| Value::Text(v.clone())),
                    )
                    .because(Reason::Blas),
                );
            }
        }
    }
    out
}
