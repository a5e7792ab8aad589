//! `cairn env`: show the environment cairn would record, without locking anything.

use anyhow::Result;

use crate::output::Printer;

/// Print the environment `cairn lock` would record: the Python interpreter and every installed
/// package (name, version, source, installer, wheel tag, fingerprint), the project's dependency
/// lock files, the determinism-related environment variables, and the host with its GPUs.
///
/// Packages are read from their metadata on disk in `sys.path` order, as `pip freeze --all`
/// lists them; the interpreter is run once to learn `sys.path`, and nothing is imported.
#[derive(clap::Args)]
pub struct Args {
    /// The Python interpreter [default: `python` in a trusted cairn.toml, then $CAIRN_PYTHON,
    /// $VIRTUAL_ENV, $CONDA_PREFIX, python3 on PATH].
    #[arg(long, value_name = "PATH")]
    python: Option<std::path::PathBuf>,

    /// Output format: `toml` (the lock's own tables) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Toml)]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Toml,
    Json,
}

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let project = crate::open_project(&cwd, false, out)?;
    let captured = cairn::probe::env::capture(&project, args.python.as_deref(), false)?;
    for w in &captured.warnings {
        out.warn(w);
    }
    let text = captured.to_toml();
    match args.format {
        Format::Toml => print!("{text}"),
        Format::Json => {
            let value: toml::Table = text.parse()?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
    }
    Ok(crate::EXIT_OK)
}
