//! `cairn init`: write a first cairn.toml, guessed from the directory.

use anyhow::Result;

use cairn::ops::init::Gitignore;

use crate::output::Printer;

/// Write a commented cairn.toml for this directory, guessed from what is in it.
///
/// It guesses the datasets (data/, datasets/, or a directory with many files that are not
/// code), the checkpoint globs (runs/, checkpoints/, outputs/, ... with *.safetensors, *.pt,
/// *.ckpt, *.bin, from the directories and the Python scripts; a directory the scripts name that
/// does not exist yet gets its glob as a comment only) and the interpreter
/// (.venv/bin/python), and lists the other settings (env, inputs, outputs, the audit rules)
/// as comments. It adds .cairn/cache/ to .gitignore unless git already ignores it.
///
/// An existing cairn.toml is never replaced without --force. The file written is trusted on
/// this machine (see `cairn trust`): its `python` and its paths outside the repository are used
/// until the file is edited; run `cairn trust` again after checking an edit.
///
/// Exit status: 0 written, 2 cairn.toml exists (without --force) or I/O error.
#[derive(clap::Args)]
pub struct Args {
    /// Replace an existing cairn.toml.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let done = cairn::ops::init::init(&cwd, args.force)?;
    let g = &done.guess;
    let names: Vec<&str> = g.data.iter().map(|(n, _)| n.as_str()).collect();
    out.info(&format!(
        "wrote {}: {}{}, {}, python {}",
        done.config.display(),
        crate::output::plural(g.data.len() as u64, "dataset", "datasets"),
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        },
        crate::output::plural(
            g.checkpoints.len() as u64,
            "checkpoint pattern",
            "checkpoint patterns"
        ),
        g.python.as_deref().unwrap_or("from the environment"),
    ));
    if !g.not_yet.is_empty() {
        out.warn(&format!(
            "no checkpoint glob guessed for {}: the scripts name it but it does not exist yet; the glob is a comment in cairn.toml, to uncomment once the run writes there",
            g.not_yet
                .iter()
                .filter_map(|c| c.split_once("/**").map(|(d, _)| format!("{d}/")))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !done.trusted {
        out.warn("could not record trust in the new cairn.toml (is HOME set?); its `python` is ignored until you run `cairn trust`");
    }
    let no_git = match &done.gitignore {
        Gitignore::Added(p) => {
            out.info(&format!("added .cairn/cache/ to {}", p.display()));
            ""
        }
        Gitignore::AlreadyIgnored => "",
        Gitignore::NoRepository => {
            out.warn("not in a git repository: cairn records no code here unless you `git init` and commit it");
            "--no-git "
        }
    };
    out.info("next: check cairn.toml, then lock a run:");
    out.info(&format!(
        "  cairn lock {no_git}-- {} {}",
        g.python.as_deref().unwrap_or("python"),
        g.script.as_deref().unwrap_or("train.py")
    ));
    Ok(crate::EXIT_OK)
}
