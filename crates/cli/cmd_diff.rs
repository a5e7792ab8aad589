//! `cairn diff`: explain why two runs differ.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};

use cairn::ops::diff::{CurrentOptions, Difference, Report, Side, Target};
use cairn::ops::verify::Change;

use crate::output::Printer;

/// Explain why two runs differ: compare two locks, or a lock with the project as it is now.
///
/// Shows what differs in the code (the commits, the commits between them, the files), the
/// datasets (and the files in them, when both manifests are in .cairn/manifests/), the Python
/// interpreter and packages, the command, the determinism variables, the seed, the dependency
/// lock files and the host (OS, CPU, GPU, driver, CUDA, PyTorch build): the possible causes,
/// most likely first. Then the checkpoints and outputs that differ: the effects.
///
/// With one lock, B is the current state, probed as `cairn lock` would (nothing is written but
/// the stat cache): the code, the environment, and the lock's datasets, checkpoints and outputs
/// where they are now.
///
/// Exit status: 0 no difference, 1 differences found, 2 bad input or I/O error.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The first lock (A).
    #[arg(value_name = "A")]
    a: PathBuf,

    /// The second lock (B) [default: the current state of the project].
    #[arg(value_name = "B")]
    b: Option<PathBuf>,

    /// Current state only: where a dataset is on this machine, NAME=PATH (repeatable).
    #[arg(long = "data", value_name = "NAME=PATH")]
    data: Vec<String>,

    /// Current state only: the Python interpreter to compare [default: as for lock].
    #[arg(long, value_name = "PATH", conflicts_with = "no_python")]
    python: Option<PathBuf>,

    /// Current state only: do not compare the Python environment.
    #[arg(long)]
    no_python: bool,

    /// Current state only: read every file, even those the stat cache knows.
    #[arg(long)]
    no_cache: bool,

    /// Output format: `human` or `json` (schema: spec/diff-report.md).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

use crate::ReportFormat as Format;

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let project = crate::open_project(&cwd, false, out)?;
    let a = cairn::model::paths::absolutize(&project.cwd, &args.a);
    let target = match &args.b {
        Some(b) => {
            if !args.data.is_empty() || args.python.is_some() || args.no_python || args.no_cache {
                bail!("--data, --python, --no-python and --no-cache apply only to a comparison with the current state (one lock)");
            }
            Target::Lock(cairn::model::paths::absolutize(&project.cwd, b))
        }
        None => {
            let data = crate::data_locations(&project, &args.data)?;
            Target::Current(CurrentOptions {
                data,
                python: args.python.clone(),
                no_python: args.no_python,
                no_cache: args.no_cache,
            })
        }
    };
    let bar = out.progress();
    let progress = bar
        .as_ref()
        .map(|b| b as &dyn cairn::content::digest::Progress);
    let report = cairn::ops::diff::diff(&project, &a, &target, progress)?;
    crate::output::write_report(&report, matches!(args.format, Format::Json), |w, r| {
        print_human(w, r)
    })?;
    Ok(if report.same {
        crate::EXIT_OK
    } else {
        crate::EXIT_DIFF
    })
}

/// A change as a word.
pub fn change_name(c: Change) -> &'static str {
    match c {
        Change::Changed => "changed",
        Change::Added => "added",
        Change::Removed => "removed",
        Change::ModeChanged => "mode changed",
        Change::Missing => "missing",
        Change::Unchecked => "not checked",
    }
}

fn side_text(s: &Side) -> String {
    match &s.lock {
        None => "the current state".to_string(),
        Some(p) => {
            let mut t = p.display().to_string();
            let mut parts = Vec::new();
            if let Some(r) = &s.run {
                parts.push(format!("run {}", &r[..r.len().min(12)]));
            }
            if let Some(at) = &s.locked_at {
                parts.push(format!("locked {at}"));
            }
            if !parts.is_empty() {
                t.push_str(&format!(" ({})", parts.join(", ")));
            }
            t
        }
    }
}

fn short(v: &str) -> String {
    match v.strip_prefix("blake3:") {
        Some(hex) => format!("blake3:{}", &hex[..hex.len().min(12)]),
        None => v.to_string(),
    }
}

fn line(d: &Difference) -> String {
    let subject = match &d.path {
        Some(p) if d.subject == "code" => p.clone(),
        Some(p) => format!("{}: {p}", d.subject),
        None => d.subject.clone(),
    };
    let values = match (&d.a, &d.b) {
        (Some(a), Some(b)) => format!(" {} -> {}", short(a), short(b)),
        (Some(a), None) => format!(" (was {})", short(a)),
        (None, Some(b)) => format!(" (now {})", short(b)),
        (None, None) => String::new(),
    };
    let detail = match &d.detail {
        // The package drift detail repeats the versions.
        Some(x) if !values.is_empty() && x.contains(" -> ") => String::new(),
        Some(x) => format!(" ({x})"),
        None => String::new(),
    };
    format!(
        "  {:<11} {subject} {}{values}{detail}",
        d.section.as_str(),
        change_name(d.change)
    )
}

fn print_human(w: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(w, "A: {}", side_text(&r.a))?;
    writeln!(w, "B: {}", side_text(&r.b))?;
    if let Some(c) = &r.code {
        let commits = if c.a == c.b {
            format!("commit {}", &c.a[..c.a.len().min(12)])
        } else {
            format!(
                "commits {} -> {}",
                &c.a[..c.a.len().min(12)],
                &c.b[..c.b.len().min(12)]
            )
        };
        let tree = if c.same_tree {
            "same code"
        } else {
            "the code differs"
        };
        writeln!(w, "code: {commits}, {tree}")?;
        for (label, list) in [("in B, not in A", &c.ahead), ("in A, not in B", &c.behind)] {
            if let Some(list) = list.as_ref().filter(|l| !l.is_empty()) {
                writeln!(w, "  {} commit(s) {label}:", list.len())?;
                for l in list {
                    writeln!(
                        w,
                        "    {} {}",
                        &l.commit[..l.commit.len().min(10)],
                        l.subject
                    )?;
                }
            }
        }
        if c.truncated {
            writeln!(
                w,
                "  (commit lists cut at {})",
                cairn::ops::diff::MAX_COMMITS
            )?;
        }
    }
    if !r.causes.is_empty() {
        writeln!(w, "causes (most likely first):")?;
        for d in &r.causes {
            writeln!(w, "{}", line(d))?;
        }
    }
    if !r.effects.is_empty() {
        writeln!(w, "effects:")?;
        for d in &r.effects {
            writeln!(w, "{}", line(d))?;
        }
    }
    for n in &r.notes {
        writeln!(w, "note: {n}")?;
    }
    if r.same {
        writeln!(w, "no difference")
    } else {
        writeln!(
            w,
            "{} cause(s), {} effect(s)",
            r.causes.len(),
            r.effects.len()
        )
    }
}
