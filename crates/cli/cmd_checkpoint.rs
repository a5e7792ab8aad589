//! `cairn checkpoint add`: record a checkpoint while training runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};

use cairn::ops::checkpoint::{self, AddOptions, ParentChoice};

use crate::output::Printer;

/// Record checkpoints as training writes them.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    Add(AddArgs),
    List(ListArgs),
}

/// List a run's checkpoints, with those added since it started: while `cairn lock -- COMMAND`
/// runs, every writer's journal is merged in (ranks on many hosts included), as the final lock
/// will have them.
///
/// Which run: --lock; else, inside a run, that run (CAIRN_RUN_LOCK); else every run going on
/// in this project (`.cairn/cache/running/`); else cairn.lock. One line per checkpoint: step,
/// path, short digest, parent, metrics. Read-only: it writes nothing and runs nothing.
#[derive(clap::Args)]
struct ListArgs {
    /// Output format: `human` or `json` (one object per lock: lock, run, running, checkpoints,
    /// notes).
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    format: ListFormat,

    #[command(flatten)]
    lock: crate::LockArg,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ListFormat {
    Human,
    Json,
}

/// Add a checkpoint (file or directory) to the current run's lock, with its digest, step,
/// parent and metrics.
///
/// Inside `cairn lock -- COMMAND` it goes to that run's in-progress lock (CAIRN_RUN_LOCK), and
/// into cairn.lock when the command ends. Outside a run it would rewrite a finished (usually
/// committed) lock, so it is refused unless you pass --amend; then it goes to cairn.lock (or
/// --lock). Safe to call from
/// several processes at once (one per GPU rank, on one host or many sharing a filesystem):
/// inside a run each add appends one record to a journal of its own process beside the run's
/// lock, with no file lock, and a writer killed mid-run loses none of the adds it completed
/// (they are synced when `cairn lock` writes the final lock). With --amend each add takes a file
/// lock and rewrites the lock atomically, so a crash leaves a valid lock.
///
/// Each add prints one short line on stderr (the path, the step and a short digest); --quiet
/// prints nothing.
#[derive(clap::Args)]
#[command(after_long_help = CHECKPOINT_EXAMPLE)]
struct AddArgs {
    /// The checkpoint file or directory (inside the project).
    path: PathBuf,

    /// The training step it was taken at.
    #[arg(long, value_name = "N")]
    step: Option<u64>,

    /// What it was trained from: a checkpoint file or directory (relative to the current
    /// directory), or a digest (blake3:...) [default: the previous checkpoint of this run].
    /// A checkpoint of this run is recorded by path; any other file is hashed and recorded by
    /// its digest, with the run of the lock that records it (found among the repository's
    /// locks, as `cairn lineage` finds them). A file no lock records is kept as an untracked
    /// parent; a path that does not exist is an error.
    #[arg(long, value_name = "PATH|DIGEST", conflicts_with = "no_parent")]
    parent: Option<String>,

    /// Record no parent.
    #[arg(long)]
    no_parent: bool,

    /// A metric at this checkpoint, NAME=VALUE (repeatable).
    #[arg(long = "metric", value_name = "NAME=VALUE")]
    metrics: Vec<String>,

    /// Add to a finished lock (cairn.lock, or --lock) when no `cairn lock -- COMMAND` is
    /// running: it rewrites that lock.
    #[arg(long)]
    amend: bool,

    /// Read the checkpoint even if the stat cache knows it.
    #[arg(long)]
    no_cache: bool,

    #[command(flatten)]
    lock: crate::LockArg,
}

const CHECKPOINT_EXAMPLE: &str = "\
Example, from a training loop:
  subprocess.run([\"cairn\", \"checkpoint\", \"add\", path, \"--step\", str(step),
                  \"--metric\", f\"loss={loss}\"], check=True)";

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let a = match &args.command {
        Sub::Add(a) => a,
        Sub::List(l) => return list(l, out),
    };
    let cwd = std::env::current_dir()?;
    let project = crate::open_project(&cwd, false, out)?;
    let lock_path = match &a.lock.lock {
        Some(p) => Some(project.lock_path(Some(p))?),
        None => None,
    };
    let lock_path = checkpoint::target_lock(&project, lock_path)?;
    checkpoint::refuse_outside_run(&lock_path, a.amend)?;
    let mut metrics = BTreeMap::new();
    for m in &a.metrics {
        let Some((k, v)) = m.split_once('=') else {
            bail!("--metric takes NAME=VALUE, got {m:?}");
        };
        let Ok(v) = v.trim().parse::<f64>() else {
            bail!("--metric {k}: {v:?} is not a number");
        };
        metrics.insert(k.trim().to_string(), v);
    }
    let parent = match (&a.parent, a.no_parent) {
        (_, true) => ParentChoice::None,
        (Some(p), _) => ParentChoice::from_arg(&project.cwd, p)?,
        (None, false) => ParentChoice::Previous,
    };
    let opts = AddOptions {
        step: a.step,
        parent,
        metrics,
        no_cache: a.no_cache,
    };
    let abs = cairn::model::paths::absolutize(&project.cwd, &a.path);
    let entry = checkpoint::add(&project, &lock_path, &abs, &opts)?;
    // One short line: it lands in the training log, once per checkpoint.
    let step = entry
        .step
        .map(|s| format!("step {s}, "))
        .unwrap_or_default();
    // The parent only when it is not this run's own previous checkpoint by path: a digest
    // (shortened like the checkpoint's) and the run that made it, when one did.
    let parent = match (&entry.parent, &entry.parent_run) {
        (Some(p), run) if p.to_string().starts_with("blake3:") => {
            let p = p.to_string();
            let short = &p[..p.len().min("blake3:".len() + 12)];
            match run {
                Some(run) => format!(", parent {short} of run {run}"),
                None => format!(", parent {short}, in no lock"),
            }
        }
        _ => String::new(),
    };
    out.info(&format!(
        "cairn: recorded checkpoint {} ({step}blake3:{}{parent})",
        entry.path,
        &entry.digest.hex()[..12]
    ));
    Ok(crate::EXIT_OK)
}

fn list(args: &ListArgs, out: &Printer) -> Result<u8> {
    use std::io::Write;
    let cwd = std::env::current_dir()?;
    let project = crate::open_project(&cwd, false, out)?;
    let locks = match &args.lock.lock {
        Some(p) => vec![project.lock_path(Some(p))?],
        None => match std::env::var_os(checkpoint::RUN_LOCK_ENV).filter(|v| !v.is_empty()) {
            Some(p) => vec![PathBuf::from(p)],
            None => {
                let running = checkpoint::running_locks(&project);
                if running.is_empty() {
                    vec![project.lock_path(None)?]
                } else {
                    running
                }
            }
        },
    };
    let mut listed = Vec::new();
    for path in &locks {
        listed.push((path, checkpoint::list(&project, path)?));
    }
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    if args.format == ListFormat::Json {
        let value: Vec<serde_json::Value> = listed
            .iter()
            .map(|(path, l)| {
                serde_json::json!({
                    "lock": path.display().to_string(),
                    "run": l.lock.run.id,
                    "running": l.running,
                    "checkpoints": l.checkpoints.iter().map(|c| serde_json::json!({
                        "path": c.path.as_str(),
                        "digest": c.digest.to_string(),
                        "step": c.step,
                        "parent": c.parent.as_ref().map(|p| p.to_string()),
                        "parent_run": c.parent_run,
                        "deleted_by_run": c.deleted_by_run,
                        "metrics": c.metrics.iter().map(|(k, v)| (k.clone(), serde_json::json!(v.0))).collect::<serde_json::Map<_, _>>(),
                    })).collect::<Vec<_>>(),
                    "notes": l.notes,
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut w, &value)?;
        writeln!(w)?;
        return Ok(crate::EXIT_OK);
    }
    for (path, l) in &listed {
        for n in &l.notes {
            out.warn(&format!("checkpoint journal: {n}"));
        }
        let shown = crate::output::shown_path(&cwd, path);
        let what = if l.running { "running" } else { "finished" };
        writeln!(
            w,
            "{}",
            cairn::text::visible(&format!(
                "run {} ({what}, {shown}): {}",
                l.lock.run.id,
                crate::output::plural(l.checkpoints.len() as u64, "checkpoint", "checkpoints")
            ))
        )?;
        for c in &l.checkpoints {
            let step = c
                .step
                .map(|s| format!("step {s}"))
                .unwrap_or_else(|| "-".into());
            let parent = match &c.parent {
                Some(p) => {
                    let p = p.to_string();
                    if p.starts_with("blake3:") {
                        format!("from {}", &p[..p.len().min(19)])
                    } else {
                        format!("from {p}")
                    }
                }
                None => "no parent".into(),
            };
            let metrics: Vec<String> = c
                .metrics
                .iter()
                .map(|(k, v)| format!("{k}={}", v.0))
                .collect();
            let deleted = if c.deleted_by_run {
                "  (deleted by the run)"
            } else {
                ""
            };
            writeln!(
                w,
                "{}",
                cairn::text::visible(&format!(
                    "  {step:<10} {}  blake3:{}  {parent}{}{deleted}",
                    c.path,
                    &c.digest.hex()[..12],
                    if metrics.is_empty() {
                        String::new()
                    } else {
                        format!("  {}", metrics.join(" "))
                    }
                ))
            )?;
        }
    }
    Ok(crate::EXIT_OK)
}
