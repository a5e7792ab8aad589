//! What a rebuild records and restores beyond the code and packages (issue #14, point 7): the
//! directory the command ran in, and the package indexes the environment came from.

use std::path::Path;

use crate::util::{Repo, Run};

/// A script that lives in `src/` and is run from there, writing relative to where it runs.
const TRAIN_IN_SRC: &str = r#"import os
os.makedirs("out", exist_ok=True)
with open("out/model.bin", "w") as f:
    here = "the root" if os.path.isdir("src") else os.path.basename(os.getcwd())
    f.write("ran in %s\n" % here)
"#;

fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {report}"))
}

fn rebuild(r: &Repo, into: &Path, args: &[&str]) -> Run {
    let mut cmd = r.cmd();
    cmd.arg("rebuild").arg("--into").arg(into).args(args);
    Run::of(&mut cmd)
}

fn project() -> Repo {
    let r = Repo::new();
    r.write("src/train.py", TRAIN_IN_SRC);
    r.write(".gitignore", "out/\nwork/\n");
    r.commit_all("initial");
    r
}

/// Run from a subdirectory, the lock records it relative to the repository root, and the
/// rebuild runs the command there: the relative script path and outputs resolve as they did.
#[test]
fn the_command_runs_where_it_ran() {
    let r = project();
    r.cairn_in(
        "src",
        [
            "lock",
            "--no-python",
            "--checkpoint",
            "out/model.bin",
            "--",
            "python3",
            "train.py",
        ],
    )
    .expect(0);
    let t = r.lock_toml("cairn.lock");
    assert_eq!(t["run"]["cwd"].as_str(), Some("src"));
    assert_eq!(
        t["checkpoint"][0]["path"].as_str(),
        Some("src/out/model.bin")
    );
    r.commit_all("lock");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let report = rebuild(&r, &into, &["--run", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(step(&report, "run")["status"], "reproduced", "{report}");
    let cwd = into.canonicalize().unwrap().join("src");
    assert_eq!(report["command"]["cwd"], cwd.to_str().unwrap(), "{report}");
    assert_eq!(
        std::fs::read_to_string(into.join("src/out/model.bin")).unwrap(),
        "ran in src\n"
    );
}

/// A run started in a git-ignored directory that the checkout does not have: the rebuild
/// makes it (inside the worktree) and runs there.
#[test]
fn an_ignored_working_directory_is_made() {
    let r = project();
    std::fs::create_dir_all(r.join("work")).unwrap();
    r.cairn_in(
        "work",
        [
            "lock",
            "--no-python",
            "--checkpoint",
            "out/model.bin",
            "--",
            "python3",
            "../src/train.py",
        ],
    )
    .expect(0);
    assert_eq!(r.lock_toml("cairn.lock")["run"]["cwd"].as_str(), Some("work"));
    r.commit_all("lock");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let report = rebuild(&r, &into, &["--run", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(step(&report, "run")["status"], "reproduced", "{report}");
    assert_eq!(
        std::fs::read_to_string(into.join("work/out/model.bin")).unwrap(),
        "ran in work\n"
    );
}

/// A lock run from the root says `cwd = "."`; one from a lock before cairn recorded it has no
/// `cwd` and still runs from the project root.
#[test]
fn root_and_older_locks() {
    let r = project();
    r.cairn([
        "lock",
        "--no-python",
        "--checkpoint",
        "out/model.bin",
        "--",
        "python3",
        "src/train.py",
    ])
    .expect(0);
    let mut t = r.lock_toml("cairn.lock");
    assert_eq!(t["run"]["cwd"].as_str(), Some("."));
    t["run"].as_table_mut().unwrap().remove("cwd");
    r.write("cairn.lock", toml::to_string(&t).unwrap());
    r.commit_all("lock");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    rebuild(&r, &into, &["--run", "--format", "json"]).expect(0);
    assert_eq!(
        std::fs::read_to_string(into.join("out/model.bin")).unwrap(),
        "ran in the root\n"
    );
}

/// The lock of a command that ran outside the repository says so and nothing else (no
/// machine path); a rebuild never runs it outside the worktree: it says why and runs nothing.
#[test]
fn a_command_that_ran_outside_the_repository_is_not_run() {
    let r = project();
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("MARKER");
    r.cairn([
        "lock",
        "--no-python",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ])
    .expect(0);
    std::fs::remove_file(&marker).unwrap();
    let mut t = r.lock_toml("cairn.lock");
    let run = t["run"].as_table_mut().unwrap();
    run.remove("cwd");
    run.insert("cwd-outside".into(), true.into());
    r.write("cairn.lock", toml::to_string(&t).unwrap());
    r.commit_all("lock");
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let report = rebuild(&r, &into, &["--run", "--format", "json"])
        .expect(0)
        .json();
    let run = step(&report, "run");
    assert_eq!(run["status"], "not-run", "{report}");
    assert!(
        run["notes"][0]
            .as_str()
            .unwrap()
            .contains("ran outside the repository"),
        "{report}"
    );
    assert!(!marker.exists(), "the command ran");
    rebuild(&r, &target.path().join("human"), &["--run"])
        .expect(0)
        .stdout_has("ran outside the repository");
}

/// A stranger's lock whose `cwd` is a committed link out of the repository: the rebuild does
/// not follow it, runs nothing, and leaves the place it points to alone.
#[test]
fn a_working_directory_that_leads_out_is_refused() {
    let r = project();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), r.join("escape")).unwrap();
    r.commit_all("a link out");
    let marker = outside.path().join("MARKER");
    r.cairn(["lock", "--no-python", "--", "touch", marker.to_str().unwrap()])
        .expect(0);
    std::fs::remove_file(&marker).unwrap();
    let mut t = r.lock_toml("cairn.lock");
    t["run"]
        .as_table_mut()
        .unwrap()
        .insert("cwd".into(), "escape".into());
    r.write("cairn.lock", toml::to_string(&t).unwrap());
    r.commit_all("lock");
    let before = crate::util::snapshot(&[outside.path()]);
    let target = tempfile::tempdir().unwrap();
    let into = target.path().join("rebuilt");
    let report = rebuild(&r, &into, &["--run", "--format", "json"])
        .expect(0)
        .json();
    let run = step(&report, "run");
    assert_eq!(run["status"], "not-run", "{report}");
    assert!(
        run["notes"][0]
            .as_str()
            .unwrap()
            .contains("leads outside the rebuilt worktree"),
        "{report}"
    );
    assert!(!marker.exists(), "the command ran");
    assert_eq!(crate::util::snapshot(&[outside.path()]), before);
}

/// `run.cwd` is a path like every other in a lock: one that climbs out, or one given with
/// `cwd-outside` too, makes the lock unreadable (exit 2), and nothing is written.
#[test]
fn bad_working_directories_are_refused() {
    let r = project();
    r.cairn(["lock", "--no-python", "--", "true"]).expect(0);
    for (cwd, outside, says) in [
        ("../elsewhere", false, "run.cwd"),
        ("/etc", false, "run.cwd"),
        ("src", true, "both `cwd` and `cwd-outside = true`"),
    ] {
        let mut t = r.lock_toml("cairn.lock");
        t["run"]
            .as_table_mut()
            .unwrap()
            .insert("cwd".into(), cwd.into());
        if outside {
            t["run"]
                .as_table_mut()
                .unwrap()
                .insert("cwd-outside".into(), true.into());
        }
        r.write("bad.cairn.lock", toml::to_string(&t).unwrap());
        let before = r.read("bad.cairn.lock");
        let target = tempfile::tempdir().unwrap();
        let into = target.path().join("rebuilt");
        r.cairn([
            "rebuild",
            "--lock",
            "bad.cairn.lock",
            "--into",
            into.to_str().unwrap(),
            "--run",
        ])
        .expect(2)
        .stderr_has(says);
        assert!(!into.exists());
        r.cairn(["verify", "--lock", "bad.cairn.lock"])
            .expect(2)
            .stderr_has(says);
        assert_eq!(r.read("bad.cairn.lock"), before);
    }
}
