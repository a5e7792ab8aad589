//! `cairn verify`: check the checkout, data and checkpoints against the lock.

use std::io::Write;

use anyhow::Result;

use cairn::ops::verify::{Area, Report, Severity, VerifyOptions};
use cairn::probe::observe::ObserveOptions;

use crate::output::{count, plural, Entry, Human, Printer};
use crate::LockArg;

/// Check that the code, every dataset and every checkpoint match the lock, and report every
/// difference (changed, added and removed files), then the verdict.
///
/// The report is a summary: the code's files, each dataset, checkpoint and output on one line
/// with counts and its first few files, the packages that differ with those the locked command
/// imports first, what explains a run (code, command, seed, packages) before the data.
/// --verbose lists every file and package; --format json has every difference for programs;
/// --quiet prints only what fails (nothing when verification passes).
///
/// The code matches when the working tree is the locked commit's tree plus the recorded
/// uncommitted change; committing afterwards is fine, and cairn.lock and .cairn/ never count as
/// code. External datasets are read only where --data NAME=PATH or cairn.toml says they are,
/// or, for the user who locked the run in this project on this machine, where that lock found
/// them (remembered in the user's data directory, never in the repository). A checkpoint the run
/// deleted itself (keep-last-N) is shown as "deleted by the run" and does not fail.
///
/// Verify never runs anything of the repository: the only program it starts is the Python
/// interpreter you chose (--python, $CAIRN_PYTHON, $VIRTUAL_ENV, $CONDA_PREFIX, python3 on PATH),
/// from an empty directory outside the checkout. A cairn.toml that picks the interpreter or a
/// place outside the repository is used only after `cairn trust`. It writes only its stat cache
/// in .cairn/cache, never through a symlink (spec/security.md).
///
/// Environment drift (a package upgraded, the interpreter changed, a lock file edited or out of
/// step with what is installed, a determinism variable such as PYTHONHASHSEED set differently)
/// is reported as a warning, and host differences (OS, GPU model, driver, CUDA, PyTorch build)
/// as information; neither fails unless --strict.
///
/// A dataset or checkpoint whose locked path leads out of the repository through a link is not
/// read ("not checked") unless --data NAME=PATH says so. `cairn diff LOCK` names the same
/// differences for the same state.
///
/// Exit status: 0 everything matches, 1 a difference was found, 2 bad input or I/O error.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    lock: LockArg,

    /// Where a dataset is on this machine: NAME=PATH (repeatable). Overrides the locked path
    /// and cairn.toml.
    #[arg(long = "data", value_name = "NAME=PATH")]
    data: Vec<String>,

    /// Read every file, even those the stat cache (.cairn/cache) knows to be unchanged.
    #[arg(long)]
    no_cache: bool,

    /// The Python interpreter to compare with the locked environment [default: as for lock].
    #[arg(long, value_name = "PATH")]
    python: Option<std::path::PathBuf>,

    /// Fail (exit 1) on environment and host drift too, not only on code, data and checkpoints.
    #[arg(long)]
    strict: bool,

    /// List every difference: each file of a dataset, checkpoint or output, each package.
    /// Without it, verify prints a summary: one line per dataset, checkpoint or output with
    /// its first few files, the packages the run imports first.
    #[arg(long, short)]
    verbose: bool,

    /// Output format: `human`, `json` (every difference; schema: spec/verify-report.md), or
    /// `github` (one GitHub Actions annotation per finding: `::error` fails, `::warning`
    /// environment drift, `::notice` host drift; attached to the file for code and dependency
    /// files).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    /// Verify in shards on many machines: hash only shard K of N of every locked dataset
    /// directory (K = 1..N; balanced by bytes; each shard with its own stat cache) and write
    /// the parts into --parts DIR. Compares nothing: a `cairn verify --from-shards DIR/*.part`
    /// afterwards merges them and reports as a plain verify would.
    #[arg(long, value_name = "K/N", requires = "parts", conflicts_with_all = ["from_shards", "format", "verbose"])]
    shard: Option<cairn::content::shard::Shard>,

    /// With --shard: the directory the parts go into (shared by all shards), as
    /// `<dataset>.<K>-of-<N>.part`.
    #[arg(long, value_name = "DIR", requires = "shard")]
    parts: Option<std::path::PathBuf>,

    /// Part files written by `cairn verify --shard K/N` (or `cairn hash DIR --shard K/N`):
    /// the datasets they are of take their content from them, merged (each directory still
    /// walked, not read, to check it is the tree the shards saw). Fails, naming the shard, when
    /// one is missing, given twice or incomplete.
    #[arg(long = "from-shards", value_name = "PART", num_args = 1..)]
    from_shards: Vec<std::path::PathBuf>,
}

use crate::verify_github::VerifyFormat as Format;

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let project = crate::open_project(&cwd, false, out)?;
    let lock_path = project.lock_path(args.lock.lock.as_deref())?;
    let opts = VerifyOptions {
        observe: ObserveOptions {
            data: crate::data_locations(&project, &args.data)?,
            python: args.python.clone(),
            no_python: false,
            no_cache: args.no_cache,
            shards: cairn::content::shard::merge_files(&args.from_shards)?,
        },
        strict: args.strict,
    };
    if let (Some(shard), Some(dir)) = (args.shard, &args.parts) {
        return run_shard(&project, &lock_path, shard, dir, &opts, out);
    }
    if args.format == Format::Github {
        let report = cairn::ops::verify::verify(&project, &lock_path, &opts, None)?;
        let stdout = std::io::stdout();
        let mut w = stdout.lock();
        crate::verify_github::print(&mut w, &report, &project)?;
        w.flush()?;
        return Ok(if report.ok {
            crate::EXIT_OK
        } else {
            crate::EXIT_DIFF
        });
    }
    let json = matches!(args.format, Format::Json);
    let bar = out.progress();
    let report = cairn::ops::verify::verify(
        &project,
        &lock_path,
        &opts,
        bar.as_ref()
            .map(|b| b as &dyn cairn::content::digest::Progress),
    )?;
    let shown = crate::output::shown_path(&cwd, &report.lock);
    crate::output::write_report(&report, json, |w, r| {
        print_human(w, r, &shown, args.verbose, out.quiet())
    })?;
    if !json && !report.ok {
        let diff = if args.lock.lock.is_some() {
            format!("cairn diff {shown}")
        } else {
            "cairn diff".to_string()
        };
        out.hint(&format!(
            "`{diff}` shows what changed and why; if the changes are intended, record them with `cairn lock`"
        ));
    }
    Ok(if report.ok {
        crate::EXIT_OK
    } else {
        crate::EXIT_DIFF
    })
}

/// `cairn verify --shard K/N --parts DIR`: write this shard's parts, say what they cover.
fn run_shard(
    project: &cairn::project::Project,
    lock_path: &std::path::Path,
    shard: cairn::content::shard::Shard,
    dir: &std::path::Path,
    opts: &VerifyOptions,
    out: &Printer,
) -> Result<u8> {
    let dir = cairn::model::paths::absolutize(&project.cwd, dir);
    let bar = out.progress();
    let report = cairn::ops::verify::verify_shard(
        project,
        lock_path,
        shard,
        &dir,
        opts,
        bar.as_ref()
            .map(|b| b as &dyn cairn::content::digest::Progress),
    )?;
    drop(bar);
    for w in &report.written {
        let h = &w.hashed.part.header;
        out.info(&format!(
            "{}: shard {shard}, {} of {} files ({} read), {} of {} -> {}",
            w.name,
            h.files,
            h.tree.files,
            w.hashed.files_read,
            indicatif::HumanBytes(h.bytes),
            indicatif::HumanBytes(h.tree.bytes),
            w.part.display()
        ));
    }
    for (name, why) in &report.left {
        out.info(&format!("{name}: not sharded ({why})"));
    }
    Ok(crate::EXIT_OK)
}

/// The summary of a verification: the differences (grouped, causes first; every one with
/// `verbose`), notes, then the verdict in words. `quiet`: only what fails, and the verdict
/// when it fails.
fn print_human<W: Write>(
    w: &mut Human<W>,
    r: &Report,
    lock: &str,
    verbose: bool,
    quiet: bool,
) -> std::io::Result<()> {
    let entries: Vec<Entry<'_>> = r
        .findings
        .iter()
        .filter(|f| !quiet || f.severity == Severity::Error)
        .map(|f| Entry {
            section: f.section,
            line: &f.line,
            words: crate::output::detail(&f.line),
            tag: match f.severity {
                Severity::Error => "",
                Severity::Warning => " [warning]",
                Severity::Info => " [info]",
            },
            salience: f.salience.as_ref(),
        })
        .collect();
    for l in crate::output::summarise(&entries, &r.files, verbose) {
        w.line(l)?;
    }
    if quiet {
        if !r.ok {
            w.verdict(
                "1;31",
                "verify: FAILED",
                &format!(" — {}", failed_words(r, lock)),
            )?;
        }
        return Ok(());
    }
    for n in &r.notes {
        w.line(format!("note: {n}"))?;
    }
    let drift = r
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Error)
        // A checkpoint the run deleted itself is not drift: --strict does not fail on it.
        .filter(|f| f.line.change != cairn::ops::verify::Change::Deleted)
        .count() as u64;
    if r.ok {
        let drift_words = if drift > 0 {
            format!(
                "; the {} above {} not fail it (--strict would)",
                plural(
                    drift,
                    "environment or host difference",
                    "environment and host differences"
                ),
                if drift == 1 { "does" } else { "do" }
            )
        } else {
            String::new()
        };
        w.verdict(
            "1;32",
            "verify: ok",
            &format!(", matches {lock}{drift_words}"),
        )?;
    } else {
        w.verdict(
            "1;31",
            "verify: FAILED",
            &format!(" — {}", failed_words(r, lock)),
        )?;
    }
    w.line(checked_words(r))
}

/// `2,803 differences from cairn.lock: code (2 files), data train (2,800 files), ...`
fn failed_words(r: &Report, lock: &str) -> String {
    let failing: Vec<&cairn::ops::verify::Finding> = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    // (name, differences, whether they name files)
    let mut groups: Vec<(String, u64, bool)> = Vec::new();
    for f in &failing {
        let name = match f.area {
            Area::Code => "code".to_string(),
            Area::Environment | Area::Host => area_name(f.area).to_string(),
            _ => format!("{} {}", area_name(f.area), f.line.subject),
        };
        match groups.iter_mut().find(|g| g.0 == name) {
            Some(g) => g.1 += 1,
            None => groups.push((name, 1, f.line.path.is_some())),
        }
    }
    let mut parts: Vec<String> = groups
        .iter()
        .take(4)
        .map(|(name, n, files)| match (n, files) {
            (1, false) => name.clone(),
            (n, true) => format!("{name} ({})", plural(*n, "file", "files")),
            (n, false) => format!("{name} ({})", count(*n)),
        })
        .collect();
    if groups.len() > 4 {
        parts.push(format!("and {} more", count(groups.len() as u64 - 4)));
    }
    format!(
        "{} from {lock}: {}",
        plural(failing.len() as u64, "difference", "differences"),
        parts.join(", ")
    )
}

/// `checked code, 2 datasets and 1 checkpoint: 3,206 files, 400.0 MiB (12 read, the others
/// known unchanged)`
fn checked_words(r: &Report) -> String {
    let c = &r.checked;
    let mut what: Vec<String> = Vec::new();
    if c.code {
        what.push("code".into());
    }
    for (n, one, many) in [
        (c.read.data, "dataset", "datasets"),
        (c.read.checkpoints, "checkpoint", "checkpoints"),
        (c.read.outputs, "output", "outputs"),
    ] {
        if n > 0 {
            what.push(plural(n, one, many));
        }
    }
    let list = match what.len() {
        0 => "nothing".to_string(),
        1 => what[0].clone(),
        n => format!("{} and {}", what[..n - 1].join(", "), what[n - 1]),
    };
    if c.read.files == 0 {
        return format!("checked {list}");
    }
    let read = if c.read.files_read == c.read.files {
        "all read".to_string()
    } else {
        format!(
            "{} read, the others known unchanged from .cairn/cache",
            count(c.read.files_read)
        )
    };
    format!(
        "checked {list}: {}, {} ({read})",
        plural(c.read.files, "file", "files"),
        human_bytes(c.read.bytes)
    )
}

/// The name of an area as reports print it (`code`, `data`, `environment`...).
pub(crate) fn area_name(a: Area) -> &'static str {
    match a {
        Area::Code => "code",
        Area::Data => "data",
        Area::Checkpoint => "checkpoint",
        Area::Output => "output",
        Area::Environment => "environment",
        Area::Host => "host",
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
