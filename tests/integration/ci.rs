//! The CI workflow and the pre-commit hook that cairn ships, exercised for real: the `run:` steps
//! of examples/ci/cairn.yml run in a temporary repository (as GitHub's runner would run them,
//! with `bash -eo pipefail`), and examples/hooks/pre-commit is installed and driven through
//! `git commit`.

use std::path::{Path, PathBuf};

use crate::util::{Repo, Run};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// PATH with the cairn under test first.
fn path_with_cairn() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_cairn")).parent().unwrap();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

/// The `(name, script)` of every step of a workflow that has a `run:`, in order. Enough YAML for
/// the file cairn ships: `- name:` starts a step, `run: |` starts a block that lasts while the
/// lines are indented deeper than `run:`.
fn run_steps(yaml: &str) -> Vec<(String, String)> {
    let mut steps = Vec::new();
    let mut name = String::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(n) = trimmed.strip_prefix("- name:") {
            name = n.trim().to_string();
        } else if trimmed.starts_with("- ") {
            name.clear();
        }
        let Some(run) = trimmed.strip_prefix("run:") else {
            continue;
        };
        let run = run.trim();
        if run == "|" {
            let mut script = String::new();
            while let Some(next) = lines.peek() {
                let t = next.trim_start();
                if !t.is_empty() && next.len() - t.len() <= indent {
                    break;
                }
                let body = next.get(indent + 2..).unwrap_or("");
                script.push_str(body);
                script.push('\n');
                lines.next();
            }
            steps.push((name.clone(), script));
        } else {
            steps.push((name.clone(), run.to_string()));
        }
    }
    steps
}

/// Run the workflow's steps (but the one that installs cairn) in the repository; returns each
/// step's name, exit code and standard output.
fn run_workflow(r: &Repo, runner_temp: &Path) -> Vec<(String, i32, String)> {
    let yaml = std::fs::read_to_string(root().join("examples/ci/cairn.yml")).unwrap();
    let steps = run_steps(&yaml);
    assert_eq!(
        steps.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["Install cairn", "cairn verify", "cairn audit"]
    );
    steps
        .into_iter()
        .filter(|(name, _)| name != "Install cairn")
        .map(|(name, script)| {
            let out = Run::of(
                r.cmd_raw("bash")
                    .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
                    .env("PATH", path_with_cairn())
                    .env("RUNNER_TEMP", runner_temp),
            );
            assert!(
                out.stderr.is_empty() || out.code != 0,
                "{name}: {}",
                out.stderr
            );
            (name, out.code, out.stdout)
        })
        .collect()
}

fn lock_and_commit(r: &Repo) {
    r.cairn(crate::util::LOCK_ML_NO_PYTHON).expect(0);
    r.commit_all("lock the run");
}

#[test]
fn workflow_steps_annotate_and_fail() {
    let r = Repo::ml();
    lock_and_commit(&r);

    // Everything matches: both steps pass and annotate nothing.
    let temp = tempfile::tempdir().unwrap();
    let steps = run_workflow(&r, temp.path());
    for (name, code, stdout) in &steps {
        assert_eq!(*code, 0, "{name}:\n{stdout}");
        assert!(!stdout.contains("::error"), "{name}:\n{stdout}");
    }
    // The steps need no jq: the workflow's verify step is cairn's own `--format github`.
    let yaml = std::fs::read_to_string(root().join("examples/ci/cairn.yml")).unwrap();
    assert!(!yaml.contains("jq"), "{yaml}");
    assert!(!steps[0].2.contains("::"), "{}", steps[0].2);

    // A code change, a data change and a tampered checkpoint: each is an annotation, and both
    // steps fail.
    r.write("train.py", format!("{}# tuned\n", crate::util::TRAIN_PY));
    r.write("data/train/a.txt", "changed\n");
    r.write("runs/final.safetensors", "tampered");
    let steps = run_workflow(&r, temp.path());
    let (_, code, verify) = &steps[0];
    assert_eq!(*code, 1, "{verify}");
    let lines: Vec<&str> = verify.lines().collect();
    assert!(
        lines.contains(&"::error file=train.py,title=cairn verify%3A code changed::code: train.py"),
        "{verify}"
    );
    assert!(
        lines.contains(&"::error title=cairn verify%3A data changed::train: a.txt"),
        "{verify}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(
            "::error title=cairn verify%3A checkpoint changed::runs/final.safetensors"
        )),
        "{verify}"
    );
    let (_, code, audit) = &steps[1];
    assert_eq!(*code, 1, "{audit}");
    assert!(
        audit.lines().any(|l| l.starts_with(
            "::error file=cairn.lock,title=cairn audit%3A checkpoint-digest::runs/final.safetensors: "
        )),
        "{audit}"
    );
}

#[test]
fn the_documented_workflow_is_the_shipped_one() {
    let yaml = std::fs::read_to_string(root().join("examples/ci/cairn.yml")).unwrap();
    let doc = std::fs::read_to_string(root().join("docs/github-actions.md")).unwrap();
    assert!(
        doc.contains(&format!("```yaml\n{yaml}```")),
        "docs/github-actions.md must show examples/ci/cairn.yml verbatim"
    );
}

fn install_hook(r: &Repo) -> PathBuf {
    let hook = r.join(".git/hooks/pre-commit");
    std::fs::copy(root().join("examples/hooks/pre-commit"), &hook).unwrap();
    hook
}

fn git_commit(r: &Repo, msg: &str) -> Run {
    Run::of(
        r.cmd_raw("git")
            .args(["commit", "-q", "-a", "-m", msg])
            .env("PATH", path_with_cairn()),
    )
}

#[test]
fn pre_commit_hook_refuses_a_lock_that_no_longer_verifies() {
    let r = Repo::ml();
    let hook = install_hook(&r);
    // The copy keeps the shipped file's executable bit; git runs only executable hooks.
    use std::os::unix::fs::PermissionsExt;
    assert!(std::fs::metadata(&hook).unwrap().permissions().mode() & 0o111 != 0);

    // Locking and committing the lock: the hook runs cairn verify, which passes.
    r.cairn(crate::util::LOCK_ML_NO_PYTHON).expect(0);
    r.git(&["add", "-A"]);
    git_commit(&r, "lock").expect(0);
    let locked = r.head();

    // The code changes but the lock does not: refused, nothing committed.
    r.write("train.py", format!("{}# tuned\n", crate::util::TRAIN_PY));
    let out = git_commit(&r, "tune without locking");
    assert_ne!(out.code, 0, "the hook let it through:\n{}", out.stderr);
    out.stderr_has("code: 1 file changed, 0 added, 0 removed\n  changed      train.py\n")
        .stderr_has("cairn pre-commit hook: cairn.lock no longer verifies");
    assert_eq!(r.head(), locked);

    // Lock again: the commit goes through, with the new lock.
    r.cairn(crate::util::LOCK_ML_NO_PYTHON).expect(0);
    r.git(&["add", "-A"]);
    git_commit(&r, "tune and lock").expect(0);
    assert_ne!(r.head(), locked);
    r.cairn(["verify"]).expect(0);
}

#[test]
fn pre_commit_hook_is_quiet_without_a_lock() {
    let r = Repo::ml();
    install_hook(&r);
    r.write(
        "train.py",
        format!("{}# no lock here\n", crate::util::TRAIN_PY),
    );
    let out = git_commit(&r, "no cairn yet").expect(0);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}
