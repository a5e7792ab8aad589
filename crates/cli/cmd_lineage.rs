//! `cairn lineage`: show where a model came from.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use cairn::content::digest::HashOptions;
use cairn::ops::lineage::{self, Graph};

use crate::output::{Human, Printer};

/// Trace a model back through its checkpoints, runs and input models to its code, data and
/// environment, across every lock in the repository (cairn.lock and *.cairn.lock).
///
/// TARGET is a checkpoint file or directory (matched by its digest), a digest (blake3:...),
/// or a lock (its final checkpoints). Without one: every model that nothing else builds on.
///
/// A parent from another run (`cairn checkpoint add --parent FILE`) is followed by its digest
/// to the lock of the run that made it; a parent no lock records shows as "untracked file,
/// digest ..."; a link that leads nowhere as MISSING. A checkpoint the run deleted itself is
/// marked "(deleted by the run)".
#[derive(clap::Args)]
pub struct Args {
    /// A model file or directory, a digest, or a lock.
    target: Option<String>,

    /// Also read the locks below DIR (repeatable).
    #[arg(long = "locks", value_name = "DIR")]
    locks: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Tree)]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Tree,
    Dot,
    Mermaid,
    Json,
}

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let project = crate::open_project(&cwd, false, out)?;
    let graph = Graph::new(lineage::discover(&project, &args.locks)?);
    for f in &graph.locks {
        if let Err(e) = &f.lock {
            out.warn(&format!("skipped {}: {e}", f.shown));
        }
    }
    let cache = project.stat_cache_dir();
    let hopts = HashOptions::read_only(&cache, project.boundary());
    let roots = match &args.target {
        Some(t) => lineage::targets(&graph, &project, t, &hopts)?,
        None => graph.leaves(),
    };
    if roots.is_empty() {
        out.info("no checkpoints are recorded in any lock");
        return Ok(crate::EXIT_OK);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&graph.json(&roots))?),
        human => {
            let text = match human {
                Format::Dot => graph.dot(&roots),
                Format::Mermaid => graph.mermaid(&roots),
                _ => graph.tree(&roots),
            };
            let mut w = Human::new(std::io::stdout().lock());
            w.write_all(text.as_bytes())?;
            w.flush()?;
        }
    }
    Ok(crate::EXIT_OK)
}
