//! `cairn lock`: record code, data and checkpoints (and optionally run the training command).

use anyhow::Result;

use cairn::ops::lock::{DataArg, LockOptions, Outcome, Warning};

use crate::output::{plural, Printer};
use crate::LockArg;

const LOCK_EXAMPLE: &str = "\
Example cairn.toml:
  checkpoints = [\"runs/*.safetensors\"]
  outputs = [\"metrics.json\"]
  [data]
  train = \"data/train\"
  imagenet = \"/mnt/shared/imagenet\"  # outside: recorded as external";

/// Lock a training run: record the code commit (and any uncommitted change), the digest of
/// every dataset and the checkpoints the run produced, in cairn.lock.
///
/// Without a COMMAND, records the current state. With one, records the code and data, runs the
/// command (its output goes straight to the terminal), then records its checkpoints and
/// outputs, argv, exit code and times. A command that fails leaves cairn.lock untouched; its
/// record goes to .cairn/failed/<run id>.lock.
///
/// Exit status with a COMMAND: 0 when it succeeded and the lock was written; when it failed,
/// its own status (3 stays 3; killed by signal N: 128+N), so a shell loop around cairn stops
/// where it would have stopped around the command; on Ctrl-C cairn ends by SIGINT too, as the
/// command did (the shell shows 130). 1 when the command exited 0 but a declared checkpoint or
/// output is missing; 2 for cairn's own errors (bad option, unreadable data, I/O).
///
/// Datasets, checkpoints and outputs can also be declared in cairn.toml at the project root
/// (an example is below).
///
/// Settings of cairn.toml that choose a program (`python`) or a place outside the repository (like
/// `imagenet` in the example) are used only after `cairn trust` (or in the file `cairn init` wrote); until
/// then they are ignored with a warning, as in every other command.
///
/// It also records the Python environment (interpreter and every installed package, read from
/// their metadata as `pip freeze --all` lists them), the project's dependency lock files
/// (uv.lock, pylock.toml, poetry.lock, requirements*.txt, ...), the determinism-related
/// environment variables (PYTHONHASHSEED, CUBLAS_WORKSPACE_CONFIG, NCCL_*, ...), the host and
/// its GPUs.
///
/// Commit cairn.lock and .cairn/ (.cairn/.gitignore keeps the local cache out).
#[derive(clap::Args)]
#[command(after_long_help = LOCK_EXAMPLE)]
pub struct Args {
    /// A dataset to lock: PATH or NAME=PATH (file or directory; repeatable). NAME defaults to
    /// the last component of PATH. A path outside the project (or a link out of it) is recorded
    /// as external: the lock does not say where it is, but this machine remembers it for you
    /// (outside the repository), so `cairn verify` here needs no --data.
    #[arg(long = "data", value_name = "[NAME=]PATH")]
    data: Vec<String>,

    /// Part files from `cairn hash DIR --shard K/N` runs (on other machines): a --data
    /// directory they are of takes its digest from them, merged, instead of being read here.
    /// The merge fails, naming the shard, unless the parts cover the directory exactly once;
    /// the directory is still walked (not read) to check it is the tree the shards saw.
    #[arg(long = "from-shards", value_name = "PART", num_args = 1..)]
    from_shards: Vec<std::path::PathBuf>,

    /// A checkpoint path or glob to record after the command (repeatable).
    #[arg(long = "checkpoint", value_name = "PATH|GLOB")]
    checkpoints: Vec<String>,

    /// Another output (metrics file, export) to record after the command (repeatable).
    #[arg(long = "output", value_name = "PATH|GLOB")]
    outputs: Vec<String>,

    /// A model the run starts from (repeatable): a path in the project, another lock's
    /// checkpoint as LOCK#CHECKPOINT, or a Hugging Face cache snapshot as hf://ORG/NAME@COMMIT.
    #[arg(long = "input", value_name = "REF")]
    inputs: Vec<String>,

    /// Lock without code: for a directory outside git, or on purpose.
    #[arg(long)]
    no_git: bool,

    /// Replace an existing lockfile even if it cannot be parsed (never one from a newer cairn).
    #[arg(long)]
    force: bool,

    /// Without a COMMAND, replace a lock that records a run (its command, exit code, times and
    /// uncommitted change are dropped); refused otherwise.
    #[arg(long)]
    replace_run: bool,

    /// Read every file, even those the stat cache (.cairn/cache) knows to be unchanged.
    #[arg(long)]
    no_cache: bool,

    /// The Python interpreter whose environment to record [default: `python` in a trusted
    /// cairn.toml, then $CAIRN_PYTHON, $VIRTUAL_ENV, $CONDA_PREFIX, python3 on PATH].
    #[arg(long, value_name = "PATH", conflicts_with = "no_python")]
    python: Option<std::path::PathBuf>,

    /// Do not record a Python environment.
    #[arg(long)]
    no_python: bool,

    /// The run's random seed: recorded in the lock and given to the command as CAIRN_SEED.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    seed: Option<i64>,

    #[command(flatten)]
    lock: LockArg,

    /// The training command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let project = crate::open_project(&cwd, !args.no_git, out)?;
    let lock_path = project.lock_path(args.lock.lock.as_deref())?;
    let opts = LockOptions {
        data: args.data.iter().map(|d| DataArg::parse(d)).collect(),
        checkpoints: args.checkpoints.clone(),
        outputs: args.outputs.clone(),
        command: args.command.clone(),
        no_git: args.no_git,
        force: args.force,
        no_cache: args.no_cache,
        python: args.python.clone(),
        no_python: args.no_python,
        seed: args.seed,
        inputs: args.inputs.clone(),
        replace_run: args.replace_run,
        shards: args.from_shards.clone(),
    };
    let bar = out.progress();
    let progress = bar
        .as_ref()
        .map(|b| b as &dyn cairn::content::digest::Progress);
    let mut dirty_said = false;
    let (outcome, warnings) =
        cairn::ops::lock::lock_with(&project, &lock_path, &opts, progress, &mut |early| {
            // The command is about to own the terminal: no bar may be left on it.
            if let Some(b) = &bar {
                b.clear();
            }
            dirty_said = early.iter().any(|w| matches!(w, Warning::Dirty { .. }));
            for w in early {
                say(w, &project, out);
            }
        })?;
    for w in &warnings {
        say(w, &project, out);
    }
    match outcome {
        Outcome::Written { path, lock } => {
            let code = match &lock.code {
                Some(c) => format!(
                    "code {}{}",
                    &c.commit[..12],
                    match (c.dirty, dirty_said) {
                        (true, true) => " + the uncommitted change (see above)",
                        (true, false) => " + uncommitted change",
                        _ => "",
                    }
                ),
                None => "no code".into(),
            };
            out.info(&format!(
                "locked {}: {code}, {}, {}, {}",
                project.shown(&path),
                plural(lock.data.len() as u64, "dataset", "datasets"),
                plural(lock.checkpoints.len() as u64, "checkpoint", "checkpoints"),
                plural(lock.outputs.len() as u64, "output", "outputs")
            ));
            Ok(crate::EXIT_OK)
        }
        Outcome::Unchanged { path } => {
            out.info(&format!("{} is up to date", project.shown(&path)));
            Ok(crate::EXIT_OK)
        }
        Outcome::CommandFailed {
            record,
            lock_path,
            reason,
            exit_code,
            interrupted,
        } => {
            eprintln!(
                "error: {}",
                cairn::text::visible(&format!(
                    "{reason}; {} was left as it was, and this run's record is in {}",
                    project.shown(&lock_path),
                    project.shown(&record)
                ))
            );
            // The command's own status wins: a shell loop around `cairn lock -- CMD` sees what
            // it would have seen around CMD.
            match cairn::process::passed_on(exit_code, interrupted, crate::EXIT_DIFF) {
                Some(code) => Ok(code),
                None => cairn::process::die_of_sigint(),
            }
        }
    }
}

/// Say one of the lock's warnings.
fn say(w: &Warning, project: &cairn::project::Project, out: &Printer) {
    match w {
        Warning::NoMatch { pattern } => out.warn(&format!("{pattern:?} matched no file")),
        Warning::Skipped { what, skipped } => out.warn(&format!(
            "{what}: skipped {} ({})",
            skipped.path.display(),
            skipped.reason
        )),
        Warning::LargeChange { bytes, paths } => out.warn(&format!(
            "the uncommitted change is {:.1} MiB (first paths: {}); large files belong in .gitignore or in --data",
            *bytes as f64 / (1024.0 * 1024.0),
            paths.join(", ")
        )),
        Warning::Python(msg) => out.warn(msg),
        Warning::CheckpointChanged(path) => out.warn(&format!(
            "checkpoint {path} changed after it was added; the lock records its final content"
        )),
        Warning::Dirty { sidecar, paths } => out.warn(&format!(
            "uncommitted changes in {} ({}{}) recorded in {} (commit it with the lock)",
            plural(paths.len() as u64, "file", "files"),
            paths.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if paths.len() > 3 { ", ..." } else { "" },
            project.shown(sidecar)
        )),
        // Most training scripts make their output directory: a note, not a warning. Should the
        // command not create it, the glob that matched nothing is a warning after the run.
        Warning::NoDirectoryYet { what, pattern, dir } => out.info(&format!(
            "note: {what} {pattern}: {}/ does not exist yet; the command is expected to create it",
            project.shown(dir)
        )),
        Warning::Journal(note) => out.warn(&format!("checkpoint journal: {note}")),
        Warning::NotRemembered(why) => out.warn(&format!(
            "where the external data is was not remembered on this machine ({why}); verify will need --data NAME=PATH"
        )),
    }
}
