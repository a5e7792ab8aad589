//! The environment step: a venv with every locked package installed exactly.

use super::*;
use crate::text::plural;

use crate::probe::python::file_url_path;

pub(super) fn canonical_or_lexical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| paths::normalize(p))
}

/// The `site-packages` directories of a venv (`lib/python3.X/site-packages`), found by listing
/// it: nothing in the venv runs.
pub(super) fn venv_site_dirs(venv: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
                .map(|e| e.path().join("site-packages"))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The installer options that make registry packages come from the lock's package indexes:
/// `--index-url=URL` when the lock records a main index other than the one this machine's
/// installer is configured with, `--extra-index-url=URL` for each recorded further index it is
/// not configured with. An index this machine is configured with is left to its configuration,
/// which may hold the credentials the lock does not.
pub(super) fn index_args(locked: &lockfile::Python, installer: Installer) -> Vec<String> {
    let here = crate::probe::index::probe(None, installer == Installer::Uv);
    let mut out = Vec::new();
    if let Some(url) = &locked.index_url {
        if here.index_url.as_ref() != Some(url) {
            out.push(format!("--index-url={url}"));
        }
    }
    for url in &locked.extra_index_urls {
        if !here.extra.contains(url) && here.index_url.as_ref() != Some(url) {
            out.push(format!("--extra-index-url={url}"));
        }
    }
    out
}

/// How one locked package is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Requirement {
    /// A requirement string (`six==1.16.0`, `pkg @ git+https://...@abc`).
    Spec(String),
    /// `-e PATH`.
    Editable(PathBuf),
    /// A local directory, not editable.
    Dir(PathBuf),
}

impl Requirement {
    /// As it is shown: `-e PATH`, `PATH` or the requirement string.
    fn words(&self) -> String {
        match self {
            Requirement::Spec(s) => s.clone(),
            Requirement::Editable(p) => format!("-e {}", p.display()),
            Requirement::Dir(p) => p.display().to_string(),
        }
    }
}

/// Add requirements to an install command: editables as `--editable=PATH` options, then `--`,
/// then every other requirement, so nothing from a lock is ever read as an option.
fn add_requirements<'a>(cmd: &mut Command, reqs: impl IntoIterator<Item = &'a Requirement>) {
    let reqs: Vec<&Requirement> = reqs.into_iter().collect();
    for r in &reqs {
        if let Requirement::Editable(p) = r {
            let mut arg = std::ffi::OsString::from("--editable=");
            arg.push(p);
            cmd.arg(arg);
        }
    }
    cmd.arg("--");
    for r in &reqs {
        match r {
            Requirement::Spec(s) => {
                cmd.arg(s);
            }
            Requirement::Dir(p) => {
                cmd.arg(p);
            }
            Requirement::Editable(_) => {}
        }
    }
}

/// The packages of a lock that are not pinned downloads from the package index, for the plan.
pub(super) fn planned_packages(
    locked: &lockfile::Python,
    repo_root: &Path,
    into: &Path,
) -> Vec<PlannedPackage> {
    let mut out = Vec::new();
    for p in &locked.packages {
        let (source, location, outside) = match &p.source {
            Source::Registry => continue,
            Source::Vcs { url, commit } => ("vcs", format!("{url}@{commit}"), false),
            Source::Archive { url, .. } => (
                "archive",
                url.clone(),
                file_url_path(url)
                    .is_some_and(|f| !canonical_or_lexical(&f).starts_with(repo_root)),
            ),
            Source::Directory { .. } => {
                let (req, note) = requirement(p, repo_root, into);
                let path = match req {
                    Requirement::Editable(p) | Requirement::Dir(p) => p.display().to_string(),
                    Requirement::Spec(s) => s,
                };
                ("directory", path, note.is_some())
            }
        };
        out.push(PlannedPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            source,
            location,
            outside,
        });
    }
    out
}

/// The requirement that installs a locked package exactly, and a note when it cannot be
/// exact. Directories inside the locked repository come from the rebuilt worktree.
pub(super) fn requirement(
    p: &lockfile::PyPackage,
    repo_root: &Path,
    into: &Path,
) -> (Requirement, Option<String>) {
    match &p.source {
        Source::Registry => (
            Requirement::Spec(format!("{}=={}", p.name, p.version)),
            None,
        ),
        Source::Vcs { url, commit } => (
            Requirement::Spec(format!("{} @ {url}@{commit}", p.name)),
            None,
        ),
        Source::Archive { url, hash } => {
            let spec = match hash {
                Some(h) => format!("{} @ {url}#{h}", p.name),
                None => format!("{} @ {url}", p.name),
            };
            (Requirement::Spec(spec), None)
        }
        Source::Directory {
            url,
            editable,
            change,
            ..
        } => {
            let path = file_url_path(url).unwrap_or_else(|| PathBuf::from(url));
            let abs = canonical_or_lexical(&path);
            let (path, note) = match abs.strip_prefix(repo_root) {
                Ok(rel) => (into.join(rel), None),
                Err(_) => (
                    path.clone(),
                    Some(format!(
                        "{} is installed from {}, outside the repository: its content is whatever is there now{}",
                        p.name,
                        path.display(),
                        if change.is_some() {
                            " (it had an uncommitted change when the run was locked, which the lock records only by digest)"
                        } else {
                            ""
                        }
                    )),
                ),
            };
            let req = if *editable {
                Requirement::Editable(path)
            } else {
                Requirement::Dir(path)
            };
            (req, note)
        }
    }
}

/// An installer command that can only act on the venv: pip runs from the venv's interpreter,
/// isolated (`-I`: no current directory or `PYTHON*` variables on its path) and with
/// `--require-virtualenv`; uv gets the venv's interpreter and no configuration files (a checkout
/// can ship `uv.toml`). Both run in the venv directory, and any git they start is hardened.
fn installer_command(installer: Installer, uv: &Path, venv_python: &Path, verb: &str) -> Command {
    let venv_dir = venv_python
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"));
    let mut c = match installer {
        Installer::Uv => {
            let mut c = Command::new(uv);
            c.args(["pip", verb, "--no-config", "--python"])
                .arg(venv_python);
            c
        }
        _ => {
            let mut c = Command::new(venv_python);
            c.args([
                "-I",
                "-m",
                "pip",
                verb,
                "--require-virtualenv",
                "--disable-pip-version-check",
                "--quiet",
            ]);
            c
        }
    };
    c.current_dir(venv_dir);
    crate::process::harden_git_env(&mut c);
    c
}

pub(super) fn install_command(installer: Installer, uv: &Path, venv_python: &Path) -> Command {
    let mut c = installer_command(installer, uv, venv_python, "install");
    c.arg("--no-deps");
    if installer != Installer::Uv {
        c.arg("--no-input");
    }
    c
}

pub(super) fn uninstall_command(installer: Installer, uv: &Path, venv_python: &Path) -> Command {
    let mut c = installer_command(installer, uv, venv_python, "uninstall");
    if installer != Installer::Uv {
        c.arg("--yes");
    }
    c
}

/// Check that `venv_python` is the interpreter of the venv at `venv` (its `sys.prefix` is the
/// venv, and not its base): whatever the base interpreter did when asked to make the venv,
/// nothing is installed into or removed from another Python.
pub(super) fn check_venv(venv: &Path, venv_python: &Path) -> Result<()> {
    let mut cmd = Command::new(venv_python);
    cmd.args([
        "-I",
        "-c",
        "import sys; sys.stdout.write(sys.prefix + '\\0' + sys.base_prefix)",
    ])
    .current_dir(venv);
    let out = tool("checking the new venv", &mut cmd)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (prefix, base) = text.split_once('\0').unwrap_or((&text, ""));
    let same = |a: &Path, b: &Path| canonical_or_lexical(a) == canonical_or_lexical(b);
    if !same(Path::new(prefix), venv) || same(Path::new(base), venv) {
        return Err(RebuildError::Tool {
            what: "checking the new venv".into(),
            command: command_line(&cmd),
            status: "found another Python".into(),
            output: format!(
                "its interpreter's prefix is {prefix:?}, not the venv {} (the base interpreter did not make a venv); nothing was installed",
                venv.display()
            ),
        });
    }
    Ok(())
}

/// Make the venv, install every locked package exactly, remove what the lock does not have,
/// and compare the result with the lock.
pub(super) fn build_environment(
    locked: &lockfile::Python,
    interp: &python::Interpreter,
    installer: Installer,
    venv: &Path,
    repo_root: &Path,
    into: &Path,
    guard: &crate::process::InterruptGuard,
) -> Result<Step> {
    let interrupted = || -> Result<()> {
        if guard.interrupted() {
            return Err(RebuildError::Interrupted {
                step: StepName::Environment.as_str(),
                into: into.to_path_buf(),
            });
        }
        Ok(())
    };
    let mut step = Step::new(StepName::Environment);
    if std::fs::symlink_metadata(venv).is_ok() {
        // The commit was checked for one; this is whatever appeared since: never use it.
        return Err(RebuildError::CommittedVenv {
            path: venv.display().to_string(),
        });
    }
    // uv from this machine, never from the repository (a checkout can ship `.venv/bin/uv`).
    let uv = uv_outside(repo_root).unwrap_or_else(|| PathBuf::from("uv"));
    let mut create = match installer {
        Installer::Uv => {
            let mut c = Command::new(&uv);
            c.args(["venv", "--quiet", "--no-config", "--python"])
                .arg(&interp.executable)
                .arg("--")
                .arg(venv);
            c
        }
        _ => {
            let mut c = Command::new(&interp.executable);
            c.args(["-I", "-m", "venv", "--"]).arg(venv);
            c
        }
    };
    create.current_dir("/");
    let line = command_line(&create);
    tool("creating the venv", &mut create)?;
    check_venv(venv, &venv.join("bin/python"))?;
    // The venv lives inside the worktree: keep it out of git, as uv and Python 3.13 do.
    let ignore = venv.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "*\n").ctx("cannot write", &ignore)?;
    }
    step.actions.push(format!(
        "{line} (Python {} {})",
        interp.implementation, interp.version
    ));
    if interp.version != locked.version || interp.implementation != locked.implementation {
        step.differ(
            "python",
            Change::Changed,
            Some(format!(
                "{} {} -> {} {} (--allow-other-python)",
                locked.implementation, locked.version, interp.implementation, interp.version
            )),
        );
    }
    let venv_python = venv.join("bin/python");
    // `uv venv` makes an empty venv; Python's venv brings pip (and setuptools): only that one
    // has packages worth reading before installing.
    let present = match installer {
        Installer::Uv => None,
        _ => Some(python::capture(&venv_python)?),
    };
    let have: BTreeMap<&str, &lockfile::PyPackage> = present
        .iter()
        .flat_map(|e| &e.packages)
        .map(|p| (p.package.name.as_str(), &p.package))
        .collect();

    // What to install: everything locked, except what the new venv already has exactly.
    let mut reqs: Vec<(String, Requirement)> = Vec::new();
    for p in &locked.packages {
        if let Some(h) = have.get(p.name.as_str()) {
            if h.version == p.version
                && h.source == Source::Registry
                && p.source == Source::Registry
            {
                continue;
            }
        }
        let (req, note) = requirement(p, repo_root, into);
        step.notes.extend(note);
        reqs.push((p.name.clone(), req));
    }
    if !locked.conda.is_empty() {
        step.differ(
            "conda",
            Change::Unchecked,
            Some(format!(
                "the lock records {}; rebuild makes a venv and does not install conda packages",
                plural(locked.conda.len() as u64, "conda package", "conda packages")
            )),
        );
    }
    let tool_name = match installer {
        Installer::Uv => "uv pip",
        _ => "pip",
    };
    let index_args = index_args(locked, installer);
    if !reqs.is_empty() {
        let mut cmd = install_command(installer, &uv, &venv_python);
        cmd.args(&index_args);
        add_requirements(&mut cmd, reqs.iter().map(|(_, r)| r));
        let out = run_capture(&mut cmd);
        let from = if index_args.is_empty() {
            String::new()
        } else {
            format!(" ({})", index_args.join(" "))
        };
        match out {
            Ok(o) if o.status.success() => step.actions.push(format!(
                "{tool_name} install --no-deps{from}: {}",
                plural(reqs.len() as u64, "package", "packages")
            )),
            _ => {
                // Ctrl-C ended the installer: stop here, not one package at a time.
                interrupted()?;
                // Find out which ones cannot be installed, one by one.
                let mut failed = 0;
                for (name, r) in &reqs {
                    interrupted()?;
                    let mut one = install_command(installer, &uv, &venv_python);
                    one.args(&index_args);
                    add_requirements(&mut one, [r]);
                    match run_capture(&mut one) {
                        Ok(o) if o.status.success() => {}
                        Ok(o) => {
                            failed += 1;
                            step.differ(
                                name.clone(),
                                Change::Missing,
                                Some(format!("`{}` failed: {}", r.words(), tail(&o, 3))),
                            );
                        }
                        Err(e) => {
                            return Err(RebuildError::Tool {
                                what: "installing packages".into(),
                                command: command_line(&one),
                                status: "could not start".into(),
                                output: e.to_string(),
                            })
                        }
                    }
                }
                step.actions.push(format!(
                    "{tool_name} install --no-deps: {} of {} installed",
                    reqs.len() - failed,
                    plural(reqs.len() as u64, "package", "packages")
                ));
                if failed > 0 {
                    step.status = Status::Failed;
                }
            }
        }
    }

    // Remove what the new venv brought along and the lock does not have (pip, setuptools).
    let after = python::capture(&venv_python)?;
    let locked_names: BTreeSet<&str> = locked.packages.iter().map(|p| p.name.as_str()).collect();
    let mut extra: Vec<String> = after
        .packages
        .iter()
        .map(|p| p.package.name.clone())
        .filter(|n| !locked_names.contains(n.as_str()))
        .collect();
    // pip last: it is the one doing the uninstalling.
    extra.sort_by_key(|n| n == "pip");
    if !extra.is_empty() {
        let mut cmd = uninstall_command(installer, &uv, &venv_python);
        cmd.arg("--").args(&extra);
        match run_capture(&mut cmd) {
            Ok(o) if o.status.success() => step.actions.push(format!(
                "uninstalled {} (not in the lock)",
                extra.join(", ")
            )),
            Ok(o) => step.notes.push(format!(
                "could not uninstall {}: {}",
                extra.join(", "),
                tail(&o, 3)
            )),
            Err(e) => step
                .notes
                .push(format!("could not uninstall {}: {e}", extra.join(", "))),
        }
    }

    // Compare with the lock. A directory package from the rebuilt worktree is the locked one
    // when the code step says the worktree is the locked tree: its URL (and an editable
    // install's files, which name the directory) differ only by the worktree's location.
    // Unchanged since `after` unless something was uninstalled.
    let now = if extra.is_empty() {
        after
    } else {
        python::capture(&venv_python)?
    };
    let mut table = env::python_table(&now);
    for p in &mut table.packages {
        let Source::Directory { url, .. } = &p.source else {
            continue;
        };
        let Some(path) = file_url_path(url) else {
            continue;
        };
        if !canonical_or_lexical(&path).starts_with(into) {
            continue;
        }
        if let Some(l) = locked.packages.iter().find(|l| l.name == p.name) {
            if matches!(l.source, Source::Directory { .. }) {
                p.source = l.source.clone();
                p.fingerprint = l.fingerprint;
            }
        }
    }
    for d in compare::python(locked, &table, None) {
        // The interpreter, or a package that failed to install, is already named.
        if step.differences.iter().any(|x| x.subject == d.subject) {
            continue;
        }
        step.differences.push(Difference::from(&d));
    }
    step.actions.push(format!(
        "captured the venv: {}",
        plural(table.packages.len() as u64, "package", "packages")
    ));
    step.settle();
    Ok(step)
}
