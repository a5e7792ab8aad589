//! `cairn export`: the lock in a supply-chain format (in-toto Statement + SLSA Provenance).

use std::io::Write;

use anyhow::Result;

use crate::output::Printer;
use crate::LockArg;

/// Print the locked run as an in-toto Statement with a SLSA Provenance predicate (JSON).
///
/// The output is an in-toto Statement v1 whose predicate is SLSA Provenance v1, with sorted
/// keys and nothing that changes between two exports of the same lock, for signers and policy
/// engines that already read those formats.
///
/// The subjects are the run's checkpoints, with their blake3 digest and, read from the files,
/// sha256 (files) or dirHash1 (directories); a checkpoint that differs from the lock is an
/// error. The code commit, the uncommitted change, datasets, input models, lock files and
/// Python packages are resolvedDependencies. Format: spec/export.md.
///
/// The statement is not signed; sign it with your own tooling (a DSSE envelope, Sigstore).
///
/// Exit status: 0 written, 2 bad input (no checkpoints, a failed run, a changed checkpoint).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    lock: LockArg,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::InToto)]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// An in-toto Statement v1 with a SLSA Provenance v1 predicate.
    InToto,
}

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let project = crate::open_project(&cwd, false, out)?;
    let lock_path = project.lock_path(args.lock.lock.as_deref())?;
    let exported = match args.format {
        Format::InToto => cairn::ops::export::in_toto(&project, &lock_path)?,
    };
    for w in &exported.warnings {
        out.warn(w);
    }
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    serde_json::to_writer_pretty(&mut w, &exported.statement)?;
    writeln!(w)?;
    w.flush()?;
    Ok(crate::EXIT_OK)
}
