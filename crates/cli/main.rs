//! The `cairn` command line: argument parsing, printing and exit codes. The work is done by the
//! `cairn` library; this crate never decides anything about locks or digests.

mod cmd_audit;
mod cmd_checkpoint;
mod cmd_completions;
mod cmd_diff;
mod cmd_env;
mod cmd_export;
mod cmd_hash;
mod cmd_init;
mod cmd_lineage;
mod cmd_lock;
mod cmd_man;
mod cmd_rebuild;
mod cmd_trust;
mod cmd_verify;
mod output;
mod verify_github;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status: everything matched / the command succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit status: verification found a difference, or the locked command failed.
pub const EXIT_DIFF: u8 = 1;
/// Exit status: usage error, bad input or I/O error.
pub const EXIT_ERROR: u8 = 2;

const AFTER_HELP: &str = "\
Exit status:
  0  everything matched (or the command succeeded)
  1  verify found a difference (rebuild: a part did not reproduce; diff: the
     runs differ)
  2  usage error, bad input (malformed or newer lock, bad path) or I/O error
  `cairn lock -- CMD` whose CMD fails exits with CMD's own status (3 stays 3,
  Ctrl-C ends cairn by SIGINT: 130 in the shell); see `cairn lock --help`

Getting started:
  cairn lock --data data/train --checkpoint runs/final.pt -- python train.py
  git add cairn.lock .cairn && git commit -m 'lock training run'
  cairn verify";

/// Make ML training runs reproducible: lock code, data and checkpoints in cairn.lock, and
/// verify a checkout against it.
#[derive(Parser)]
#[command(name = "cairn", version, after_help = AFTER_HELP, propagate_version = true)]
struct Cli {
    /// Do not print progress or warnings (errors are still printed).
    #[arg(long, short, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Lock(cmd_lock::Args),
    Verify(cmd_verify::Args),
    Hash(cmd_hash::Args),
    Env(cmd_env::Args),
    Checkpoint(cmd_checkpoint::Args),
    Lineage(cmd_lineage::Args),
    Audit(cmd_audit::Args),
    Rebuild(cmd_rebuild::Args),
    Diff(cmd_diff::Args),
    Export(cmd_export::Args),
    Completions(cmd_completions::Args),
    Man(cmd_man::Args),
    Init(cmd_init::Args),
    Trust(cmd_trust::Args),
}

/// `--format` of the commands that print a report: for people, or JSON (schemas in spec/).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Lines for people.
    Human,
    /// One JSON object.
    Json,
}

/// Parse repeated `--data NAME=PATH` options (paths relative to the current directory).
pub fn data_locations(
    project: &cairn::project::Project,
    given: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, PathBuf>> {
    let mut data = std::collections::BTreeMap::new();
    for d in given {
        let Some((name, path)) = d.split_once('=') else {
            anyhow::bail!("--data takes NAME=PATH, got {d:?}");
        };
        data.insert(name.to_string(), project.resolve(&project.cwd, path).0);
    }
    Ok(data)
}

/// Open the project of `cwd` and tell the user what they must know about it: the settings of an
/// untrusted cairn.toml that were ignored (spec/security.md), a stat cache that is not used.
pub fn open_project(
    cwd: &std::path::Path,
    require_git: bool,
    out: &output::Printer,
) -> anyhow::Result<cairn::project::Project> {
    let project = cairn::project::Project::open(cwd, require_git)?;
    tell_about(&project, out);
    Ok(project)
}

/// Print the warnings of [`open_project`] for a project opened otherwise.
pub fn tell_about(project: &cairn::project::Project, out: &output::Printer) {
    for (warning, hint) in project.warnings() {
        out.warn(&warning);
        if let Some(h) = hint {
            out.hint(&h);
        }
    }
}

/// Options shared by the commands that read or write a lock.
#[derive(clap::Args, Clone, Debug)]
pub struct LockArg {
    /// The lockfile, relative to the current directory or absolute [default: cairn.lock at the
    /// project root]. Inside the repository it must be named cairn.lock or NAME.cairn.lock;
    /// outside it (a lock someone sent you) any name will do.
    #[arg(long, value_name = "PATH")]
    pub lock: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let hint = command_without_dashes(&e);
            let _ = e.print();
            if let Some(h) = hint {
                output::Printer::new(false).hint(&h);
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_ERROR));
        }
    };
    let out = output::Printer::new(cli.quiet);
    let result = match &cli.command {
        Command::Lock(args) => cmd_lock::run(args, &out),
        Command::Verify(args) => cmd_verify::run(args, &out),
        Command::Hash(args) => cmd_hash::run(args, &out),
        Command::Env(args) => cmd_env::run(args, &out),
        Command::Checkpoint(args) => cmd_checkpoint::run(args, &out),
        Command::Lineage(args) => cmd_lineage::run(args, &out),
        Command::Audit(args) => cmd_audit::run(args, &out),
        Command::Rebuild(args) => cmd_rebuild::run(args, &out),
        Command::Diff(args) => cmd_diff::run(args, &out),
        Command::Export(args) => cmd_export::run(args, &out),
        Command::Completions(args) => cmd_completions::run(args, &out),
        Command::Man(args) => cmd_man::run(args, &out),
        Command::Init(args) => cmd_init::run(args, &out),
        Command::Trust(args) => cmd_trust::run(args, &out),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(EXIT_OK),
        Err(err) => {
            out.error(&err);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// `cairn lock python train.py`: the training command was given without `--`. The hint is the
/// same line with `--` where it belongs.
fn command_without_dashes(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    if e.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(word)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    if word.starts_with('-') {
        return None;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lock = args.iter().position(|a| !a.starts_with('-'))?;
    if args[lock] != "lock" || args.iter().any(|a| a == "--") {
        return None;
    }
    // The first word that is neither an option nor an option's value.
    const TAKE_A_VALUE: &[&str] = &[
        "--data",
        "--checkpoint",
        "--output",
        "--input",
        "--python",
        "--seed",
        "--lock",
    ];
    let mut at = None;
    let mut i = lock + 1;
    while i < args.len() {
        let a = &args[i];
        if TAKE_A_VALUE.contains(&a.as_str()) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            at = Some(i);
            break;
        }
    }
    let at = at.filter(|&i| &args[i] == word)?;
    let quote = |a: &[String]| -> Vec<String> {
        a.iter().map(|w| cairn::process::shell_quote(w)).collect()
    };
    let mut line = vec!["cairn".to_string()];
    line.extend(quote(&args[..at]));
    line.push("--".into());
    line.extend(quote(&args[at..]));
    Some(format!(
        "the training command goes after `--`: {}",
        line.join(" ")
    ))
}

/// A closed stdout (`cairn verify | head`) is not an error worth a message.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        let kind = e
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                e.downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}
