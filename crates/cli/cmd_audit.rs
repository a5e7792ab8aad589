//! `cairn audit`: check every link of the lineage, for CI.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use cairn::content::digest::HashOptions;
use cairn::ops::audit::{self, Level, RULES};
use cairn::ops::lineage::{self, Graph};
use cairn::text::visible;

use crate::output::{Human, Printer};

/// Check the lineage of models for CI: every checkpoint's digest against its file, every
/// parent and input link, runs on uncommitted code, local packages without a commit, mutable
/// hub references, unreadable locks, unknown commits, missing change sidecars, datasets that
/// changed. A parent that is a file no lock records (untracked-parent) is a warning.
///
/// TARGETs are as for `cairn lineage`; without any, every checkpoint of every lock. Each rule
/// can be made a warning or turned off in cairn.toml:
///
///   [audit]
///   dirty-code = "warning"
///   checkpoint-missing = "off"
///
/// Exit status: 0 no error, 1 at least one error, 2 bad input.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Models to audit (files, directories, digests or locks).
    targets: Vec<String>,

    /// Also read the locks below DIR (repeatable).
    #[arg(long = "locks", value_name = "DIR")]
    locks: Vec<PathBuf>,

    /// Output: `human`, `json`, or `github` (workflow-command annotations for GitHub Actions).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    /// List the rules and their default levels, and exit.
    #[arg(long)]
    rules: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Human,
    Json,
    Github,
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Off => "off",
    }
}

/// Escape a GitHub Actions workflow-command value.
fn gh_escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    if args.rules {
        for (name, level, what) in RULES {
            writeln!(w, "{name:<20} {:<8} {what}", level_name(*level))?;
        }
        return Ok(crate::EXIT_OK);
    }
    let cwd = std::env::current_dir()?;
    let project = crate::open_project(&cwd, false, out)?;
    let graph = Graph::new(lineage::discover(&project, &args.locks)?);
    let cache = project.stat_cache_dir();
    let hopts = HashOptions::read_only(&cache, project.boundary());
    let mut roots = Vec::new();
    for t in &args.targets {
        roots.extend(lineage::targets(&graph, &project, t, &hopts)?);
    }
    let report = audit::audit(&project, &graph, &roots, hopts)?;
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut w, &report)?;
            writeln!(w)?;
        }
        Format::Github => {
            for f in &report.findings {
                writeln!(
                    w,
                    "::{} file={},title={}::{}",
                    level_name(f.level),
                    gh_escape(&visible(&f.lock), true),
                    gh_escape(&format!("cairn audit: {}", f.rule), true),
                    gh_escape(&visible(&format!("{}: {}", f.subject, f.message)), false)
                )?;
            }
        }
        Format::Human => {
            let mut h = Human::new(&mut w);
            for f in &report.findings {
                h.line(format!(
                    "{:<8} [{}] {}: {}: {}",
                    level_name(f.level),
                    f.rule,
                    f.lock,
                    f.subject,
                    f.message
                ))?;
            }
            let errors = report
                .findings
                .iter()
                .filter(|f| f.level == Level::Error)
                .count();
            h.line(format!(
                "{} {} lock(s), {} run(s), {} checkpoint(s): {errors} error(s), {} warning(s)",
                if report.ok {
                    "audit passed:"
                } else {
                    "audit failed:"
                },
                report.checked.locks,
                report.checked.runs,
                report.checked.checkpoints,
                report.findings.len() - errors
            ))?;
            h.flush()?;
        }
    }
    Ok(if report.ok {
        crate::EXIT_OK
    } else {
        crate::EXIT_DIFF
    })
}
