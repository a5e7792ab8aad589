//! The code: two trees compared file by file, a locked side's files read from its commit and
//! change sidecar.

use std::collections::BTreeSet;

use super::*;
use crate::probe::git::{self, Entries, Excluder, PathChange};

/// The paths the locks track by digest (datasets, checkpoints, outputs), excluded from the code.
pub fn excluder(project: &Project, locks: &[&Lock]) -> Excluder {
    let mut tracked = BTreeSet::new();
    for lock in locks {
        for d in &lock.data {
            if let Location::Path(p) = &d.location {
                tracked.extend(project.repo_relative(p));
            }
        }
        for x in lock.checkpoints.iter().chain(&lock.outputs) {
            tracked.extend(project.repo_relative(&x.path));
        }
    }
    Excluder::new(tracked)
}

/// A locked side's code entries: the commit's files plus its change sidecar. `Err` with the
/// reason when the commit is not here.
fn locked_entries(
    project: &Project,
    repo: &git2::Repository,
    code: &CodeState,
    excluder: &Excluder,
    out: &mut Comparison,
) -> Result<std::result::Result<Entries, Reason>> {
    if let Some(e) = &code.entries {
        return Ok(Ok(e.clone()));
    }
    let Some(commit) = code
        .commit
        .and_then(|c| c.to_git())
        .filter(|c| repo.find_commit(*c).is_ok())
    else {
        return Ok(Err(Reason::CommitNotHere(code.commit.unwrap_or(code.tree))));
    };
    let mut entries = git::commit_entries(repo, commit, excluder)?;
    if let Some(change) = &code.change {
        let sidecar = project.change_path(change);
        match project.read_change(change) {
            Ok(patch) if &Digest::of_bytes(&patch) == change => {
                entries = git::apply_patch_entries(entries, &patch)?;
            }
            Ok(_) => out.differences.push(
                Difference::new(Area::Code, "code", Change::Changed)
                    .because(Reason::SidecarDamaged(sidecar)),
            ),
            Err(_) => out.notes.push(Note::SidecarMissing(sidecar)),
        }
    }
    Ok(Ok(entries))
}

/// The files that differ between two sets of code entries, as code differences.
pub fn code_files(locked: &Entries, now: &Entries) -> Vec<Difference> {
    git::diff_entries(locked, now)
        .into_iter()
        .map(|(path, change)| {
            let mut d = Difference::new(
                Area::Code,
                "code",
                match change {
                    PathChange::Added => Change::Added,
                    PathChange::Removed => Change::Removed,
                    PathChange::Modified => Change::Changed,
                    PathChange::ModeChanged => Change::ModeChanged,
                },
            );
            d.path = Some(path);
            d
        })
        .collect()
}

/// Compare the code of a locked side (`commit`, `tree`, `sidecar`) with worktree entries
/// already computed (`now`): the step rebuild runs after it materialised the code.
pub fn code_against_entries(
    project: &Project,
    repo: &git2::Repository,
    locked: &CodeState,
    now: &Entries,
    excluder: &Excluder,
) -> Result<Comparison> {
    let mut out = Comparison::default();
    let tree = ObjectId::from(git::tree_id(now)?);
    if tree == locked.tree {
        return Ok(out);
    }
    match locked_entries(project, repo, locked, excluder, &mut out)? {
        Ok(entries) => {
            let files = code_files(&entries, now);
            if files.is_empty() {
                out.differences.push(
                    Difference::new(Area::Code, "code", Change::Changed)
                        .values(Some(Value::Object(locked.tree)), Some(Value::Object(tree)))
                        .because(Reason::TreesOnly),
                );
            }
            out.differences.extend(files);
        }
        Err(reason) => out.differences.push(
            Difference::new(Area::Code, "code", Change::Changed)
                .values(Some(Value::Object(locked.tree)), Some(Value::Object(tree)))
                .because(reason),
        ),
    }
    Ok(out)
}

pub(super) fn code(
    project: &Project,
    a: &State,
    b: &State,
    tracked: &[&Lock],
    out: &mut Comparison,
) -> Result<()> {
    let (ca, cb) = match (&a.code, &b.code) {
        (None, None) => return Ok(()),
        (Some(ca), Some(cb)) => (ca, cb),
        (ca, cb) => {
            out.differences.push(value_difference(
                Area::Code,
                "code",
                ca.as_ref().and_then(|c| c.commit).map(Value::Object),
                cb.as_ref().and_then(|c| c.commit).map(Value::Object),
            ));
            return Ok(());
        }
    };
    let both_trees = (Some(Value::Object(ca.tree)), Some(Value::Object(cb.tree)));
    if ca.tree == cb.tree {
        if ca.commit != cb.commit {
            if let Some(locked) = ca.commit {
                out.notes.push(Note::SameTreeOtherCommit {
                    locked,
                    now: cb.commit,
                });
            }
        }
        for c in [ca, cb] {
            if let Some(change) = c.change {
                let sidecar = project.change_path(&change);
                if !sidecar.is_file() {
                    out.notes.push(Note::SidecarMissing(sidecar));
                }
            }
        }
        return Ok(());
    }
    let Some(repo) = &project.repo else {
        out.differences.push(
            Difference::new(Area::Code, "code", Change::Changed).values(both_trees.0, both_trees.1),
        );
        return Ok(());
    };
    let excluder = excluder(project, tracked);
    let ea = locked_entries(project, repo, ca, &excluder, out)?;
    let eb = locked_entries(project, repo, cb, &excluder, out)?;
    let (ea, eb) = match (ea, eb) {
        (Ok(ea), Ok(eb)) => (ea, eb),
        (Err(reason), _) | (_, Err(reason)) => {
            out.differences.push(
                Difference::new(Area::Code, "code", Change::Changed)
                    .values(ca.commit.map(Value::Object), cb.commit.map(Value::Object))
                    .because(reason),
            );
            return Ok(());
        }
    };
    let files = code_files(&ea, &eb);
    if files.is_empty() {
        out.differences.push(
            Difference::new(Area::Code, "code", Change::Changed)
                .values(both_trees.0, both_trees.1)
                .because(Reason::TreesOnly),
        );
    }
    out.differences.extend(files);
    Ok(())
}
