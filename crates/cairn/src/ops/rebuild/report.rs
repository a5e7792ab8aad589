//! What a rebuild did and found: one [`Step`] per stage and the [`Report`].

use super::*;

/// The steps of a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepName {
    /// The worktree.
    Code,
    /// The venv.
    Environment,
    /// The datasets.
    Data,
    /// The command and what it produced.
    Run,
}

impl StepName {
    /// The step's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Code => "code",
            StepName::Environment => "environment",
            StepName::Data => "data",
            StepName::Run => "run",
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Everything matches the lock.
    Reproduced,
    /// It was done, and something differs from the lock (see `differences`).
    Differs,
    /// It could not be completed (a package that cannot be installed, a patch that does not
    /// apply, a command that could not start).
    Failed,
    /// There was nothing to do (no `[python]`, no command).
    Skipped,
    /// The command was not run: no consent, or an earlier step did not reproduce.
    NotRun,
}

/// One difference from the lock, worded as verify and diff word it.
pub type Difference = compare::Reported;

/// What one step did and found.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Which step.
    pub step: StepName,
    /// How it ended.
    pub status: Status,
    /// What it did, in order, for people.
    pub actions: Vec<String>,
    /// What differs from the lock.
    pub differences: Vec<Difference>,
    /// Facts that are not differences.
    pub notes: Vec<String>,
}

impl Step {
    pub(super) fn new(step: StepName) -> Step {
        Step {
            step,
            status: Status::Reproduced,
            actions: Vec::new(),
            differences: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(super) fn differ(
        &mut self,
        subject: impl Into<String>,
        change: Change,
        detail: Option<String>,
    ) {
        self.differences.push(Difference {
            subject: subject.into(),
            path: None,
            change,
            detail,
        });
    }

    pub(super) fn settle(&mut self) {
        if self.status == Status::Reproduced && !self.differences.is_empty() {
            self.status = Status::Differs;
        }
    }
}

/// The result of a rebuild.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The lockfile rebuilt.
    pub lock: PathBuf,
    /// Its run id.
    pub run: String,
    /// The rebuilt worktree.
    pub into: PathBuf,
    /// The project root inside it (where the command runs).
    pub project: PathBuf,
    /// The venv, when the lock has `[python]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venv: Option<PathBuf>,
    /// `true` when no step differs or failed.
    pub ok: bool,
    /// Whether the command ran.
    pub ran: bool,
    /// The steps, in order: code, environment, data, run.
    pub steps: Vec<Step>,
    /// The command, as it ran or would run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Plan>,
    /// Host differences from the locking machine (information: they can explain a result that
    /// does not reproduce, but do not fail).
    pub host: Vec<Difference>,
    /// When the command ran and its checkpoints or outputs differ: what differs in the code,
    /// environment, data and host, grouped by what changes float results, most likely first,
    /// one line each ([`compare::likely_causes`]).
    pub likely_causes: Vec<compare::LikelyCause>,
}

/// The likely causes of a run that did not reproduce: the differences of the code,
/// environment and data steps, and the host's.
pub(super) fn likely_causes(steps: &[Step], host: &[Difference]) -> Vec<compare::LikelyCause> {
    let area = |s: StepName| match s {
        StepName::Code => Some(compare::Area::Code),
        StepName::Environment => Some(compare::Area::Python),
        StepName::Data => Some(compare::Area::Data),
        StepName::Run => None,
    };
    compare::likely_causes(
        steps
            .iter()
            .filter_map(|s| Some((area(s.step)?, &s.differences)))
            .flat_map(|(a, list)| list.iter().map(move |d| (a, d)))
            .chain(host.iter().map(|d| (compare::Area::Host, d))),
    )
}
