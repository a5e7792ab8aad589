//! What cairn prints about a hostile repository: every string from it is escaped (`text::visible`).
//!
//! The repository's author chooses file names, lock file names and package names. Printed raw,
//! an escape sequence drives the terminal, a newline forges a line of cairn's output, and a line
//! starting `::` is a GitHub Actions workflow command. Names on disk cannot be refused as
//! invalid (unlike a lock's own fields), so every human format must show them escaped.

use std::path::Path;

use crate::util::{clone_repo, Repo, Run, Venv};

/// A name that clears the screen, sets the window title, and forges a workflow command on a
/// line of its own.
const EVIL: &str = "evil\x1b[2J\x1b]0;pwned\x07\n::error::injected";

/// How [`EVIL`] must be shown: every control character visible, the newline as `\n`, so no
/// line starts with `::`.
const SHOWN: &str = "evil\\e[2J\\e]0;pwned\\x{07}\\n::error::injected";

/// Nothing the repository wrote reached the terminal raw: no control character but the line
/// ends, and no line that is a workflow command.
#[track_caller]
fn assert_inert(what: &str, run: &Run) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        let raw = text
            .chars()
            .find(|c| c.is_control() && *c != '\n' || *c == '\u{202e}');
        assert_eq!(
            raw, None,
            "{what}: a raw control character on {stream}:\n{text}"
        );
        for line in text.lines() {
            assert!(
                !line.trim_start().starts_with("::"),
                "{what}: a workflow command on {stream}: {line:?}\n{text}"
            );
        }
    }
}

/// `git clone` of `src` into a new directory; the commands run in the clone, as a user who
/// received the repository would.
fn clone(src: &Repo, into: &Path) -> std::path::PathBuf {
    clone_repo(src, into, src.home(), "clone")
}

fn cairn_in(src: &Repo, dir: &Path, args: &[&str]) -> Run {
    Run::of(src.cmd().current_dir(dir).args(args))
}

/// File names in a dataset and in the code: verify and diff show them escaped, in the human
/// form; the JSON form carries them as JSON strings (escaped by JSON).
#[test]
fn file_names_in_data_and_code_are_shown_escaped_by_verify_and_diff() {
    let r = Repo::ml();
    r.cairn([
        "lock",
        "--no-python",
        "--data",
        "data/train",
        "--",
        "python3",
        "train.py",
    ])
    .expect(0);
    r.commit_all("lock");
    r.write(&format!("data/train/{EVIL}"), "payload\n");
    r.write(&format!("{EVIL}.py"), "print('hi')\n");
    r.commit_all("hostile names");
    let tmp = tempfile::tempdir().unwrap();
    let clone = clone(&r, tmp.path());

    let verify = cairn_in(&r, &clone, &["verify"]).expect(1);
    assert_inert("verify", &verify);
    verify
        .stdout_has(&format!(
            "data train: 0 of 2 files changed, 1 added, 0 removed\n  added        {SHOWN}\n"
        ))
        .stdout_has(&format!(
            "code: 0 files changed, 1 added, 0 removed\n  added        {SHOWN}.py\n"
        ));

    let diff = cairn_in(&r, &clone, &["diff", "cairn.lock", "--no-python"]).expect(1);
    assert_inert("diff", &diff);
    diff.stdout_has(&format!(
        "  data train: 0 of 2 files changed, 1 added, 0 removed\n    added        {SHOWN}\n"
    ))
    .stdout_has(&format!(
        "  code: 0 files changed, 1 added, 0 removed\n    added        {SHOWN}.py\n"
    ));

    for args in [
        &["verify", "--format", "json"][..],
        &["diff", "cairn.lock", "--no-python", "--format", "json"][..],
    ] {
        let run = cairn_in(&r, &clone, args).expect(1);
        assert_inert(args[0], &run);
        let report = run.json();
        assert!(
            report.to_string().contains("::error::injected"),
            "the name is in the JSON, as data: {report}"
        );
    }
}

/// A lock file's name is the repository's: lineage (every format) and audit (human and github)
/// show it escaped.
#[test]
fn lock_file_names_are_shown_escaped_by_lineage_and_audit() {
    let r = Repo::ml();
    r.cairn([
        "lock",
        "--no-python",
        "--checkpoint",
        "runs/final.safetensors",
        "--",
        "python3",
        "train.py",
    ])
    .expect(0);
    std::fs::copy(r.join("cairn.lock"), r.join(&format!("{EVIL}.cairn.lock"))).unwrap();
    r.commit_all("two locks");
    // The checkpoint differs from both locks: audit names each lock in a finding.
    r.write("runs/final.safetensors", "tampered");

    for format in ["tree", "dot", "mermaid"] {
        let run = r.cairn(["lineage", "--format", format]).expect(0);
        assert_inert(&format!("lineage --format {format}"), &run);
        if format == "tree" {
            run.stdout_has(SHOWN);
        }
    }
    let audit = r.cairn(["audit"]).expect(1);
    assert_inert("audit", &audit);
    audit.stdout_has(&format!("{SHOWN}.cairn.lock"));
    let github = r.cairn(["audit", "--format", "github"]).expect(1);
    // Only cairn's own workflow commands start a line, and the name cannot start another.
    for line in github.stdout.lines() {
        assert!(
            line.starts_with("::error file=") || line.starts_with("::warning file="),
            "{line:?}\n{}",
            github.stdout
        );
        assert!(!line.contains('\x1b'), "{line:?}");
    }
    assert!(
        github.stdout.lines().count() >= 2,
        "a finding for each lock:\n{}",
        github.stdout
    );
}

/// A package installed in the environment with a hostile name (its METADATA is the author's):
/// verify's environment drift shows it escaped.
#[test]
fn package_names_are_shown_escaped_by_verify_and_diff() {
    let r = Repo::ml();
    let venv = Venv::new();
    let py = venv.python();
    let py = py.to_str().unwrap();
    r.cairn(["lock", "--python", py, "--", "python3", "train.py"])
        .expect(0);
    r.commit_all("lock");
    let dist = venv.site_packages().join("hostile-1.0.dist-info");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(
        dist.join("METADATA"),
        "Metadata-Version: 2.1\nName: hostile\x1b[2J\x1b]0;pwned\x07\nVersion: 1.0\x1b[31m\n",
    )
    .unwrap();
    let verify = r.cairn(["verify", "--python", py]).expect(0);
    assert_inert("verify", &verify);
    // Package names are normalised (lower case) before they are shown.
    verify.stdout_has("hostile\\e[2j\\e]0;pwned\\x{07}");
    let diff = r.cairn(["diff", "cairn.lock", "--python", py]).expect(1);
    assert_inert("diff", &diff);
    diff.stdout_has("hostile\\e[2j\\e]0;pwned\\x{07}");
}

/// An error that quotes a path from the command line or the disk shows it escaped.
#[test]
fn errors_quote_names_escaped() {
    let r = Repo::ml();
    let run = r.cairn(["verify", "--lock", EVIL]).expect(2);
    assert_inert("verify --lock", &run);
    run.stderr_has("error: ").stderr_has(SHOWN);
}
