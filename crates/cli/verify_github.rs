//! `cairn verify --format github`: each finding as a GitHub Actions workflow command, so a
//! workflow step needs nothing but `cairn verify --format github` (no jq program) to put the
//! differences on the run's summary and, for a file of the repository, on the pull request's diff.
//!
//! ```text
//! ::error file=train.py,title=cairn verify%3A code changed::code: train.py
//! ::warning file=requirements.txt,title=cairn verify%3A environment changed::requirements.txt (requirements.txt wants six>=1.17, the environment has 1.16.0)
//! ::notice title=cairn verify%3A host changed::gpu (NVIDIA A100 -> NVIDIA H100)
//! ```
//!
//! An error fails verification, a warning is environment drift, a notice host drift (both fail
//! only with `--strict`). Notes (the code matches at a later commit, a dependency file line that
//! could not be read...) are plain `note: ...` lines of the log, not annotations.

use std::io::Write;

use cairn::ops::verify::{Area, Report, Severity};
use cairn::project::Project;
use cairn::text::visible;

use crate::cmd_verify::area_name;

/// `cairn verify --format`: `human`, `json` (spec/verify-report.md) or `github`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyFormat {
    /// Lines for people.
    Human,
    /// One JSON object.
    Json,
    /// GitHub Actions workflow commands (`::error file=...::...`), one per finding.
    Github,
}

/// Escape a workflow-command value: `%`, CR and LF always; `:` and `,` in a property.
pub fn escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

/// Write one workflow command, `::LEVEL file=FILE,title=TITLE::MESSAGE` (`file=` only when
/// there is one): the file and the message as `visible` shows them, every value escaped.
/// `cairn audit --format github` writes its findings with this too.
pub fn annotation<W: Write>(
    w: &mut W,
    level: &str,
    file: Option<&str>,
    title: &str,
    message: &str,
) -> std::io::Result<()> {
    let file = file
        .map(|p| format!("file={},", escape(&visible(p), true)))
        .unwrap_or_default();
    writeln!(
        w,
        "::{level} {file}title={}::{}",
        escape(title, true),
        escape(&visible(message), false)
    )
}

/// The repository path a finding is about, when it is one: a code file, or one of the
/// project's dependency files (the subject of a lock-file finding).
fn file_of(
    f: &cairn::ops::verify::Finding,
    project: &Project,
    depfiles: &[String],
) -> Option<String> {
    match f.area {
        Area::Code => f.line.path.clone(),
        Area::Environment if depfiles.contains(&f.line.subject) => {
            let rel = cairn::model::paths::RelPath::parse(&f.line.subject).ok()?;
            project.repo_relative(&rel).or(Some(f.line.subject.clone()))
        }
        _ => None,
    }
}

/// Print the report as workflow commands.
pub fn print<W: Write>(w: &mut W, report: &Report, project: &Project) -> std::io::Result<()> {
    // The dependency files as they are now: their findings' subjects are these paths.
    let root = &project.root;
    let depfiles: Vec<String> = cairn::probe::lockfiles::find(root)
        .into_iter()
        .chain(cairn::probe::lockfiles::find_requirement_sources(root))
        .flatten()
        .map(|f| f.path.to_string())
        .collect();
    for f in &report.findings {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "notice",
        };
        let file = file_of(f, project, &depfiles);
        let title = format!(
            "cairn verify: {} {}",
            area_name(f.area),
            f.line.change.as_str()
        );
        let mut message = f.line.subject.clone();
        if let Some(p) = &f.line.path {
            message.push_str(&format!(": {p}"));
        }
        if let Some(d) = &f.line.detail {
            message.push_str(&format!(" ({d})"));
        }
        annotation(w, level, file.as_deref(), &title, &message)?;
    }
    // Notes are facts, not differences (the code matching at a later commit is one on nearly
    // every run): plain log lines, not annotations. A line cannot start a workflow command.
    for n in &report.notes {
        writeln!(w, "note: {}", visible(n))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_github_reads_them() {
        assert_eq!(escape("a%b\r\nc", false), "a%25b%0D%0Ac");
        assert_eq!(escape("cairn verify: a,b", true), "cairn verify%3A a%2Cb");
        assert_eq!(escape("x: y", false), "x: y");
    }
}
