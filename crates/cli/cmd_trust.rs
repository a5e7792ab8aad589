//! `cairn trust`: let this project's cairn.toml choose a program or a place outside the
//! repository, on this machine.

use std::io::Write;

use anyhow::Result;

use crate::output::Printer;

/// Trust this project's cairn.toml on this machine, as it is now.
///
/// A cairn.toml comes with the repository, so whoever wrote the repository wrote it. Until you
/// trust it, cairn ignores (with a warning naming each one) the settings that would run a
/// program or read outside the repository: `python`, and `[data]`, `checkpoints`, `outputs` or
/// `inputs` paths that are absolute or lead out of it. Give those yourself instead with
/// --python PATH, $CAIRN_PYTHON or --data NAME=PATH, or check the file and run `cairn trust`.
///
/// The trust is the BLAKE3 of the file's bytes and the project's path, kept in your data
/// directory ($XDG_DATA_HOME/cairn/trust, else ~/.local/share/cairn/trust), never in the
/// repository. Any edit of cairn.toml revokes it, and a clone elsewhere is not trusted.
/// `cairn init` trusts the file it writes. Nothing else needs trust: verify, diff, lineage,
/// audit, export and hash never run anything of the repository (spec/security.md).
///
/// Exit status: 0 done, 2 no cairn.toml here, or I/O error.
#[derive(clap::Args)]
pub struct Args {
    /// Forget the trust in this project instead.
    #[arg(long, conflicts_with = "list")]
    revoke: bool,

    /// List the projects trusted on this machine, each `trusted` or `changed` (the file was
    /// edited since, so it is no longer trusted), on stdout.
    #[arg(long)]
    list: bool,
}

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    if args.list {
        let mut stdout = std::io::stdout().lock();
        for (record, current) in cairn::trust::list()? {
            let state = if current { "trusted" } else { "changed" };
            writeln!(
                stdout,
                "{state}  {}",
                cairn::text::visible_path(&record.root)
            )?;
        }
        stdout.flush()?;
        return Ok(crate::EXIT_OK);
    }
    let cwd = std::env::current_dir()?;
    let project = cairn::project::Project::open(&cwd, false)?;
    if args.revoke {
        if cairn::trust::revoke(&project.root)? {
            out.info(&format!(
                "{} is no longer trusted on this machine",
                project.root.join(cairn::config::FILE_NAME).display()
            ));
        } else {
            out.info(&format!(
                "{} was not trusted; nothing to revoke",
                project.root.display()
            ));
        }
        return Ok(crate::EXIT_OK);
    }
    let done = cairn::trust::trust_project(&project)?;
    out.info(&format!(
        "trusted {} ({}) on this machine; any edit revokes it",
        done.config.display(),
        done.digest
    ));
    for s in &done.settings {
        out.info(&format!(
            "  now used: {} = {:?} ({})",
            s.key,
            cairn::text::visible(&s.value),
            s.why
        ));
    }
    Ok(crate::EXIT_OK)
}
