//! `cairn rebuild`: materialise a locked run somewhere else, check every part against the lock,
//! and (with consent) run it again and compare what it produced.
//!
//! The steps, each reported as a [`Step`]:
//!
//! 1. **code**: `git worktree add --detach DIR <commit>` (fetching the commit from the recorded
//!    remote with the `git` command first when it is not in the repository, so the user's
//!    credential helpers apply), `git apply --binary` of the change sidecar, submodules checked
//!    out at their locked commits; then the worktree's git tree id (computed as `cairn verify`
//!    does, with the same exclusions) must be `code.tree`.
//! 2. **environment**: a venv in `DIR/.venv` made from an interpreter of the locked version, with
//!    every locked package installed exactly (`--no-deps`; registry packages pinned, VCS packages
//!    at their commit, archives by URL and hash, directories inside the repository from the
//!    rebuilt worktree), with `uv` when it is on `PATH`, else pip; then captured again and
//!    compared with the lock.
//! 3. **data**: every dataset hashed where `--data NAME=PATH` says, else at its locked path (in
//!    the rebuilt checkout or in the project the rebuild started from); a dataset found outside
//!    the rebuilt project is linked into it at its locked path.
//! 4. **run**: only with consent to run ([`Consent::Run`]): the locked argv with the locked
//!    determinism variables and seed, in the directory it ran in (`run.cwd`) inside the rebuilt
//!    worktree (never outside it), else the rebuilt project root; then the checkpoints must be
//!    bit-identical and the outputs bit-identical, or JSON files whose numbers agree within
//!    `rtol`/`atol`.
//!
//! Consent comes first. After the preflight, and before anything the lock chose is fetched,
//! built, installed or run, the whole [`RebuildPlan`] goes to [`Observer::consent`] once
//! (spec/security.md §8). Without consent only what runs nothing of the lock's happens: a
//! checkout of a commit the repository already has, the recorded change, the data check.
//!
//! The files: `preflight` (what can make the rebuild impossible), `code`, `environment`, `data`
//! and `run` (one per step), `plan` (options, plan and consent), `report` (steps and report),
//! `error`.
//!
//! Everything that can make a rebuild impossible (no interpreter of the locked version, a commit
//! that cannot be fetched, a missing change sidecar, missing data, a target directory that is
//! not empty) is checked **before** anything is created, and is an error ([`RebuildError`]).
//! An error after that removes what was made. A step that does not reproduce is not an error:
//! the report says what differs and the directory is kept for inspection.
//!
//! The library never prints: progress goes to an [`Observer`], the result is a [`Report`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::{
    command_line, git_cmd, git_cmd_untrusted_remote, on_path, run_capture, status_text, tail,
};

use serde::Serialize;

use crate::compare;
pub use crate::compare::Change;
use crate::content::digest::{self, Digest, HashOptions, Kind, Progress};
use crate::error::{Error, IoResultExt};
use crate::model::lockfile::{self, Location, Lock};
use crate::model::paths::{self, RelPath};
use crate::probe::env;
use crate::probe::git::{self, Excluder};
use crate::probe::python::{self, Source};
use crate::project::Project;

mod code;
mod data;
mod environment;
mod error;
mod plan;
mod preflight;
mod report;
mod run;

pub use error::*;
pub use plan::*;
pub use report::*;

use code::*;
use data::*;
use environment::*;
use preflight::*;
use run::*;

pub use crate::process::shell_quote;
pub(crate) use preflight::find_python_outside;
pub use preflight::{default_into, find_python};
pub use run::make_plan;

/// Run a tool whose failure stops the rebuild.
fn tool(what: &str, cmd: &mut Command) -> Result<std::process::Output> {
    let line = command_line(cmd);
    let out = run_capture(cmd).map_err(|e| RebuildError::Tool {
        what: what.into(),
        command: line.clone(),
        status: "could not start".into(),
        output: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(RebuildError::Tool {
            what: what.into(),
            command: line,
            status: status_text(out.status),
            output: tail(&out, 10),
        });
    }
    Ok(out)
}

fn commit_of(lock: &Lock) -> String {
    lock.code
        .as_ref()
        .map(|c| c.commit.to_string())
        .unwrap_or_default()
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

// ---------------------------------------------------------------------------------------------
// Cleanup of a half-made rebuild.

/// Removes the worktree and the directory when dropped while armed (an error part-way).
struct Cleanup {
    repo_root: PathBuf,
    into: PathBuf,
    existed: bool,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = run_capture(
            git_cmd(&self.repo_root)
                .args(["worktree", "remove", "--force"])
                .arg(&self.into),
        );
        let _ = std::fs::remove_dir_all(&self.into);
        let _ = run_capture(git_cmd(&self.repo_root).args(["worktree", "prune"]));
        if self.existed {
            let _ = std::fs::create_dir(&self.into);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The rebuild.

/// Where the project stands in its repository (empty at the root).
fn project_rel(project: &Project, repo_root: &Path) -> PathBuf {
    project
        .root
        .strip_prefix(repo_root)
        .unwrap_or(Path::new(""))
        .to_path_buf()
}

/// How the lock's command runs in the worktree `into` of `repo_root`, from `rebuilt_root`;
/// `None` when the lock records no command. Preflight makes it for the plan shown, and the
/// rebuild again once the worktree exists, to run only what was shown.
fn command_plan(
    project: &Project,
    lock: &Lock,
    (repo_root, into): (&Path, &Path),
    rebuilt_root: &Path,
    venv: Option<&Path>,
) -> Option<Plan> {
    // Where the command ran (recorded relative to the repository root), here and rebuilt;
    // the project root for a lock that does not say.
    let (original_cwd, cwd) = match &lock.run.cwd {
        Some(lockfile::RunDir::Root) => (repo_root.to_path_buf(), into.to_path_buf()),
        Some(lockfile::RunDir::Inside(rel)) => (rel.under(repo_root), rel.under(into)),
        Some(lockfile::RunDir::Outside) | None => {
            (project.root.clone(), rebuilt_root.to_path_buf())
        }
    };
    lock.run.command.as_ref().map(|argv| {
        make_plan(
            argv,
            lock,
            &project.config.env,
            (&original_cwd, repo_root, into),
            &cwd,
            venv,
        )
    })
}

/// Everything preflight found: what the rebuild needs, and the plan shown for consent.
struct Prepared {
    lock: Lock,
    code: lockfile::Code,
    repo_root: PathBuf,
    into: PathBuf,
    existed: bool,
    change_sidecar: Option<PathBuf>,
    interpreter: Option<python::Interpreter>,
    installer: Installer,
    /// `None` until the commit is in the repository (then the data are planned after the fetch).
    data_plans: Option<Vec<DataPlan>>,
    plan: RebuildPlan,
    /// The digest of the lock's canonical text (the marker of the worktrees cairn prepares).
    lock_digest: Digest,
    /// `into` is a worktree an earlier rebuild prepared for this lock, to be replaced once
    /// consent allows going further.
    replaces_prepared: bool,
}

/// Preflight: everything that can make the rebuild impossible, and the plan. Creates nothing,
/// fetches nothing, and runs nothing the lock or the checkout chose (only the interpreter
/// finder, on interpreters of this machine).
fn prepare(project: &Project, lock_path: &Path, opts: &RebuildOptions) -> Result<Prepared> {
    let lock = Lock::load(lock_path)?;
    let Some(code) = lock.code.clone() else {
        return Err(RebuildError::NoCode {
            lock: lock_path.to_path_buf(),
        });
    };
    let (Some(repo), Some(repo_root)) = (&project.repo, &project.repo_root) else {
        return Err(Error::NotARepo {
            path: project.cwd.clone(),
        }
        .into());
    };
    let into = opts
        .into
        .clone()
        .unwrap_or_else(|| default_into(repo_root, &lock.run.id));
    let lock_digest = Digest::of_bytes(lock.to_toml().as_bytes());
    let (existed, replaces_prepared) = match earlier_rebuild(&into, repo, &lock_digest) {
        Earlier::Nothing => (check_into(&into, repo_root)?, false),
        Earlier::Prepared => (false, true),
        Earlier::Other(why) => {
            return Err(RebuildError::IntoOtherWorktree {
                path: into,
                repo: repo_root.clone(),
                why,
            })
        }
    };
    // The directory as it will be once made (links among its parents resolved), so the plan
    // shows the paths the command will really have.
    let into = into
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| into.file_name().map(|n| p.join(n)))
        .unwrap_or(into);
    let change_sidecar = match &code.change {
        Some(change) => {
            let path = project.change_path(change);
            match project.read_change(change) {
                Ok(bytes) if &Digest::of_bytes(&bytes) == change => Some(path),
                Ok(_) => {
                    return Err(RebuildError::MissingChange {
                        path,
                        damaged: true,
                    })
                }
                Err(_) => {
                    return Err(RebuildError::MissingChange {
                        path,
                        damaged: false,
                    })
                }
            }
        }
        None => None,
    };
    let interpreter = match &lock.python {
        Some(py) => Some(find_python_outside(
            py,
            opts.python.as_deref(),
            opts.allow_other_python,
            repo_root,
        )?),
        None => None,
    };
    let installer = match opts.installer {
        Installer::Auto if uv_outside(repo_root).is_some() => Installer::Uv,
        Installer::Auto => Installer::Pip,
        other => other,
    };
    if installer == Installer::Uv && lock.python.is_some() && uv_outside(repo_root).is_none() {
        return Err(Error::Usage(
            "--installer uv: uv is not on PATH (outside the repository)".into(),
        )
        .into());
    }
    let present = git::has_commit(repo, &code.commit);
    if !present && code.remote.is_none() {
        return Err(RebuildError::UnknownCommit {
            commit: code.commit.to_string(),
            remote: None,
            fetch_error: None,
        });
    }
    let project_rel = project_rel(project, repo_root);
    let data_plans = if present {
        refuse_committed_venv(repo, &code.commit, &project_rel)?;
        Some(plan_data(project, repo, &lock, opts)?)
    } else {
        None
    };
    let rebuilt_root = into.join(&project_rel);
    let venv = into.join(".venv");
    let venv_used = lock.python.is_some().then_some(venv.as_path());
    let command = command_plan(project, &lock, (repo_root, &into), &rebuilt_root, venv_used);
    let plan = RebuildPlan {
        lock: lock_path.to_path_buf(),
        run: lock.run.id.clone(),
        into: into.clone(),
        commit: code.commit.to_string(),
        fetch_from: (!present).then(|| code.remote.clone()).flatten(),
        submodules: code
            .submodules
            .iter()
            .map(|s| match &s.url {
                Some(u) => format!("{} from {u}", s.path),
                None => s.path.to_string(),
            })
            .collect(),
        python: interpreter.as_ref().map(|i| PlannedPython {
            executable: i.executable.clone(),
            implementation: i.implementation.clone(),
            version: i.version.clone(),
        }),
        installer: lock.python.as_ref().map(|_| installer),
        registry_packages: lock.python.as_ref().map_or(0, |p| {
            p.packages
                .iter()
                .filter(|x| x.source == Source::Registry)
                .count()
        }),
        packages: lock
            .python
            .as_ref()
            .map(|p| planned_packages(p, repo_root, &into))
            .unwrap_or_default(),
        index_url: lock.python.as_ref().and_then(|p| p.index_url.clone()),
        extra_index_urls: lock
            .python
            .as_ref()
            .map(|p| p.extra_index_urls.clone())
            .unwrap_or_default(),
        command,
    };
    Ok(Prepared {
        lock,
        code,
        repo_root: repo_root.clone(),
        into,
        existed,
        change_sidecar,
        interpreter,
        installer,
        data_plans,
        plan,
        lock_digest,
        replaces_prepared,
    })
}

/// The plan of a rebuild, after the same preflight as [`rebuild`], without doing anything
/// (`cairn rebuild --dry-run`).
pub fn plan(project: &Project, lock_path: &Path, opts: &RebuildOptions) -> Result<RebuildPlan> {
    Ok(prepare(project, lock_path, opts)?.plan)
}

/// Rebuild the run recorded in `lock_path` (a lock of `project`).
///
/// After preflight, the observer is asked once ([`Observer::consent`]) with the whole plan.
/// Without consent only what runs nothing of the lock's is done: the checkout of a commit the
/// repository already has, the recorded change applied, and the data check; the rest is
/// reported as skipped.
pub fn rebuild(
    project: &Project,
    lock_path: &Path,
    opts: &RebuildOptions,
    obs: &dyn Observer,
) -> Result<Report> {
    let Prepared {
        lock,
        code,
        repo_root,
        into,
        existed,
        change_sidecar,
        interpreter,
        installer,
        data_plans,
        plan: rebuild_plan,
        lock_digest,
        replaces_prepared,
    } = prepare(project, lock_path, opts)?;
    let repo = project.repo.as_ref().expect("prepare checked it");
    let repo_root = &repo_root;
    let consent = obs.consent(&rebuild_plan);
    if replaces_prepared && consent == Consent::None {
        return Err(RebuildError::IntoPrepared {
            path: into,
            repo: repo_root.clone(),
        });
    }

    let fetched = match &rebuild_plan.fetch_from {
        Some(remote) if consent == Consent::None => {
            return Err(RebuildError::NeedsConsent {
                commit: code.commit.to_string(),
                remote: remote.clone(),
            })
        }
        Some(_) => ensure_commit(repo, repo_root, &code)?,
        None => None,
    };
    // A fetch adds objects: look at the repository afresh.
    let repo_now;
    let repo = if fetched.is_some() {
        repo_now = git::discover(repo_root)?;
        &repo_now
    } else {
        repo
    };
    let project_rel = project_rel(project, repo_root);
    let data_plans = match data_plans {
        Some(d) => d,
        None => {
            refuse_committed_venv(repo, &code.commit, &project_rel)?;
            plan_data(project, repo, &lock, opts)?
        }
    };

    // Materialise. From here on Ctrl-C does not end cairn half-way: the installers and git,
    // which get it too, stop; the rebuild notices, and what it made is removed (before the
    // run) or kept with a note saying how to remove it (after).
    let guard = crate::process::InterruptGuard::new();
    let stop = |step: StepName, into: &Path| -> Result<()> {
        if guard.interrupted() {
            return Err(RebuildError::Interrupted {
                step: step.as_str(),
                into: into.to_path_buf(),
            });
        }
        Ok(())
    };
    let mut cleanup = Cleanup {
        repo_root: repo_root.clone(),
        into: into.clone(),
        existed,
        armed: true,
    };

    obs.started(
        StepName::Code,
        &format!("git worktree at {}", short(&code.commit)),
    );
    let mut code_step = Step::new(StepName::Code);
    if let Some(f) = fetched {
        code_step.actions.push(f);
    }
    if replaces_prepared {
        // The worktree an earlier rebuild of this lock prepared (its marker says so, and that
        // nothing ran in it) is made again from the start, with the consent given now.
        tool(
            "removing the worktree prepared earlier",
            git_cmd(repo_root)
                .args(["worktree", "remove", "--force", "--end-of-options"])
                .arg(&into),
        )?;
        code_step.actions.push(format!(
            "git worktree remove --force {} (prepared by an earlier rebuild of this lock)",
            into.display()
        ));
    }
    tool(
        "creating the worktree",
        git_cmd(repo_root)
            .args(["worktree", "add", "--quiet", "--detach", "--end-of-options"])
            .arg(&into)
            .arg(code.commit),
    )
    .and_then(|o| stop(StepName::Code, &into).map(|_| o))
    .map_err(|e| interrupted_or(e, &guard, StepName::Code, &into))?;
    let into = into.canonicalize().ctx("cannot open directory", &into)?;
    cleanup.into = into.clone();
    mark_worktree(&into, repo, &lock_digest, false);
    let rebuilt_root = if project_rel.as_os_str().is_empty() {
        into.clone()
    } else {
        into.join(&project_rel)
    };
    code_step.actions.push(format!(
        "git worktree add --detach {} {}",
        into.display(),
        short(&code.commit)
    ));
    materialise_code(
        project,
        repo,
        &lock,
        &code,
        change_sidecar.as_deref(),
        (&into, consent >= Consent::Prepare),
        &mut code_step,
    )?;
    copy_sidecars(project, lock_path, &lock, repo_root, &into, &rebuilt_root)?;
    stop(StepName::Code, &into)?;
    code_step.settle();
    obs.finished(&code_step);

    let mut steps = vec![code_step];
    let venv = into.join(".venv");
    let env_step = match (&lock.python, &interpreter) {
        (Some(locked), Some(_)) if consent == Consent::None => {
            let mut s = Step::new(StepName::Environment);
            s.status = Status::Skipped;
            s.notes.push(format!(
                "not built: installing the lock's {} runs code the lock chose, so it needs consent (--yes, or --run)",
                crate::text::plural(locked.packages.len() as u64, "package", "packages")
            ));
            s
        }
        (Some(locked), Some(interp)) => {
            obs.started(
                StepName::Environment,
                &format!(
                    "venv with Python {} and {}",
                    locked.version,
                    crate::text::plural(locked.packages.len() as u64, "package", "packages")
                ),
            );
            build_environment(locked, interp, installer, &venv, repo_root, &into, &guard)
                .map_err(|e| interrupted_or(e, &guard, StepName::Environment, &into))?
        }
        _ => {
            let mut s = Step::new(StepName::Environment);
            s.status = Status::Skipped;
            s.notes.push(
                "the lock records no Python environment; the command runs in this one".into(),
            );
            s
        }
    };
    stop(StepName::Environment, &into)?;
    obs.finished(&env_step);
    let env_built = lock.python.is_some() && consent >= Consent::Prepare;
    steps.push(env_step);

    obs.started(
        StepName::Data,
        &crate::text::plural(data_plans.len() as u64, "dataset", "datasets"),
    );
    let data_step = check_data(
        project,
        &lock,
        &data_plans,
        (&into, &rebuilt_root),
        opts,
        obs,
    )?;
    stop(StepName::Data, &into)?;
    obs.finished(&data_step);
    steps.push(data_step);

    // Host drift, for the report: it can explain a run that does not reproduce.
    let mut host = Vec::new();
    if let Some(locked) = &lock.host {
        // Only a venv this rebuild made, with consent: its packages' .pth files run at start-up.
        let torch = (locked.torch.is_some() && env_built && venv.is_dir())
            .then(|| python::capture(&venv.join("bin/python")).ok())
            .flatten()
            .and_then(|e| e.torch);
        let mut now = env::host_with(torch, interpreter.as_ref().and_then(|i| i.libc.clone()));
        // The BLAS the rebuilt venv's packages ship, read from its files (nothing runs).
        if env_built {
            now.blas = crate::probe::host::blas(&venv_site_dirs(&venv), None);
        }
        host.extend(compare::host(locked, &now).iter().map(Difference::from));
    }

    // Run.
    let venv_used = lock.python.is_some().then(|| venv.clone());
    let plan = command_plan(
        project,
        &lock,
        (repo_root, &into),
        &rebuilt_root,
        venv_used.as_deref(),
    );
    let blocking: Vec<&str> = steps
        .iter()
        .filter(|s| match s.step {
            StepName::Code | StepName::Data => {
                matches!(s.status, Status::Differs | Status::Failed)
            }
            _ => s.status == Status::Failed,
        })
        .map(|s| s.step.as_str())
        .collect();
    let mut run_step = Step::new(StepName::Run);
    let mut ran = false;
    match &plan {
        None => {
            run_step.status = Status::Skipped;
            run_step
                .notes
                .push("the lock records no command; nothing to run".into());
        }
        Some(_) if !blocking.is_empty() => {
            run_step.status = Status::NotRun;
            run_step.notes.push(format!(
                "not run, because the {} did not reproduce",
                blocking.join(" and ")
            ));
        }
        Some(_) if lock.run.cwd == Some(lockfile::RunDir::Outside) => {
            run_step.status = Status::NotRun;
            run_step.notes.push(OUTSIDE_CWD.into());
        }
        Some(plan) if consent == Consent::Run => {
            // The command that runs is the one that was shown, or none.
            let shown = rebuild_plan.command.as_ref().map(|p| (&p.argv, &p.set_env));
            if let Err(why) = prepare_cwd(&into, &plan.cwd) {
                run_step.status = Status::NotRun;
                run_step.notes.push(why);
            } else if shown != Some((&plan.argv, &plan.set_env)) {
                run_step.status = Status::NotRun;
                run_step.notes.push(format!(
                    "not run: the command changed after it was shown; it would be: {}",
                    plan.shell_line()
                ));
            } else {
                obs.started(StepName::Run, "the locked command");
                ran = true;
                mark_worktree(&into, repo, &lock_digest, true);
                run_and_compare(
                    project,
                    &lock,
                    plan,
                    (&into, &rebuilt_root),
                    opts,
                    obs,
                    &mut run_step,
                )?;
            }
        }
        Some(plan) => {
            run_step.status = Status::NotRun;
            run_step.notes.push(format!(
                "not run without consent (--run); the command would be: {}",
                plan.shell_line()
            ));
        }
    }
    if guard.interrupted() {
        run_step.notes.push(format!(
            "interrupted (Ctrl-C): {} is left as it was, for inspection; remove it with `git worktree remove --force {}`",
            into.display(),
            shell_quote(&into.to_string_lossy())
        ));
    }
    run_step.settle();
    obs.finished(&run_step);
    steps.push(run_step);

    let run_differs = steps.last().is_some_and(|s| s.status == Status::Differs);
    let likely_causes = if run_differs {
        likely_causes(&steps, &host)
    } else {
        Vec::new()
    };
    cleanup.armed = false;
    let ok = steps
        .iter()
        .all(|s| !matches!(s.status, Status::Differs | Status::Failed));
    Ok(Report {
        lock: lock_path.to_path_buf(),
        run: lock.run.id.clone(),
        into,
        project: rebuilt_root,
        venv: venv_used.filter(|_| env_built),
        ok,
        ran,
        steps,
        command: plan,
        host,
        likely_causes,
    })
}

/// `e`, or [`RebuildError::Interrupted`] when Ctrl-C arrived (a child the signal ended fails
/// with its own words; the user pressed Ctrl-C).
fn interrupted_or(
    e: RebuildError,
    guard: &crate::process::InterruptGuard,
    step: StepName,
    into: &Path,
) -> RebuildError {
    if guard.interrupted() {
        RebuildError::Interrupted {
            step: step.as_str(),
            into: into.to_path_buf(),
        }
    } else {
        e
    }
}

/// The repository-relative paths a lock tracks by digest (not code), as verify excludes them.
fn excluder_for(project: &Project, lock: &Lock) -> Excluder {
    compare::excluder(project, &[lock])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::python::file_url_path;

    #[test]
    fn quoting_for_the_shell() {
        assert_eq!(shell_quote("train.py"), "train.py");
        assert_eq!(shell_quote("lr=3e-4"), "lr=3e-4");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn python_names() {
        for yes in ["python", "python3", "python3.11"] {
            assert!(is_python_name(yes), "{yes}");
        }
        for no in ["pythonw", "ipython", "torchrun", "python-config"] {
            assert!(!is_python_name(no), "{no}");
        }
    }

    #[test]
    fn json_numbers_within_tolerance() {
        let old: serde_json::Value =
            serde_json::from_str(r#"{"loss": 0.25, "acc": [0.5, 0.75], "name": "x"}"#).unwrap();
        let new: serde_json::Value =
            serde_json::from_str(r#"{"loss": 0.2500001, "acc": [0.5, 0.75], "name": "x"}"#)
                .unwrap();
        let mut out = Vec::new();
        let mut n = 0;
        compare_values("", &old, &new, 0.0, 0.0, &mut n, &mut out);
        assert_eq!(n, 3);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "loss");
        let mut out = Vec::new();
        compare_values("", &old, &new, 1e-5, 0.0, &mut n, &mut out);
        assert!(out.is_empty(), "{out:?}");
        let other: serde_json::Value =
            serde_json::from_str(r#"{"loss": 0.25, "acc": [0.5], "extra": 1}"#).unwrap();
        let mut out = Vec::new();
        compare_values("", &old, &other, 1.0, 1.0, &mut n, &mut out);
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["acc", "name", "extra"]);
    }

    #[test]
    fn file_urls_decode() {
        assert_eq!(
            file_url_path("file:///a/b%20c").unwrap(),
            PathBuf::from("/a/b c")
        );
        assert_eq!(file_url_path("https://x"), None);
    }

    #[test]
    fn default_target_is_next_to_the_repository() {
        assert_eq!(
            default_into(Path::new("/src/tinylm"), "75ead992828d6476c12d165ff42b3dbe"),
            PathBuf::from("/src/tinylm-rebuild-75ead992")
        );
    }
}
