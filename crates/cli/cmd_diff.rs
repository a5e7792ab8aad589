//! `cairn diff`: explain why two runs differ.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};

use cairn::compare::Change;
use cairn::ops::diff::{CurrentOptions, Difference, Report, Side, Target};

use crate::output::{count, listing, plural, Entry, Human, Printer};

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
/// With no lock, A is cairn.lock at the project root. With one lock, B is the current state, observed exactly as `cairn verify` observes it
/// (nothing is written but the stat cache): the code, the environment, and the lock's datasets,
/// checkpoints and outputs where they are now. The differences are verify's; only the words
/// differ. A dataset or checkpoint that is not there is "missing"; one whose locked path leads
/// out of the repository through a link, or an external dataset nobody located, is "not
/// checked" (not read) until --data NAME=PATH or your cairn.toml says where it is.
///
/// The output is a summary: the code's files, each dataset, checkpoint and output on one line
/// with its first few files, the packages the run imports first, causes before content.
/// --verbose lists every difference; --format json writes every difference for programs.
///
/// Exit status: 0 no difference, 1 differences found, 2 bad input or I/O error.
#[derive(clap::Args)]
pub struct Args {
    /// The first lock (A) [default: cairn.lock at the project root].
    #[arg(value_name = "A")]
    a: Option<PathBuf>,

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

    /// List every difference: each file of a dataset, checkpoint or output, each package, each
    /// commit. Without it, diff prints a summary: one line per dataset, checkpoint or output
    /// with its first few files, the packages the run imports first.
    #[arg(long, short)]
    verbose: bool,

    /// Output format: `human` or `json` (every difference; schema: spec/diff-report.md).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

use crate::ReportFormat as Format;

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let project = crate::open_project(&cwd, false, out)?;
    let a = match &args.a {
        Some(a) => cairn::model::paths::absolutize(&project.cwd, a),
        None => project.lock_path(None)?,
    };
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
                shards: Vec::new(),
            })
        }
    };
    crate::output::compare_and_report(
        out,
        matches!(args.format, Format::Json),
        |progress| cairn::ops::diff::diff(&project, &a, &target, progress),
        |r| r.same,
        |w, r| print_human(w, r, &project.cwd, args.verbose),
    )
}

/// A change as a word.
pub fn change_name(c: Change) -> &'static str {
    c.as_str()
}

fn side_text(s: &Side, cwd: &std::path::Path) -> String {
    match &s.lock {
        None => "the current state".to_string(),
        Some(p) => {
            let mut t = crate::output::shown_path(cwd, p);
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

/// What follows a difference's change: both values (digests shortened), then the words.
fn words(d: &Difference) -> String {
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
    format!("{values}{}", crate::output::detail(&d.line))
}

fn print_human<W: Write>(
    w: &mut Human<W>,
    r: &Report,
    cwd: &std::path::Path,
    verbose: bool,
) -> std::io::Result<()> {
    w.line(format!("A: {}", side_text(&r.a, cwd)))?;
    w.line(format!("B: {}", side_text(&r.b, cwd)))?;
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
                let more = if c.truncated { "at least " } else { "" };
                w.line(format!(
                    "  {more}{} {label}:",
                    plural(list.len() as u64, "commit", "commits")
                ))?;
                let shown = if verbose {
                    list.len()
                } else {
                    crate::output::SAMPLE
                };
                for l in list.iter().take(shown) {
                    let id = &l.commit[..l.commit.len().min(10)];
                    w.line(format!("    {id} {}", l.subject))?;
                }
                if list.len() > shown {
                    w.line(format!(
                        "    ... and {} more (--verbose lists them)",
                        count((list.len() - shown) as u64)
                    ))?;
                }
            }
        }
    }
    let mut names: [Vec<String>; 2] = Default::default();
    for (i, (title, list)) in [
        ("causes (most likely first):", &r.causes),
        ("effects:", &r.effects),
    ]
    .into_iter()
    .enumerate()
    {
        if !list.is_empty() {
            w.line(title)?;
            let entries: Vec<Entry<'_>> = list
                .iter()
                .map(|d| Entry {
                    section: d.section,
                    line: &d.line,
                    words: words(d),
                    tag: "",
                    salience: d.salience.as_ref(),
                })
                .collect();
            for l in crate::output::summarise(&entries, &r.files, verbose) {
                w.line(format!("  {l}"))?;
            }
            names[i] = crate::output::group_names(&entries);
        }
    }
    print_likely_causes(w, &r.likely_causes)?;
    for n in &r.notes {
        w.line(format!("note: {n}"))?;
    }
    if r.same {
        return w.verdict("1;32", "diff: no difference", "");
    }
    let part = |names: &[String], one: &str, many: &str| {
        if names.is_empty() {
            format!("no {many}")
        } else {
            format!(
                "{} ({})",
                plural(names.len() as u64, one, many),
                listing(names, 4)
            )
        }
    };
    w.verdict(
        "1;33",
        "diff: the runs differ",
        &format!(
            " — {}; {}",
            part(&names[0], "possible cause", "possible causes"),
            part(&names[1], "effect", "effects")
        ),
    )
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
