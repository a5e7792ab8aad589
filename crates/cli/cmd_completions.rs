//! `cairn completions`: shell completion scripts, generated from the command-line definition.

use anyhow::Result;
use clap::CommandFactory;

use crate::output::Printer;

/// Print a completion script for SHELL to standard output.
const INSTALL: &str = "\
Where to put it:
  bash        cairn completions bash \\
                > ~/.local/share/bash-completion/completions/cairn
  zsh         cairn completions zsh > ~/.zfunc/_cairn
                (with fpath+=~/.zfunc before compinit)
  fish        cairn completions fish > ~/.config/fish/completions/cairn.fish
  elvish      cairn completions elvish >> ~/.config/elvish/rc.elv
  powershell  cairn completions powershell >> $PROFILE";

#[derive(clap::Args)]
#[command(after_long_help = INSTALL)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn run(args: &Args, _out: &Printer) -> Result<u8> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "cairn", &mut std::io::stdout().lock());
    Ok(crate::EXIT_OK)
}
