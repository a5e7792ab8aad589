//! `cairn audit`: check every link of the lineage, for CI.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use cairn::content::digest::HashOptions;
use cairn::ops::audit::{self, Level, RULES};
use cairn::ops::lineage::{self, Graph};

use crate::output::{plural, Human, Printer};

/// Check the lineage of models for CI: every checkpoint's digest against its file, every
/// parent and input link, runs on uncommitted code, local packages without a commit, mutable
/// hub references, unreadable locks, unknown commits, missing change sidecars, datasets that
/// changed. A parent that is a file no lock records (untracked-parent) is a warning.
///
/// TARGETs are as for `cairn lineage`; without any, every checkpoint of every lock. Each rule
/// can be made a warning or turned off in cairn.toml (`cairn audit --rules` lists them; an
/// example is below).
///
/// Finding no lock at all is a warning (a CI job on a checkout without its locks would pass
/// while checking nothing); with --strict it fails, as every warning does.
///
/// Exit status: 0 no error, 1 at least one error (with --strict: or a warning, or no lock
/// found), 2 bad input.
#[derive(clap::Args)]
#[command(after_long_help = AUDIT_EXAMPLE)]
pub struct Args {
    /// Models to audit (files, directories, digests or locks).
    targets: Vec<String>,

    /// Also read the locks below DIR (repeatable).
    #[arg(long = "locks", value_name = "DIR")]
    locks: Vec<PathBuf>,

    /// Output: `human`, `json`, or `github` (workflow-command annotations for GitHub Actions).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    /// Fail (exit 1) on warnings too, and when no lock is found: for CI.
    #[arg(long)]
    strict: bool,

    /// List the rules and their default levels, and exit.
    #[arg(long)]
    rules: bool,
}

const AUDIT_EXAMPLE: &str = "\
Example cairn.toml:
  [audit]
  dirty-code = \"warning\"
  checkpoint-missing = \"off\"";

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
    let no_lock = report.checked.locks == 0;
    if no_lock {
        out.warn(&format!(
            "no lock found: nothing was audited (looked for cairn.lock and *.cairn.lock under {}{})",
            project.boundary().display(),
            if args.locks.is_empty() { "" } else { " and the --locks directories" }
        ));
        out.hint(if args.strict {
            "is this the right checkout? Locks must be committed; give others with --locks DIR"
        } else {
            "is this the right checkout? In CI, `cairn audit --strict` fails here"
        });
    }
    let warnings = report.findings.iter().any(|f| f.level == Level::Warning);
    let ok = report.ok && !(args.strict && (no_lock || warnings));
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut w, &report)?;
            writeln!(w)?;
        }
        Format::Github => {
            for f in &report.findings {
                crate::verify_github::annotation(
                    &mut w,
                    level_name(f.level),
                    Some(&f.lock),
                    &format!("cairn audit: {}", f.rule),
                    &format!("{}: {}", f.subject, f.message),
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
                "{} {}, {}, {}: {}, {}",
                if ok { "audit passed:" } else { "audit failed:" },
                plural(report.checked.locks as u64, "lock", "locks"),
                plural(report.checked.runs as u64, "run", "runs"),
                plural(
                    report.checked.checkpoints as u64,
                    "checkpoint",
                    "checkpoints"
                ),
                plural(errors as u64, "error", "errors"),
                plural(
                    (report.findings.len() - errors) as u64,
                    "warning",
                    "warnings"
                )
            ))?;
            h.flush()?;
        }
    }
    Ok(if ok { crate::EXIT_OK } else { crate::EXIT_DIFF })
}
