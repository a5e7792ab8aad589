//! `cairn man`: the manual pages, generated from the command-line definition.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::output::Printer;

/// Print the cairn(1) manual page (roff), or write one page per command with --dir.
///
/// With --dir, the pages are cairn.1, cairn-lock.1, cairn-checkpoint-add.1, ... in DIR.
#[derive(clap::Args)]
#[command(
    after_long_help = "Examples:\n  cairn man | man -l -\n  cairn man --dir ~/.local/share/man/man1"
)]
pub struct Args {
    /// Write every page into DIR (created if missing) instead of printing cairn(1).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let cmd = crate::Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            out.info(&format!("wrote the manual pages into {}", dir.display()));
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            clap_mangen::Man::new(cmd).render(&mut w)?;
            w.flush()?;
        }
    }
    Ok(crate::EXIT_OK)
}
