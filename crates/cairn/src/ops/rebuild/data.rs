//! The data step: every dataset hashed where it is found, and linked into the rebuilt project.

use super::*;

/// Hash every dataset at its location, link those found outside the rebuilt project into it.
pub(super) fn check_data(
    project: &Project,
    lock: &Lock,
    plans: &[DataPlan],
    (into, rebuilt_root): (&Path, &Path),
    opts: &RebuildOptions,
    obs: &dyn Observer,
) -> Result<Step> {
    let mut step = Step::new(StepName::Data);
    if plans.is_empty() {
        step.status = Status::Skipped;
        step.notes.push("the lock records no dataset".into());
        return Ok(step);
    }
    let cache_dir = project.stat_cache_dir();
    let hopts = HashOptions {
        cache_dir: Some(&cache_dir),
        use_cache: !opts.no_cache,
        progress: obs.progress(),
        confine: None,
    };
    for (plan, d) in plans.iter().zip(&lock.data) {
        let inside = plan.rel.as_ref().map(|r| r.under(rebuilt_root));
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(g) = &plan.given {
            candidates.push(g.clone());
        } else {
            // The one read policy: what the checkout holds at the locked path is read only
            // when it stays inside the rebuilt directory (a committed link may lead anywhere).
            let root = canonical_or_lexical(into);
            candidates.extend(inside.clone().filter(|p| {
                std::fs::metadata(p).is_ok()
                    && p.canonicalize().is_ok_and(|real| real.starts_with(&root))
            }));
            candidates.extend(
                plan.original
                    .clone()
                    .filter(|p| std::fs::metadata(p).is_ok()),
            );
            candidates.extend(plan.configured.clone());
        }
        let mut chosen: Option<(PathBuf, digest::Hashed)> = None;
        for c in &candidates {
            let h = digest::hash_path_with(c, &hopts)?;
            let matches = h.digest == d.digest && h.kind == d.kind;
            if matches {
                chosen = Some((c.clone(), h));
                break;
            }
            if chosen.is_none() {
                chosen = Some((c.clone(), h));
            }
        }
        let Some((source, hashed)) = chosen else {
            return Err(RebuildError::MissingData {
                name: plan.name.clone(),
                looked: inside.iter().map(|p| p.display().to_string()).collect(),
            });
        };
        if hashed.digest == d.digest && hashed.kind == d.kind {
            step.actions.push(format!(
                "{}: {} match the lock at {}",
                d.name,
                crate::text::plural(hashed.files, "file", "files"),
                source.display()
            ));
        } else {
            let files = data_differences(
                project,
                (compare::Area::Data, &d.name),
                &d.digest,
                d.kind,
                &hashed,
            );
            if files.is_empty() {
                step.differ(
                    d.name.clone(),
                    Change::Changed,
                    Some(format!("{} differs from the lock", source.display())),
                );
            }
            step.differences.extend(files.iter().map(Difference::from));
        }
        // Place it where the command expects it.
        if let Some(target) = &inside {
            if canonical_or_lexical(&source) != canonical_or_lexical(target) {
                if !stays_inside(into, target) {
                    step.differ(
                        d.name.clone(),
                        Change::Unchecked,
                        Some(format!(
                            "{} leads outside the rebuilt directory (a link in the checkout); the dataset was not put there",
                            target.display()
                        )),
                    );
                    continue;
                }
                remove_path(target)?;
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).ctx("cannot create directory", parent)?;
                }
                let abs = canonical_or_lexical(&source);
                std::os::unix::fs::symlink(&abs, target).ctx("cannot create link", target)?;
                step.actions.push(format!(
                    "linked {} -> {}",
                    plan.rel.as_ref().map(RelPath::as_str).unwrap_or(""),
                    abs.display()
                ));
            }
        }
    }
    step.settle();
    Ok(step)
}

/// The files that differ between a locked digest and what was hashed, through the one
/// comparison ([`compare::content_differences`]).
pub(super) fn data_differences(
    project: &Project,
    subject: (compare::Area, &str),
    locked: &Digest,
    kind: Kind,
    now: &digest::Hashed,
) -> Vec<compare::Difference> {
    let locked = compare::Content {
        kind,
        digest: *locked,
        manifest: None,
    };
    let now = compare::Content {
        kind: now.kind,
        digest: now.digest,
        manifest: now.manifest.clone(),
    };
    compare::content_differences(project, subject, &locked, &now)
}

/// Is `target` inside `into` once the links among its existing parents are followed? A link
/// committed in the checkout (`data -> /mnt/shared`) must never make the rebuild remove or
/// create anything outside its own directory.
pub(super) fn stays_inside(into: &Path, target: &Path) -> bool {
    let mut dir = target.parent();
    while let Some(d) = dir {
        if let Ok(real) = d.canonicalize() {
            return real.starts_with(into);
        }
        dir = d.parent();
    }
    false
}

/// Remove a file, link or directory (never following a link).
pub(super) fn remove_path(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).ctx("cannot remove", p)?,
        Ok(_) => std::fs::remove_file(p).ctx("cannot remove", p)?,
        Err(_) => {}
    }
    Ok(())
}
