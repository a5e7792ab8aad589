//! The run step: the locked command run again, and its checkpoints and outputs compared.

use super::*;
use crate::process;

/// Is this program name a Python interpreter (`python`, `python3`, `python3.11`)?
pub(super) fn is_python_name(name: &str) -> bool {
    name.strip_prefix("python")
        .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// The command as the rebuild runs it: the locked argv, the locked determinism variables
/// (those set here but not in the lock removed), the seed, and the venv first on `PATH`.
///
/// A program named by a path (relative paths are taken from the project root, where `cairn
/// lock` is normally run) is mapped: one inside the original repository to the same file in
/// the rebuilt worktree; one outside it (the locking machine's venv) to the program of the
/// same name in the rebuilt venv, or to its `python` for an interpreter it lacks.
pub fn make_plan(
    argv: &[String],
    lock: &Lock,
    extra_env: &[String],
    (original_root, repo_root, into): (&Path, &Path, &Path),
    cwd: &Path,
    venv: Option<&Path>,
) -> Plan {
    let mut argv = argv.to_vec();
    let mut replaced_program = None;
    if let Some(program) = argv.first().cloned().filter(|p| p.contains('/')) {
        let abs = paths::absolutize(original_root, Path::new(&program));
        let name = abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mapped = match (abs.strip_prefix(repo_root), venv) {
            // A relative path inside the repository already names the rebuilt copy.
            (Ok(_), _) if Path::new(&program).is_relative() => None,
            (Ok(rel), _) => Some(into.join(rel)),
            (Err(_), Some(venv)) if venv.join("bin").join(&name).is_file() => {
                Some(venv.join("bin").join(&name))
            }
            (Err(_), Some(venv)) if is_python_name(&name) => Some(venv.join("bin/python")),
            _ => None,
        };
        if let Some(m) = mapped {
            argv[0] = m.to_string_lossy().into_owned();
            replaced_program = Some([program, argv[0].clone()]);
        }
    }
    let mut set_env = lock.run.env.clone();
    if let Some(seed) = lock.run.seed {
        set_env.insert("CAIRN_SEED".into(), seed.to_string());
    }
    if let Some(venv) = venv {
        set_env.insert("VIRTUAL_ENV".into(), venv.to_string_lossy().into_owned());
    }
    let mut unset_env: Vec<String> = env::determinism_env(extra_env, std::env::vars())
        .into_keys()
        .filter(|k| !lock.run.env.contains_key(k))
        .collect();
    if lock.run.seed.is_none() && std::env::var_os("CAIRN_SEED").is_some() {
        unset_env.push("CAIRN_SEED".into());
    }
    if venv.is_some() && std::env::var_os("PYTHONHOME").is_some() {
        unset_env.push("PYTHONHOME".into());
    }
    unset_env.sort();
    Plan {
        argv,
        cwd: cwd.to_path_buf(),
        set_env,
        path_prefix: venv.map(|v| v.join("bin")),
        unset_env,
        replaced_program,
    }
}

/// Run the plan, then compare its exit code, checkpoints and outputs with the lock.
pub(super) fn run_and_compare(
    project: &Project,
    lock: &Lock,
    plan: &Plan,
    (into, rebuilt_root): (&Path, &Path),
    opts: &RebuildOptions,
    observer: &dyn Observer,
    step: &mut Step,
) -> Result<()> {
    // Whatever the checkout holds at a checkpoint or output path is not what this run made.
    for a in lock.checkpoints.iter().chain(&lock.outputs) {
        let p = a.path.under(rebuilt_root);
        if std::fs::symlink_metadata(&p).is_ok() {
            if !stays_inside(into, &p) {
                step.status = Status::Failed;
                step.differ(
                    a.path.as_str(),
                    Change::Unchecked,
                    Some(format!(
                        "{} leads outside the rebuilt directory (a link in the checkout); not run",
                        p.display()
                    )),
                );
                return Ok(());
            }
            remove_path(&p)?;
            step.actions.push(format!(
                "removed {} from the checkout before the run",
                a.path
            ));
        }
    }
    if !make_output_dirs(lock, (into, rebuilt_root), step) {
        return Ok(());
    }
    let Some((program, args)) = plan.argv.split_first() else {
        step.status = Status::Skipped;
        return Ok(());
    };
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(&plan.cwd);
    for k in &plan.unset_env {
        cmd.env_remove(k);
    }
    cmd.envs(&plan.set_env);
    if let Some(prefix) = &plan.path_prefix {
        let mut parts = vec![prefix.clone()];
        parts.extend(process::path_dirs());
        if let Ok(joined) = std::env::join_paths(parts) {
            cmd.env("PATH", joined);
        }
    }
    // The command runs as a run of its own, as under `cairn lock -- COMMAND`: its `cairn
    // checkpoint add` calls go to an in-progress lock of this rebuild (outside the rebuilt
    // checkout, which the locked files may have filled with links), not to the locked
    // cairn.lock, and are not refused as adds outside a run.
    let scratch = tempfile::Builder::new()
        .prefix("cairn-rebuild-run-")
        .tempdir()
        .map_err(|source| Error::Io {
            op: "cannot create a temporary directory",
            path: std::env::temp_dir(),
            source,
        })?;
    let running = scratch.path().join("running.cairn.lock");
    let mut in_progress = lock.clone();
    in_progress.checkpoints.clear();
    crate::fs::atomic_write(&running, in_progress.to_toml().as_bytes())?;
    cmd.env(crate::ops::checkpoint::RUN_LOCK_ENV, &running)
        .env("CAIRN_RUN_ID", &lock.run.id);
    // Where the command's output goes is the caller's choice (the CLI keeps stdout for its
    // report).
    cmd.stdout(observer.command_stdout());
    let finished = match process::run_foreground(&mut cmd) {
        Ok(f) => f,
        Err(e) => {
            step.status = Status::Failed;
            step.differ(
                "command",
                Change::Missing,
                Some(format!("cannot run {program}: {e}")),
            );
            return Ok(());
        }
    };
    step.actions.push(plan.shell_line());
    let code = finished.code;
    if finished.interrupted {
        step.status = Status::Failed;
        step.notes.extend(finished.failure());
    }
    let locked_code = lock.run.exit_code.unwrap_or(0);
    if code != locked_code {
        step.differ(
            "exit-code",
            Change::Changed,
            Some(format!("{locked_code} -> {code}")),
        );
    }
    let hopts = HashOptions::default();
    for (what, list) in [("checkpoint", &lock.checkpoints), ("output", &lock.outputs)] {
        for a in list {
            let place = a.path.under(rebuilt_root);
            let hashed = match digest::hash_path_with(&place, &hopts) {
                Ok(h) => h,
                Err(Error::Missing { .. }) if a.deleted_by_run => {
                    step.actions.push(format!(
                        "{what} {} was deleted by the run, as its lock records (recorded {})",
                        a.path, a.digest
                    ));
                    continue;
                }
                Err(Error::Missing { .. }) => {
                    step.differ(
                        a.path.as_str(),
                        Change::Missing,
                        Some(format!("the run did not write this {what}")),
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if hashed.digest == a.digest && hashed.kind == a.kind {
                step.actions
                    .push(format!("{what} {} is bit-identical", a.path));
                continue;
            }
            if what == "output" && a.kind == Kind::File {
                match compare_json_output(project, a, &place, opts) {
                    JsonComparison::Within(n) => {
                        step.actions.push(format!(
                            "output {} differs in bytes, and its {} agree within rtol={} atol={}",
                            a.path,
                            crate::text::plural(n as u64, "number", "numbers"),
                            opts.rtol,
                            opts.atol
                        ));
                        continue;
                    }
                    JsonComparison::Differs(diffs) => {
                        for (key, detail) in diffs {
                            step.differences.push(Difference {
                                subject: a.path.to_string(),
                                path: Some(key),
                                change: Change::Changed,
                                detail: Some(detail),
                            });
                        }
                        continue;
                    }
                    JsonComparison::NoReference(why) => {
                        step.differ(
                            a.path.as_str(),
                            Change::Changed,
                            Some(format!("differs from the lock ({why})")),
                        );
                        continue;
                    }
                    JsonComparison::NotJson => {}
                }
            }
            let area = match what {
                "checkpoint" => compare::Area::Checkpoint,
                _ => compare::Area::Output,
            };
            let files =
                data_differences(project, (area, a.path.as_str()), &a.digest, a.kind, &hashed);
            for d in &files {
                let mut d = Difference::from(d);
                if d.path.is_none() {
                    d.detail
                        .get_or_insert_with(|| format!("{what} is not bit-identical"));
                }
                step.differences.push(d);
            }
        }
    }
    Ok(())
}

/// Create, inside the rebuilt worktree, the parent directories of every locked checkpoint and
/// output that are not there: a run that writes `ckpt/model.bin` into a git-ignored `ckpt/`
/// that existed on the original machine needs it. Nothing else is created, and nothing outside
/// `into`: the directories are made below `into` without following a link (a committed link
/// in the way stops the run). Returns `false` when the run must not go ahead.
pub(super) fn make_output_dirs(
    lock: &Lock,
    (into, rebuilt_root): (&Path, &Path),
    step: &mut Step,
) -> bool {
    let Ok(project_in) = rebuilt_root.strip_prefix(into) else {
        return true;
    };
    let dirs: BTreeSet<PathBuf> = lock
        .checkpoints
        .iter()
        .chain(&lock.outputs)
        .filter_map(|a| Path::new(a.path.as_str()).parent().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    for dir in dirs {
        let below = project_in.join(&dir);
        // There already, and inside the worktree (a committed link that stays inside is fine).
        let full = into.join(&below);
        if full.is_dir() && full.canonicalize().is_ok_and(|r| r.starts_with(into)) {
            continue;
        }
        if let Err(e) = crate::fs::create_dir_all_in(into, &below) {
            step.status = Status::Failed;
            let mut why = e.to_string();
            if let Some(source) = std::error::Error::source(&e) {
                why.push_str(&format!(": {source}"));
            }
            step.differ(
                dir.to_string_lossy().as_ref(),
                Change::Unchecked,
                Some(format!(
                    "the directory for a locked checkpoint or output cannot be made inside the rebuilt worktree ({why}); not run"
                )),
            );
            return false;
        }
        step.actions.push(format!(
            "created {}/ for the run's checkpoints and outputs",
            dir.display()
        ));
    }
    true
}

/// How a JSON output compares with the locked one.
#[derive(Debug, PartialEq)]
pub(super) enum JsonComparison {
    /// Not JSON (or not both JSON): compare bytes only.
    NotJson,
    /// The locked file is not available to compare values with.
    NoReference(String),
    /// Same structure, every number within tolerance (how many numbers).
    Within(usize),
    /// What differs: (JSON path, detail).
    Differs(Vec<(String, String)>),
}

pub(super) fn compare_json_output(
    project: &Project,
    a: &lockfile::Artifact,
    now_path: &Path,
    opts: &RebuildOptions,
) -> JsonComparison {
    let Ok(now_text) = std::fs::read(now_path) else {
        return JsonComparison::NotJson;
    };
    let Ok(now) = serde_json::from_slice::<serde_json::Value>(&now_text) else {
        return JsonComparison::NotJson;
    };
    // The lock has only the digest: the locked values come from the original file, when it is
    // still the locked one.
    let original = a.path.under(&project.root);
    let old_text = match std::fs::read(&original) {
        Ok(t) if Digest::of_bytes(&t) == a.digest => t,
        Ok(_) => {
            return JsonComparison::NoReference(format!(
                "{} has changed since the lock, so the locked values are unknown",
                original.display()
            ))
        }
        Err(_) => {
            return JsonComparison::NoReference(format!(
                "{} is not here to compare values with; the lock records only its digest",
                original.display()
            ))
        }
    };
    let Ok(old) = serde_json::from_slice::<serde_json::Value>(&old_text) else {
        return JsonComparison::NotJson;
    };
    let mut diffs = Vec::new();
    let mut numbers = 0;
    compare_values(
        "",
        &old,
        &now,
        opts.rtol,
        opts.atol,
        &mut numbers,
        &mut diffs,
    );
    if diffs.is_empty() {
        JsonComparison::Within(numbers)
    } else {
        JsonComparison::Differs(diffs)
    }
}

/// Compare two JSON values leaf by leaf: numbers within `atol + rtol * |locked|`, everything
/// else exactly. Paths are `/`-separated keys and indices.
pub(super) fn compare_values(
    at: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    rtol: f64,
    atol: f64,
    numbers: &mut usize,
    out: &mut Vec<(String, String)>,
) {
    use serde_json::Value;
    let key = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}/{k}")
        }
    };
    match (old, new) {
        (Value::Number(a), Value::Number(b)) => {
            *numbers += 1;
            let (x, y) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            let close = x == y || (x - y).abs() <= atol + rtol * x.abs();
            if !close {
                out.push((
                    at.to_string(),
                    format!(
                        "{a} -> {b} (difference {:e}, allowed {:e})",
                        (x - y).abs(),
                        atol + rtol * x.abs()
                    ),
                ));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => compare_values(&key(k), va, vb, rtol, atol, numbers, out),
                    None => out.push((key(k), "missing from the rebuilt output".into())),
                }
            }
            for k in b.keys() {
                if !a.contains_key(k) {
                    out.push((key(k), "not in the locked output".into()));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                compare_values(&key(&i.to_string()), va, vb, rtol, atol, numbers, out);
            }
        }
        _ if old == new => {}
        _ => out.push((at.to_string(), format!("{old} -> {new}"))),
    }
}
