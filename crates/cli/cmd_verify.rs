//! `cairn verify`: check the checkout, data and checkpoints against the lock.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;

use cairn::ops::verify::{Area, Report, Severity, VerifyOptions};
use cairn::probe::observe::ObserveOptions;

use crate::output::{Human, Printer};
use crate::LockArg;

/// Check that the code, every dataset and every checkpoint match the lock, and report every
/// difference (changed, added and removed files), then a summary.
///
/// The code matches when the working tree is the locked commit's tree plus the recorded
/// uncommitted change; committing afterwards is fine, and cairn.lock and .cairn/ never count as
/// code. External datasets are read only where cairn.toml or --data NAME=PATH says they are.
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

    /// Output format: `human`, `json` (schema: spec/verify-report.md), or `github` (one GitHub
    /// Actions annotation per finding: `::error` fails, `::warning` environment drift,
    /// `::notice` host drift; attached to the file for code and dependency files).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
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
        },
        strict: args.strict,
    };
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
    crate::output::compare_and_report(
        out,
        matches!(args.format, Format::Json),
        |progress| cairn::ops::verify::verify(&project, &lock_path, &opts, progress),
        |r| r.ok,
        print_human,
    )
}

fn area_name(a: Area) -> &'static str {
    match a {
        Area::Code => "code",
        Area::Data => "data",
        Area::Checkpoint => "checkpoint",
        Area::Output => "output",
        Area::Environment => "environment",
        Area::Host => "host",
    }
}

fn print_human<W: Write>(w: &mut Human<W>, r: &Report) -> std::io::Result<()> {
    for f in &r.findings {
        let what = match f.area {
            Area::Code => f
                .line
                .path
                .clone()
                .map(|p| format!(": {p}"))
                .unwrap_or_default(),
            _ => format!(" {}", crate::output::what(&f.line)),
        };
        let detail = crate::output::detail(&f.line);
        let level = match f.severity {
            Severity::Error => "",
            Severity::Warning => " [warning]",
            Severity::Info => " [info]",
        };
        w.line(format!(
            "{:<12} {}{what}{detail}{level}",
            f.line.change.as_str(),
            area_name(f.area)
        ))?;
    }
    for n in &r.notes {
        w.line(format!("note: {n}"))?;
    }
    let c = &r.checked;
    let what = format!(
        "{}{} dataset(s), {} checkpoint(s), {} output(s); {} file(s) of {}, {} read ({})",
        if c.code { "code, " } else { "" },
        c.read.data,
        c.read.checkpoints,
        c.read.outputs,
        c.read.files,
        human_bytes(c.read.bytes),
        c.read.files_read,
        human_bytes(c.read.bytes_read)
    );
    let drift = r
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Error)
        .count();
    let drift_note = if drift > 0 {
        format!(" ({drift} environment/host difference(s) not failing; --strict fails on them)")
    } else {
        String::new()
    };
    if r.ok {
        w.line(format!("verified {}: {what}{drift_note}", r.lock.display()))
    } else {
        let mut by_area: BTreeMap<&str, usize> = BTreeMap::new();
        for f in r.findings.iter().filter(|f| f.severity == Severity::Error) {
            *by_area.entry(area_name(f.area)).or_default() += 1;
        }
        let parts: Vec<String> = by_area.iter().map(|(a, n)| format!("{a}: {n}")).collect();
        w.line(format!(
            "{} difference(s) from {} ({}); checked {what}{drift_note}",
            by_area.values().sum::<usize>(),
            r.lock.display(),
            parts.join(", ")
        ))
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
