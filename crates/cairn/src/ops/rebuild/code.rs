//! The code step: the locked commit checked out, the change applied, submodules at their commits.

use super::*;

/// Apply the change, check out submodules, and compare the worktree's tree with the lock.
pub(super) fn materialise_code(
    project: &Project,
    repo: &git2::Repository,
    lock: &Lock,
    code: &lockfile::Code,
    sidecar: Option<&Path>,
    (into, fetch_allowed): (&Path, bool),
    step: &mut Step,
) -> Result<()> {
    if let Some(sidecar) = sidecar {
        let mut cmd = git_cmd(into);
        cmd.args(["apply", "--binary", "--whitespace=nowarn", "--"])
            .arg(sidecar);
        let line = command_line(&cmd);
        match run_capture(&mut cmd) {
            Ok(o) if o.status.success() => step.actions.push(line),
            Ok(o) => {
                step.status = Status::Failed;
                step.differ(
                    "code",
                    Change::Changed,
                    Some(format!(
                        "the recorded change does not apply: {}",
                        tail(&o, 5)
                    )),
                );
                return Ok(());
            }
            Err(e) => {
                return Err(Error::Io {
                    op: "cannot run git apply for",
                    path: sidecar.to_path_buf(),
                    source: e,
                }
                .into())
            }
        }
    }
    for sm in &code.submodules {
        let dir = sm.path.under(into);
        if !fetch_allowed {
            step.notes.push(format!(
                "submodule {} not checked out: it is fetched from the URL the repository names, which needs consent (--yes)",
                sm.path
            ));
            continue;
        }
        if !stays_inside(into, &dir) {
            step.notes.push(format!(
                "submodule {} leads outside the rebuilt directory (a link in the checkout); not checked out",
                sm.path
            ));
            continue;
        }
        // Submodule URLs come from the repository: no `file` transport (an embedded
        // repository's config), no transport helpers.
        let _ = run_capture(
            git_cmd_untrusted_remote(into)
                .args(["submodule", "update", "--init", "--quiet", "--"])
                .arg(sm.path.as_str()),
        );
        let checkout_cmd = || {
            let mut c = git_cmd_untrusted_remote(&dir);
            c.args(["checkout", "--quiet", "--detach", &sm.commit, "--"]);
            c
        };
        let checkout = run_capture(&mut checkout_cmd());
        let ok = matches!(&checkout, Ok(o) if o.status.success()) || {
            let _ = run_capture(git_cmd_untrusted_remote(&dir).args([
                "fetch",
                "--quiet",
                "--no-recurse-submodules",
                "--end-of-options",
                "origin",
                &sm.commit,
            ]));
            matches!(
                run_capture(&mut checkout_cmd()),
                Ok(o) if o.status.success()
            )
        };
        if ok {
            step.actions
                .push(format!("submodule {} at {}", sm.path, short(&sm.commit)));
        } else {
            step.notes.push(format!(
                "submodule {} could not be checked out at {}",
                sm.path,
                short(&sm.commit)
            ));
        }
        if sm.dirty {
            step.notes.push(format!(
                "submodule {} had uncommitted changes when the run was locked; they were not recorded and are not rebuilt",
                sm.path
            ));
        }
    }
    let rebuilt = git::discover(into)?;
    let excluder = excluder_for(project, lock);
    let current = git::working_entries(&rebuilt, &excluder)?;
    let locked = compare::CodeState {
        commit: Some(code.commit),
        tree: code.tree,
        change: code.change,
        entries: None,
    };
    let found = compare::code_against_entries(project, repo, &locked, &current, &excluder)?;
    if found.differences.is_empty() {
        step.actions.push(format!(
            "checked the worktree's git tree: {}",
            short(&code.tree)
        ));
    }
    step.differences
        .extend(found.differences.iter().map(Difference::from));
    step.notes.extend(found.notes.iter().map(|n| n.to_string()));
    Ok(())
}

/// Put the lock, its change sidecar and manifests, and cairn.toml (when the rebuilt project has
/// none) into the rebuilt project, so `cairn verify` works there. None of them is code.
pub(super) fn copy_sidecars(
    project: &Project,
    lock_path: &Path,
    lock: &Lock,
    repo_root: &Path,
    into: &Path,
    rebuilt_root: &Path,
) -> Result<()> {
    let place = |from: &Path| -> Option<PathBuf> {
        from.strip_prefix(&project.root)
            .map(|r| rebuilt_root.join(r))
            .or_else(|_| from.strip_prefix(repo_root).map(|r| into.join(r)))
            .ok()
    };
    let mut files = vec![lock_path.to_path_buf()];
    if let Some(change) = lock.code.as_ref().and_then(|c| c.change.as_ref()) {
        files.push(project.change_path(change));
    }
    let digests = lock.data.iter().map(|d| (d.kind, d.digest)).chain(
        lock.checkpoints
            .iter()
            .chain(&lock.outputs)
            .map(|a| (a.kind, a.digest)),
    );
    for (kind, d) in digests {
        if kind == Kind::Dir {
            files.push(project.manifest_path(&d));
        }
    }
    let config = project.root.join(crate::config::FILE_NAME);
    if config.is_file() && !rebuilt_root.join(crate::config::FILE_NAME).exists() {
        files.push(config);
    }
    for from in files {
        let Some(to) = place(&from).filter(|to| stays_inside(into, to)) else {
            continue;
        };
        // Never a link (a manifest that is a link to a file of the user's), never unbounded.
        let Ok(bytes) = crate::fs::read_bounded(&from, crate::fs::MAX_SIDECAR_BYTES) else {
            continue;
        };
        if let Some(parent) = to.parent() {
            crate::fs::create_dir_all(parent)?;
        }
        // The parents may have been links of the checkout: look again once they exist.
        if !stays_inside(into, &to) {
            continue;
        }
        // The checkout's own file there (a link to ~/.bashrc, say) is replaced, never written
        // through.
        crate::fs::atomic_write(&to, &bytes)?;
    }
    Ok(())
}
