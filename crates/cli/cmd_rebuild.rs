//! `cairn rebuild`: reproduce a locked run in a new directory.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Result};

use cairn::content::digest::Progress;
use cairn::ops::rebuild::{
    Consent, Installer, Observer, RebuildOptions, RebuildPlan, Report, Status, Step, StepName,
};
use cairn::project::Project;
use cairn::text::{visible, visible_path};

use crate::output::{HashBar, Printer};
use crate::LockArg;

/// Reproduce a locked run: materialise its code, environment and data in a new directory,
/// check each against the lock, and (with --run, or a yes at the prompt) run the locked command
/// and compare what it produced with the lock.
///
/// Steps, each reported as it ends:
///
/// - code: a git worktree at the locked commit (fetched from the recorded remote with `git
///   fetch` when it is not here, after consent) plus the recorded uncommitted change; its git
///   tree must be the locked one.
///
/// - environment: a venv (DIR/.venv) from an interpreter of the locked Python version, every
///   locked package installed exactly (--no-deps), with uv when it is on PATH, else pip; then
///   compared with the lock.
///
/// - data: every dataset hashed where --data says, else at its locked path (in the rebuilt
///   checkout, or in this project, then linked into the rebuilt one).
///
/// - run: the locked argv, [run.env] and seed, in the rebuilt project; checkpoints must be
///   bit-identical, outputs too, or JSON files whose numbers agree within --rtol/--atol.
///
/// Consent. A lock is a stranger's file: before anything it chose is fetched, built, installed
/// or run, rebuild prints the whole plan (the remote it would fetch from, every package that is
/// not a pinned download from the package index, the command, every control character shown
/// escaped) and asks once. --yes agrees to preparing (fetch, submodules, the venv) without
/// running the command; --run agrees to everything. Without either and without a terminal to
/// ask on, rebuild does only what runs nothing of the lock's: it checks out a commit the
/// repository already has, applies the recorded change, checks the data, and reports the
/// environment and the command as skipped. --dry-run prints the plan and stops.
///
/// Never run: an interpreter the repository tracks (a committed .venv is refused), git hooks,
/// or git transports other than https, ssh and git (file only for a remote the lock names
/// after consent, never for submodules). See spec/security.md.
///
/// Two steps: `cairn rebuild` (answered N) prepares and checks DIR; `cairn rebuild --run` then
/// goes on from it: a worktree that cairn prepared for this same lock, and in which nothing ran,
/// is recognised by the marker cairn wrote in its git directory and made again with the
/// consent now given. Any other worktree at DIR is refused with the `git worktree remove`
/// command that removes it.
///
/// Nothing is created until the interpreter, the commit, the recorded change and every dataset
/// have been found. An error after that removes the directory again; a step that does not
/// reproduce leaves it in place for inspection.
///
/// Exit status: 0 everything reproduced (or prepared and verified, without --run), 1 something
/// did not reproduce, 2 bad input (an invalid lock, a committed venv), a missing interpreter,
/// commit or dataset, a commit to fetch without consent, or an I/O error.
#[derive(clap::Args)]
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

    /// Agree to everything in the plan, the command too, without asking.
    #[arg(long)]
    run: bool,

    /// Agree to preparing without asking: fetch the commit, check out submodules, build the
    /// venv with the lock's packages. The command runs only with --run.
    #[arg(long, short = 'y')]
    yes: bool,

    /// Print the plan (after the same checks) and stop; nothing is created, fetched or run.
    #[arg(long, conflicts_with_all = ["run", "yes"])]
    dry_run: bool,

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
    /// What the flags agreed to.
    given: Consent,
}

impl Observer for CliObserver<'_> {
    /// stdout carries the report: the command's output goes to stderr.
    fn command_stdout(&self) -> std::process::Stdio {
        cairn::process::to_stderr()
    }

    fn started(&self, step: StepName, what: &str) {
        self.out
            .info(&format!("{}: {}", step.as_str(), visible(what)));
    }

    fn finished(&self, step: &Step) {
        for a in &step.actions {
            self.out.info(&format!("  {}", visible(a)));
        }
        self.out.info(&format!(
            "{}: {}",
            step.step.as_str(),
            status_name(step.status)
        ));
    }

    fn consent(&self, plan: &RebuildPlan) -> Consent {
        let ask = self.given == Consent::None
            && std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal();
        if !ask {
            let mut text = Vec::new();
            let _ = print_plan(&mut text, plan);
            self.out.info(String::from_utf8_lossy(&text).trim_end());
            if self.given == Consent::None {
                self.out.info(
                    "No consent (no --yes or --run, and no terminal to ask on): only the checkout of a commit that is here, the recorded change and the data are done.",
                );
            }
            return self.given;
        }
        let mut err = std::io::stderr().lock();
        let _ = print_plan(&mut err, plan);
        let _ = write!(
            err,
            "Rebuild as planned{}? [y/N] ",
            if plan.command.is_some() {
                " and run the command"
            } else {
                ""
            }
        );
        let _ = err.flush();
        drop(err);
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return Consent::None;
        }
        if matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            Consent::Run
        } else {
            Consent::None
        }
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
    crate::tell_about(&project, out);
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
        // A path made absolute (the venv is made from `/`, not from here); a bare name is
        // looked up on PATH.
        python: args.python.as_ref().map(|p| {
            if p.components().count() > 1 {
                cairn::model::paths::absolutize(&project.cwd, p)
            } else {
                p.clone()
            }
        }),
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
    if args.dry_run {
        let plan = cairn::ops::rebuild::plan(&project, &lock_path, &opts)?;
        if matches!(args.format, Format::Json) {
            crate::output::write_report(&plan, true, |_, _| Ok(()))?;
        } else {
            print_plan(&mut std::io::stdout().lock(), &plan)?;
        }
        return Ok(crate::EXIT_OK);
    }
    let observer = CliObserver {
        out,
        bar: out.progress(),
        given: if args.run {
            Consent::Run
        } else if args.yes {
            Consent::Prepare
        } else {
            Consent::None
        },
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

/// The plan, for people: every string from the lock through `visible`.
fn print_plan(w: &mut impl Write, p: &RebuildPlan) -> std::io::Result<()> {
    writeln!(
        w,
        "Plan: rebuild run {} of {} in {}",
        visible(&p.run),
        visible_path(&p.lock),
        visible_path(&p.into)
    )?;
    match &p.fetch_from {
        Some(remote) => writeln!(
            w,
            "  fetch   commit {} from {} (the lock's remote; not in this repository)",
            visible(&p.commit),
            visible(remote)
        )?,
        None => writeln!(
            w,
            "  code    commit {} (in this repository)",
            visible(&p.commit)
        )?,
    }
    for s in &p.submodules {
        writeln!(w, "  fetch   submodule {}", visible(s))?;
    }
    if let Some(py) = &p.python {
        writeln!(
            w,
            "  venv    {}/.venv from {} ({} {}), packages with {}",
            visible_path(&p.into),
            visible_path(&py.executable),
            visible(&py.implementation),
            visible(&py.version),
            match p.installer {
                Some(Installer::Uv) => "uv",
                _ => "pip",
            }
        )?;
        writeln!(
            w,
            "          {} from the package index (one without a wheel for this machine is built from source)",
            crate::output::plural(p.registry_packages as u64, "pinned package", "pinned packages")
        )?;
        let indexes = p.index_url.iter().map(|u| ("index", u));
        for (label, url) in indexes.chain(p.extra_index_urls.iter().map(|u| ("extra index", u))) {
            writeln!(
                w,
                "          {label} {} (recorded in the lock)",
                visible(url)
            )?;
        }
        for k in &p.packages {
            writeln!(
                w,
                "          {} {} from {} ({}{}{})",
                visible(&k.name),
                visible(&k.version),
                visible(&k.location),
                k.source,
                if k.source == "archive" {
                    ""
                } else {
                    "; its build backend runs"
                },
                if k.outside {
                    "; OUTSIDE the repository, on this machine"
                } else {
                    ""
                }
            )?;
        }
    }
    match &p.command {
        Some(c) => {
            if let Some([from, to]) = &c.replaced_program {
                writeln!(
                    w,
                    "  program {} -> {} (the rebuilt venv's)",
                    visible(from),
                    visible(to)
                )?;
            }
            writeln!(w, "  run     {}", visible(&c.shell_line()))?;
        }
        None => writeln!(w, "  run     nothing (the lock records no command)")?,
    }
    Ok(())
}

fn print_human(w: &mut impl Write, r: &Report) -> std::io::Result<()> {
    // Strings from the lock, and paths, are shown through `visible`.
    writeln!(
        w,
        "rebuild of {} (run {}) in {}",
        visible_path(&r.lock),
        visible(&r.run),
        visible_path(&r.into)
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
                let at = d
                    .path
                    .as_deref()
                    .map(|p| format!(": {}", visible(p)))
                    .unwrap_or_default();
                let detail = d
                    .detail
                    .as_deref()
                    .map(|x| format!(" ({})", visible(x)))
                    .unwrap_or_default();
                writeln!(
                    w,
                    "  {:<12} {}{at} {}{detail}",
                    s.step.as_str(),
                    visible(&d.subject),
                    crate::cmd_diff::change_name(d.change)
                )?;
            }
        }
    }
    for s in &r.steps {
        for n in &s.notes {
            writeln!(w, "note: {}: {}", s.step.as_str(), visible(n))?;
        }
    }
    if !r.host.is_empty() {
        writeln!(w, "host (differs from the locking machine; information):")?;
        for h in &r.host {
            writeln!(
                w,
                "  {}: {}",
                visible(&h.subject),
                visible(h.detail.as_deref().unwrap_or("changed"))
            )?;
        }
    }
    if !r.likely_causes.is_empty() {
        writeln!(
            w,
            "likely causes of the different results (most likely first):"
        )?;
        for c in &r.likely_causes {
            writeln!(w, "  {}: {}", c.cause.label(), visible(&c.line))?;
        }
    }
    if let Some(plan) = &r.command {
        if let Some([from, to]) = &plan.replaced_program {
            writeln!(
                w,
                "program: {} -> {} (the rebuilt venv's)",
                visible(from),
                visible(to)
            )?;
        }
        writeln!(
            w,
            "command{}: {}",
            if r.ran { "" } else { " (not run)" },
            visible(&plan.shell_line())
        )?;
    }
    let bad: Vec<&str> = r
        .steps
        .iter()
        .filter(|s| matches!(s.status, Status::Differs | Status::Failed))
        .map(|s| s.step.as_str())
        .collect();
    let env_waits = r.steps.iter().any(|s| {
        s.step == StepName::Environment
            && s.status == Status::Skipped
            && r.venv.is_none()
            && s.notes.iter().any(|n| n.contains("needs consent"))
    });
    if r.ok && r.ran {
        writeln!(w, "reproduced: every step matches the lock")
    } else if r.ok && env_waits {
        writeln!(
            w,
            "checked the code and data in {}; building the environment runs code the lock chose: pass --yes to build it, --run to also run the command",
            visible_path(&r.project)
        )
    } else if r.ok {
        writeln!(
            w,
            "prepared and verified in {}; pass --run to run the command and compare its checkpoints",
            visible_path(&r.project)
        )
    } else {
        writeln!(
            w,
            "not reproduced: {} (the rebuild is kept in {})",
            bad.join(", "),
            visible_path(&r.into)
        )
    }
}
