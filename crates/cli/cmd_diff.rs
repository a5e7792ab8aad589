//! `cairn diff`: explain why two runs differ.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};

use cairn::compare::Change;
use cairn::ops::diff::{CurrentOptions, Difference, Report, Side, Target};

use crate::output::{Human, Printer};

/// Explain why two runs differ: compare two locks, or a lock with the project as it is now.
///
/// Shows what differs in the code (the commits, the commits between them, the files), the
/// datasets (and the files in them, when both manifests are in .cairn/manifests/), the Python
/// interpreter and packages, the command, the determinism variables, the seed, the dependency
/// lock files and the host (OS, CPU, GPU, driver, CUDA, PyTorch build): the possible causes,
/// most likely first. Then the checkpoints and outputs that differ: the effects.
///
/// When checkpoints or outputs differ, the causes are also grouped by what changes float
/// results, one line each, most likely first: code, data, command, seed, packages, the BLAS
/// library of each numeric package, the CPU's instruction sets (SIMD kernel dispatch), thread
/// counts and affinity, numerics variables (MKL_CBWR, XLA_FLAGS, ...), the GPU stack, the OS.
///
/// With one lock, B is the current state, observed exactly as `cairn verify` observes it
/// (nothing is written but the stat cache): the code, the environment, and the lock's datasets,
/// checkpoints and outputs where they are now. The differences are verify's; only the words
/// differ. A dataset or checkpoint that is not there is "missing"; one whose locked path leads
/// out of the repository through a link, or an external dataset nobody located, is "not
/// checked" (not read) until --data NAME=PATH or your cairn.toml says where it is.
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
    crate::output::compare_and_report(
        out,
        matches!(args.format, Format::Json),
        |progress| cairn::ops::diff::diff(&project, &a, &target, progress),
        |r| r.same,
        print_human,
    )
}

/// A change as a word.
pub fn change_name(c: Change) -> &'static str {
    c.as_str()
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

fn line(d: &Difference) -> String {
    let short = |v: &Option<String>| {
        v.as_deref().map(|v| match v.strip_prefix("blake3:") {
            Some(hex) => format!("blake3:{}", &hex[..hex.len().min(12)]),
            None => v.to_string(),
        })
    };
    let values = match (short(&d.a), short(&d.b)) {
        (Some(a), Some(b)) => format!(" {a} -> {b}"),
        (Some(a), None) => format!(" (was {a})"),
        (None, Some(b)) => format!(" (now {b})"),
        (None, None) => String::new(),
    };
    let detail = crate::output::detail(&d.line);
    format!(
        "  {:<11} {} {}{values}{detail}",
        d.section.as_str(),
        crate::output::what(&d.line),
        d.line.change.as_str()
    )
}

fn print_human<W: Write>(w: &mut Human<W>, r: &Report) -> std::io::Result<()> {
    w.line(format!("A: {}", side_text(&r.a)))?;
    w.line(format!("B: {}", side_text(&r.b)))?;
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
        w.line(format!("code: {commits}, {tree}"))?;
        for (label, list) in [("in B, not in A", &c.ahead), ("in A, not in B", &c.behind)] {
            if let Some(list) = list.as_ref().filter(|l| !l.is_empty()) {
                w.line(format!("  {} commit(s) {label}:", list.len()))?;
                for l in list {
                    let id = &l.commit[..l.commit.len().min(10)];
                    w.line(format!("    {id} {}", l.subject))?;
                }
            }
        }
        if c.truncated {
            let most = cairn::ops::diff::MAX_COMMITS;
            w.line(format!("  (commit lists cut at {most})"))?;
        }
    }
    for (title, list) in [
        ("causes (most likely first):", &r.causes),
        ("effects:", &r.effects),
    ] {
        if !list.is_empty() {
            w.line(title)?;
            for d in list {
                w.line(line(d))?;
            }
        }
    }
    print_likely_causes(w, &r.likely_causes)?;
    for n in &r.notes {
        w.line(format!("note: {n}"))?;
    }
    if r.same {
        w.line("no difference")
    } else {
        let (c, e) = (r.causes.len(), r.effects.len());
        w.line(format!("{c} cause(s), {e} effect(s)"))
    }
}

/// Why the checkpoints or outputs may differ: one line per group of causes, most likely first
/// (diff and rebuild print the same block).
pub(crate) fn print_likely_causes<W: Write>(
    w: &mut Human<W>,
    causes: &[cairn::compare::LikelyCause],
) -> std::io::Result<()> {
    if causes.is_empty() {
        return Ok(());
    }
    w.line("likely causes of the different results (most likely first):")?;
    for c in causes {
        w.line(format!("  {}: {}", c.cause.label(), c.line))?;
    }
    Ok(())
}
