//! `cairn rebuild`: reproduce a locked run in a new directory.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Result};

use cairn::content::digest::Progress;
use cairn::ops::rebuild::{
    Installer, Observer, Plan, RebuildOptions, Report, Status, Step, StepName,
};
use cairn::project::Project;

use crate::output::{HashBar, Printer};
use crate::LockArg;

/// Reproduce a locked run: materialise its code, environment and data in a new directory,
/// check each against the lock, and (with --run, or a yes at the prompt) run the locked command
/// and compare what it produced with the lock.
///
/// Steps, each reported as it ends:
///   code         a git worktree at the locked commit (fetched from the recorded remote with
///                `git fetch` when it is not here) plus the recorded uncommitted change; its
///                git tree must be the locked one
///   environment  a venv (DIR/.venv) from an interpreter of the locked Python version, every
///                locked package installed exactly (--no-deps), with uv when it is on PATH, else
///                pip; then compared with the lock
///   data         every dataset hashed where --data says, else at its locked path (in the
///                rebuilt checkout, or in this project, then linked into the rebuilt one)
///   run          the locked argv, [run.env] and seed, in the rebuilt project; checkpoints must
///                be bit-identical, outputs too, or JSON files whose numbers agree within
///                --rtol/--atol
///
/// Without --run and without a terminal to ask on, rebuild stops after preparing and
/// verifying, and prints the command it would run.
///
/// Nothing is created until the interpreter, the commit, the recorded change and every dataset
/// have been found. An error after that removes the directory again; a step that does not
/// reproduce leaves it in place for inspection.
///
/// Exit status: 0 everything reproduced (or prepared and verified, without --run), 1 something
/// did not reproduce, 2 bad input, a missing interpreter, commit or dataset, or an I/O error.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    lock: LockArg,

    /// Where to rebuild: a new or empty directory outside the repository
    /// [default: <repo>-rebuild-<run id> next to the repository].
    #[arg(long, value_name = "DIR")]
    into: Option<PathBuf>,

    /// Where a dataset is on this machine: NAME=PATH (repeatable).
    #[arg(long = "data", value_name = "NAME=PATH")]
    data: Vec<String>,

    /// The interpreter to build the venv from [default: one of the locked version on PATH,
    /// in pyenv, or found by `uv python find`].
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,

    /// Accept a --python of another version than the locked one (reported as a difference).
    #[arg(long, requires = "python")]
    allow_other_python: bool,

    /// The package installer: `auto` (uv when it is on PATH, else pip), `pip` or `uv`.
    #[arg(long, value_enum, default_value_t = InstallerArg::Auto)]
    installer: InstallerArg,

    /// Run the locked command without asking.
    #[arg(long)]
    run: bool,

    /// Relative tolerance for numbers in JSON outputs (metrics files).
    #[arg(long, value_name = "X", default_value_t = 0.0)]
    rtol: f64,

    /// Absolute tolerance for numbers in JSON outputs (metrics files).
    #[arg(long, value_name = "X", default_value_t = 0.0)]
    atol: f64,

    /// Read every data file, even those the stat cache (.cairn/cache) knows to be unchanged.
    #[arg(long)]
    no_cache: bool,

    /// Output format of the final report: `human` or `json` (spec/rebuild.md).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

use crate::ReportFormat as Format;

#[derive(Clone, Copy, clap::ValueEnum)]
enum InstallerArg {
    Auto,
    Pip,
    Uv,
}

struct CliObserver<'a> {
    out: &'a Printer,
    bar: Option<HashBar>,
    run: bool,
}

impl Observer for CliObserver<'_> {
    /// stdout carries the report: the command's output goes to stderr.
    fn command_stdout(&self) -> std::process::Stdio {
        cairn::process::to_stderr()
    }

    fn started(&self, step: StepName, what: &str) {
        self.out.info(&format!("{}: {what}", step.as_str()));
    }

    fn finished(&self, step: &Step) {
        for a in &step.actions {
            self.out.info(&format!("  {a}"));
        }
        self.out.info(&format!(
            "{}: {}",
            step.step.as_str(),
            status_name(step.status)
        ));
    }

    fn confirm_run(&self, plan: &Plan) -> bool {
        if self.run {
            return true;
        }
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return false;
        }
        eprintln!(
            "The rebuilt run is ready. Its command:\n\n  {}\n",
            plan.shell_line()
        );
        eprint!("Run it now? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    }

    fn progress(&self) -> Option<&dyn Progress> {
        self.bar.as_ref().map(|b| b as &dyn Progress)
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Reproduced => "reproduced",
        Status::Differs => "DIFFERS",
        Status::Failed => "FAILED",
        Status::Skipped => "skipped",
        Status::NotRun => "not run",
    }
}

pub fn run(args: &Args, out: &Printer) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let project = Project::open(&cwd, true)?;
    let lock_path = project.lock_path(args.lock.lock.as_deref())?;
    let data = crate::data_locations(&project, &args.data)?;
    for (name, v) in [("--rtol", args.rtol), ("--atol", args.atol)] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{name} must be a number >= 0, got {v}");
        }
    }
    let opts = RebuildOptions {
        into: args
            .into
            .as_ref()
            .map(|p| cairn::model::paths::absolutize(&project.cwd, p)),
        data,
        python: args.python.clone(),
        allow_other_python: args.allow_other_python,
        installer: match args.installer {
            InstallerArg::Auto => Installer::Auto,
            InstallerArg::Pip => Installer::Pip,
            InstallerArg::Uv => Installer::Uv,
        },
        rtol: args.rtol,
        atol: args.atol,
        no_cache: args.no_cache,
    };
    let observer = CliObserver {
        out,
        bar: out.progress(),
        run: args.run,
    };
    let report = cairn::ops::rebuild::rebuild(&project, &lock_path, &opts, &observer)?;
    crate::output::write_report(&report, matches!(args.format, Format::Json), |w, r| {
        print_human(w, r)
    })?;
    Ok(if report.ok {
        crate::EXIT_OK
    } else {
        crate::EXIT_DIFF
    })
}

fn print_human(w: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        w,
        "rebuild of {} (run {}) in {}",
        r.lock.display(),
        r.run,
        r.into.display()
    )?;
    for s in &r.steps {
        writeln!(w, "  {:<12} {}", s.step.as_str(), status_name(s.status))?;
    }
    let differing: Vec<&Step> = r
        .steps
        .iter()
        .filter(|s| !s.differences.is_empty())
        .collect();
    if !differing.is_empty() {
        writeln!(w, "differences:")?;
        for s in differing {
            for d in &s.differences {
                let path = d
                    .path
                    .as_deref()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default();
                let detail = d
                    .detail
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default();
                writeln!(
                    w,
                    "  {:<12} {}{path} {}{detail}",
                    s.step.as_str(),
                    d.subject,
                    crate::cmd_diff::change_name(d.change)
                )?;
            }
        }
    }
    for s in &r.steps {
        for n in &s.notes {
            writeln!(w, "note: {}: {n}", s.step.as_str())?;
        }
    }
    if !r.host.is_empty() {
        writeln!(w, "host (differs from the locking machine; information):")?;
        for h in &r.host {
            writeln!(
                w,
                "  {}: {}",
                h.subject,
                h.detail.as_deref().unwrap_or("changed")
            )?;
        }
    }
    if let Some(plan) = &r.command {
        if let Some([from, to]) = &plan.replaced_program {
            writeln!(w, "program: {from} -> {to} (the rebuilt venv's)")?;
        }
        writeln!(
            w,
            "command{}: {}",
            if r.ran { "" } else { " (not run)" },
            plan.shell_line()
        )?;
    }
    let bad: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| matches!(s.status, Status::Differs | Status::Failed))
        .map(|s| s.step.as_str())
        .collect();
    if r.ok && r.ran {
        writeln!(w, "reproduced: every step matches the lock")
    } else if r.ok {
        writeln!(
            w,
            "prepared and verified in {}; pass --run to run the command and compare its checkpoints",
            r.project.display()
        )
    } else {
        writeln!(
            w,
            "not reproduced: {} (the rebuild is kept in {})",
            bad.join(", "),
            r.into.display()
        )
    }
}
